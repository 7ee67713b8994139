"""One trial end to end (`archsearch.trial.run_trial`): reproducible, it learns, and the failures a
search must survive (out of memory while measuring or training, divergence) come back as outcomes
with the cost metrics already measured."""

import json

import pytest
import torch
from torch import nn

import archsearch.trial as trial_module
from archsearch.data import load_data
from archsearch.metrics import METRICS, OBJECTIVE_METRICS, QUALITY_METRICS
from archsearch.nn import build_unet
from archsearch.schema.data import Digits
from archsearch.schema.loading import unet_config_from_dict
from archsearch.schema.measure import MeasureConfig
from archsearch.schema.train import EvalConfig, TrainConfig
from archsearch.settings import RunSettings, resolve_run_settings
from archsearch.train import load_checkpoint
from archsearch.trial import METRIC_KEYS, TrialContext, run_trial

# A ~10k-parameter U-Net on 8x8 digits: a trial takes a fraction of a second.
TINY = {
    "image_size": 8,
    "in_channels": 1,
    "levels": [{"width": 8, "blocks": 1}, {"width": 16, "blocks": 1}],
    "middle": {"blocks": 1, "attention": False},
    "block": {"norm": {"kind": "group", "groups": 4}},
    "embedding": {"dim": 8},
}
MEASURE = MeasureConfig(warmup_steps=1, repeats=3, infer=False, latency=False, flops=False)
OOM = "CUDA out of memory. Tried to allocate 20.00 GiB"


def train_cfg(**fields) -> TrainConfig:
    return TrainConfig(**({"steps": 5, "batch_size": 16, "warmup_steps": 0, "log_every": 1} | fields))


@pytest.fixture(scope="module")
def data():
    return load_data(Digits(image_size=8))


@pytest.fixture(scope="module")
def context(data):
    return TrialContext.create(data, train_cfg(), EvalConfig(num_images=64, timesteps=5, curve_points=0), "cpu")


@pytest.fixture(scope="module")
def config():
    return unet_config_from_dict(TINY)


def test_metrics_have_every_key_and_are_json_ready(context, config):
    result = run_trial(config, context, train_cfg(), MEASURE)
    assert result.outcome == "completed" and result.reason == ""
    m = result.metrics.to_dict()
    # Every metric starts as None: what must be checked is which stay None.
    assert set(m) >= set(METRIC_KEYS)
    unmeasured = {k for k in METRIC_KEYS if m[k] is None}
    # exactly what MEASURE turns off, the GPU's readings on the CPU, the table's own flag, and
    # sample quality (eval.quality is off); busy_cpus is read only when there are threads to
    # spare (the suite runs torch at one)
    expected = {"infer_throughput", "latency_ms", "flops", "gpu_util", "sm_clock_mhz", "measured_under_load",
                *QUALITY_METRICS, "fd_noise", "quality_seconds", "quality", "quality_curve"}
    assert unmeasured - {"busy_cpus", "missing_files"} == expected  # files: none asked for, none missing
    assert ("busy_cpus" in unmeasured) == (torch.get_num_threads() == 1)
    json.dumps(m, allow_nan=False)  # what `archsearch train --out` and the storage receive
    assert m["outcome"] == "completed" and m["steps_trained"] == 5 and m["device"]
    assert m["train_threads"] == torch.get_num_threads() and 1 <= m["threads"] <= m["train_threads"]
    assert m["params"] == sum(p.numel() for p in build_unet(config).parameters())
    assert m["train_throughput"] > 0 and m["train_throughput_iqr"] >= 0
    assert len(m["val_loss_buckets"]) == 5 and m["learning_curve"][-1] == [5, m["val_loss"]]
    assert m["duration_s"] >= m["train_seconds"] > 0
    assert m["infer_throughput"] is None and m["flops"] is None  # not asked for by MEASURE
    # timed against the reference; alone, a trial is normalized by its own reference speed
    assert m["ref_throughput"] > 0 and m["train_speed_vs_ref"] > 0 and m["cpu_count"] >= 1
    assert m["train_throughput_normalized"] == pytest.approx(m["train_speed_vs_ref"] * m["ref_throughput"])


