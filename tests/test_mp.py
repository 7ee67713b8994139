"""EDM2's magnitude-preserving family (`block.kind: mp`): each primitive keeps unit magnitudes
on random inputs, forced weight normalization rewrites weights only in training, the network
builds and trains with either skip kind, and the planner and exporter refuse what makes no sense."""

import math

import pytest
import torch

from archsearch.errors import ConfigErrors
from archsearch.export.diffusers import diffusers_config
from archsearch.nn import build_unet
from archsearch.nn.mp import MPConv, MPFourier, clip, mp_cat, mp_silu, mp_sum, normalize_weight, pixel_norm
from archsearch.nn.mp_unet import MPBlock
from archsearch.schema import preset_dict, unet_config_from_dict
from archsearch.schema.loading import deep_merge

# The smallest network that switches every mp part on: attention in both levels and the middle,
# res-block resampling, classes, MP Fourier features.
MP_SMALL = {
    "image_size": 16,
    "in_channels": 3,
    "num_classes": 5,
    "levels": [{"width": 16, "blocks": 1, "attention": True}, {"width": 32, "blocks": 1, "attention": True}],
    "middle": {"blocks": 2, "attention": True},
    "block": {"kind": "mp"},
    "head": "conv3x3",
    "down": {"kind": "resblock"},
    "up": {"kind": "resblock"},
    "attention": {"head_channels": 8, "qkv_bias": False},
    "embedding": {"encoding": {"kind": "mp_fourier"}},
}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def normal(*shape, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=gen(seed))


def rms(x: torch.Tensor) -> float:
    return float(x.square().mean().sqrt())


# --------------------------------------------------------------------------- primitives


@pytest.mark.parametrize("t", [0.0, 0.3, 0.5, 0.8, 1.0])
def test_mp_sum_of_unit_variance_inputs_has_unit_variance(t):
    a, b = normal(1 << 20, seed=1), normal(1 << 20, seed=2)
    out = mp_sum(a, b, t)
    assert torch.allclose(out, ((1 - t) * a + t * b) / math.sqrt((1 - t) ** 2 + t ** 2), atol=1e-6)
    assert abs(rms(out) - 1) < 0.01


@pytest.mark.parametrize("t", [0.2, 0.5, 0.7])
def test_mp_cat_keeps_unit_magnitude_and_weights_its_parts(t):
    a, b = normal(64, 16, 8, 8, seed=1), normal(64, 48, 8, 8, seed=2)  # unequal widths
    out = mp_cat(a, b, t)
    assert out.shape == (64, 64, 8, 8)
    assert abs(rms(out) - 1) < 0.01
    # the parts' shares of the energy are (1-t)^2 : t^2, whatever their widths
    share = out[:, :16].square().sum() / out.square().sum()
    assert abs(float(share) - (1 - t) ** 2 / ((1 - t) ** 2 + t ** 2)) < 0.01


def test_normalized_weights_have_unit_rms_per_output_and_mp_weights_unit_norm():
    w = 7.0 * normal(32, 16, 3, 3)  # any scale: only the direction survives
    per_output = normalize_weight(w).flatten(1).norm(dim=1)
    assert torch.allclose(per_output, torch.full((32,), math.sqrt(16 * 9)), rtol=1e-4)
    conv = MPConv(16, 32, 3)
    with torch.no_grad():
        conv.weight.copy_(w)
    # (1 - 1e-4: training mode normalizes the stored weight, then the forward pass again, eps each time)
    assert torch.allclose(conv.effective_weight().flatten(1).norm(dim=1), torch.ones(32), rtol=2e-4)
    assert torch.allclose(conv.effective_weight(gain=2.5).flatten(1).norm(dim=1), torch.full((32,), 2.5), rtol=2e-4)
    # EDM2's eps is added to the RMS: an all-zero row stays zero instead of dividing by zero
    assert normalize_weight(torch.zeros(2, 4)).abs().max() == 0


@pytest.mark.parametrize("kernel", [0, 1, 3])
def test_an_mp_layer_of_unit_variance_input_has_about_unit_variance(kernel):
    torch.manual_seed(0)
    layer = MPConv(256, 256, kernel)
    with torch.no_grad():
        if kernel:
            out = layer(normal(4, 256, 16, 16, seed=1))[:, :, 1:-1, 1:-1]  # inside the zero padding
        else:
            out = layer(normal(4096, 256, seed=1))
    assert abs(out.var().item() - 1) < 0.05
    assert not any(name.endswith("bias") for name, _ in layer.named_parameters())


def test_mp_silu_of_standard_normal_has_unit_second_moment():
    assert abs(float(mp_silu(normal(1 << 20)).square().mean()) - 1) < 0.01


def test_pixel_norm_gives_unit_rms_over_the_channels():
    x = normal(2, 8, 4, 4) * torch.arange(1.0, 9.0).view(1, 8, 1, 1)
    per_pixel = pixel_norm(x, dim=1).square().mean(dim=1).sqrt()
    assert torch.allclose(per_pixel, torch.ones_like(per_pixel), atol=1e-3)


def test_mp_fourier_features_have_unit_rms():
    torch.manual_seed(0)
    features = MPFourier(4096, bandwidth=1.0)(torch.linspace(-3, 3, 64))
    assert features.shape == (64, 4096)
    assert abs(rms(features) - 1) < 0.02
    assert not list(MPFourier(8).parameters())  # frequencies and phases are buffers


def test_clip_clamps_and_none_leaves_activations_alone():
    x = torch.tensor([-300.0, -1.0, 0.5, 1000.0])
    assert clip(x, 256).tolist() == [-256.0, -1.0, 0.5, 256.0]
    assert clip(x, None) is x
    block = MPBlock(8, 8, 4, clip_value=0.1, zero_init=False).eval()
    with torch.no_grad():
        assert block(10 * normal(2, 8, 4, 4), normal(2, 4)).abs().max() <= 0.1


def test_forced_weight_normalization_rewrites_the_stored_weight_only_in_training():
    torch.manual_seed(0)
    conv = MPConv(8, 4, 3)
    with torch.no_grad():
        conv.weight.mul_(5.0)
    raw = conv.weight.detach().clone()
    x = normal(2, 8, 6, 6)
    conv.eval()
    out_eval = conv(x)
    assert torch.equal(conv.weight, raw)
    conv.train()
    out_train = conv(x)
    assert torch.allclose(conv.weight, normalize_weight(raw))
    assert torch.allclose(out_train, out_eval, rtol=2e-4, atol=1e-6)  # idempotent up to eps: the same function
    loose = MPConv(8, 4, 3, forced=False).train()
    before = loose.weight.detach().clone()
    loose(x)
    assert torch.equal(loose.weight, before)


# --------------------------------------------------------------------------- the network


def build(extra: dict | None = None):
    return build_unet(unet_config_from_dict(deep_merge(MP_SMALL, extra or {})))


@pytest.mark.parametrize("extra", [
    {},
    {"skip": {"combine": "add", "project": True}},  # widths 16 and 32: projected and plain add-skips
    {"skip": {"combine": "add"}, "levels": [{"width": 16, "blocks": 1, "attention": True}, {"width": 16, "blocks": 1}]},
    {"skip": {"taps": "level"}, "down": {"kind": "avgpool"}, "up": {"kind": "nearest"}},
    {"middle": {"blocks": 1, "downsample": True}, "head": "conv1x1", "attention": {"qkv_order": "legacy"}},
    {"block": {"dropout": 0.2, "clip": None, "pixel_norm": False, "qkv_pixel_norm": False, "input_ones": False,
               "forced_weight_norm": False}, "learn_sigma": True},
    {"embedding": {"encoding": {"kind": "sinusoidal"}}, "num_classes": None, "zero_init": False},
], ids=["concat", "add-projected", "add", "level-taps-pool", "middle-down", "toggles", "sinusoidal"])
def test_a_small_mp_unet_trains(extra):
    torch.manual_seed(0)
    model = build(extra).train()
    cfg = model.config
    x = normal(2, 3, 16, 16)
    labels = torch.tensor([1, -1]) if cfg.num_classes else None
    out = model(x, torch.tensor([3.0, 700.0]), labels)
    assert out.shape == (2, 3 * (2 if cfg.learn_sigma else 1), 16, 16)
    (out - normal(*out.shape, seed=5)).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert not [name for name, _ in model.named_parameters() if name.endswith(".bias")]


