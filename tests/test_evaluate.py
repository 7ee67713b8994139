"""The fixed-noise validation protocol: same inputs for every model, buckets low to high noise."""

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from archsearch.diffusion import NoiseSchedule, to_eps
from archsearch.errors import ConfigError
from archsearch.evaluate import ValidationProtocol, model_num_classes
from archsearch.schema.train import EvalConfig, TrainConfig
from archsearch.settings import resolve_run_settings

T = 100
CPU = resolve_run_settings(TrainConfig(), "cpu")  # eager fp32, eps prediction


def val_data(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 4, 4, generator=g) * 2 - 1, torch.randint(0, 10, (n,), generator=g)


def protocol(n=24, labels=True, schedule="linear", **cfg):
    images, y = val_data(n)
    cfg = {"num_images": 16, "timesteps": 10, "timesteps_per_image": 5, "buckets": 5, "batch_size": 7} | cfg
    return ValidationProtocol(images, y if labels else None, NoiseSchedule.create(schedule, T), EvalConfig(**cfg))


class Recorder(nn.Module):
    """Returns `scale * x_t` and records every input it is given."""

    def __init__(self, scale=0.0, num_classes=None):
        super().__init__()
        self.scale, self.num_classes, self.calls = scale, num_classes, []
        self.anchor = nn.Parameter(torch.zeros(()))  # so .train()/.eval() have something to act on

    def forward(self, x, t, class_labels=None):
        self.calls.append((x.clone(), t.clone(), None if class_labels is None else class_labels.clone(),
                           self.training, torch.is_grad_enabled()))
        return self.scale * x

    def inputs(self):
        return tuple(torch.cat([c[i] for c in self.calls]) for i in range(2))


def test_every_model_sees_identical_inputs_whatever_the_global_rng():
    p = protocol()
    a, b = Recorder(0.0), Recorder(0.7)
    p.evaluate(a, CPU)
    torch.manual_seed(999)  # training or other code moving the global RNG changes nothing
    p.evaluate(b, CPU)
    torch.manual_seed(12345)
    q = protocol()  # a second protocol from the same data and config, e.g. in another process
    c = Recorder(-1.0)
    q.evaluate(c, CPU)
    for x, y in zip(a.inputs(), b.inputs()):
        assert torch.equal(x, y)
    for x, y in zip(a.inputs(), c.inputs()):
        assert torch.equal(x, y)
    assert p.fingerprint == q.fingerprint
    assert protocol(noise_seed=1).fingerprint != p.fingerprint


def test_pairs_cover_every_timestep_evenly_and_buckets_in_order():
    p = protocol(num_images=16, timesteps=10, timesteps_per_image=5)
    assert p.timesteps.tolist() == [5, 15, 25, 35, 45, 55, 65, 75, 85, 95]
    assert p.num_pairs == 16 * 5
    assert torch.bincount(p.timestep_index, minlength=10).tolist() == [8] * 10
    # Each image is noised at 5 distinct timesteps.
    for i in range(16):
        assert len(set(p.timestep_index[p.image_index == i].tolist())) == 5
    assert p.bucket_ranges == [(0, 20), (20, 40), (40, 60), (60, 80), (80, 100)]
    assert p.timestep_bucket.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_full_cross_product_when_timesteps_per_image_equals_timesteps():
    p = protocol(num_images=4, timesteps=5, timesteps_per_image=5)
    pairs = set(zip(p.image_index.tolist(), p.timestep_index.tolist()))
    assert pairs == {(i, k) for i in range(4) for k in range(5)}


def test_zero_predictor_loss_is_the_mean_squared_noise_per_timestep():
    p = protocol()
    res = p.evaluate(Recorder(0.0), CPU)
    per_pair = p.noise.square().mean(dim=(1, 2, 3))
    expected = [per_pair[p.timestep_index == k].mean().item() for k in range(10)]
    assert [v for _, v in res.per_timestep] == pytest.approx(expected, rel=1e-5)
    assert res.val_loss == pytest.approx(sum(expected) / 10, rel=1e-5)
    assert res.val_loss_buckets == pytest.approx([sum(expected[2 * b:2 * b + 2]) / 2 for b in range(5)], rel=1e-5)
    assert res.num_pairs == 80 and res.fingerprint == p.fingerprint


def test_buckets_run_from_low_to_high_noise():
    # Predicting eps = x_t is wrong by ~x0 - eps at low noise and nearly right at high noise.
    res = protocol(num_images=24, timesteps_per_image=10).evaluate(Recorder(1.0), CPU)
    assert len(res.val_loss_buckets) == 5
    assert res.val_loss_buckets == sorted(res.val_loss_buckets, reverse=True)
    assert res.val_loss_buckets[0] > 10 * res.val_loss_buckets[-1]


def test_v_models_are_scored_by_their_implied_eps():
    s = NoiseSchedule.create("cosine", T)

    class VModel(nn.Module):
        def forward(self, x, t, class_labels=None):
            return torch.tanh(x) * 0.5

    class EpsTwin(nn.Module):  # predicts the eps that VModel's v implies
        def forward(self, x, t, class_labels=None):
            return to_eps(torch.tanh(x) * 0.5, x, s.ab(t.long()), "v")

    p, v_settings = protocol(schedule="cosine"), resolve_run_settings(TrainConfig(prediction="v"), "cpu")
    v_res, eps_res = p.evaluate(VModel(), v_settings), p.evaluate(EpsTwin(), CPU)
    assert v_res.val_loss == pytest.approx(eps_res.val_loss, rel=1e-5)
    assert v_res.val_loss != pytest.approx(p.evaluate(VModel(), CPU).val_loss, rel=1e-3)


def test_learned_variance_output_uses_the_first_half():
    class TwoC(nn.Module):
        def forward(self, x, t, class_labels=None):
            return torch.cat([torch.zeros_like(x), torch.full_like(x, 1e3)], dim=1)

    p = protocol()
    assert p.evaluate(TwoC(), CPU).val_loss == pytest.approx(p.evaluate(Recorder(0.0), CPU).val_loss)


def test_labels_only_for_class_conditional_models_and_eval_mode_restored():
    p = protocol()
    cond, uncond = Recorder(num_classes=10), Recorder()
    cond.train()
    uncond.eval()
    p.evaluate(cond, CPU)
    p.evaluate(uncond, CPU)
    _, y = val_data()
    assert torch.equal(torch.cat([c[2] for c in cond.calls]), y[:16][p.image_index])
    assert all(c[2] is None for c in uncond.calls)
    assert not any(c[3] or c[4] for c in cond.calls + uncond.calls)  # eval mode, no autograd
    assert cond.training and not uncond.training
    assert all(c[2] is None for c in _evaluate_calls(protocol(labels=False), Recorder(num_classes=10)))


def _evaluate_calls(p, model):
    p.evaluate(model, CPU)
    return model.calls


def test_model_num_classes_reads_the_attribute_or_the_config():
    class WithConfig(nn.Module):
        class config:  # noqa: N801 - stands in for a UNetConfig
            num_classes = 7

    assert model_num_classes(WithConfig()) == 7
    assert model_num_classes(Recorder(num_classes=3)) == 3
    assert model_num_classes(Recorder()) is None


def test_fewer_images_than_num_images_uses_all():
    p = protocol(n=6, num_images=256, timesteps=10, timesteps_per_image=5)
    assert p.num_pairs == 30


def test_too_few_pairs_for_the_timesteps_is_a_config_error():
    with pytest.raises(ConfigError) as err:
        protocol(n=2, timesteps=10, timesteps_per_image=4)
    assert err.value.path == "eval.timesteps_per_image" and ">= 5" in err.value.message
    with pytest.raises(ConfigError, match="eval.timesteps"):
        protocol(timesteps=200, timesteps_per_image=1, buckets=1)


@pytest.mark.parametrize(
    ("fields", "loc"),
    [({"timesteps": 12, "buckets": 5}, "buckets"), ({"timesteps": 5, "timesteps_per_image": 6}, "timesteps_per_image"),
     ({"curve_points": -1}, "curve_points"), ({"bogus": 1}, "bogus")],
)
def test_eval_config_rejects_bad_values_at_their_field(fields, loc):
    with pytest.raises(ValidationError) as err:
        EvalConfig(**fields)
    assert err.value.errors()[0]["loc"] == (loc,)
