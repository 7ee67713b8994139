"""The GPU path, measured: one driver for benchmarks/gpu_check.sh (which also runs the CUDA tests
and a 3-trial DDPM CIFAR-10 study around it).

    python benchmarks/gpu_check.py --out gpu_check.json            # on a CUDA machine (< 8 minutes)
    python benchmarks/gpu_check.py --dry-run --out /tmp/gc.json    # tiny sizes on the CPU (a test runs it)

Each step adds one entry to the JSON file (rewritten after every step, so a step that hangs or
crashes leaves the others) and prints one line:

- `peak`: the card's measured dense matmul throughput at the training precision (bf16 on CUDA:
  8192² matmuls; the denominator of the model FLOP utilization below);
- `ddpm`: the DDPM CIFAR-10 preset's training step (bf16 autocast, fused AdamW, TF32, batch
  128) through archsearch.measure: images/s, peak memory, model FLOP utilization (3 × forward
  FLOPs per image × images/s ÷ peak), beside diffusers' UNet2DModel built from the same config
  by archsearch's exporter (identical architecture, same protocol, alternating rounds): ratio;
- `small`: a quickstart-sized network at 32×32, where kernel launches dominate: eager against
  `torch.compile(mode="reduce-overhead")` (CUDA graphs), compile time reported apart;
- `workers`: `archsearch run` of a small space with 1, 2 and 4 workers sharing GPU 0
  (`--workers k --gpus 0,...`): total trials per minute;
- `oom`: a study whose second trial cannot fit the card (a batch far beyond its memory):
  recorded as `oom` while the study goes on.

`--dry-run` runs every step on the CPU at tiny sizes (no compile, workers 1 and 2, the OOM as the
pre-allocation refusal of a model too large for RAM), to prove the script, not the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from archsearch import build_unet  # noqa: E402
from archsearch.device import configure_backends, device_info, resolve_device, synchronize  # noqa: E402
from archsearch.measure import count_flops, measure  # noqa: E402
from archsearch.schema.loading import load_unet_config, unet_config_from_dict  # noqa: E402
from archsearch.schema.measure import MeasureConfig  # noqa: E402
from archsearch.schema.train import TrainConfig  # noqa: E402
from archsearch.settings import resolve_run_settings  # noqa: E402
from vs_diffusers import DiffusersAdapter  # noqa: E402 - archsearch's call convention around UNet2DModel

PRESET = ROOT / "archsearch" / "presets" / "ddpm-cifar10.yaml"
SMALL = {"image_size": 32, "in_channels": 3, "levels": [{"width": 32, "blocks": 1}, {"width": 64, "blocks": 1,
         "attention": True}], "block": {"norm": {"groups": 8}}, "attention": {"head_channels": 16}}
TINY = {"image_size": 8, "in_channels": 3, "levels": [{"width": 8, "blocks": 1}, {"width": 16, "blocks": 1}],
        "block": {"norm": {"groups": 4}}, "attention": {"head_channels": 8}}


def matmul_peak(device, dtype, n: int, repeats: int) -> float:
    """Measured FLOP/s of n×n @ n×n at `dtype` (the median of `repeats` timed products)."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        synchronize(device)
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / statistics.median(times)