def test_the_mp_unet_starts_at_zero_and_its_blocks_keep_unit_magnitude():
    torch.manual_seed(0)
    model = build().eval()
    seen = {}
    for name, module in model.named_modules():
        if isinstance(module, MPBlock):
            module.register_forward_hook(lambda m, i, o, name=name: seen.update({name: rms(o)}))
    with torch.no_grad():
        out = model(normal(4, 3, 16, 16), torch.tensor([1.0, 10.0, 100.0, 900.0]), torch.tensor([0, 1, 2, -1]))
    assert out.abs().max() == 0  # the head's gain starts at zero
    assert len(seen) == 10 and all(0.5 < v < 2 for v in seen.values()), seen


def test_labels_change_the_output_and_a_negative_label_is_no_label():
    torch.manual_seed(0)
    model = build({"zero_init": False}).eval()
    x, t = normal(2, 3, 16, 16), torch.tensor([10.0, 500.0])
    with torch.no_grad():
        a, b = model(x, t, torch.tensor([0, 1])), model(x, t, torch.tensor([2, 3]))
        assert not torch.allclose(a, b)
        assert torch.equal(model(x, t, torch.tensor([-1, -1])), model(x, t, None))


def test_the_state_dict_reads_like_the_architecture():
    keys = set(build().state_dict())
    for key in ("stem.weight", "embedding.noise.weight", "embedding.classes.weight", "embedding.encoding.freqs",
                "encoder.0.blocks.0.conv1.weight", "encoder.0.blocks.0.emb_gain", "encoder.1.blocks.0.shortcut.weight",
                "encoder.0.resample.conv2.weight", "encoder.0.attentions.0.qkv.weight", "middle.attentions.0.proj.weight",
                "decoder.1.resample.emb_proj.weight", "head.conv.weight", "head.gain"):
        assert key in keys, key


