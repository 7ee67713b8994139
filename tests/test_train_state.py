"""A training run's resumable state: interrupted and resumed, a run ends exactly where one run
straight through ends; the state file is written atomically and read without running code."""

import pytest
import torch

from archsearch.data import DeviceBatches
from archsearch.data.convert import to_unsigned
from archsearch.errors import ConfigError
from archsearch.train_state import STATE_FORMAT, load_state, save_state
from test_train import TinyDenoiser, bars, cfg, fit, make_protocol, model

IMAGES, LABELS = bars(96, seed=100)
STEPS = 20


def loader(seed=3):
    return DeviceBatches(to_unsigned(IMAGES), LABELS, "cpu", batch_size=16, seed=seed)


# EMA, warm-up then cosine decay over the whole budget, dropout (torch's RNG), class dropout (the
# device generator), a log window the interruption cuts in two, curve points and an eval step.
CFG = cfg(steps=STEPS, lr=3e-3, warmup_steps=4, ema_decay=0.9, class_dropout=0.2, log_every=3)


def run(stop_at=None, state_path=None, resume=None, init_seed=0):
    protocol = make_protocol(curve_points=2)  # evaluations at steps 7 and 14, and eval_steps=(11,)
    net = model(seed=init_seed, dropout=0.1, num_classes=8)

    def on_step(step, snapshot):
        if step == stop_at:
            save_state(state_path, snapshot())
            raise KeyboardInterrupt

    result = fit(net, loader(), CFG, protocol, eval_steps=(11,), resume=resume, on_step=on_step)
    return net, result


def test_interrupted_and_resumed_equals_straight_through(tmp_path):
    straight_model, straight = run()
    path = tmp_path / "state.pt"
    with pytest.raises(KeyboardInterrupt):
        run(stop_at=10, state_path=path)
    torch.manual_seed(999)  # whatever ran in between, the saved RNG state is what counts
    state = load_state(path)
    assert state["position"]["step"] == 10 and state["position"]["window_n"] == 1  # mid log window
    assert [s for s, _ in state["learning_curve"]] == [7]  # the evaluations done
    resumed_model, resumed = run(resume=state, init_seed=5)  # other initial weights: the state's win

    assert resumed.outcome == straight.outcome == "completed" and resumed.steps == STEPS
    assert resumed.train_loss == straight.train_loss
    assert resumed.learning_curve == straight.learning_curve and [s for s, _ in straight.learning_curve] == [7, 11, 14, 20]
    assert resumed.val_loss == straight.val_loss
    for (name, a), b in zip(straight_model.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed.train_seconds > state["position"]["train_seconds"]


def test_a_state_is_plain_data_that_loads_with_weights_only(tmp_path):
    path = tmp_path / "state.pt"
    with pytest.raises(KeyboardInterrupt):
        run(stop_at=4, state_path=path)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == STATE_FORMAT and raw["ema"] is not None
    assert raw["rng"]["torch"].dtype == torch.uint8 and raw["rng"]["generator"].dtype == torch.uint8
    assert raw["batches"]["pos"] == 4 * 16 % 80 and raw["optimizer"]["param_groups"][0]["lr"] > 0


def test_a_failed_write_keeps_the_previous_state_and_a_torn_temp_file_is_ignored(tmp_path, monkeypatch):
    path = tmp_path / "state.pt"
    save_state(path, {"format": STATE_FORMAT, "position": {"step": 3}})

    def torn(obj, target):  # a kill mid-write: half a file, then the process is gone
        target.write(b"PK\x03\x04 half a zip")  # torch.save writes to archsearch's file object
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", torn)
    with pytest.raises(KeyboardInterrupt):
        save_state(path, {"format": STATE_FORMAT, "position": {"step": 6}})
    monkeypatch.undo()
    (tmp_path / ".state.pt.abc123.tmp").write_bytes(b"PK\x03\x04 torn by a SIGKILL")  # what a kill -9 leaves
    assert load_state(path)["position"]["step"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [".state.pt.abc123.tmp", "state.pt"]


def test_no_state_is_none_and_a_foreign_file_is_a_path_error(tmp_path):
    assert load_state(tmp_path / "missing.pt") is None
    foreign = tmp_path / "state.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(ConfigError) as caught:
        load_state(foreign)
    assert caught.value.path == str(foreign) and "not a training state" in caught.value.message


def test_batches_continue_from_their_state():
    a, b = loader(), loader()
    for _ in range(7):  # past an epoch boundary (80 images, batches of 16)
        next(a)
    saved = a.state_dict()
    b.load_state_dict(saved)
    for _ in range(9):
        (xa, ya), (xb, yb) = next(a), next(b)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    with pytest.raises(ValueError, match="batch_size"):
        DeviceBatches(to_unsigned(IMAGES), LABELS, "cpu", batch_size=8).load_state_dict(saved)


def test_batches_without_a_state_cannot_be_snapshotted():
    def on_step(step, snapshot):
        snapshot()

    with pytest.raises(TypeError, match="cannot be resumed"):
        fit(TinyDenoiser(), iter([(IMAGES[:8], None)] * 3), cfg(steps=3), make_protocol(), on_step=on_step)
