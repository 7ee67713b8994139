"""The short training run: it learns, it is reproducible, and failures become outcomes."""

import math
import time

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from archsearch.diffusion import NoiseSchedule
from archsearch.errors import ConfigError
from archsearch.evaluate import ValidationProtocol
from archsearch.schema.train import EvalConfig, TrainConfig
from archsearch.settings import resolve_run_settings
from archsearch.train import learning_rate, load_checkpoint, save_checkpoint, train


class TinyDenoiser(nn.Module):
    """A ~3k-parameter conv denoiser with the archsearch model interface."""

    def __init__(self, channels=1, width=16, num_classes=None, dropout=0.0):
        super().__init__()
        self.num_classes = num_classes
        self.conv_in = nn.Conv2d(channels, width, 3, padding=1)
        self.time = nn.Linear(3, width)
        self.classes = nn.Embedding(num_classes, width) if num_classes else None
        self.drop = nn.Dropout(dropout)
        self.conv_mid = nn.Conv2d(width, width, 3, padding=1)
        self.conv_out = nn.Conv2d(width, channels, 3, padding=1)
        self.seen_labels = []

    def forward(self, x, t, class_labels=None):
        u = t / 1000  # (B,)
        emb = self.time(torch.stack([u, torch.sin(math.pi * u), torch.cos(math.pi * u)], dim=-1))  # (B, W)
        if self.classes is not None and class_labels is not None:
            self.seen_labels.append(class_labels)
            emb = emb + self.classes(class_labels.clamp(min=0)) * (class_labels >= 0).unsqueeze(-1)
        h = F.silu(self.conv_in(x) + emb[:, :, None, None])  # (B, W, H, W)
        h = F.silu(self.conv_mid(self.drop(h)))
        return self.conv_out(h)  # (B, C, H, W)


class FailsAt(TinyDenoiser):
    """Raises `error` (or returns NaN when error is None) from its k-th training forward on."""

    def __init__(self, k, error=None):
        super().__init__()
        self.k, self.error, self.calls = k, error, 0

    def forward(self, x, t, class_labels=None):
        out = super().forward(x, t, class_labels)
        if self.training:
            self.calls += 1
            if self.calls >= self.k:
                if self.error is not None:
                    raise self.error
                return out * float("nan")
        return out


def bars(n, seed):
    """8x8 images of a bright bar on a dark background; the class is the bar's row."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 8, (n,), generator=g)
    images = torch.full((n, 1, 8, 8), -0.8) + 0.1 * torch.randn(n, 1, 8, 8, generator=g)
    images[torch.arange(n), 0, labels] = 0.8
    return images.clamp(-1, 1), labels


def batches(batch_size=32, seed=0, limit=None):
    images, labels = bars(256, seed=100)
    g = torch.Generator().manual_seed(seed)
    n = 0
    while limit is None or n < limit:
        idx = torch.randint(0, len(images), (batch_size,), generator=g)
        yield images[idx], labels[idx]
        n += 1


def make_protocol(schedule="cosine", **cfg):
    images, labels = bars(64, seed=7)
    cfg = {"num_images": 64, "timesteps": 10, "timesteps_per_image": 5, "curve_points": 0, "batch_size": 64} | cfg
    return ValidationProtocol(images, labels, NoiseSchedule.create(schedule, 1000), EvalConfig(**cfg))


def model(seed=0, cls=TinyDenoiser, **kwargs):
    torch.manual_seed(seed)
    return cls(**kwargs)


def cfg(**fields):
    return TrainConfig(**({"steps": 40, "log_every": 10, "warmup_steps": 5} | fields))


CPU = resolve_run_settings(TrainConfig(), "cpu")  # eager fp32 eps: how the untrained models are scored


def fit(m, data, c, protocol, **kwargs):
    """`train` under the config's own CPU settings, as `run_trial` calls it."""
    return train(m, data, c, protocol, resolve_run_settings(c, "cpu"), **kwargs)


def test_training_lowers_the_validation_loss():
    p, m = make_protocol(), model()
    untrained = p.evaluate(m, CPU).val_loss
    res = fit(m, batches(batch_size=16), cfg(steps=100, lr=5e-3), p)
    assert res.outcome == "completed" and res.steps == 100 and res.reason == "step budget reached"
    assert res.val_loss < 0.5 * untrained and res.val_loss < 0.4  # predicting 0 scores 1.0
    assert res.train_loss[-1][1] < res.train_loss[0][1]
    assert [s for s, _ in res.train_loss] == list(range(10, 101, 10))
    assert res.final.val_loss == p.evaluate(m, CPU).val_loss  # the model left is the one evaluated


