"""A long training run of one network that survives interruption: `archsearch train`.

    job = train_job("results/quickstart", trial="knee", steps=600)     # archsearch.retrain.source
    run = run_job(job, "cuda", out_dir=job.out_dir, on_evaluated=lambda step, total, loss, quality: print(step, loss))
    run = run_job(job, "cuda", out_dir=job.out_dir, resume=True)       # after Ctrl-C: continue it
    run = run_job(job, "cuda", quality=True, quality_along=True)       # and its sample quality (fd, ...)

It is one trial (archsearch.trial.run_trial: build, measure, train, evaluate, save), with:

- **Evaluations every `eval_every` steps** (default: a tenth of the steps; 0: only the final
  one) on the study's fixed validation protocol, in place of `eval.curve_points`; each is heard
  by `on_evaluated(step, total, val_loss, quality)` and kept in the metrics' learning curve.
- **Sample quality** (archsearch.quality: `fd`, `kid`, `sample_precision`, `sample_recall`,
  `quality_seconds`) at the end of a completed run, when `quality` asks for it or the space does
  (an `eval.quality` section, or an objective that names a quality metric); with `quality_along`
  also at each evaluation on the way, heard as `quality` ({metric: value}; empty at an evaluation
  without it) and kept as the metrics' `quality_curve` (FD at step, the final one included). It
  is not part of the run's identity: a run may be resumed with or without it (the curve then
  starts where the resumed run does).
- **A resumable state** (archsearch.train_state) at `out_dir/state.pt`, written every
  `save_every` steps (default: at each evaluation, just after it; 0: only when interrupted) and
  when SIGINT or SIGTERM arrives. A signal during training is noted and the run stops at the end
  of the step it is in, saves its state there and raises `RunInterrupted`; a signal before the
  first step (building, measuring) or a second one stops it at once, leaving the state saved last
  (every write is atomic). One during the final evaluation lets the run finish. The state is
  removed once the run has ended (completed, diverged or out of memory): it exists only while
  there is a run to resume, or while its checkpoint could not be written (a full disk: resuming
  once there is room writes it).
- **Resuming** (`resume=True`) continues from `out_dir/state.pt`, and is refused when the state
  belongs to another run: the architecture, training settings, data, validation protocol and
  device it was saved with (its `run` entry) must all be this run's, and each field that differs
  is reported at its path. Without `resume`, a folder that holds a state is refused too (resume
  it, or delete it), so that a rerun cannot silently start over. The model is built and measured
  afresh on resuming; its training continues bit for bit (on the CPU) from the state. The
  evaluation and save intervals may change on resuming: they do not touch the weights.

Files of `out_dir`: `state.pt` while unfinished; at the end `checkpoint.pt` (archsearch.train's
checkpoint format: the model evaluated, the EMA weights when EMA is on; what `archsearch sample`
and `archsearch export` read), `metrics.json` (every metric, as `--out` writes them) and, when
`eval.samples.save` is on, `samples.png`. Each may be sent elsewhere; a study trial's own files
(`TrainJob.protected`: the search's checkpoint and record of the trial) are never written.
Without `out_dir` nothing is written but what is asked for, and the run cannot be resumed.

A write that fails (archsearch.io.WriteFailed: a full disk) stops nothing that is already safe:
a state save that fails ends the run with the error, the state saved before it kept to resume
from; `metrics.json` is written before the checkpoint and the sample grid, and a file that cannot
be written is named in `JobRun.missing` (and in the metrics' `missing_files`) rather than raised.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ConfigErrors, Interrupted
from ..io import atomic_write_json
from ..schema.paths import ARCHITECTURE, TRAIN, flatten, qualified
from .source import TrainJob

__all__ = ["run_job", "JobRun", "RunInterrupted", "default_every", "STATE_NAME"]

STATE_NAME = "state.pt"
EVALUATIONS = 10  # evaluations per run by default (and state saves, just after them)


class RunInterrupted(Interrupted):
    """SIGINT/SIGTERM stopped a run at `step` (None: not at a step boundary). `state_path` is the
    state left to resume (None: there is none), saved at `saved_step` by this run (None: by an
    earlier one, or not at all)."""

    def __init__(self, signum: int, step: int | None, total: int, state_path: Path | None, saved_step: int | None):
        super().__init__(signum)
        self.step, self.total, self.state_path, self.saved_step = step, total, state_path, saved_step


@dataclass
class JobRun:
    """What `run_job` did: the trial's result, the files it wrote (by label: metrics, samples,
    checkpoint), and the step it resumed from (None: it started afresh)."""

    result: Any  # archsearch.trial.TrialResult
    files: dict[str, Path]
    resumed_from: int | None = None
    missing: dict[str, str] = field(default_factory=dict)  # files that could not be written, with why
    state_kept: Path | None = None  # the state left to resume from, when the checkpoint could not be written

    @property
    def ok(self) -> bool:
        return self.result.outcome in ("completed", "stopped") and not self.missing


def default_every(steps: int) -> int:
    """Steps between evaluations (and state saves) by default: EVALUATIONS per run."""
    return max(1, math.ceil(steps / EVALUATIONS))


def run_job(
    job: TrainJob,
    device: str = "auto",
    *,
    out_dir: Path | None = None,
    resume: bool = False,
    eval_every: int | None = None,
    save_every: int | None = None,
    checkpoint_path: Path | None = None,
    metrics_path: Path | None = None,
    samples_path: Path | None = None,
    on_load: Callable[[list[str]], None] | None = None,
    on_progress: Callable[..., None] | None = None,
    on_evaluated: Callable[[int, int, float, dict[str, float]], None] | None = None,
    quality: bool = False,
    quality_along: bool = False,
) -> JobRun:
    """Train `job` (see the module docstring); raises RunInterrupted on SIGINT/SIGTERM and
    ConfigErrors for bad input (before any data is read)."""
    from ..device import resolve_device
    from ..schema.space import with_quality
    from ..search.preflight import check_inputs

    config, train_cfg = job.config, job.train
    steps = train_cfg.steps
    eval_every = default_every(steps) if eval_every is None else eval_every
    save_every = (eval_every or default_every(steps)) if save_every is None else save_every
    out_dir = Path(out_dir) if out_dir is not None else None
    state_path = out_dir / STATE_NAME if out_dir is not None else None
    outputs = {
        "metrics": metrics_path or (out_dir / "metrics.json" if out_dir else None),
        "samples": samples_path or (out_dir / "samples.png" if out_dir and job.space.eval.samples.save else None),
        "checkpoint": checkpoint_path or (out_dir / "checkpoint.pt" if out_dir else None),
    }
    _check_protected(job, out_dir, outputs)
    torch_device = resolve_device(device, "--device")
    space = with_quality(job.space, asked=quality)  # eval.quality: asked for here, or by the space
    eval_cfg = space.eval.model_copy(update={"curve_points": 0})  # the evaluations are every eval_every steps
    # Sample quality reads the weights and leaves them be: a run may be resumed with or without it.
    identity = {"config": config.model_dump(mode="json"), "train": train_cfg.model_dump(mode="json"),
                "data": job.space.data.model_dump(mode="json"),
                "eval": eval_cfg.model_dump(mode="json", exclude={"quality"}), "device": torch_device.type}
    state = _state_to_resume(state_path, resume, identity)

    # the data, its memory and the validation protocol checked as `run` checks them, then read
    context = check_inputs(job.space.data, eval_cfg, train_cfg.model_dump(), torch_device, "--device", on_load,
                           spec=space, read=True)(train_cfg)
    eval_steps = range(eval_every, steps, eval_every) if eval_every else range(0)
    quality_steps = [*eval_steps, steps] if quality_along and eval_cfg.quality is not None else []
    hook = None if on_evaluated is None else \
        lambda step, res, metrics: on_evaluated(step, steps, res.val_loss, _quality_at(step, metrics))
    saver = _Saver(state_path, identity, save_every, steps)
    with saver.signals():
        from .. import trial as trial_module  # looked up at call time: tests stand in for run_trial

        result = trial_module.run_trial(
            config, context, train_cfg, job.space.measure, on_progress=on_progress, on_eval=hook,
            samples_path=outputs["samples"], checkpoint_path=outputs["checkpoint"],
            eval_steps=eval_steps, resume=state, on_step=saver, quality_steps=quality_steps)
    if outputs["metrics"] is not None:  # the measured result first (a full disk here: exit 1, the state kept)
        atomic_write_json(outputs["metrics"], result.metrics.to_dict())
    missing = result.write_files()
    if missing and outputs["metrics"] is not None:
        with contextlib.suppress(OSError):  # what the files came to; the result above stands either way
            atomic_write_json(outputs["metrics"], result.metrics.to_dict())
    if state_path is not None and state_path.exists() and "checkpoint" not in missing:
        state_path.unlink()  # the run has ended: nothing is left to resume
    files = {label: path for label, path in outputs.items()
             if path is not None and path.exists() and label not in missing}
    kept = state_path if missing and state_path is not None and state_path.exists() else None
    return JobRun(result, files, None if state is None else int(state["position"]["step"]), missing, kept)


def _quality_at(step: int, metrics) -> dict[str, float]:
    """The sample quality measured at evaluation `step` (run_trial measures it just before the
    evaluation is heard and appends its FD to `quality_curve`); empty when it was not measured
    there, or failed there."""
    from ..metrics import QUALITY_METRICS

    curve, record = metrics.quality_curve or [], metrics.quality or {}
    if not curve or curve[-1][0] != step or "error" in record:
        return {}
    return {name: value for name in QUALITY_METRICS if (value := getattr(metrics, name)) is not None}


class _Saver:
    """The run's `on_step` and its signal handling: saves the state every `save_every` steps, and
    at the step boundary after a SIGINT/SIGTERM saves it and raises RunInterrupted."""

    def __init__(self, state_path: Path | None, identity: dict, save_every: int, total: int):
        self.state_path, self.identity, self.save_every, self.total = state_path, identity, save_every, total
        self.signum: int | None = None  # the stop request, once one came
        self.saved_step: int | None = None
        self.training = False  # a step has been taken: a stop request can wait for the next boundary

    def __call__(self, step: int, snapshot: Callable[[], dict]) -> None:
        from ..train_state import save_state

        self.training = True
        stopping = self.signum is not None
        if self.state_path is not None and (stopping or (self.save_every and step % self.save_every == 0)):
            save_state(self.state_path, {**snapshot(), "run": self.identity})
            self.saved_step = step
        if stopping:
            raise self.interrupted(step)

    def interrupted(self, step: int | None) -> RunInterrupted:
        left = self.state_path if self.state_path is not None and self.state_path.exists() else None
        return RunInterrupted(self.signum, step, self.total, left, self.saved_step)

    @contextmanager
    def signals(self):
        """While inside, a SIGINT/SIGTERM during training is noted, for `__call__` to act on; one
        before the first step (building, measuring), or a second one, raises at once."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def note(signum, frame):
            first = self.signum is None
            self.signum = self.signum or signum
            if first and self.training:
                return
            for sig in (signal.SIGINT, signal.SIGTERM):  # once is enough: do not cut the unwinding short
                signal.signal(sig, signal.SIG_IGN)
            raise self.interrupted(None)

        from ..search.worker import signal_handler

        with signal_handler(note):
            yield


