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
and settings, under `run`) to check that a resume continues the same one. `load_plain` is that
reading for every file archsearch loads with torch (states, and archsearch.train's checkpoints):
a file that is not one (empty, truncated, random bytes, another zip, a pickle that would run code)
is refused with one line that says which, never with torch's advice to turn safe loading off. `save_state` writes a
temporary file beside the target and renames it into place (archsearch.io.atomic_write): a
kill mid-write leaves the previous state whole, and the temporary files are never read.
"""

from __future__ import annotations

import io
import pickletools
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from archsearch.errors import ConfigError
from archsearch.io import atomic_torch_save

__all__ = ["Position", "capture", "restore", "save_state", "load_state", "load_plain", "NotLoadable", "STATE_FORMAT"]

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
    return atomic_torch_save(path, state)


def load_state(path: str | Path) -> dict[str, Any] | None:
    """The state saved at `path` (read with weights_only=True), or None when there is none."""
    path = Path(path)
    if not path.exists():
        return None
    again = "; delete it to start over"
    try:
        state = load_plain(path)
    except (IsADirectoryError, PermissionError) as exc:
        raise ConfigError(str(path), f"cannot be read as a training state ({exc.strerror or exc}){again}") from None
    except NotLoadable as exc:
        what = "was refused as unsafe" if exc.unsafe else "is not a readable training state"
        raise ConfigError(str(path), f"{what}: {exc.reason}{again}") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ConfigError(str(path), f"is not a training state written by `archsearch train`{again}")
    return state


class NotLoadable(Exception):
    """A file `load_plain` refused: `reason` says why in a few words; `unsafe` when it is a pickle
    that would run code (import a function) on loading."""

    def __init__(self, reason: str, unsafe: bool = False):
        super().__init__(reason)
        self.reason, self.unsafe = reason, unsafe


def load_plain(path: str | Path) -> Any:
    """What `torch.save` wrote to `path`, read with `weights_only=True`: tensors and plain data,
    no code run. Raises NotLoadable (see its reasons) for a file that is not such a file, and
    OSError as reading raises it (a missing file, a folder, a permission, a failing disk)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(21, "it is a folder, not a file", str(path))
    with open(path, "rb") as f:  # a missing or unreadable file fails here, with the OS's own error
        head = f.read(4)
    if not head:
        raise NotLoadable("the file is empty (0 bytes; a copy cut short?)")
    try:
        with warnings.catch_warnings():  # torch warns of pickle protocols it "might not support", asking for issues
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, MemoryError):
        raise
    except Exception:  # noqa: BLE001 - torch raises many types for a bad file; its text is not for users
        raise _why_not(path, head) from None


# What a checkpoint's pickle may name: torch's tensor rebuilders and storages, and an OrderedDict.
_PLAIN_GLOBALS = ("torch.", "collections.OrderedDict")
_SCAN_BYTES = 64 << 20  # a pickle scanned for what it would import; data.pkl of a checkpoint is small


def _why_not(path: Path, head: bytes) -> NotLoadable:
    """Why torch refused `path`, found without running any of it."""
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as archive:
                pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
                if not pickles:
                    return NotLoadable("a zip archive, but not one torch.save wrote (it holds no data.pkl)")
                with archive.open(pickles[0]) as member:
                    data = member.read(_SCAN_BYTES)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            return NotLoadable("truncated or damaged (its zip archive cannot be read)")
    else:
        with open(path, "rb") as f:
            data = f.read(_SCAN_BYTES)
    found = _pickle_globals(data)
    if found is None:
        return NotLoadable("not a file that torch.save wrote (neither a torch archive nor a pickle)")
    code = [name for name in found if not name.startswith(_PLAIN_GLOBALS)]
    if code:
        return NotLoadable(f"loading it would run {code[0]}, and archsearch loads only tensors and plain data",
                           unsafe=True)
    return NotLoadable("a pickle that torch cannot read as tensors and plain data")


def _pickle_globals(data: bytes) -> list[str] | None:
    """The `module.name`s the pickles in `data` (one after another, as torch's legacy format
    writes them) would import; None when `data` does not start with a whole pickle. Only parses
    the opcodes (pickletools), so nothing is imported or run."""
    stream, names, whole = io.BytesIO(data), [], 0
    while stream.tell() < len(data):
        strings: list[str] = []
        try:
            for op, arg, _ in pickletools.genops(stream):
                if op.name in ("GLOBAL", "INST"):
                    names.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str):
                    strings.append(arg)
        except Exception:  # noqa: BLE001 - not (or no longer) a pickle: what was parsed stands
            break
        whole += 1
    return names if whole else None


def _cpu(obj: Any) -> Any:
    """A copy of nested dicts, lists and tensors with every tensor detached on the CPU."""
    if isinstance(obj, Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj
