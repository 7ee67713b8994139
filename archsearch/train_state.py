"""The resumable state of a training run: what `archsearch.train.train` needs to continue a run
where it stopped, bit for bit on the CPU.

    def on_step(step, snapshot):                         # train(..., on_step=on_step)
        if step % 100 == 0:
            save_state("out/state.pt", {**snapshot(), "run": {...}})   # atomic
    state = load_state("out/state.pt")                   # None when there is none
    train(model, batches, cfg, protocol, settings, resume=state)       # the same run, continued

A state is taken at a step boundary (after the step's optimizer update, loss bookkeeping and
evaluation), never mid-step, and holds (`capture`):

- `model`, `ema`: the weights and buffers of the model and of its EMA copy (None without EMA);
- `optimizer`: AdamW's state dict (moments, step counts, the param groups' learning rates);
- `rng`: torch's global RNG (dropout; and the CUDA one on CUDA), and the device generator of the
  run's timesteps, noise and label dropout, as uint8 tensors;
- `batches`: the data loader's position (archsearch.data.DeviceBatches.state_dict);
- `position`: the step, the loss summed since the last log point, the latest logged loss, the
  training seconds so far, and how many of the budget-fraction evaluations are done;
- `train_loss`, `learning_curve`: the curves so far, as [step, value] lists.

Everything is a plain type or a CPU tensor, so `load_state` reads it with
`torch.load(weights_only=True)` (no code runs). Callers add what identifies the run (its config
and settings, under `run`) to check that a resume continues the same one. `save_state` writes a
temporary file beside the target and renames it into place (archsearch.io.atomic_write): a
kill mid-write leaves the previous state whole, and the temporary files are never read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from archsearch.errors import ConfigError
from archsearch.io import atomic_write

__all__ = ["Position", "capture", "restore", "save_state", "load_state", "STATE_FORMAT"]

STATE_FORMAT = "archsearch-train-state-v1"


@dataclass
class Position:
    """Where the training loop is, beyond the objects it updates: its own counters."""

    step: int                   # optimizer steps taken
    window_sum: Tensor          # () the loss summed over the steps since the last log point
    window_n: int               # how many steps that sum holds
    last_loss: float | None     # the last log point's mean loss (what the progress bar shows)
    train_seconds: float        # training time so far, evaluations excluded
    fractions_done: int         # budget-fraction evaluations passed (EvalConfig.curve_points)


def capture(position: Position, model: nn.Module, ema: nn.Module | None, optimizer: torch.optim.Optimizer,
            generator: torch.Generator, batches: Any, result: Any) -> dict[str, Any]:
    """The run's state now, copied to the CPU (`result` is the run's TrainResult, for its curves)."""
    if not hasattr(batches, "state_dict"):
        raise TypeError(f"{type(batches).__name__} batches have no state_dict(): the run cannot be resumed")
    device = next(iter(model.parameters())).device
    rng = {"torch": torch.get_rng_state(), "generator": generator.get_state(),
           "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
    return {
        "format": STATE_FORMAT,
        "position": {"step": position.step, "window_sum": _cpu(position.window_sum), "window_n": position.window_n,
                     "last_loss": position.last_loss, "train_seconds": position.train_seconds,
                     "fractions_done": position.fractions_done},
        "model": _cpu(model.state_dict()),
        "ema": _cpu(ema.state_dict()) if ema is not None else None,
        "optimizer": _cpu(optimizer.state_dict()),
        "rng": rng,
        "batches": _cpu(batches.state_dict()),
        "train_loss": [[int(s), float(v)] for s, v in result.train_loss],
        "learning_curve": [[int(s), float(v)] for s, v in result.learning_curve],
    }


def restore(state: dict[str, Any], model: nn.Module, ema: nn.Module | None, optimizer: torch.optim.Optimizer,
            generator: torch.Generator, batches: Any, result: Any) -> Position:
    """Put a `capture`d state back into the run's objects (on their devices); the loop's counters
    come back as the Position."""
    if (state["ema"] is None) != (ema is None):
        raise ValueError("the saved state and this run differ in whether they keep an EMA of the weights")
    model.load_state_dict(state["model"])
    if ema is not None:
        ema.load_state_dict(state["ema"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["torch"])
    generator.set_state(state["rng"]["generator"])
    device = next(iter(model.parameters())).device
    if device.type == "cuda" and state["rng"]["cuda"] is not None:
        torch.cuda.set_rng_state(state["rng"]["cuda"], device)
    batches.load_state_dict(state["batches"])
    result.train_loss = [(int(s), float(v)) for s, v in state["train_loss"]]
    result.learning_curve = [(int(s), float(v)) for s, v in state["learning_curve"]]
    result.steps = int(state["position"]["step"])
    p = state["position"]
    return Position(step=int(p["step"]), window_sum=p["window_sum"].to(device), window_n=int(p["window_n"]),
                    last_loss=p["last_loss"], train_seconds=float(p["train_seconds"]),
                    fractions_done=int(p["fractions_done"]))


def save_state(path: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` to `path` atomically (a temporary file beside it, then os.replace)."""
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: str | Path) -> dict[str, Any] | None:
    """The state saved at `path` (read with weights_only=True), or None when there is none."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise ConfigError(str(path), f"is not a readable training state ({exc}); delete it to start over") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ConfigError(str(path), "is not a training state written by `archsearch train`; delete it to start over")
    return state


def _cpu(obj: Any) -> Any:
    """A copy of nested dicts, lists and tensors with every tensor detached on the CPU."""
    if isinstance(obj, Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj
