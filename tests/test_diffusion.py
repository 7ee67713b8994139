"""Noise schedules, the training loss, the samplers and the sample grid."""

import math

import pytest
import torch
from PIL import Image
from torch import nn

from archsearch.diffusion import (
    NULL_LABEL,
    NoiseSchedule,
    ddim_sample,
    ddpm_sample,
    q_sample,
    sample_timesteps,
    sampler_step,
    to_eps,
    to_x0,
    training_loss,
    v_target,
)
from archsearch.samples import make_grid, save_sample_grid
from archsearch.schema.train import DDIMSampler, DDPMSampler, SampleConfig, TrainConfig
from archsearch.settings import resolve_run_settings

KINDS = ["linear", "cosine"]


class Constant(nn.Module):
    """Predicts `value` everywhere, with `factor` times the input channels; records labels."""

    def __init__(self, value: float = 0.0, factor: int = 1, num_classes: int | None = None):
        super().__init__()
        self.value, self.factor, self.num_classes = value, factor, num_classes
        self.labels = []

    def forward(self, x, t, class_labels=None):
        self.labels.append(class_labels)
        B, C, H, W = x.shape
        return torch.full((B, self.factor * C, H, W), self.value)


class GaussianOracle(nn.Module):
    """The exact denoiser for data ~ N(mean, std^2) per pixel, as an eps or v prediction."""

    def __init__(self, schedule: NoiseSchedule, mean: float, std: float, prediction: str = "eps"):
        super().__init__()
        self.ab, self.mean, self.var, self.prediction = schedule.alphas_cumprod, mean, std**2, prediction

    def forward(self, x, t, class_labels=None):
        ab = self.ab[t.long()].view(-1, 1, 1, 1)
        # E[x0 | x_t] for a Gaussian prior; then eps (or v) implied by it.
        x0 = self.mean + ab.sqrt() * self.var * (x - ab.sqrt() * self.mean) / (ab * self.var + 1 - ab)
        eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
        return eps if self.prediction == "eps" else v_target(x0, eps, ab)


# --------------------------------------------------------------------------- schedules


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T", [1000, 50])
def test_schedule_shapes_and_monotonicity(kind, T):
    s = NoiseSchedule.create(kind, T)
    assert s.num_timesteps == T
    assert s.betas.shape == s.alphas_cumprod.shape == (T,)
    assert s.betas.dtype == s.alphas_cumprod.dtype == torch.float32
    assert ((s.betas > 0) & (s.betas <= 0.999)).all()
    assert (s.alphas_cumprod[1:] < s.alphas_cumprod[:-1]).all()
    assert 0 < s.alphas_cumprod[-1] < 1e-3 < 0.99 < s.alphas_cumprod[0] < 1


def test_linear_schedule_known_values():
    s = NoiseSchedule.create("linear", 1000)
    assert s.betas[0].item() == pytest.approx(1e-4)
    assert s.betas[-1].item() == pytest.approx(0.02)
    assert s.alphas_cumprod[-1].item() == pytest.approx(4.0358e-5, rel=1e-3)  # DDPM's alpha-bar_T
    # Fewer steps are rescaled to the same total noise (ADM): end points move by 1000/T.
    s50 = NoiseSchedule.create("linear", 50)
    assert s50.betas[0].item() == pytest.approx(20 * 1e-4) and s50.betas[-1].item() == pytest.approx(20 * 0.02)


def test_cosine_schedule_follows_closed_form_and_clips():
    T, s_off = 1000, 0.008
    f = lambda t: math.cos((t / T + s_off) / (1 + s_off) * math.pi / 2) ** 2  # noqa: E731
    s = NoiseSchedule.create("cosine", T)
    for t in (0, 250, 499, 900):
        assert s.alphas_cumprod[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-4)
    assert s.betas[-1].item() == pytest.approx(0.999)  # 1 - f(T)/f(T-1) = 1 is clipped


def test_unknown_schedule_is_rejected():
    with pytest.raises(ValueError, match="unknown noise schedule"):
        NoiseSchedule.create("quadratic", 10)


# --------------------------------------------------------------------------- parameterisations


def test_eps_and_v_conversions_round_trip():
    g = torch.Generator().manual_seed(0)
    s = NoiseSchedule.create("cosine", 100)
    x0, eps = torch.randn(6, 2, 4, 4, generator=g), torch.randn(6, 2, 4, 4, generator=g)
    t = torch.tensor([0, 10, 30, 50, 80, 99])
    x_t, ab = q_sample(x0, t, eps, s), s.ab(t)
    assert torch.allclose(x_t, ab.sqrt() * x0 + (1 - ab).sqrt() * eps)
    v = v_target(x0, eps, ab)
    assert torch.allclose(to_eps(v, x_t, ab, "v"), eps, atol=1e-5)
    assert torch.allclose(to_x0(v, x_t, ab, "v"), x0, atol=1e-5)
    assert torch.allclose(to_x0(eps, x_t, ab, "eps")[:5], x0[:5], atol=1e-3)  # t=99 divides by ~0


# --------------------------------------------------------------------------- training loss


def test_eps_loss_of_a_zero_predictor_is_the_noise_variance():
    s, g = NoiseSchedule.create("linear", 1000), torch.Generator().manual_seed(0)
    loss = training_loss(Constant(0.0), torch.rand(512, 1, 8, 8) * 2 - 1, None, s, "eps", g)
    assert loss.shape == () and loss.dtype == torch.float32
    assert loss.item() == pytest.approx(1.0, abs=0.03)


def test_v_loss_of_a_zero_predictor_on_zero_images_is_mean_alpha_bar():
    # v = sqrt(ab) eps when x0 = 0, so E[v^2] = E_t[ab], which the uniform t sampling estimates.
    s, g = NoiseSchedule.create("cosine", 1000), torch.Generator().manual_seed(0)
    loss = training_loss(Constant(0.0), torch.zeros(4096, 1, 4, 4), None, s, "v", g)
    assert loss.item() == pytest.approx(s.alphas_cumprod.mean().item(), abs=0.03)


def test_loss_is_reproducible_from_the_generator():
    s, x0 = NoiseSchedule.create("linear", 100), torch.rand(8, 1, 4, 4)
    model = nn.Conv2d(1, 1, 3, padding=1)
    wrapped = lambda x, t, class_labels=None: model(x)  # noqa: E731

    def loss(seed):
        return training_loss(wrapped, x0, None, s, "eps", torch.Generator().manual_seed(seed)).item()

    assert loss(3) == loss(3) != loss(4)


def test_learned_variance_half_is_ignored_and_other_widths_rejected():
    s, g = NoiseSchedule.create("linear", 1000), torch.Generator().manual_seed(0)
    x0 = torch.zeros(256, 2, 4, 4)

    class HalfHuge(nn.Module):
        def forward(self, x, t, class_labels=None):
            return torch.cat([torch.zeros_like(x), torch.full_like(x, 1e6)], dim=1)  # (B, 2C, H, W)

    assert training_loss(HalfHuge(), x0, None, s, "eps", g).item() == pytest.approx(1.0, abs=0.05)
    with pytest.raises(ValueError, match="expected 2 or 4"):
        training_loss(Constant(0.0, factor=3), x0, None, s, "eps", g)


@pytest.mark.parametrize("p", [0.0, 0.5])
def test_class_dropout_replaces_labels_with_the_null_label(p):
    s, g, model = NoiseSchedule.create("linear", 100), torch.Generator().manual_seed(0), Constant(num_classes=10)
    labels = torch.arange(1000) % 10
    training_loss(model, torch.zeros(1000, 1, 2, 2), labels, s, "eps", g, class_dropout=p)
    seen = model.labels[0]
    dropped = seen == NULL_LABEL
    assert torch.equal(seen[~dropped], labels[~dropped])
    assert dropped.float().mean().item() == pytest.approx(p, abs=0.05)


# --------------------------------------------------------------------------- samplers


def test_sample_timesteps_respace_the_schedule():
    assert sample_timesteps(10, None) == list(range(9, -1, -1))
    assert sample_timesteps(10, 50, "leading") == list(range(9, -1, -1))
    ts = sample_timesteps(1000, 50)
    assert len(ts) == 50 and ts[0] == 999 and ts[-1] == 0 and ts == sorted(ts, reverse=True)
    assert sample_timesteps(1000, 50, "leading") == list(range(980, -1, -20))
    assert sample_timesteps(10, 4, "leading") == [7, 5, 2, 0]