def test_per_level_dropout_and_fir_resampling_reach_the_mp_blocks():
    config = unet_config_from_dict(deep_merge(MP_SMALL, {
        "levels": [{"width": 16, "blocks": 1, "dropout": 0.0}, {"width": 32, "blocks": 1, "attention": True, "dropout": 0.3}],
        "resample_filter": [1, 3, 3, 1], "stem_width": 8}))
    model = build_unet(config)
    rates = {name: m.p for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    assert rates and all(name.startswith(("encoder.1.", "decoder.1.")) for name in rates)
    assert set(rates.values()) == {0.3}
    assert model.stem.weight.shape[0] == 8
    down = model.encoder[0].resample.resample
    assert not down.box and down.kernel.shape[-1] == 4  # the [1, 3, 3, 1] filter, not EDM2's [1, 1]
    x = torch.randn(2, 3, 16, 16)
    out = model(x, torch.tensor([10.0, 500.0]), torch.tensor([0, 3]))
    assert out.shape == x.shape


# --------------------------------------------------------------------------- rules


def errors_of(data: dict) -> list[str]:
    with pytest.raises(ConfigErrors) as exc:
        unet_config_from_dict(deep_merge(MP_SMALL, data))
    return exc.value.lines()


@pytest.mark.parametrize("override,start", [
    ({"head": "norm_act_conv3x3"}, "head: norm_act_conv3x3 has a group norm"),
    ({"stem": "none"}, "stem: none: under block.kind: mp (EDM2)"),
    ({"down": {"kind": "conv"}}, "down.kind: conv is not magnitude preserving and has a bias"),
    ({"down": {"kind": "maxpool"}}, "down.kind: maxpool is not magnitude preserving; under block.kind: mp (EDM2) use resblock"),
    ({"up": {"kind": "nearest_conv"}}, "up.kind: nearest_conv has a biased conv"),
    ({"up": {"kind": "transposed"}}, "up.kind: transposed has a biased conv"),
    ({"attention": {"qkv_bias": True}}, "attention.qkv_bias: true: under block.kind: mp (EDM2) the qkv projection is a bias-free MP conv"),
    ({"embedding": {"hidden_dim": 64}}, "embedding.hidden_dim: under block.kind: mp (EDM2) the embedding is one MP linear"),
    ({"embedding": {"post_activation": True}}, "embedding.post_activation: true: under block.kind: mp (EDM2) the embedding always ends with mp_silu"),
    ({"skip": {"project": True}}, "skip.project: true, but concat skips are never projected"),
    ({"middle": {"kind": "transformer", "depth": 1}}, "middle.kind: transformer: its LayerNorms and biased linears"),
    ({"encoder_type": "residual"}, "encoder_type: residual: EDM-SongUNet's progressive paths are biased convs"),
    ({"decoder_type": "skip"}, "decoder_type: skip: EDM-SongUNet's progressive paths are biased convs"),
    ({"embedding": {"augment_dim": 9}}, "embedding.augment_dim: EDM's augmentation-label input is not built"),
    ({"embedding": {"class_input": "linear"}}, "embedding.class_input: linear: under block.kind: mp (EDM2) the class enters"),
])
def test_the_planner_rejects_what_mp_blocks_cannot_be(override, start):
    (line,) = errors_of(override)
    assert line.startswith(start), line


def test_under_mp_the_fields_it_needs_default_to_edm2_s_and_a_written_conflict_is_named():
    config = unet_config_from_dict({"image_size": 16, "levels": [{"width": 16}, {"width": 32, "attention": True}],
                                    "block": {"kind": "mp"}, "attention": {"head_channels": 8}})
    assert (config.head, config.down.kind, config.up.kind, config.attention.qkv_bias) == ("conv3x3", "resblock", "resblock", False)
    assert config.attention.head_channels == 8  # the rest of a written section stays
    assert unet_config_from_dict(config.model_dump(mode="json")) == config  # a dump says what is built
    resnet = unet_config_from_dict({"image_size": 16, "levels": [{"width": 32}, {"width": 64}]})
    assert (resnet.head, resnet.down.kind, resnet.attention.qkv_bias) == ("norm_act_conv3x3", "conv", True)
    lines = errors_of({"head": "norm_act_conv3x3", "attention": {"qkv_bias": True}})  # written: kept, and refused
    assert [line.split(":")[0] for line in lines] == ["head", "attention.qkv_bias"]


def test_a_resnet_field_under_mp_names_the_field_and_the_kind():
    assert errors_of({"block": {"kind": "mp", "norm": {"kind": "group", "groups": 8}}}) == [
        "block.norm: unknown field for kind 'mp' (check its spelling, or the kind; `archsearch schema` lists each kind's fields)"
    ]
    assert errors_of({"block": {"kind": "mp", "res_balance": 1.5}})[0].startswith("block.res_balance: ")


def test_an_unknown_field_of_any_other_kind_names_that_kind():
    with pytest.raises(ConfigErrors) as exc:
        unet_config_from_dict({"block": {"norm": {"kind": "none", "groups": 8}}})
    assert exc.value.lines() == ["block.norm.groups: unknown field for kind 'none' (check its spelling, or the kind; "
                                 "`archsearch schema` lists each kind's fields)"]


def test_the_json_schema_tells_the_block_kinds_apart():
    jsonschema = pytest.importorskip("jsonschema")
    from archsearch.schema.files import json_schema

    validator = jsonschema.Draft202012Validator(json_schema("unet"))
    for ok in ({"block": {"dropout": 0.2}}, {"block": {"kind": "mp", "clip": None}}, {"base": "edm2-img64-s"}):
        validator.validate(ok)
    for bad in ({"block": {"kind": "mp", "norm": {"kind": "group"}}}, {"block": {"res_balance": 0.3}}):
        assert not validator.is_valid(bad), bad


def test_the_embedding_is_one_layer_to_the_widest_level():
    plan = build().plan
    assert (plan.embedding_dim, plan.embedding_hidden_dim, plan.embedding_out_dim) == (16, 0, 32)


def test_the_exporter_refuses_mp_networks():
    with pytest.raises(ConfigErrors) as exc:
        diffusers_config(unet_config_from_dict(preset_dict("edm2-img512-xs")), prefix="architecture")
    assert {e.path for e in exc.value.errors} == {"architecture.block.kind", "architecture.head",
                                                  "architecture.attention.qkv_bias", "architecture.embedding.encoding.kind"}


def test_archsearch_trains_an_mp_network_end_to_end_and_samples_from_its_checkpoint(tmp_path):
    import json

    import yaml
    from typer.testing import CliRunner

    from archsearch.cli import app

    arch = deep_merge(MP_SMALL, {"image_size": 8, "in_channels": 1, "num_classes": None,
                                 "levels": [{"width": 8, "blocks": 1}, {"width": 16, "blocks": 1, "attention": True}]})
    spec = {"study": {"name": "mp", "device": "cpu"}, "data": {"source": "digits", "image_size": 8},
            "train": {"steps": 3, "batch_size": 8, "warmup_steps": 0, "log_every": 1},
            "eval": {"num_images": 16, "timesteps": 5, "curve_points": 1},
            "measure": {"warmup_steps": 1, "repeats": 3, "latency_repeats": 3}, "architecture": arch}
    (tmp_path / "mp.yaml").write_text(yaml.safe_dump(spec))
    out, ckpt = tmp_path / "m.json", tmp_path / "m.pt"
    runner = CliRunner()
    result = runner.invoke(app, ["train", str(tmp_path / "mp.yaml"), "--out", str(out), "--checkpoint", str(ckpt)],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["outcome"] == "completed" and math.isfinite(metrics["val_loss"])
    assert metrics["params"] == sum(p.numel() for p in build_unet(unet_config_from_dict(arch)).parameters())
    result = runner.invoke(app, ["sample", str(ckpt), "--out", str(tmp_path / "g.png"), "--sampler", "ddim",
                                 "--steps", "3", "--rows", "2"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "g.png").exists()


@pytest.mark.parametrize("preset,width,count", [
    ("edm2-img512-xs", 192, 280_212_709), ("edm2-img512-xs", 256, 497_807_653), ("edm2-img512-xs", 320, 777_497_957),
    ("edm2-img512-xs", 384, 1_119_283_621), ("edm2-img512-xs", 448, 1_523_164_645),
    ("edm2-img64-s", 256, 497_803_045), ("edm2-img64-s", 320, 777_492_197), ("edm2-img64-s", 384, 1_119_276_709),
])
def test_edm2_s_wider_sizes_are_the_presets_at_another_base_width(preset, width, count):
    # EDM2's img512-s/m/l/xl/xxl and img64-m/l/xl U-Nets (train_edm2.py's presets), counted by
    # benchmarks/edm_counts.py (NVlabs/edm2 4bf8162) without Precond's logvar.
    with torch.device("meta"):
        model = build_unet(unet_config_from_dict(deep_merge(preset_dict(preset), {"compact": {"base_width": width}})))
    assert sum(p.numel() for p in model.parameters()) == count


def test_a_space_can_search_the_block_family_alone():
    """`block.kind: {choice: [resnet, mp]}`: under mp the fields it needs take EDM2's defaults, so
    every sample plans; a resnet-only field (the norm) is not asked for under mp."""
    from archsearch.schema.space import space_from_dict
    from archsearch.search.sampling import sample_configs

    space = space_from_dict({"architecture": {
        "levels": [{"width": 16}, {"width": 32, "attention": True}], "attention": {"head_channels": 8},
        "block": {"kind": {"choice": ["resnet", "mp"]}, "norm": {"groups": {"choice": [4, 8]}}}}})
    configs = sample_configs(space, 40, seed=0)
    assert {c.block.kind for c in configs} == {"resnet", "mp"}
    assert all(c.head == "conv3x3" and not c.attention.qkv_bias for c in configs if c.block.kind == "mp")
