"""One Optuna trial of a study: sample, validate, reuse or train, and say what to record.

`run_search_trial` never raises for a trial's own failure: a config the planner rejects is
`invalid: ...`, a diverged or out-of-memory run is `diverged` / `oom`, any other exception is
`error: ...`; each comes back as a `TrialOutcome` with the reason, and the study goes on. Only
KeyboardInterrupt/SystemExit escape, for the caller to record as `interrupted`, and a storage
that stays down while the sampled config is written.

Apart from the parameters and the config (written as soon as they are known, so that a running
trial shows what it trains), nothing is written to the storage here: the outcome carries every
user attribute and constraint, and archsearch.search.records writes it to disk, then tells the
storage. A trial that trained is thus never lost to a storage write failing halfway.

What a trial records as user attributes (all JSON):
    config, config_hash, train, settings_hash      what was trained, and under which settings
    <metric> for every recorded metric             val_loss, train_throughput, params, flops, ...,
                                                   val_loss_buckets, learning_curve, outcome, device
                                                   (archsearch.metrics: `recorded`)
    fail_reason, reused_from                       why it failed; the trial whose result it reuses
    rung_<k>, stopped_at_step, stopped_rung,       early stopping's records (archsearch.search.stopping
    rung_vector, stop_reason                       says what each holds)
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigErrors
from ..metrics import METRICS, RECORDED_METRICS
from ..schema.loading import unet_config_from_dict, validate_model
from ..schema.paths import ARCHITECTURE, FORMAT_VERSION, TRAIN
from ..schema.space import SearchSpace
from ..schema.study import constraint_violations
from ..schema.train import TrainConfig
from .sampling import optuna_suggester, sample_trial_configs
from ..urls import redact
from .rungs import RungStopper
from .speed import SpeedAnchor
from .storage import is_transient

if TYPE_CHECKING:
    from ..train import ProgressFn

__all__ = ["TrialOutcome", "run_search_trial", "failure_attrs", "config_hash", "settings_hash", "LATER_FIELDS"]


@dataclass
class TrialOutcome:
    state: str  # complete | fail | pruned
    values: list[float] | None = None
    reason: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)  # the user attributes to record
    constraints: dict[str, float] = field(default_factory=dict)  # name -> violation (feasible when <= 0)
    # a completed run's files (its checkpoint), written once the outcome is on disk: by file, why one was not
    write_files: Callable[[], dict[str, str]] | None = field(default=None, repr=False, compare=False)


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# Fields added to the schema after studies were first written, with the default they were added
# with. At that default a field is left out of the identities, so the hashes a study stored
# before the field existed still match its trials (duplicate reuse, ablation and verify resumes).
# A field added with a default goes here; tests/test_identity.py pins hashes to catch one that does not.
LATER_FIELDS: dict[str, dict[str, Any]] = {
    "architecture": {"attention.qkv_order": "new",
                     # issue 15: EDM2's block family, the transformer middle, per-level settings ...
                     "block.kind": "resnet", "middle.kind": "resblocks", "compact.dropout_resolutions": None,
                     "levels.*.dropout": None, "levels.*.heads": None, "levels.*.head_channels": None,
                     # ... and EDM-SongUNet's knobs
                     "stem_width": None, "resample_filter": [1, 1], "block.resample_projection": False,
                     "encoder_type": "standard", "decoder_type": "standard", "embedding.augment_dim": None,
                     "embedding.class_input": "table"},
    "train": {},
    "data": {},
    "eval": {"quality": None},  # issue 26: sample quality, off unless asked for
    # trials timed before references, before pairs went on under load, or before timing kept to
    # the free CPUs keep their identity (issue 12); on an idle machine each of these times as before
    "measure": {"reference": "auto", "max_repeats": 50, "ratio_tolerance": 0.05, "threads": "auto"},
}


def _identity(section: str, model) -> dict[str, Any]:
    dump = model.model_dump(mode="json")
    for path, default in LATER_FIELDS[section].items():
        *parents, leaf = path.split(".")
        nodes = [dump]
        for key in parents:  # `*`: every item of a list (`levels.*.dropout`)
            if key == "*":
                nodes = [item for node in nodes if isinstance(node, list) for item in node]
            else:
                nodes = [node.get(key) for node in nodes if isinstance(node, dict)]
        for node in nodes:
            if isinstance(node, dict) and leaf in node and node[leaf] == default:
                del node[leaf]
    return dump


def config_hash(config) -> str:
    """Identity of an architecture: the hash of its full resolved config (defaults included,
    except the LATER_FIELDS at their default)."""
    return _digest(_identity("architecture", config))


def settings_hash(train_cfg: TrainConfig, space: SearchSpace) -> str:
    """Identity of the conditions a model was trained and scored under."""
    return _digest({
        "train": _identity("train", train_cfg),
        "data": _identity("data", space.data),
        "eval": _identity("eval", space.eval),
        "measure": _identity("measure", space.measure),
    })


def run_search_trial(
    trial,
    space: SearchSpace,
    context_for: Callable[[TrainConfig], Any],
    on_progress: ProgressFn | None = None,
    previous: Callable[[], list] | None = None,
    on_evaluated: Callable[[int, float], None] | None = None,
    version: int = FORMAT_VERSION,
    checkpoint: Path | None = None,
) -> TrialOutcome:
    """Sample a config for `trial`, and train and score it unless it is invalid or a duplicate.

    `context_for(train_cfg)` gives the shared TrialContext (data, device, validation protocol);
    `previous()` lists the study's completed trials, for duplicate reuse (by config and settings
    hash, whatever the study's format `version`, which names the parameters asked for);
    `on_evaluated(step, val_loss)` hears every intermediate evaluation; a completed training run
    leaves its final weights at `checkpoint` (None: nowhere).
    """
    progress = on_progress or (lambda *event: None)
    progress("sampling", 0, 0)
    try:
        arch, train = sample_trial_configs(space, optuna_suggester(trial, version))
    except Exception as exc:  # noqa: BLE001 - a sampler bug must not end the study
        return _fail({}, f"error: sampling failed: {type(exc).__name__}: {redact(str(exc))}")
    trial.set_user_attr("config", arch)
    try:
        config = unet_config_from_dict(arch, prefix=ARCHITECTURE)
        train_cfg = validate_model(TrainConfig, train, TRAIN)
    except ConfigErrors as exc:
        return _fail({"config": arch}, "invalid: " + "; ".join(exc.lines()))

    chash, shash = config_hash(config), settings_hash(train_cfg, space)
    attrs = {"config": config.model_dump(mode="json"), "config_hash": chash,
             "train": train_cfg.model_dump(mode="json"), "settings_hash": shash}
    for key, value in attrs.items():
        trial.set_user_attr(key, value)

    reused = _find_duplicate(previous() if previous else [], chash, shash)
    if reused is not None:
        metrics = {k: reused.user_attrs.get(METRICS[k].key_in(reused.user_attrs) or k) for k in RECORDED_METRICS}
        return _complete(space, metrics, {**attrs, "reused_from": reused.number})

    stopper = RungStopper.for_trial(trial, space, train_cfg)
    try:
        from ..trial import run_trial

        context = context_for(train_cfg)
        result = run_trial(config, context, train_cfg, space.measure, on_progress=progress,
                           on_eval=_eval_hook(trial, space, on_evaluated, stopper),
                           eval_steps=stopper.steps if stopper is not None else (),
                           speed_anchor=SpeedAnchor(trial.study, train_cfg.batch_size), checkpoint_path=checkpoint)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - recorded, and the study goes on
        return _fail(attrs, f"error: {type(exc).__name__}: {redact(str(exc)).splitlines()[0] if str(exc) else ''}")

    metrics = result.metrics.to_dict()
    attrs.update(stopper.rung_attrs() if stopper is not None else {})  # already stored; metrics.json keeps them too
    measured = {**attrs, **_metric_attrs(metrics)}
    if result.outcome in ("diverged", "oom"):
        return _fail(measured, result.reason if result.reason.startswith(result.outcome) else f"{result.outcome}: {result.reason}")
    if result.outcome == "stopped":  # only the stopper or the pruner stops a run early
        return _stopped(space, measured, stopper)
    outcome = _complete(space, metrics, attrs)
    if result.files is not None:
        outcome.write_files = lambda: result.write_files(f"trial {trial.number}")
    return outcome


def _find_duplicate(trials: list, chash: str, shash: str):
    for t in trials:
        if t.user_attrs.get("config_hash") == chash and t.user_attrs.get("settings_hash") == shash:
            return t
    return None


def _metric_attrs(metrics: dict[str, Any]) -> dict[str, Any]:
    """The recorded metrics, non-finite numbers as null (JSON has no NaN)."""
    return {key: None if isinstance(value, float) and not math.isfinite(value) else value
            for key in RECORDED_METRICS if key in metrics
            for value in [metrics[key]]}


def _complete(space: SearchSpace, metrics: dict[str, Any], attrs: dict[str, Any]) -> TrialOutcome:
    attrs = {**attrs, **_metric_attrs(metrics)}
    values = [metrics.get(o.metric) for o in space.objectives]
    missing = [o.metric for o, v in zip(space.objectives, values) if v is None or not math.isfinite(float(v))]
    if missing:
        return _fail(attrs, f"error: no value for objective {', '.join(missing)}")
    constraints = constraint_violations(space.constraints, metrics)
    return TrialOutcome("complete", [float(v) for v in values], attrs=attrs, constraints=constraints)


def failure_attrs(reason: str) -> dict[str, str]:
    """What a failed trial records: `reason` as its fail_reason, and its kind (the words before
    the first colon: `error`, `invalid`, `interrupted`, `worker died`, ...) as its outcome."""
    return {"fail_reason": reason, "outcome": reason.split(":", 1)[0]}


def _fail(attrs: dict[str, Any], reason: str) -> TrialOutcome:
    return TrialOutcome("fail", reason=reason, attrs={**attrs, **failure_attrs(reason)})


def _stopped(space: SearchSpace, attrs: dict[str, Any], stopper: RungStopper | None) -> TrialOutcome:
    """A trial stopped early, PRUNED: by the rung rule (its decision, and its constraints at the
    rung, which TPE reads), or else by Optuna's pruner."""
    if stopper is not None and stopper.decision is not None:
        return TrialOutcome("pruned", reason=stopper.decision.reason, constraints=stopper.constraints,
                            attrs={**attrs, **stopper.stop_attrs(), "outcome": "pruned"})
    step = attrs.get("steps_trained")
    reason = f"pruned by study.pruner ({space.study.pruner.kind}) at step {step}"
    return TrialOutcome("pruned", reason=reason, attrs={**attrs, "stopped_at_step": step, "stop_reason": reason,
                                                        "outcome": "pruned"})


def _eval_hook(trial, space: SearchSpace, on_evaluated: Callable[[int, float], None] | None,
               stopper: RungStopper | None = None):
    """Say every intermediate validation loss to `on_evaluated`, then let the rung stopper or
    the pruner decide (the schema allows one of them)."""
    decide = stopper if stopper is not None else _pruning_hook(trial, space)
    if decide is None and on_evaluated is None:
        return None

    def on_eval(step: int, result, metrics) -> bool:
        if on_evaluated is not None:
            on_evaluated(step, result.val_loss)
        return bool(decide is not None and decide(step, result, metrics))

    return on_eval


def _pruning_hook(trial, space: SearchSpace):
    """Feed the learning curve to Optuna's pruner (single-objective studies only)."""
    if len(space.objectives) != 1 or space.study.pruner.kind == "none" or space.objectives[0].metric != "val_loss":
        return None

    def on_eval(step: int, result, metrics) -> bool:
        try:
            trial.report(result.val_loss, step)
            return trial.should_prune()
        except Exception as exc:  # a storage that is down: no decision, so train on rather than lose the run
            if not is_transient(exc):
                raise
            return False

    return on_eval