def test_an_evaluation_hook_sees_every_cost_known_before_training(context, config):
    # What early stopping compares at a rung: the objectives flagged before_training, the
    # normalized speed among them (scaled by the anchor a study's speed_anchor gives).
    seen = []
    run_trial(config, context, train_cfg(), MEASURE, eval_steps=[2],
              on_eval=lambda step, result, metrics: seen.append(metrics.to_dict()), speed_anchor=lambda metrics: 1000.0)
    known = {m for m in OBJECTIVE_METRICS if METRICS[m].before_training}
    assert seen and all(seen[0][m] is not None for m in known - {"infer_throughput", "latency_ms", "flops"})
    assert seen[0]["train_throughput_normalized"] == pytest.approx(seen[0]["train_speed_vs_ref"] * 1000.0)


def test_same_seed_same_val_loss_other_seed_another(context, config):
    a, b = (run_trial(config, context, train_cfg(), MEASURE).metrics.to_dict() for _ in range(2))
    torch.manual_seed(123)  # the caller's RNG state must not leak into a trial
    c = run_trial(config, context, train_cfg(), MEASURE).metrics.to_dict()
    other = run_trial(config, context, train_cfg(seed=1), MEASURE).metrics.to_dict()
    for key in ("val_loss", "val_loss_buckets", "learning_curve", "train_loss_curve"):
        assert a[key] == b[key] == c[key], key
    assert other["val_loss"] != a["val_loss"]


def test_training_lowers_the_validation_loss_well_below_untrained(context, config):
    torch.manual_seed(0)  # run_trial's initial weights: the same config and seed
    untrained = context.protocol.evaluate(build_unet(config), resolve_run_settings(train_cfg(), "cpu")).val_loss
    result = run_trial(config, context, train_cfg(steps=40, lr=5e-3, warmup_steps=5, log_every=10), MEASURE)
    assert 0.8 < untrained < 1.2  # predicting ~0 noise scores the noise's variance, 1
    assert result.metrics.val_loss < 0.6 * untrained


def test_every_phase_runs_under_the_trials_one_settings_record(context, config, monkeypatch, tmp_path):
    """Resolved once per trial from the trial's own train config (here channels_last, which the
    context's config leaves at auto = off on the CPU), then handed to every phase."""
    import archsearch.samples as samples_module

    seen = []

    def spy(name, real):
        def recording(*args, **kwargs):
            seen.append((name, next(a for a in (*args, *kwargs.values()) if isinstance(a, RunSettings))))
            return real(*args, **kwargs)
        return recording

    for module, name in ((trial_module, "measure"), (trial_module, "train"), (samples_module, "save_sample_grid")):
        monkeypatch.setattr(module, name, spy(name, getattr(module, name)))
    samples = tmp_path / "samples.png"
    run_trial(config, context, train_cfg(steps=2, channels_last="on"), MEASURE, samples_path=samples).write_files()
    assert [name for name, _ in seen] == ["measure", "train", "save_sample_grid"] and samples.exists()
    assert all(settings is seen[0][1] for _, settings in seen) and seen[0][1].channels_last