def test_same_seed_same_losses_different_seed_different():
    p = make_protocol()
    run = lambda seed: fit(model(), batches(), cfg(seed=seed, ema_decay=0.9), p)  # noqa: E731
    a, b, c = run(0), run(0), run(1)
    assert a.train_loss == b.train_loss and a.val_loss == b.val_loss
    assert a.train_loss != c.train_loss and a.val_loss != c.val_loss


def test_dropout_is_seeded_by_the_training_seed():
    p = make_protocol()
    run = lambda: fit(model(dropout=0.3), batches(), cfg(), p).val_loss  # noqa: E731
    first = run()
    torch.manual_seed(42)  # the caller's RNG state must not leak into the run
    assert run() == first


def test_learning_curve_points_and_progress_callback():
    p, events = make_protocol(curve_points=3), []
    res = fit(model(), batches(), cfg(steps=40), p, on_progress=lambda *e: events.append(e))
    assert [s for s, _ in res.learning_curve] == [10, 20, 30, 40]
    assert res.learning_curve[-1][1] == res.val_loss
    logged = dict(res.train_loss)  # log_every=10: the loss is read at steps 10, 20, 30, 40
    latest = lambda step: logged.get(max((s for s in logged if s <= step), default=None))  # noqa: E731
    training = [e for e in events if e[0] == "training"]
    assert [e[1] for e in training] == list(range(41))  # every step, not only the log points
    assert training == [("training", s, 40, latest(s)) for s in range(41)]  # with the last logged loss
    assert training[9][3] is None and training[10][3] == logged[10]
    assert [e for e in events if e[0] == "evaluating"] == [("evaluating", s, 40, logged[s]) for s in (10, 20, 30, 40)]


def test_on_eval_can_stop_the_run():
    p = make_protocol(curve_points=3)
    res = fit(model(), batches(), cfg(steps=40), p, on_eval=lambda step, r: step >= 20)
    assert res.outcome == "stopped" and res.steps == 20
    assert res.final is not None and res.learning_curve == [(10, res.learning_curve[0][1]), (20, res.val_loss)]


def test_eval_steps_are_evaluated_beside_the_curve_points():
    # Rungs of early stopping: exact steps, merged with the curve points (10, 20, 30 of 40); one
    # evaluation where both fall; none at or past the budget (the final score is there).
    p, heard = make_protocol(curve_points=3), []
    res = fit(model(), batches(), cfg(steps=40), p, eval_steps=[20, 5, 40, 100, 0],
              on_eval=lambda step, r: heard.append((step, r.val_loss)))
    assert [s for s, _ in res.learning_curve] == [5, 10, 20, 30, 40]
    assert heard == res.learning_curve[:-1]


def test_a_run_stopped_at_an_eval_step_leaves_the_model_it_scored():
    p = make_protocol()
    m = model()
    res = fit(m, batches(), cfg(steps=40), p, eval_steps=[5], on_eval=lambda step, r: True)
    assert res.outcome == "stopped" and res.steps == 5 and res.learning_curve == [(5, res.val_loss)]
    assert p.evaluate(m, CPU).val_loss == res.val_loss  # the fixed-noise protocol of a final score


def test_nan_loss_ends_the_run_as_diverged():
    res = fit(model(cls=FailsAt, k=13), batches(), cfg(steps=100), make_protocol())
    assert res.outcome == "diverged" and res.final is None and math.isnan(res.val_loss)
    assert res.steps == 20  # noticed at the next log point (log_every = 10)
    assert "training loss" in res.reason and math.isnan(res.train_loss[-1][1])


@pytest.mark.parametrize(
    "error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
              RuntimeError("CUDA error: out of memory")],
)
def test_out_of_memory_ends_the_run_as_oom(error):
    m = model(cls=FailsAt, k=25, error=error)
    res = fit(m, batches(), cfg(steps=100), make_protocol())
    assert res.outcome == "oom" and res.final is None and res.steps == 24
    assert res.reason.startswith("out of memory at step 24") and len(res.train_loss) == 2
    assert all(p.grad is None for p in m.parameters())  # gradients released


def test_other_errors_propagate():
    with pytest.raises(RuntimeError, match="shape mismatch"):
        fit(model(cls=FailsAt, k=3, error=RuntimeError("shape mismatch")), batches(), cfg(), make_protocol())


