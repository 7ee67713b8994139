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

A reference model (a fixed network measured in the same rounds, to normalize each value by the
machine's speed at that moment) is one more key of `interleave`: its values share the rounds of
the members', so a normalized value is a member's divided by the reference's of the same round.

The record (JSON, kept as the verify study's user attribute `remeasure`):
    {"metrics": [...], "rounds": R, "members": [trial numbers], "device": "...",
     "values": [[round, trial, metric, value], ...]}
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

__all__ = ["interleave", "measure_rounds", "remeasure_front"]


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

    where = resolve_device(device, "--device")
    cfg = space.measure.model_copy(update={"infer": "infer_throughput" in metrics, "latency": "latency_ms" in metrics,
                                           "flops": False})
    built = {}
    for number, (config_data, train_data) in members.items():
        config = unet_config_from_dict(config_data, prefix=ARCHITECTURE)
        train = validate_model(TrainConfig, train_data, TRAIN)
        torch.manual_seed(train.seed)  # the member's initial weights (speed does not depend on them)
        built[number] = (build_unet(config), config, train, resolve_run_settings(train, where))

    def measure_one(number: int) -> dict[str, float]:
        model, config, train, settings = built[number]
        shape = (config.in_channels, config.image_size, config.image_size)
        cost = measure(model, shape, cfg.batch_size or train.batch_size, settings, cfg, config.num_classes)
        return {m: float(getattr(cost, m)) for m in metrics if getattr(cost, m) is not None}

    values = measure_rounds(list(members), rounds, measure_one, on_measured)
    return {"metrics": list(metrics), "rounds": rounds, "members": list(members), "device": device_info(where)["name"],
            "values": values}
