"""The sample-quality phase: cached reference statistics, per-sample seeds, and quality as a
study's objective, measured offline on the digits."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from archsearch.data import load_data
from archsearch.nn import build_unet
from archsearch.quality import QualityPhase, draw_samples, reference_file
from archsearch.schema.data import Digits
from archsearch.schema.loading import unet_config_from_dict
from archsearch.schema.quality import QualityConfig
from archsearch.schema.space import space_from_dict
from archsearch.schema.train import TrainConfig
from archsearch.settings import resolve_run_settings

SMALL = {"levels": [{"width": 8, "blocks": 1}, {"width": 8, "blocks": 1}], "middle": {"blocks": 1, "attention": False},
         "block": {"norm": {"kind": "group", "groups": 4}}, "embedding": {"dim": 8}, "image_size": 8, "in_channels": 1}


@pytest.fixture(scope="module")
def data():
    return load_data(Digits(image_size=8))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_unet(unet_config_from_dict(SMALL))


@pytest.fixture(scope="module")
def settings():
    return resolve_run_settings(TrainConfig(), torch.device("cpu"))


def _cfg(tmp_path, **kw):
    return QualityConfig(**{"num_samples": 40, "sampler": {"kind": "ddim", "steps": 4}, "kid_subsets": 5,
                            "cache_dir": str(tmp_path), **kw})


def test_reference_statistics_are_computed_once_and_shared_through_the_disk_cache(tmp_path, data, model, settings):
    first = QualityPhase(_cfg(tmp_path), data)
    first.measure(model, settings, (1, 8, 8))
    reference_batches = -(-len(data.train_uint8) // first.cfg.batch_size)
    assert first.features.calls == reference_batches + 1  # the real images once, then the samples
    files = list(tmp_path.glob("*.npz"))
    assert [f.name for f in files] == [reference_file(data.train_uint8, data.name, "train", first.features, tmp_path).name]
    assert files[0].name.startswith(f"digits-train-digits_") and f"-{len(data.train_uint8)}-" in files[0].name

    second = QualityPhase(_cfg(tmp_path), data)  # another worker, study or process
    second.measure(model, settings, (1, 8, 8))
    second.measure(model, settings, (1, 8, 8))
    assert second.features.calls == 2  # the two sample sets only: the real images came from the cache

    other = QualityPhase(_cfg(tmp_path, reference_samples=100), data)  # another count is another file
    other.reference()
    assert other.features.calls == 1 and len(list(tmp_path.glob("*.npz"))) == 2


def test_the_cache_key_names_the_split_and_the_images(tmp_path, data):
    phase = QualityPhase(_cfg(tmp_path, reference="val"), data)
    phase.reference()
    [name] = [f.name for f in tmp_path.glob("*.npz")]
    assert f"digits-val-digits_" in name and f"-{len(data.val_uint8)}-" in name
    bigger = load_data(Digits(image_size=16))
    assert reference_file(bigger.val_uint8, bigger.name, "val", phase.features, tmp_path).name != name


@pytest.mark.parametrize("sampler", [{"kind": "ddim", "steps": 3}, {"kind": "ddpm", "steps": 3}])
def test_each_sample_has_its_own_seed_whatever_the_batch(tmp_path, model, settings, sampler):
    whole = draw_samples(model, _cfg(tmp_path, sampler=sampler, batch_size=50), settings, (1, 8, 8), count=12)
    pieces = draw_samples(model, _cfg(tmp_path, sampler=sampler, batch_size=5), settings, (1, 8, 8), count=12)
    fewer = draw_samples(model, _cfg(tmp_path, sampler=sampler, batch_size=5), settings, (1, 8, 8), count=7)
    assert torch.equal(whole, pieces) and torch.equal(whole[:7], fewer)
    reseeded = draw_samples(model, _cfg(tmp_path, sampler=sampler, seed=1), settings, (1, 8, 8), count=12)
    assert not torch.equal(whole, reseeded)
    assert whole.min() >= -1 and whole.max() <= 1
    assert torch.equal(whole, ((whole + 1) * 127.5).round() / 127.5 - 1)  # 8-bit pixels, as the real images


def test_quality_objectives_turn_the_phase_on_and_must_be_measured():
    space = space_from_dict({"objectives": [{"metric": "fd"}, {"metric": "train_throughput_normalized",
                                                                "direction": "maximize"}]})
    assert space.eval.quality == QualityConfig()
    assert space_from_dict({}).eval.quality is None
    from archsearch.errors import ConfigErrors

    with pytest.raises(ConfigErrors, match=r"objectives\.0\.metric: kid is not among eval\.quality\.metrics \(fd\)"):
        space_from_dict({"objectives": [{"metric": "kid"}], "eval": {"quality": {"metrics": ["fd"]}}})


SPACE = """
study: {name: q, trials: 2, sampler: {kind: random}, seed: 0, device: cpu}
data: {source: digits, image_size: 8}
train: {steps: 6, batch_size: 16, warmup_steps: 1}
eval: {num_images: 16, timesteps: 4, timesteps_per_image: 2, buckets: 2, curve_points: 0,
       quality: {num_samples: 30, sampler: {kind: ddim, steps: 3}, kid_subsets: 3, cache_dir: CACHE}}
measure: {warmup_steps: 0, repeats: 3, latency: false, infer: false, flops: false, max_seconds: 2, reference: null}
objectives:
  - {metric: fd, direction: minimize}
  - {metric: train_throughput, direction: maximize}