def ddpm_step(device, settings, dry: bool, peak: float) -> dict:
    """The preset's training step, ours against diffusers' UNet2DModel of the same config."""
    from archsearch.export.check import random_weights
    from archsearch.export.diffusers import diffusers_config

    config = unet_config_from_dict(TINY) if dry else load_unet_config(PRESET)
    batch = 4 if dry else 128
    cfg = MeasureConfig(warmup_steps=2 if dry else 10, repeats=3 if dry else 20, infer=False, latency=False,
                        flops=False, max_seconds=None)
    shape = (config.in_channels, config.image_size, config.image_size)
    ours = build_unet(config)
    ours.load_state_dict(random_weights(config))
    models = {"ours": ours}
    try:
        from diffusers import UNet2DModel

        models["diffusers"] = DiffusersAdapter(UNet2DModel(**diffusers_config(config)))
    except ImportError:
        pass
    runs: dict[str, list] = {k: [] for k in models}
    for r in range(2):
        for key in (list(models) if r % 2 == 0 else list(models)[::-1]):
            runs[key].append(measure(models[key].to(settings.device), shape, batch, settings, cfg))
    flops = count_flops(ours, shape)
    out = {"model": "tiny" if dry else "ddpm-cifar10", "batch": batch, "forward_flops_per_image": flops}
    for key, ms in runs.items():
        speed = statistics.median(m.train_throughput for m in ms)
        out[key] = {"images_per_s": speed, "peak_mem_mb": max(m.peak_mem_mb or 0 for m in ms),
                    "mfu": 3 * flops * speed / peak}
    if "diffusers" in out:
        out["ratio_ours_to_diffusers"] = out["ours"]["images_per_s"] / out["diffusers"]["images_per_s"]
    return out


def timed_steps(model, device, settings, batch: int, shape, steps: int) -> tuple[float, float]:
    """(seconds of the first step, images/s over the next `steps`): eager or compiled, the same loop."""
    from archsearch.device import autocast_context

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, **({"fused": True} if settings.fused_adamw else {}))
    x = torch.randn(batch, *shape, device=device)
    t = torch.randint(0, 1000, (batch,), device=device).float()

    def step():
        with autocast_context(device, settings.precision):
            loss = (model(x, t, None).float() - x).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    start = time.perf_counter()
    step()
    synchronize(device)
    first = time.perf_counter() - start
    for _ in range(3):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return first, batch * steps / (time.perf_counter() - start)


def small_model(device, settings, dry: bool) -> dict:
    config = unet_config_from_dict(TINY if dry else SMALL)
    shape = (config.in_channels, config.image_size, config.image_size)
    batch, steps = (4, 5) if dry else (128, 100)
    out = {}
    variants = [("eager", None)] + ([] if dry else [("compile_reduce_overhead", "reduce-overhead")])
    for name, mode in variants:
        torch.manual_seed(0)
        model = build_unet(config).to(device)
        if mode:
            torch._dynamo.reset()
            model = torch.compile(model, mode=mode)
        first, speed = timed_steps(model, device, settings, batch, shape, steps)
        out[name] = {"images_per_s": speed, "first_step_s": first}
    if "compile_reduce_overhead" in out:
        out["compile_speedup"] = out["compile_reduce_overhead"]["images_per_s"] / out["eager"]["images_per_s"]
    return out


def space_file(folder: Path, dry: bool, name: str, batch: dict | int, trials: int, widths=(16, 32),
               grid: bool = False) -> Path:
    import yaml

    space = {
        "study": {"name": name, "trials": trials, "sampler": {"kind": "grid" if grid else "random"}, "device": "cpu" if dry else "cuda", "seed": 0},
        "data": {"source": "synthetic", "image_size": 16 if dry else 32, "channels": 3,
                 "num_images": 256 if dry else 4096},
        "train": {"steps": 5 if dry else 200, "batch_size": batch, "warmup_steps": 0, "seed": 0},
        "eval": {"num_images": 16 if dry else 256, "timesteps": 5, "curve_points": 0},
        "measure": {"warmup_steps": 1, "repeats": 3 if dry else 5, "latency": False, "infer": False,
                    "reference": None},
        "architecture": {"levels": [{"width": 16, "blocks": 1}, {"width": {"choice": list(widths)}, "blocks": 1}],
                         "block": {"norm": {"groups": 4}}, "attention": {"head_channels": 8}},
        "objectives": [{"metric": "val_loss"}, {"metric": "train_throughput"}],
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def archsearch_run(space: Path, results: Path, *extra: str, timeout: float) -> tuple[int, float, str]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "archsearch.cli", "run", str(space), "--results-dir", str(results),
                           *extra], capture_output=True, text=True, timeout=timeout)
    return proc.returncode, time.perf_counter() - start, (proc.stdout + proc.stderr)[-2000:]