def _check_protected(job: TrainJob, out_dir: Path | None, outputs: dict[str, Path | None]) -> None:
    """Refuse to write over the files the search keeps for a trial."""
    if job.trial_dir is None:
        return
    protected = {p.resolve() for p in job.protected}
    options = {"metrics": "--out", "samples": "--samples", "checkpoint": "--checkpoint"}
    errors = []
    if out_dir is not None and out_dir.resolve() == job.trial_dir.resolve():
        errors.append(ConfigError("--out-dir", f"{out_dir} is trial {job.trial}'s own folder (what the search wrote); "
                                               f"choose another, such as the default {job.out_dir}"))
    else:
        errors += [ConfigError(options[label], f"{path} is trial {job.trial}'s own file (what the search wrote); "
                                               f"choose another path")
                   for label, path in outputs.items() if path is not None and path.resolve() in protected]
    if errors:
        raise ConfigErrors(errors)


def _state_to_resume(state_path: Path | None, resume: bool, identity: dict) -> dict | None:
    """The state `resume` continues (checked to be this run's), or None to start afresh."""
    from ..train_state import load_state

    if not resume:
        if state_path is not None and state_path.exists():
            raise ConfigErrors([ConfigError(str(state_path), "holds the state of an unfinished run; add --resume to "
                                                             "continue it, or delete it to start over")])
        return None
    if state_path is None:
        raise ConfigErrors([ConfigError("--resume", "needs --out-dir: the folder where the interrupted run saved "
                                                    "its state")])
    state = load_state(state_path)
    if state is None:
        done = (state_path.parent / "metrics.json").exists()
        raise ConfigErrors([ConfigError("--resume", f"there is no saved state to resume ({state_path} does not exist"
                                                    + ("; the run there has ended, see its metrics.json" if done else "")
                                                    + "); run without --resume to start")])
    errors = _differences(state.get("run") or {}, identity, state_path)
    if errors:
        raise ConfigErrors(errors)
    return state


def _differences(saved: dict, now: dict, state_path: Path) -> list[ConfigError]:
    """One error per field in which the saved run and this one differ, named as in a space file."""
    errors = []
    for key, section in (("config", ARCHITECTURE), (TRAIN, TRAIN), ("data", "data"), ("eval", "eval")):
        before, after = flatten(saved.get(key) or {}), flatten(now[key])
        for path in list(after) + [p for p in before if p not in after]:
            if before.get(path, "(unset)") != after.get(path, "(unset)"):
                errors.append(ConfigError(qualified(section, path), f"{after.get(path, '(unset)')} now, but the saved "
                                                                    f"state was trained with {before.get(path, '(unset)')}"))
    if saved.get("device") != now["device"]:
        errors.append(ConfigError("--device", f"{now['device']} now, but the saved state was trained on "
                                              f"{saved.get('device')}"))
    if errors:
        errors.append(ConfigError("--resume", f"{state_path} belongs to another run (the fields above); resume it "
                                              "with the settings it was saved with, or start over in another "
                                              "--out-dir"))
    return errors