def test_ddpm_step_equals_the_posterior_mean_step():
    # eta = 1 over consecutive timesteps must be DDPM's q(x_{t-1} | x_t, x0) step.
    s, g = NoiseSchedule.create("linear", 1000), torch.Generator().manual_seed(0)
    x_t, pred, z = (torch.randn(4, 1, 4, 4, generator=g) for _ in range(3))
    t = 300
    ab, ab_prev, beta = s.alphas_cumprod[t], s.alphas_cumprod[t - 1], s.betas[t]
    x0 = to_x0(pred, x_t, ab, "eps").clamp(-1, 1)
    mean = ab_prev.sqrt() * beta / (1 - ab) * x0 + (1 - beta).sqrt() * (1 - ab_prev) / (1 - ab) * x_t
    var = beta * (1 - ab_prev) / (1 - ab)
    got = sampler_step(x_t, pred, ab, ab_prev, 1.0, "eps", z)
    assert torch.allclose(got, mean + var.sqrt() * z, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_samplers_draw_the_data_distribution_with_an_exact_denoiser(kind, prediction, sampler):
    # For Gaussian data the exact denoiser is known; both samplers must reproduce mean and std
    # (up to their discretisation bias, which shrinks with steps: DDIM's std is 9% low at 50 steps).
    s = NoiseSchedule.create(kind, 1000)
    model = GaussianOracle(s, mean=0.2, std=0.3, prediction=prediction)
    g, shape = torch.Generator().manual_seed(0), (512, 1, 4, 4)
    if sampler == "ddpm":
        x = ddpm_sample(model, shape, s, steps=None, generator=g, prediction=prediction)
    else:
        x = ddim_sample(model, shape, s, steps=250, generator=g, prediction=prediction)
    assert x.shape == shape and torch.isfinite(x).all() and x.abs().max() <= 1
    assert x.mean().item() == pytest.approx(0.2, abs=0.02)
    assert x.std().item() == pytest.approx(0.3, rel=0.03)


def test_guidance_mixes_conditional_and_null_predictions():
    s, g = NoiseSchedule.create("linear", 20), torch.Generator().manual_seed(0)
    model = Constant(0.0, num_classes=3)
    labels = torch.tensor([0, 1, 2, 0])
    x = ddim_sample(model, (4, 1, 2, 2), s, steps=3, generator=g, labels=labels, guidance_scale=2.0)
    assert x.shape == (4, 1, 2, 2)
    # One batched forward per step: conditional half, then null half.
    assert all(torch.equal(seen, torch.cat([labels, torch.full_like(labels, NULL_LABEL)])) for seen in model.labels)
    assert len(model.labels) == 3


# --------------------------------------------------------------------------- sample grid


def test_grid_size_padding_and_pixel_mapping():
    images = torch.stack([torch.full((3, 4, 5), v) for v in (-1.0, 0.0, 1.0)])  # (3, 3, 4, 5)
    grid = make_grid(images, rows=2, cols=2, scale=1)
    assert grid.size == (2 * (5 + 1) + 1, 2 * (4 + 1) + 1) and grid.mode == "RGB"
    px = grid.load()
    assert px[0, 0] == (0, 0, 0)                                        # padding
    assert px[1, 1] == (0, 0, 0) and px[7, 1] == (128, 128, 128) and px[1, 6] == (255, 255, 255)
    assert px[7, 6] == (0, 0, 0)                                        # the empty fourth cell
    with pytest.raises(ValueError, match="2-channel"):
        make_grid(torch.zeros(1, 2, 4, 4), 1, 1)


@pytest.mark.parametrize("sampler", [DDPMSampler(steps=5), DDIMSampler(steps=5)])
def test_save_sample_grid_writes_a_png_of_the_expected_size(tmp_path, sampler):
    model = GaussianOracle(NoiseSchedule.create("linear", 50), 0.0, 0.5)
    model.train()
    cfg = SampleConfig(sampler=sampler, rows=3, cols=4)
    settings = resolve_run_settings(TrainConfig(schedule="linear", num_timesteps=50), "cpu")
    path = save_sample_grid(model, tmp_path / "s" / "samples.png", cfg, settings, image_shape=(1, 6, 6))
    with Image.open(path) as im:
        assert im.size == (4 * 67 + 1, 3 * 67 + 1) and im.mode == "L"  # 6x6 cells enlarged x11 to 66 px
    assert model.training  # mode restored


def test_class_conditional_grid_draws_class_i_mod_num_classes(tmp_path):
    model = Constant(0.0, num_classes=3)
    cfg = SampleConfig(sampler=DDIMSampler(steps=2), rows=2, cols=3)
    settings = resolve_run_settings(TrainConfig(schedule="linear", num_timesteps=10), "cpu")
    save_sample_grid(model, tmp_path / "g.png", cfg, settings, (1, 2, 2))
    assert torch.equal(model.labels[0], torch.tensor([0, 1, 2, 0, 1, 2]))


def test_sampler_options_parse_by_kind():
    assert SampleConfig(sampler={"kind": "ddim"}).sampler == DDIMSampler(steps=50, eta=0.0)
    assert SampleConfig().sampler == DDPMSampler(steps=100)
    assert SampleConfig(sampler={"kind": "ddpm", "steps": None}).sampler.steps is None  # all T
    with pytest.raises(ValueError, match="eta"):
        SampleConfig(sampler={"kind": "ddpm", "eta": 0.5})  # eta belongs to ddim only
