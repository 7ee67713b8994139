"""benchmarks/gpu_check.sh --dry-run: the GPU check's every step runs on the CPU at tiny sizes,
so the one prepared command works the day a GPU is lent."""

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parent.parent


def test_the_dry_run_writes_every_figure(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path)}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run"], env=env,
                          capture_output=True, text=True, timeout=600)
    log = (tmp_path / "gpu_check.log").read_text()
    assert proc.returncode == 0, log[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["dry_run"] is True
    for step in ("peak", "ddpm", "small", "workers", "oom"):
        assert "error" not in report[step], report[step]
    assert report["peak"]["flops_per_s"] > 0
    assert report["ddpm"]["ours"]["images_per_s"] > 0 and 0 < report["ddpm"]["ours"]["mfu"] < 1
    if importlib.util.find_spec("diffusers") is not None:  # the diffusers extra: ours beside UNet2DModel
        assert report["ddpm"]["ratio_ours_to_diffusers"] > 0
    assert all(run["rc"] == 0 and run["trials_per_minute"] > 0 for run in report["workers"]["runs"].values())
    assert report["oom"]["ok"], report["oom"]  # the too-big trial is `oom`, the other completes
    assert "== ddpm-study: exit 0" in log
