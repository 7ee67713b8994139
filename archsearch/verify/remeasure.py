"""The front's speed measured again, several times, interleaved: how far apart its members really are.

    order = interleave([3, 5, 7], rounds=3)       # [(0, 3), (0, 5), (0, 7), (1, 5), (1, 7), (1, 3), ...]
    record = remeasure_front(members, space, "cpu", rounds=5, metrics=["train_throughput"])

A trial's speed was measured once, inside its own trial, minutes or hours away from the others:
whatever the machine was doing then is in the number. Here every front member is measured again
in `rounds` rounds, round-robin: each round measures every member once, and round r starts at
member r mod n, so each member is measured at every position of a round and a drift of the
machine's speed (other jobs, thermal limits) spreads over all members alike rather than biasing
the last ones. Each measurement is archsearch.measure's protocol with the study's `measure`
settings (warm-up, repeats, batch size), on a model built from the member's config and seed,
timing only the phases of the re-measured metrics (training steps for `train_throughput`,
forward passes for `infer_throughput`, batch-1 passes for `latency_ms`).

The reference-relative speeds (`train_speed_vs_ref`, `train_throughput_normalized`) are measured
as in a trial: each member's training steps in turns with the space's reference network
(`measure.reference`, archsearch.timing), and the normalized speed is each measurement's ratio
× the median of the reference's images/s over this whole re-measurement (the machine now, one
factor for every member, so it orders them exactly as their ratios do).

The record (JSON, kept as the verify study's user attribute `remeasure`):
    {"metrics": [...], "rounds": R, "members": [trial numbers], "device": "...",
     "values": [[round, trial, metric, value], ...]}
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

__all__ = ["interleave", "measure_rounds", "remeasure_front"]

_RELATIVE = ("train_speed_vs_ref", "train_throughput_normalized")  # timed in turns with the reference network


def _normalized(values: list[list], metrics: Sequence[str]) -> list[list]:
    """The measurements of `metrics`, with train_throughput_normalized computed from each one's
    ratio and the median reference speed over all of them (see the module docstring)."""
    import statistics

    refs = [v for _, _, m, v in values if m == "ref_throughput"]
    out = [row for row in values if row[2] in metrics]
    if "train_throughput_normalized" in metrics and refs:
        anchor = statistics.median(refs)
        out += [[r, key, "train_throughput_normalized", v * anchor] for r, key, m, v in values if m == "train_speed_vs_ref"]
    return out


def interleave(keys: Sequence[Hashable], rounds: int) -> list[tuple[int, Hashable]]:
    """(round, key) in the order they are measured (see the module docstring)."""
    n = len(keys)
    return [(r, keys[(r + i) % n]) for r in range(rounds) for i in range(n)] if n else []


def measure_rounds(keys: Sequence[Hashable], rounds: int, measure_one: Callable[[Hashable], dict[str, float]],
                   on_measured: Callable[[int, Hashable], None] | None = None) -> list[list]:
    """[round, key, metric, value] for every measurement `measure_one(key)` returns, interleaved."""
    values = []
    for r, key in interleave(list(keys), rounds):
        for metric, value in measure_one(key).items():
            values.append([r, key, metric, value])
        if on_measured is not None:
            on_measured(r, key)
    return values


def remeasure_front(members: dict[int, tuple[dict[str, Any], dict[str, Any]]], space, device: str, rounds: int,
                    metrics: Sequence[str], on_measured: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Measure each member (trial number -> (config, train) user attributes) `rounds` times,
    interleaved, under `space.measure`; returns the record of the module docstring."""
    import torch

    from ..device import device_info, resolve_device
    from ..measure import measure
    from ..nn import build_unet
    from ..schema.loading import unet_config_from_dict, validate_model
    from ..schema.paths import ARCHITECTURE, TRAIN
    from ..schema.train import TrainConfig
    from ..settings import resolve_run_settings

    from ..timing import ReferenceCache

    where = resolve_device(device, "--device")
    relative = [m for m in metrics if m in _RELATIVE]
    cfg = space.measure.model_copy(update={"infer": "infer_throughput" in metrics, "latency": "latency_ms" in metrics,
                                           "flops": False})
    built = {}
    for number, (config_data, train_data) in members.items():
        config = unet_config_from_dict(config_data, prefix=ARCHITECTURE)
        train = validate_model(TrainConfig, train_data, TRAIN)
        torch.manual_seed(train.seed)  # the member's initial weights (speed does not depend on them)
        built[number] = (build_unet(config), config, train, resolve_run_settings(train, where))
    references = ReferenceCache()

    def measure_one(number: int) -> dict[str, float]:
        model, config, train, settings = built[number]
        shape = (config.in_channels, config.image_size, config.image_size)
        cost = measure(model, shape, cfg.batch_size or train.batch_size, settings, cfg, config.num_classes,
                       reference=references(space.measure, config) if relative else None)
        wanted = [m for m in metrics if m != "train_throughput_normalized"] + (["train_speed_vs_ref", "ref_throughput"]
                                                                                if relative else [])
        return {m: float(getattr(cost, m)) for m in dict.fromkeys(wanted) if getattr(cost, m, None) is not None}

    values = measure_rounds(list(members), rounds, measure_one, on_measured)
    values = _normalized(values, metrics)
    return {"metrics": list(metrics), "rounds": rounds, "members": list(members), "device": device_info(where)["name"],
            "values": values}