def test_seconds_budget_ends_the_run_early():
    class Slow(TinyDenoiser):
        def forward(self, x, t, class_labels=None):
            if self.training:
                time.sleep(0.02)
            return super().forward(x, t, class_labels)

    res = fit(model(cls=Slow), batches(), cfg(steps=100_000, seconds=0.2), make_protocol(curve_points=1))
    assert res.outcome == "completed" and 2 <= res.steps <= 10 and res.reason == "seconds budget reached"
    assert res.train_seconds >= 0.2 and len(res.learning_curve) == 2  # one intermediate point (at half the time)


def test_data_running_out_ends_the_run():
    res = fit(model(), batches(limit=13), cfg(steps=40), make_protocol())
    assert res.outcome == "completed" and res.steps == 13 and "ran out" in res.reason
    assert res.train_loss[-1][0] == 13 and res.final is not None


def test_ema_weights_are_evaluated_and_left_in_the_model():
    p = make_protocol()
    plain, averaged = model(), model()
    a = fit(plain, batches(), cfg(), p)
    b = fit(averaged, batches(), cfg(ema_decay=0.95), p)
    assert a.train_loss == b.train_loss  # EMA does not change the optimisation
    assert a.val_loss != b.val_loss
    assert b.val_loss == p.evaluate(averaged, CPU).val_loss
    assert not torch.equal(plain.conv_out.weight, averaged.conv_out.weight)


def test_labels_reach_conditional_models_with_class_dropout():
    m = model(num_classes=8)
    res = fit(m, batches(), cfg(steps=20, class_dropout=0.5), make_protocol())
    assert res.outcome == "completed"
    train_labels = torch.cat(m.seen_labels[:20])
    assert 0.3 < (train_labels == -1).float().mean().item() < 0.7
    assert (torch.cat(m.seen_labels[20:]) >= 0).all()  # evaluation never drops labels
    with pytest.raises(ConfigError, match="class-conditional"):
        fit(model(), batches(), cfg(class_dropout=0.1), make_protocol())


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_both_prediction_types_train(prediction):
    p = make_protocol()
    res = fit(model(), batches(), cfg(steps=60, lr=3e-3, prediction=prediction), p)
    assert res.outcome == "completed" and res.val_loss < p.evaluate(model(), CPU).val_loss


def test_protocol_of_another_schedule_is_rejected():
    with pytest.raises(ConfigError, match="noise schedule"):
        fit(model(), batches(), cfg(schedule="linear"), make_protocol(schedule="cosine"))


def test_learning_rate_warms_up_then_decays():
    c = TrainConfig(steps=100, warmup_steps=10, lr=1e-3)
    assert learning_rate(0, c) == pytest.approx(1e-4) and learning_rate(9, c) == pytest.approx(1e-3)
    lrs = [learning_rate(s, c) for s in range(10, 100)]
    assert lrs == sorted(lrs, reverse=True) and 0 < lrs[-1] < 1e-6
    assert learning_rate(99, c.model_copy(update={"lr_decay": "constant"})) == 1e-3


def test_channels_last_and_bf16_run_on_cpu_when_asked():
    res = fit(model(), batches(), cfg(steps=10, channels_last="on", precision="bf16"), make_protocol())
    assert res.outcome == "completed" and math.isfinite(res.val_loss)


@pytest.mark.parametrize(
    ("fields", "loc"),
    [({"steps": 0}, "steps"), ({"ema_decay": 1.0}, "ema_decay"), ({"schedule": "sigmoid"}, "schedule"),
     ({"lr": "fast"}, "lr"), ({"epochs": 3}, "epochs")],
)
def test_train_config_rejects_bad_values_at_their_field(fields, loc):
    with pytest.raises(ValidationError) as err:
        TrainConfig(**fields)
    assert err.value.errors()[0]["loc"][0] == loc
    assert TrainConfig(lr="2e-4").lr == 2e-4  # YAML's 2e-4 arrives as a string


def test_checkpoint_round_trip(tmp_path):
    m = model(num_classes=8)
    path = save_checkpoint(tmp_path / "t" / "checkpoint.pt", m, {"image_size": 8}, cfg().model_dump(),
                           {"source": "bars", "channels": 1})
    ckpt = load_checkpoint(path)
    assert ckpt["config"] == {"image_size": 8} and ckpt["train"] == cfg().model_dump()
    assert ckpt["data"]["channels"] == 1
    fresh = TinyDenoiser(num_classes=8)
    fresh.load_state_dict(ckpt["state_dict"])
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), m.state_dict().values()))
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="not an archsearch checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