def test_two_models_are_scored_on_identical_noise(context, config, monkeypatch):
    """Every trial of a process shares the context: same held-out images, timesteps and noise,
    whatever the architecture and the training seed."""
    seen = []

    class Recording(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.num_classes = inner, None

        def forward(self, x, t, class_labels=None):
            if not self.training:
                seen[-1].append((x.clone(), t.clone()))
            return self.inner(x, t, class_labels)

    monkeypatch.setattr(trial_module, "build_unet", lambda cfg: Recording(build_unet(cfg)))
    wider = unet_config_from_dict({**TINY, "levels": [{"width": 16, "blocks": 1}, {"width": 16, "blocks": 1}]})
    losses = []
    for cfg, seed in ((config, 0), (wider, 3)):
        seen.append([])
        losses.append(run_trial(cfg, context, train_cfg(steps=2, seed=seed), MEASURE).metrics.val_loss)
    (a, b) = seen
    assert len(a) == len(b) > 0
    for (xa, ta), (xb, tb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ta, tb)
    assert losses[0] != losses[1]  # different models, different scores on the same inputs


class _Armed(nn.Module):
    """Wraps a U-Net; once `armed`, every training forward raises `error` (or returns NaN)."""

    armed = False

    def __init__(self, inner: nn.Module, error):
        super().__init__()
        self.inner, self.error, self.num_classes = inner, error, None

    def forward(self, x, t, class_labels=None):
        out = self.inner(x, t, class_labels)
        if self.training and type(self).armed:
            if self.error is None:
                return out * float("nan")
            raise self.error()
        return out


@pytest.fixture
def armed(monkeypatch):
    """Patch run_trial's builder; `arm("measure" | "train", error)` picks when failures start."""

    def arm(phase: str, error):
        class Armed(_Armed):
            armed = phase == "measure"

        monkeypatch.setattr(trial_module, "build_unet", lambda cfg: Armed(build_unet(cfg), error))
        if phase == "train":
            real = trial_module.measure

            def measure_then_arm(*args, **kwargs):
                cost = real(*args, **kwargs)
                Armed.armed = True
                return cost

            monkeypatch.setattr(trial_module, "measure", measure_then_arm)

    return arm


@pytest.mark.parametrize("error", [
    lambda: torch.OutOfMemoryError(OOM),
    lambda: RuntimeError("[enforce fail at alloc_cpu.cpp:83] DefaultCPUAllocator: can't allocate memory: you tried "
                         "to allocate 1073741824 bytes. Error code 12 (Cannot allocate memory)"),
])
def test_out_of_memory_while_measuring_is_the_oom_outcome(context, config, armed, error):
    armed("measure", error)
    result = run_trial(config, context, train_cfg(), MEASURE)
    assert result.outcome == "oom" and result.metrics.outcome == "oom"
    assert result.reason.startswith("oom: out of memory while measuring")
    assert result.metrics.params > 0 and result.metrics.val_loss is None
    assert result.metrics.train_throughput is None and result.metrics.duration_s > 0


def test_out_of_memory_while_training_keeps_the_cost_metrics(context, config, armed):
    armed("train", lambda: torch.OutOfMemoryError(OOM))
    result = run_trial(config, context, train_cfg(), MEASURE)
    assert result.outcome == "oom" and "out of memory at step 0" in result.reason and OOM in result.reason
    assert result.metrics.train_throughput > 0  # measured before training started
    assert result.metrics.val_loss is None and result.metrics.val_loss_buckets is None
    json.dumps(result.metrics.to_dict(), allow_nan=False)


def test_a_non_finite_loss_is_the_diverged_outcome(context, config, armed, tmp_path):
    armed("train", None)
    checkpoint = tmp_path / "model.pt"
    result = run_trial(config, context, train_cfg(log_every=1), MEASURE, checkpoint_path=checkpoint)
    assert result.outcome == "diverged" and result.metrics.outcome == "diverged" and result.reason
    assert result.metrics.train_throughput > 0 and result.metrics.val_loss is None
    assert not checkpoint.exists()  # a diverged model is not worth keeping


def test_on_eval_sees_the_cost_metrics_and_can_stop_the_trial_at_an_eval_step(context, config, tmp_path):
    heard = []

    def stop_at_rung(step, result, metrics):
        heard.append((step, result.val_loss, metrics.params, metrics.train_throughput))
        return step == 3

    checkpoint = tmp_path / "model.pt"
    result = run_trial(config, context, train_cfg(steps=8), MEASURE, on_eval=stop_at_rung, eval_steps=[1, 3, 6],
                       checkpoint_path=checkpoint)
    m = result.metrics
    assert [step for step, *_ in heard] == [1, 3]  # measured before training: known at every rung
    assert all(params == m.params > 0 and throughput == m.train_throughput > 0 for *_, params, throughput in heard)
    assert result.outcome == "stopped" and result.reason == "" and m.steps_trained == 3
    assert m.learning_curve == [[1, heard[0][1]], [3, heard[1][1]]]
    assert m.val_loss is None and m.val_loss_buckets is None  # no final score: it stopped short of its budget
    assert not checkpoint.exists()


def test_other_errors_propagate(context, config, armed):
    armed("train", lambda: ValueError("a bug, not a trial outcome"))
    with pytest.raises(ValueError, match="a bug"):
        run_trial(config, context, train_cfg(), MEASURE)


def test_progress_phases_in_order_and_outputs_written(context, config, tmp_path):
    phases = []
    checkpoint = tmp_path / "out" / "model.pt"
    result = run_trial(config, context, train_cfg(steps=2), MEASURE, checkpoint_path=checkpoint,
                       on_progress=lambda phase, step, total, loss=None: phases.append(phase))
    assert not checkpoint.exists()  # written once the caller has recorded the result
    assert result.write_files() == {} and result.metrics.missing_files is None
    firsts = list(dict.fromkeys(phases))
    assert firsts[:3] == ["building", "measuring", "training"] and "evaluating" in firsts
    state = load_checkpoint(checkpoint)
    assert state["config"] == config.model_dump(mode="json") and state["train"]["steps"] == 2


@pytest.mark.parametrize("error", [
    lambda: torch.OutOfMemoryError(OOM),
    lambda: RuntimeError("CUDA error: out of memory"),
    lambda: RuntimeError("[enforce fail at alloc_cpu.cpp:83] DefaultCPUAllocator: can't allocate memory: you tried "
                         "to allocate 1073741824 bytes. Error code 12 (Cannot allocate memory)"),
])
def test_out_of_memory_while_building_is_the_oom_outcome(context, config, monkeypatch, error):
    def build(cfg):
        raise error()

    monkeypatch.setattr(trial_module, "build_unet", build)
    result = run_trial(config, context, train_cfg(), MEASURE)
    assert result.outcome == "oom" and result.metrics.outcome == "oom"
    assert result.reason.startswith("oom: out of memory while building")
    assert result.metrics.params == sum(p.numel() for p in build_unet(config).parameters())


def test_a_model_whose_training_state_cannot_fit_is_refused_before_it_is_built(context, config, monkeypatch):
    params = sum(p.numel() for p in build_unet(config).parameters())
    monkeypatch.setattr(trial_module, "memory_bytes", lambda device: 16 * params - 1)  # one byte short
    monkeypatch.setattr(trial_module, "build_unet", lambda cfg: pytest.fail("built a model that cannot fit"))
    result = run_trial(config, context, train_cfg(), MEASURE)
    assert result.outcome == "oom" and result.metrics.params == params
    assert result.reason.startswith("oom: needs ~") and result.reason.endswith(" GiB")
    assert "GiB for parameters, gradients and optimizer state; the device has " in result.reason
    monkeypatch.setattr(trial_module, "memory_bytes", lambda device: 20 * params - 1)  # an EMA copy takes 4 bytes more
    assert run_trial(config, context, train_cfg(ema_decay=0.9), MEASURE).outcome == "oom"


def test_a_model_that_fits_is_not_refused(context, config, monkeypatch):
    params = sum(p.numel() for p in build_unet(config).parameters())
    monkeypatch.setattr(trial_module, "memory_bytes", lambda device: 16 * params)
    assert run_trial(config, context, train_cfg(steps=1), MEASURE).outcome == "completed"