architecture:
  levels:
    - {width: {choice: [8, 16]}, blocks: 1}
    - {width: 8, blocks: 1}
  middle: {blocks: 1, attention: false}
  block: {norm: {kind: group, groups: 4}}
  embedding: {dim: 8}
"""


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "archsearch.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def test_a_study_searches_on_fd_offline_and_records_every_quality_metric(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(textwrap.dedent(SPACE).replace("CACHE", str(tmp_path / "cache")))
    run = _cli("run", str(space), "--results-dir", str(tmp_path / "results"), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    import pandas as pd

    table = pd.read_csv(tmp_path / "results" / "q" / "trials.csv")
    assert list(table.columns[2:4]) == ["fd", "train_throughput"]  # the objectives lead the table
    done = table[table.state == "COMPLETE"]
    assert len(done) == 2
    for column in ("fd", "kid", "sample_precision", "sample_recall", "quality_seconds"):
        assert done[column].notna().all(), column
    assert (done.fd > 0).all() and ((0 <= done.sample_precision) & (done.sample_precision <= 1)).all()
    metrics = json.loads(next((tmp_path / "results" / "q" / "trials").glob("*/metrics.json")).read_text())
    assert metrics["quality"]["features"] == "digits" and metrics["quality"]["num_samples"] == 30
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1


def test_validate_refuses_missing_inception_weights_before_any_trial(tmp_path):
    space = tmp_path / "space.yaml"
    text = textwrap.dedent(SPACE).replace("CACHE", str(tmp_path / "cache")).replace(
        "quality: {", "quality: {features: inception, ")
    space.write_text(text)
    for command in (["validate", str(space)], ["run", str(space), "--results-dir", str(tmp_path / "r")]):
        done = _cli(*command, cwd=tmp_path)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "eval.quality.features: inception needs its weights file" in done.stdout + done.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_a_quickstart_networks_fd_improves_between_60_and_600_steps(tmp_path):
    from archsearch.schema.measure import MeasureConfig
    from archsearch.schema.train import EvalConfig
    from archsearch.trial import TrialContext, run_trial

    arch = {"levels": [{"width": 32, "blocks": 1}, {"width": 32, "blocks": 1}, {"width": 32, "blocks": 1}],
            "middle": {"blocks": 2, "attention": False}, "block": {"norm": {"kind": "group", "groups": 4}},
            "attention": {"head_channels": 8}, "image_size": 16, "in_channels": 1}
    train_cfg = TrainConfig(steps=600, batch_size=32, lr=2e-3, warmup_steps=10)
    eval_cfg = EvalConfig(num_images=128, timesteps=10, curve_points=0,
                          quality=_cfg(tmp_path, num_samples=500, sampler={"kind": "ddim", "steps": 20}))
    context = TrialContext.create(load_data(Digits()), train_cfg, eval_cfg, "cpu")
    result = run_trial(unet_config_from_dict(arch), context, train_cfg,
                       MeasureConfig(repeats=3, warmup_steps=0, reference=None, infer=False, latency=False, flops=False),
                       eval_steps=[60], quality_steps=[60, 600])
    (step60, fd60), (step600, fd600) = result.metrics.quality_curve
    assert (step60, step600) == (60, 600) and fd600 == result.metrics.fd
    assert fd600 < 0.5 * fd60, result.metrics.quality_curve


def test_fd_noise_estimates_the_spread_that_other_sample_seeds_give(tmp_path, data, model, settings):
    """The bootstrap over one sample set (fd_noise) is of the size of the seed-to-seed spread of fd."""
    import statistics

    results = [QualityPhase(_cfg(tmp_path, num_samples=300, seed=seed, metrics=["fd"]), data).measure(model, settings, (1, 8, 8))
               for seed in range(6)]
    spread = statistics.stdev(r.values["fd"] for r in results)
    noise = statistics.mean(r.values["fd_noise"] for r in results)
    assert spread / 3 < noise < 3 * spread, (noise, spread)
    off = QualityPhase(_cfg(tmp_path, noise_rounds=0), data)
    features = np.random.default_rng(0).random((20, 64), dtype=np.float32)
    assert "fd_noise" not in off.score(features, off.reference())


@pytest.mark.slow
@pytest.mark.skipif(not __import__("os").environ.get("ARCHSEARCH_TEST_POSTGRES_URL"),
                    reason="set ARCHSEARCH_TEST_POSTGRES_URL to a PostgreSQL database (CI does)")
def test_two_workers_on_postgresql_search_on_fd_and_share_one_cached_reference(tmp_path):
    import os
    import time

    import optuna

    url = os.environ["ARCHSEARCH_TEST_POSTGRES_URL"]
    name = f"quality-{os.getpid()}-{int(time.time())}"
    text = textwrap.dedent(SPACE).replace("CACHE", str(tmp_path / "cache")).replace("name: q,", f"name: {name},")
    space = tmp_path / "space.yaml"
    space.write_text(text.replace("trials: 2", "trials: 4"))
    run = _cli("run", str(space), "--results-dir", str(tmp_path), "--storage", url, "--workers", "2", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    trials = optuna.load_study(study_name=name, storage=url).get_trials()
    done = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(done) == 4 and all(t.values[0] == t.user_attrs["fd"] > 0 for t in done)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1  # one reference file, whoever wrote it
