"""Does the speed axis survive a busy machine? Raw against reference-normalized training throughput.

    python benchmarks/load_robustness.py                           # 12 configs of the digits space, its device (cpu)
    python benchmarks/load_robustness.py --configs 16 --repeats 3  # more configs, more measurements each
    python benchmarks/load_robustness.py --configs 3 --steps 3 --max-steps 4  # does it run? (seconds)

Samples `--configs` distinct architectures from search_spaces/digits.yaml (the quickstart's data,
budget and protocol over more knobs; the quickstart's space before it kept to what diffusers
expresses) with archsearch's
seeded sampler (`--seed`) and times each one's training step with a trial's protocol
(archsearch.measure at the space's batch size, precision and device, in turns with the
space's reference network, `measure.reference`), in passes:

1. `idle`: the machine as it is (run this on a quiet machine: nothing else busy);
2. `1 core busy`, `2 cores busy`: while this script keeps that many cores busy with busy-loop
   processes of its own, started before the pass and stopped after it; each also stops itself
   at the script's `--max-seconds` whatever happens, so no load outlives a crash;
3. `idle again`: the first pass repeated, whose differences from it are the noise floor.

Each pass measures every config `--repeats` times (default once, as a trial does), config
after config (so a burst of load falls on several configs rather than on all of one's
measurements), and keeps the median; the first idle pass measures each `--idle-repeats` times
(default 3), since its medians are the truth the others are held to. One measurement on an idle
VM is not a truth: the VM's own speed drifts (the reference's images/s ranged 369..584 within
one idle pass, each config's raw speed with it), which the ratio cancels and the raw speed
keeps. Each measurement is taken twice, one after the other: with exactly `--steps` timed
pairs at the process's torch threads (`fixed`: the protocol before the two below), and with the default protocol (`default`): pairs go on past `--steps` while the
median ratio's relative standard error is above `--tolerance`, up to `--max-steps` pairs
(MeasureConfig.max_repeats and ratio_tolerance), timed with `--threads` torch threads
(MeasureConfig.threads; `auto`: no more than the CPUs left free as the measurement starts).
Against the idle pass, it prints for the raw `train_throughput` (of the fixed measurements)
and for the two normalized ones the Spearman correlation of the configs' speeds with the idle
ranking and the median relative error against the idle images/s, side by side, the ratio of
the errors (raw ÷ default normalized), and the default measurements' mean pair and thread
counts.

Normalized = `train_speed_vs_ref` × the idle pass's median reference images/s (of the fixed
measurements): what the results table gives a trial timed during the load in a study whose
trials mostly ran on a quiet machine (archsearch.search.speed). Its error is the error of the
ratio itself. Target (issue 12): normalized Spearman ≥ 0.9 and median error ≤ 10% under both
loads, checked on the default protocol.

Lines starting with '#' describe the machine and the run. No scipy: Spearman is the Pearson
correlation of numpy ranks (ties averaged). On a quiet 2-core machine the defaults take several
minutes (four passes of 12 configs; the loaded passes run slower and take more pairs, by design).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from archsearch.device import cpu_name, device_info, resolve_device
from archsearch.errors import ConfigErrors
from archsearch.load import cpu_count, machine_load
from archsearch.measure import count_params, measure
from archsearch.nn import build_unet
from archsearch.schema.loading import unet_config_from_dict, validate_model
from archsearch.schema.measure import MeasureConfig, reference_architecture
from archsearch.schema.paths import ARCHITECTURE, TRAIN
from archsearch.schema.space import load_space
from archsearch.schema.train import TrainConfig
from archsearch.search.sampling import random_suggester, sample_trial_configs
from archsearch.settings import resolve_run_settings
from archsearch.timing import build_reference

SPACE = Path(__file__).resolve().parents[1] / "search_spaces" / "digits.yaml"
PASSES = (("idle", 0), ("1 core busy", 1), ("2 cores busy", 2), ("idle again", 0))


def sample(space, n: int, seed: int):
    """`n` distinct valid (architecture, train config) pairs of the space, seeded."""
    suggest, found, tries = random_suggester(seed), {}, 0
    while len(found) < n:
        tries += 1
        if tries > 50 * n:
            raise SystemExit(f"only {len(found)} distinct valid configs in {tries} samples of {SPACE.name}")
        arch, train = sample_trial_configs(space, suggest)
        try:
            config = unet_config_from_dict(arch, prefix=ARCHITECTURE)
        except ConfigErrors:
            continue
        found.setdefault(config.model_dump_json(), (config, validate_model(TrainConfig, train, TRAIN)))
    return list(found.values())


def _busy(deadline: float) -> None:
    # One core's worth of load: pure Python arithmetic, no I/O, until the deadline.
    x = 0
    while time.time() < deadline:
        for _ in range(10_000):
            x = (x * 31 + 7) % 1_000_003


class BusyCores:
    """`n` busy-loop processes of this script while the block runs; each stops itself at `deadline`."""

    def __init__(self, n: int, deadline: float):
        self.n, self.deadline, self.procs = n, deadline, []

    def __enter__(self):
        # fork where there is one: the child spins at once, without importing torch again (it
        # touches nothing of the parent's torch state); spawn elsewhere
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        self.procs = [ctx.Process(target=_busy, args=(self.deadline,), daemon=True) for _ in range(self.n)]
        for p in self.procs:
            p.start()
        if self.procs:
            time.sleep(1.0)  # let the processes start spinning before anything is timed
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()


def run_pass(models, reference, shape, settings, fixed, default, repeats: int) -> dict[str, list[float]]:
    """Median over `repeats` measurements of each config's raw images/s, ratio and reference
    images/s under the `fixed` protocol, and its ratio, pair and thread counts under the `default` one."""
    keys = ("raw", "ratio", "ref", "default", "pairs", "threads")
    got = {key: [[] for _ in models] for key in keys}
    for _ in range(repeats):
        for i, (model, train_cfg) in enumerate(models):
            m = measure(model, shape, train_cfg.batch_size, settings, fixed, reference=reference)
            a = measure(model, shape, train_cfg.batch_size, settings, default, reference=reference)
            for key, value in zip(keys, (m.train_throughput, m.train_speed_vs_ref, m.ref_throughput,
                                         a.train_speed_vs_ref, a.train_steps, a.threads)):
                got[key][i].append(value)
    return {key: [statistics.median(v) for v in got[key]] for key in keys}


def ranks(values) -> np.ndarray:
    """Ranks from 0, ties given their average rank."""
    values = np.asarray(values, dtype=float)
    out = np.empty(len(values))
    out[values.argsort(kind="mergesort")] = np.arange(len(values))
    for v in np.unique(values):
        out[values == v] = out[values == v].mean()
    return out


def spearman(a, b) -> float:
    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def median_error(values, truth) -> float:
    values, truth = np.asarray(values, dtype=float), np.asarray(truth, dtype=float)
    return float(np.median(np.abs(values - truth) / truth))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", type=int, default=12, help="distinct configs sampled from the digits space (≥ 2)")
    parser.add_argument("--repeats", type=int, default=1, help="measurements of each config per pass; median kept")
    parser.add_argument("--idle-repeats", type=int, default=3,
                        help="measurements of each config in the first idle pass, the truth; median kept")
    parser.add_argument("--steps", type=int, default=10, help="timed step pairs per measurement (≥ 3); the fixed protocol's")
    parser.add_argument("--max-steps", type=int, default=MeasureConfig().max_repeats,
                        help="the default protocol's most pairs (MeasureConfig.max_repeats)")
    parser.add_argument("--tolerance", type=float, default=MeasureConfig().ratio_tolerance,
                        help="the default protocol's relative standard error of the ratio (MeasureConfig.ratio_tolerance)")
    parser.add_argument("--threads", default="auto",
                        help="the default protocol's torch threads: auto, a number, or none (MeasureConfig.threads)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per measurement")
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    parser.add_argument("--device", default=None, help="default: the space's (cpu)")
    parser.add_argument("--max-seconds", type=float, default=1800.0, help="hard bound on the background load")
    parser.add_argument("--verbose", action="store_true", help="also print every config's images/s per pass")
    args = parser.parse_args(argv)
    if (args.configs < 2 or min(args.repeats, args.idle_repeats) < 1 or args.steps < 3 or args.max_steps < args.steps
            or not 0 < args.tolerance <= 1):
        parser.error("--configs ≥ 2, --repeats and --idle-repeats ≥ 1, --steps ≥ 3, --max-steps ≥ --steps and "
                     "0 < --tolerance ≤ 1")

    space = load_space(SPACE)
    device = resolve_device(args.device or space.study.device)
    pairs = sample(space, args.configs, args.seed)
    torch.manual_seed(0)
    models = [(build_unet(config), train_cfg) for config, train_cfg in pairs]
    shape = (pairs[0][0].in_channels, pairs[0][0].image_size, pairs[0][0].image_size)
    settings = resolve_run_settings(pairs[0][1], device)
    ref_config = reference_architecture(space.measure, shape[1], shape[0])
    reference = build_reference(ref_config, str(space.measure.reference))
    fixed = space.measure.model_copy(update={"warmup_steps": args.warmup, "repeats": args.steps, "infer": False,
                                             "latency": False, "flops": False, "max_seconds": None, "batch_size": None,
                                             "ratio_tolerance": None, "threads": None})
    threads = None if args.threads.lower() == "none" else args.threads
    try:
        default_cfg = MeasureConfig.model_validate({**fixed.model_dump(), "ratio_tolerance": args.tolerance,
                                                 "max_repeats": args.max_steps, "threads": threads})
    except ValueError as exc:
        parser.error(f"--threads: {exc}")
    deadline = time.time() + args.max_seconds

    info, load = device_info(device), machine_load()
    print(f"# machine: {cpu_name()}, {cpu_count()} usable CPUs of {os.cpu_count()}, load average {load['load_avg']}")
    print(f"# device={info['name']} torch={info['torch']} threads={torch.get_num_threads()} precision={settings.precision} "
          f"python={sys.version.split()[0]}")
    print(f"# {len(models)} configs from {SPACE.name} (seed {args.seed}), params {min(count_params(m) for m, _ in models):,}"
          f"..{max(count_params(m) for m, _ in models):,}; reference {space.measure.reference}, "
          f"{count_params(reference.model):,} params; batch {pairs[0][1].batch_size}, {args.warmup} untimed + {args.steps} "
          f"timed pairs per fixed measurement, {args.steps}..{args.max_steps} per default one (until the ratio's "
          f"relative standard error ≤ {args.tolerance:g}) with threads {default_cfg.threads}, {args.repeats} of each "
          f"per config per pass ({args.idle_repeats} in the first idle pass)")
    if cpu_count() < 3:
        print(f"# note: with {cpu_count()} CPUs, '2 cores busy' leaves {max(cpu_count() - 2, 0)} idle: the trial shares every core")

    results = {}
    for name, busy in PASSES:
        started = time.perf_counter()
        with BusyCores(busy, deadline):
            repeats = args.idle_repeats if name == "idle" else args.repeats
            results[name] = run_pass(models, reference, shape, settings, fixed, default_cfg, repeats)
        results[name]["seconds"] = time.perf_counter() - started
        results[name]["load_avg"] = machine_load()["load_avg"]

    idle = results["idle"]
    anchor = statistics.median(idle["ref"])  # the study's median reference speed, from its quiet trials
    print(f"# idle median reference speed {anchor:.1f} img/s; normalized = train_speed_vs_ref × that")
    print(f"{'':<14}{'ρ with the idle ranking':^24}{'median error vs idle':^30}")
    print(f"{'pass':<14}{'raw':>8}{'fixed':>8}{'default':>8}{'raw':>9}{'fixed':>9}{'default':>9}{'raw÷dflt':>10}"
          f"{'pairs':>7}{'threads':>8}{'ref img/s':>11}{'load avg':>10}{'s':>6}")
    verdicts = []
    for name, _ in PASSES:
        r = results[name]
        fixed_norm, default_norm = ([q * anchor for q in r[key]] for key in ("ratio", "default"))
        rho = [spearman(v, idle["raw"]) for v in (r["raw"], fixed_norm, default_norm)]
        err = [median_error(v, idle["raw"]) for v in (r["raw"], fixed_norm, default_norm)]
        ratio = err[0] / err[2] if err[2] > 0 else float("inf")
        load_avg = f"{r['load_avg']:.2f}" if r["load_avg"] is not None else "?"
        print(f"{name:<14}{rho[0]:>8.3f}{rho[1]:>8.3f}{rho[2]:>8.3f}{err[0]:>9.1%}{err[1]:>9.1%}{err[2]:>9.1%}"
              f"{ratio:>10.2f}{statistics.mean(r['pairs']):>7.1f}{statistics.mean(r['threads']):>8.1f}"
              f"{statistics.median(r['ref']):>11.1f}{load_avg:>10}{r['seconds']:>6.0f}")
        if "busy" in name:
            verdicts.append(rho[2] >= 0.9 and err[2] <= 0.10)
        if args.verbose:
            for i, (model, _) in enumerate(models):
                print(f"  config {i} ({count_params(model):,} params): raw {r['raw'][i]:.1f} normalized fixed "
                      f"{fixed_norm[i]:.1f} default {default_norm[i]:.1f} ({r['pairs'][i]:.0f} pairs, "
                      f"{r['threads'][i]:.0f} threads) idle {idle['raw'][i]:.1f} img/s")
    print(f"target (default normalized ρ ≥ 0.9 and error ≤ 10% under both loads): {'met' if all(verdicts) else 'not met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
