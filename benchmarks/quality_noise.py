"""How noisy is a sample-quality figure, and what does it cost beside a quickstart trial?

    python benchmarks/quality_noise.py                                  # 500, 1,000, 5,000 samples x 5 seeds, DDIM 50
    python benchmarks/quality_noise.py --counts 500 --sampler-steps 10  # a cheaper setting
    python benchmarks/quality_noise.py --checkpoint results/quickstart/trials/3/checkpoint.pt

Trains one quickstart network (the quickstart's data, budget and seed; its architecture fixed to
the middle of its space) unless given a checkpoint, then scores it with the digits features at
each sample count and sampler step count, once per sample seed (`eval.quality.seed` 0..n-1),
and prints per row the mean and the spread of each metric over the seeds (the coefficient of
variation of FD: its standard deviation over its mean; beside it `boot sd`, the mean of what each
single measurement estimated from its own samples, `fd_noise`) and the seconds one measurement takes,
beside the quickstart trial's own seconds. The spread is the noise floor of sampling alone: two
models whose FDs differ by less than about twice it are a tie at that count. The reference
statistics are computed before the timing (once per data set, as in a study).

Measure on a quiet machine: the seconds scale with what else runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from archsearch.data import load_data
from archsearch.quality import QualityPhase
from archsearch.samples import load_checkpoint_model
from archsearch.schema.quality import QualityConfig
from archsearch.schema.space import load_space
from archsearch.trial import train_fixed

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "search_spaces" / "quickstart.yaml"
# The middle of the quickstart's space: three levels of 32, no attention.
FIXED = {"architecture.depth": 3, "architecture.levels.0.width": 32, "architecture.levels.1.width": 32,
         "architecture.levels.1.attention": False, "architecture.middle.attention": False,
         "architecture.block.time_injection": "scale_shift", "architecture.down.kind": "conv",
         "architecture.up.kind": "nearest_conv"}


def quickstart_checkpoint(folder: Path) -> tuple[Path, float]:
    """Train the fixed quickstart network as a quickstart trial; its checkpoint and the trial's seconds."""
    space = load_space(QUICKSTART, FIXED)
    checkpoint = folder / "checkpoint.pt"
    run = train_fixed(space, checkpoint_path=checkpoint)
    if not run.ok:
        raise SystemExit(f"training failed: {run.result.reason}")
    return checkpoint, run.result.metrics.duration_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[500, 1000, 5000])
    parser.add_argument("--sampler-steps", type=int, nargs="+", default=[50])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--cache-dir", default=QualityConfig().cache_dir)
    args = parser.parse_args()

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        if args.checkpoint:
            checkpoint, trial_seconds = args.checkpoint, None
        else:
            checkpoint, trial_seconds = quickstart_checkpoint(Path(tmp))
        model, config, settings = load_checkpoint_model(checkpoint, "cpu")
        data = load_data(load_space(QUICKSTART).data)
        shape = (config.in_channels, config.image_size, config.image_size)
        print(f"checkpoint: {checkpoint if args.checkpoint else 'the quickstart network, 60 steps'}"
              + (f"; the quickstart trial took {trial_seconds:.1f} s" if trial_seconds else ""))
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {settings.device}")
        header = (f"{'samples':>8} {'DDIM':>5} {'FD mean':>9} {'FD sd':>8} {'FD CV':>7} {'boot sd':>8} {'KID mean':>9} {'KID sd':>8} "
                  f"{'prec':>6} {'recall':>6} {'s/measure':>10}" + (f" {'x trial':>8}" if trial_seconds else ""))
        print(header)
        for steps in args.sampler_steps:
            for count in args.counts:
                rows = []
                for seed in range(args.seeds):
                    cfg = QualityConfig(num_samples=count, seed=seed, sampler={"kind": "ddim", "steps": steps},
                                        cache_dir=args.cache_dir)
                    phase = QualityPhase(cfg, data)
                    phase.reference(settings.device)  # cached: not part of a trial's cost
                    start = time.perf_counter()
                    result = phase.measure(model, settings, shape, config.num_classes)
                    rows.append((result.values, time.perf_counter() - start))
                fd = [v["fd"] for v, _ in rows]
                kid = [v["kid"] for v, _ in rows]
                seconds = statistics.mean(s for _, s in rows)
                line = (f"{count:>8} {steps:>5} {statistics.mean(fd):>9.4f} {statistics.stdev(fd):>8.4f} "
                        f"{statistics.stdev(fd) / statistics.mean(fd):>7.2%} "
                        f"{statistics.mean(v['fd_noise'] for v, _ in rows):>8.4f} {statistics.mean(kid):>9.4f} "
                        f"{statistics.stdev(kid):>8.4f} {statistics.mean(v['sample_precision'] for v, _ in rows):>6.3f} "
                        f"{statistics.mean(v['sample_recall'] for v, _ in rows):>6.3f} {seconds:>10.1f}")
                print(line + (f" {seconds / trial_seconds:>8.2f}" if trial_seconds else ""), flush=True)


if __name__ == "__main__":
    main()
