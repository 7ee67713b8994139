"""EDM-SongUNet's knobs (DDPM++ / NCSN++): FIR resampling, stem_width, resample_projection, the
progressive paths (encoder_type, decoder_type) and augmentation labels; their planner rules and
export refusals. EDM's own network is compared in benchmarks/vs_edm.py (never from the tests);
the presets' parameter counts are pinned in tests/test_nn.py."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from archsearch.errors import ConfigErrors
from archsearch.export.diffusers import diffusers_config
from archsearch.nn import build_unet
from archsearch.nn.song import FIRResample
from archsearch.plan import plan_unet
from archsearch.schema import unet_config_from_dict
from archsearch.schema.loading import deep_merge

# --------------------------------------------------------------------------- FIR resampling


def naive_down(x: torch.Tensor, taps: list[int]) -> torch.Tensor:
    """out[i, j] = sum_ab f_a f_b / S^2 * x_padded[2i + a, 2j + b], zero padding (len - 1) // 2."""
    k, p, s = len(taps), (len(taps) - 1) // 2, sum(taps)
    b, c, h, w = x.shape
    xp = torch.zeros(b, c, h + 2 * p, w + 2 * p, dtype=torch.float64)
    xp[:, :, p:p + h, p:p + w] = x
    out = torch.zeros(b, c, h // 2, w // 2, dtype=torch.float64)
    for i in range(h // 2):
        for j in range(w // 2):
            for a in range(k):
                for bb in range(k):
                    out[:, :, i, j] += taps[a] * taps[bb] / s**2 * xp[:, :, 2 * i + a, 2 * j + bb]
    return out


def naive_up(x: torch.Tensor, taps: list[int]) -> torch.Tensor:
    """Each input pixel spreads 4 f_a f_b / S^2 over a k x k patch at stride 2; the (2(n-1) + k)
    wide result is cropped by (len - 1) // 2 on each side."""
    k, p, s = len(taps), (len(taps) - 1) // 2, sum(taps)
    b, c, h, w = x.shape
    full = torch.zeros(b, c, 2 * (h - 1) + k, 2 * (w - 1) + k, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            for a in range(k):
                for bb in range(k):
                    full[:, :, 2 * i + a, 2 * j + bb] += 4 * taps[a] * taps[bb] / s**2 * x[:, :, i, j]
    return full[:, :, p:p + 2 * h, p:p + 2 * w]


@pytest.mark.parametrize("taps", [[1, 3, 3, 1], [1, 2, 1, 1], [1, 5, 10, 10, 5, 1]])
def test_fir_resampling_matches_a_naive_loop(taps):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 6)
    down, up = FIRResample(taps, "down")(x), FIRResample(taps, "up")(x)
    assert down.shape == (2, 3, 3, 3) and up.shape == (2, 3, 12, 12)
    assert torch.allclose(down.double(), naive_down(x.double(), taps), atol=1e-6)
    assert torch.allclose(up.double(), naive_up(x.double(), taps), atol=1e-6)


def test_fir_down_by_hand():
    # A single 1 at (1, 1) of a 4x4 image, [1, 3, 3, 1] / 8 per axis, padding 1: output (0, 0) reads
    # padded rows/columns 0..3, where the 1 sits at index 2 (tap 3): 3 * 3 / 64; output (0, 1)
    # reads columns 2..5, where it sits at index 0 (tap 1): 3 * 1 / 64.
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 1] = 1
    out = FIRResample([1, 3, 3, 1], "down")(x)[0, 0]
    assert torch.allclose(out, torch.tensor([[9, 3], [3, 1]]) / 64)


def test_fir_up_keeps_a_constant_image_constant_inside():
    x = torch.ones(1, 1, 4, 4)
    up = FIRResample([1, 3, 3, 1], "up")(x)[0, 0]
    assert torch.allclose(up[1:-1, 1:-1], torch.ones(6, 6))  # the border loses the padded zeros' share
    assert up[0, 0] < 1


@pytest.mark.parametrize("taps", [[1, 1], [2, 2]])
def test_a_box_filter_is_exactly_avg_pool_and_nearest(taps):
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(FIRResample(taps, "down")(x), F.avg_pool2d(x, 2))
    assert torch.equal(FIRResample(taps, "up")(x), F.interpolate(x, scale_factor=2.0, mode="nearest"))
    assert not list(FIRResample(taps, "down").buffers())  # the fast path holds no filter


def test_res_block_resampling_uses_the_filter_on_both_paths():
    from archsearch.nn.layers import ResBlock

    torch.manual_seed(0)
    block = ResBlock(4, 4, 8, norm=lambda c: torch.nn.GroupNorm(2, c), resample="down", resample_filter=(1, 3, 3, 1),
                     zero_init=False)
    x = torch.randn(2, 4, 8, 8)
    # With the residual branch's last conv zeroed, the block is its shortcut: the filtered input.
    torch.nn.init.zeros_(block.conv2.weight), torch.nn.init.zeros_(block.conv2.bias)
    out = block(x, torch.randn(2, 8))
    assert torch.allclose(out.double(), naive_down(x.double(), [1, 3, 3, 1]), atol=1e-6)


# --------------------------------------------------------------------------- the network

BASE = {
    "image_size": 16,
    "levels": [{"width": 16, "blocks": 1}, {"width": 32, "blocks": 1, "attention": True}, {"width": 32, "blocks": 1}],
    "middle": {"blocks": 1, "attention": False},
    "block": {"norm": {"groups": 4}, "dropout": 0.0},
    "down": {"kind": "resblock"},
    "up": {"kind": "resblock"},
    "zero_init": False,
}


def build(extra: dict):
    return build_unet(unet_config_from_dict(deep_merge(BASE, extra)))


@pytest.mark.parametrize("encoder,decoder,taps", list(itertools.product(
    ["standard", "skip", "residual"], ["standard", "skip"], [[1, 1], [1, 3, 3, 1]])))
def test_every_progressive_path_builds_and_trains(encoder, decoder, taps):
    torch.manual_seed(0)
    model = build({"encoder_type": encoder, "decoder_type": decoder, "resample_filter": taps, "learn_sigma": True})
    out = model(torch.randn(2, 3, 16, 16), torch.tensor([3.0, 700.0]))
    assert out.shape == (2, 6, 16, 16) and torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    names = {n.rsplit(".", 1)[0] for n, _ in model.named_parameters()}
    assert ({"encoder_aux.1.conv", "encoder_aux.2.conv"} <= names) == (encoder != "standard")
    assert ({"decoder_aux.1.conv", "decoder_aux.2.conv"} <= names) == (decoder == "skip")
    assert "decoder_aux.0.conv" not in names  # level 0's head is `head`


@pytest.mark.parametrize("head,kernel", [("norm_act_conv3x3", 3), ("conv3x3", 3), ("conv1x1", 1)])
def test_the_decoder_paths_heads_are_built_like_the_head(head, kernel):
    model = build({"decoder_type": "skip", "head": head})
    aux = model.decoder_aux["1"]
    assert aux.conv.kernel_size == (kernel, kernel) and type(aux.norm) is type(model.head.norm)
    out = model(torch.randn(2, 3, 16, 16), torch.tensor([3.0, 700.0]))
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def widths(model, prefix: str) -> list[tuple[int, ...]]:
    return [tuple(p.shape) for n, p in model.named_parameters() if n.startswith(prefix) and n.endswith("conv.weight")]


def test_the_progressive_paths_have_the_widths_edm_gives_them():
    # skip: the image (3 channels) through a 1x1 conv at each level; residual: a 3x3 conv from the
    # previous level's input (the image, then h); decoder skip: a head per level to the output.
    assert widths(build({"encoder_type": "skip"}), "encoder_aux") == [(16, 3, 1, 1), (32, 3, 1, 1)]
    assert widths(build({"encoder_type": "residual"}), "encoder_aux") == [(16, 3, 3, 3), (32, 16, 3, 3)]
    assert widths(build({"decoder_type": "skip"}), "decoder_aux") == [(3, 32, 3, 3), (3, 32, 3, 3)]


def test_a_zeroed_progressive_path_is_the_standard_network():
    torch.manual_seed(0)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([3.0, 700.0])
    standard = build({"resample_filter": [1, 3, 3, 1]}).eval()
    for extra in ({"encoder_type": "skip"}, {"decoder_type": "skip"}):
        model = build({"resample_filter": [1, 3, 3, 1], **extra}).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "_aux." in name:
                    p.zero_()
        rest = {k: v for k, v in model.state_dict().items() if "_aux." not in k}
        standard.load_state_dict(rest, strict=True)
        with torch.no_grad():
            assert torch.allclose(model(x, t), standard(x, t), atol=1e-6)
            aux = model.encoder_aux if model.encoder_aux is not None else model.decoder_aux
            aux["1"].conv.bias.fill_(1.0)
            assert not torch.allclose(model(x, t), standard(x, t), atol=1e-3)  # and the path is used


@pytest.mark.parametrize("encoder", ["skip", "residual"])
def test_the_progressive_input_replaces_the_skip_tapped_after_the_downsample(encoder):
    # EDM: `x = skips[-1] = ...`. Level 2's skips are [its downsample's output, block 0's output];
    # decoder block 1 of level 2 joins the first, which must be the path's sum, not the bare
    # downsample output.
    torch.manual_seed(0)
    model = build({"encoder_type": encoder}).eval()
    seen = {}

    def keep(name, pick):
        def hook(module, *args):
            seen[name] = pick(*args)  # returns None: a hook's return value would replace the output
        return hook

    model.encoder_aux["2"].register_forward_hook(keep("sum", lambda args, out: out[0]))
    model.decoder[2].blocks[1].register_forward_pre_hook(keep("joined", lambda args: args[0]))
    model.encoder[1].resample.register_forward_hook(keep("down", lambda args, out: out))
    with torch.no_grad():
        model(torch.randn(1, 3, 16, 16), torch.tensor([5.0]))
    skip = seen["joined"][:, -32:]  # concat: [h, skip]
    assert torch.equal(skip, seen["sum"])
    assert not torch.allclose(skip, seen["down"])


def test_stem_width_sets_the_stem_and_the_first_skip():
    plan = plan_unet(unet_config_from_dict(deep_merge(BASE, {"stem_width": 8})))
    assert plan.stem_channels == 8 and plan.levels[0].taps[0] == 8
    assert plan.levels[0].encoder[0].in_channels == 8
    model = build({"stem_width": 8})
    assert model.stem.weight.shape == (8, 3, 3, 3)
    assert model.encoder[0].blocks[0].shortcut.weight.shape == (16, 8, 1, 1)  # 8 -> 16 needs a projection
    assert model.decoder[0].blocks[-1].conv1.weight.shape[1] == 16 + 8  # joined by the stem's skip


def test_resample_projection_adds_a_shortcut_conv_to_resampling_blocks_only():
    plain, projected = build({}), build({"block": {"resample_projection": True}})
    assert isinstance(plain.encoder[0].resample.shortcut, torch.nn.Identity)
    assert projected.encoder[0].resample.shortcut.weight.shape == (16, 16, 1, 1)
    assert projected.decoder[1].resample.shortcut.weight.shape == (32, 32, 1, 1)
    assert isinstance(projected.middle.blocks[0].shortcut, torch.nn.Identity)  # no resampling: no projection
    n = sum(p.numel() for p in projected.parameters()) - sum(p.numel() for p in plain.parameters())
    assert n == (16 * 16 + 16) + (32 * 32 + 32) + 2 * (32 * 32 + 32)  # 2 downsamples, 2 upsamples


def test_augment_labels_enter_the_raw_encoding_and_none_adds_nothing():
    torch.manual_seed(0)
    model = build({"embedding": {"augment_dim": 9}}).eval()
    assert model.embedding.augment.weight.shape == (16, 9) and model.embedding.augment.bias is None
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([3.0, 700.0])
    with torch.no_grad():
        none = model(x, t)
        assert torch.equal(model(x, t, augment_labels=torch.zeros(2, 9)), none)  # bias-free: zero labels add 0
        assert not torch.allclose(model(x, t, None, torch.randn(2, 9)), none)
    model(x, t, augment_labels=torch.randn(2, 9)).square().mean().backward()
    assert model.embedding.augment.weight.grad is not None


def test_class_labels_by_linear_enter_the_raw_encoding_as_edm_s_map_label():
    torch.manual_seed(0)
    model = build({"num_classes": 5, "embedding": {"class_input": "linear"}}).eval()
    assert model.embedding.classes is None  # no ADM table
    linear = model.embedding.class_linear
    assert linear.weight.shape == (16, 5) and linear.bias is not None  # classes -> the raw encoding (16 wide)
    x, t = torch.randn(3, 3, 16, 16), torch.tensor([3.0, 700.0, 50.0])
    enc = model.embedding.encoding(t)
    seen = {}
    model.embedding.mlp.register_forward_hook(lambda m, args, out: seen.update(inp=args[0]))
    with torch.no_grad():
        out = model(x, t, torch.tensor([4, -1, 0]))
        expected = enc + linear.bias
        expected[0] += linear.weight[:, 4] * 5 ** 0.5  # one-hot times sqrt(num_classes); -1 is the zero vector
        expected[2] += linear.weight[:, 0] * 5 ** 0.5
        assert torch.allclose(seen["inp"], expected, atol=1e-6)
        assert torch.equal(model(x, t, None), model(x, t, torch.tensor([-1, -1, -1])))  # no labels: zeros, as EDM
    assert not torch.allclose(out, model(x, t, torch.tensor([3, -1, 0])))


def test_edm_s_conditional_cifar10_counts_as_edm_s_own():
    # EDM's SongUNet, DDPM++ with label_dim=10 and augment_dim=9 (train.py --cond=1 --augment), counted by
    # benchmarks/edm_counts.py (benchmarks/data/edm_counts.json, NVlabs/edm 008a4e5): 55,735,299; with
    # EDM's randomized weights copied in, benchmarks/vs_edm.py measures its outputs equal to 1.3e-6.
    from archsearch.schema import preset_dict

    data = deep_merge(preset_dict("edm-ddpmpp-cifar10"),
                      {"num_classes": 10, "embedding": {"class_input": "linear", "augment_dim": 9}})
    with torch.device("meta"):
        model = build_unet(unet_config_from_dict(data))
    assert sum(p.numel() for p in model.parameters()) == 55_735_299


@pytest.mark.parametrize("preset,labels,count", [
    ("edm-ddpmpp-cifar10", 0, 61_805_571), ("edm-ddpmpp-cifar10", 10, 61_806_979),
    ("edm-ncsnpp-cifar10", 0, 62_761_091), ("edm-ncsnpp-cifar10", 10, 62_763_907),
])
def test_edm_s_ffhq64_networks_are_the_cifar10_presets_at_64_pixels(preset, labels, count):
    # EDM's SongUNet at train.py's FFHQ / AFHQv2 settings (--cres=1,2,2,2 --augment, and --cond=1 with
    # 10 labels), counted by benchmarks/edm_counts.py (NVlabs/edm 008a4e5). NCSN++'s encoding stays
    # model_channels x 2 = 256 wide, which the preset leaves to the first level's width: written here.
    from archsearch.schema import preset_dict

    over = {"image_size": 64, "compact": {"multipliers": [1, 2, 2, 2]}, "embedding": {"augment_dim": 9}}
    if "ncsnpp" in preset:
        over["embedding"]["dim"] = 256
    if labels:
        over = deep_merge(over, {"num_classes": labels, "embedding": {"class_input": "linear"}})
    with torch.device("meta"):
        model = build_unet(unet_config_from_dict(deep_merge(preset_dict(preset), over)))
    assert sum(p.numel() for p in model.parameters()) == count


def test_the_knob_test_picks_the_new_literals_up():
    from test_nn import KNOBS

    values = {(p, v) for p, v in KNOBS if not isinstance(v, dict)}
    assert {("encoder_type", "skip"), ("encoder_type", "residual"), ("decoder_type", "skip"),
            ("block.resample_projection", True)} <= values


# --------------------------------------------------------------------------- planner rules


def errors_of(extra: dict) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        plan_unet(unet_config_from_dict(deep_merge(BASE, extra)))
    return info.value.lines()


@pytest.mark.parametrize("extra,expected", [
    ({"stem": "none", "stem_width": 8, "in_channels": 4}, "stem_width: 8, but stem is none; set stem: conv3x3"),
    ({"down": {"kind": "conv"}, "up": {"kind": "nearest_conv"}, "block": {"resample_projection": True}},
     "block.resample_projection: true, but no res block resamples; set down.kind or up.kind to resblock"),
    ({"resample_filter": [1, 2, 1]}, "resample_filter: [1, 2, 1] has 3 taps; resampling by 2 needs an even number"),
    ({"down": {"kind": "conv"}, "up": {"kind": "nearest_conv"}, "resample_filter": [1, 3, 3, 1]},
     "resample_filter: [1, 3, 3, 1], but nothing here resamples with it"),
    ({"encoder_type": "skip", "skip": {"taps": "level"}, "levels": [{"width": 16}, {"width": 32}, {"width": 32}]},
     "encoder_type: skip updates the skip tapped after each downsample (EDM), which skip.taps: level does not tap"),
    ({"encoder_type": "residual", "levels": [{"width": 16}]}, "encoder_type: residual needs at least 2 levels"),
    ({"decoder_type": "skip", "levels": [{"width": 16}]}, "decoder_type: skip needs at least 2 levels"),
    ({"embedding": {"class_input": "linear"}}, "embedding.class_input: linear, but the network has no classes"),
])
def test_planner_rules_name_the_field_and_the_fix(extra, expected):
    lines = errors_of(extra)
    assert any(line.startswith(expected) for line in lines), lines


def test_a_filter_used_only_by_a_progressive_path_is_accepted():
    plan_unet(unet_config_from_dict(deep_merge(BASE, {"down": {"kind": "conv"}, "up": {"kind": "nearest_conv"},
                                                      "resample_filter": [1, 3, 3, 1], "decoder_type": "skip"})))


def test_the_filter_is_bounded():
    with pytest.raises(ConfigErrors):
        unet_config_from_dict(deep_merge(BASE, {"resample_filter": [1] * 10}))
    with pytest.raises(ConfigErrors):
        unet_config_from_dict(deep_merge(BASE, {"resample_filter": [1, 0]}))


# --------------------------------------------------------------------------- export refusals

EXPORTABLE = {"image_size": 16, "levels": [{"width": 64, "blocks": 1}, {"width": 128, "blocks": 1, "attention": True}]}
RESBLOCKS = {"down": {"kind": "resblock"}, "up": {"kind": "resblock"}}


@pytest.mark.parametrize("override,path", [
    ({"stem_width": 32}, "stem_width"),
    ({**RESBLOCKS, "resample_filter": [1, 3, 3, 1]}, "resample_filter"),
    ({**RESBLOCKS, "block": {"resample_projection": True}}, "block.resample_projection"),
    ({"encoder_type": "skip"}, "encoder_type"),
    ({"encoder_type": "residual"}, "encoder_type"),
    ({"decoder_type": "skip"}, "decoder_type"),
    ({"embedding": {"augment_dim": 9}}, "embedding.augment_dim"),
    ({"num_classes": 10, "embedding": {"class_input": "linear"}}, "embedding.class_input"),
])
def test_the_exporter_refuses_each_songunet_knob(override, path):
    diffusers_config(unet_config_from_dict({**EXPORTABLE, **RESBLOCKS}))  # the base exports
    with pytest.raises(ConfigErrors) as info:
        diffusers_config(unet_config_from_dict({**EXPORTABLE, **override}))
    assert [e.path for e in info.value.errors] == [path]


def test_a_stem_width_equal_to_the_first_width_exports():
    assert diffusers_config(unet_config_from_dict({**EXPORTABLE, "stem_width": 64}))["block_out_channels"] == [64, 128]


def test_build_names_the_songunet_and_mp_settings_the_level_table_does_not_show():
    from archsearch.report.network import design_summary
    from archsearch.schema import preset_dict

    def summary(name: str, over: dict | None = None):
        return design_summary(plan_unet(unet_config_from_dict(deep_merge(preset_dict(name), over or {}))))

    assert summary("edm-ncsnpp-cifar10") == ("design: stem 128 channels, resample filter [1, 3, 3, 1], "
                                             "progressive input: residual")
    assert summary("edm-ddpmpp-cifar10", {"num_classes": 10, "decoder_type": "skip",
                                          "embedding": {"class_input": "linear", "augment_dim": 9}}) == (
        "design: stem 128 channels, progressive output: skip, classes: linear into the encoding, augment labels: 9")
    assert summary("edm2-img64-s") == "design: mp blocks (EDM2, magnitude preserving)"
    assert summary("ddpm-cifar10") is None and summary("adm-imagenet64") is None