def workers_sharing(dry: bool, tmp: Path) -> dict:
    out = {}
    for k in (1, 2) if dry else (1, 2, 4):
        trials = k if dry else 4 * k
        space = space_file(tmp, dry, f"workers{k}", 16 if dry else 128, trials)
        extra = ["--workers", str(k)] + ([] if dry else ["--gpus", ",".join(["0"] * k)])
        rc, seconds, tail = archsearch_run(space, tmp / "results", *extra, timeout=240)
        out[str(k)] = {"rc": rc, "trials": trials, "seconds": seconds, "trials_per_minute": 60 * trials / seconds}
        if rc:
            out[str(k)]["log"] = tail
    return {"runs": out}


def forced_oom(dry: bool, tmp: Path) -> dict:
    """Two trials, the second far too big for the device: it must be `oom`, the first complete."""
    import pandas as pd

    if dry:  # a model whose weights and AdamW state exceed the RAM: refused before allocating
        space = space_file(tmp, dry, "oom", 4, 2, widths=(16, 65536), grid=True)
    else:  # a real CUDA out-of-memory: activations of a batch far beyond the card
        space = space_file(tmp, dry, "oom", {"choice": [64, 262144]}, 2, widths=(16,), grid=True)
    rc, seconds, tail = archsearch_run(space, tmp / "results", timeout=240)
    table = pd.read_csv(tmp / "results" / "oom" / "trials.csv")
    outcomes = table["outcome"].tolist() if "outcome" in table.columns else []
    return {"rc": rc, "seconds": seconds, "states": table["state"].tolist(), "outcomes": outcomes,
            "reasons": [r for r in table.get("fail_reason", pd.Series(dtype=object)).tolist() if isinstance(r, str)],
            "ok": "oom" in outcomes and "COMPLETE" in table["state"].tolist()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU: proves the script")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--steps", nargs="+", default=["peak", "ddpm", "small", "workers", "oom"])
    args = parser.parse_args(argv)

    device = resolve_device("cpu" if args.dry_run else "cuda")
    configure_backends(device)
    settings = resolve_run_settings(TrainConfig(), device)  # bf16 + TF32 + fused AdamW on CUDA, fp32 on the CPU
    report: dict = {"device": device_info(device), "dry_run": args.dry_run, "precision": settings.precision,
                    "torch": torch.__version__}
    if device.type == "cuda":
        report["device"]["card"] = torch.cuda.get_device_name(device)
    tmp = Path(tempfile.mkdtemp(prefix="gpu_check."))
    dtype = torch.bfloat16 if settings.precision == "bf16" else torch.float32
    steps = {
        "peak": lambda: {"flops_per_s": matmul_peak(device, dtype, 256 if args.dry_run else 8192,
                                                    3 if args.dry_run else 20), "dtype": str(dtype)},
        "ddpm": lambda: ddpm_step(device, settings, args.dry_run, report.get("peak", {}).get("flops_per_s", 1.0)),
        "small": lambda: small_model(device, settings, args.dry_run),
        "workers": lambda: workers_sharing(args.dry_run, tmp),
        "oom": lambda: forced_oom(args.dry_run, tmp),
    }
    failed = 0
    for name in args.steps:
        start = time.perf_counter()
        try:
            report[name] = steps[name]()
        except Exception as exc:  # noqa: BLE001 - one failed step must not lose the others' figures
            report[name] = {"error": f"{type(exc).__name__}: {exc}"}
            failed += 1
        report[name]["step_seconds"] = time.perf_counter() - start
        args.out.write_text(json.dumps(report, indent=1, default=str) + "\n")
        print(f"{name}: {json.dumps(report[name], default=str)[:400]}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
