"""The builder: every knob value of the schema builds, runs forward and backward, and uses
every module it creates; presets reproduce their reference parameter counts and outputs."""

from typing import Literal, get_args, get_origin

import pytest
import torch
from pydantic import BaseModel

from archsearch.nn import build_unet
from archsearch.schema import preset_dict, unet_config_from_dict
from archsearch.schema.loading import deep_merge
from archsearch.schema.space import _models_of, _unwrap
from archsearch.schema.unet import UNetConfig

# A small network that switches everything on, so each knob below changes something.
SMALL = {
    "image_size": 16,
    "in_channels": 3,
    "levels": [{"width": 16, "blocks": 1, "attention": True}, {"width": 32, "blocks": 1, "attention": True}],
    "middle": {"blocks": 1, "attention": True},
    "block": {"kind": "resnet", "norm": {"kind": "group", "groups": 4}},
    "attention": {"heads": 2},
    "embedding": {"dim": 16},
}

# Knob values that need a companion setting to form a valid network on SMALL. A union variant
# is keyed by its kind (or by None for every variant of the union).
MP = {"head": "conv3x3", "down": {"kind": "resblock"}, "up": {"kind": "resblock"}, "attention": {"qkv_bias": False}}
COMPANIONS = {
    ("skip.combine", "add"): {"skip": {"project": True}},
    ("stem", "none"): {"in_channels": 4},  # pre-norm on the raw image needs channels divisible by the groups
    # the transformer middle's own knobs need its kind (SMALL's middle is the res-block one)
    ("middle.time", "token"): {"middle": {"kind": "transformer", "time": "token"}},
    ("middle.pos_embedding", False): {"middle": {"kind": "transformer", "pos_embedding": False}},
    ("block.resample_projection", True): {"down": {"kind": "resblock"}},  # it projects res-block resampling only
    ("embedding.class_input", "linear"): {"num_classes": 10},  # EDM-SongUNet's label input needs classes
    ("block", "mp"): MP,  # EDM2's network: no group norm, no biases
    **{("block." + field, False): {**MP, "block": {"kind": "mp", field: False}}  # the mp block's own toggles
       for field in ("pixel_norm", "qkv_pixel_norm", "input_ones", "forced_weight_norm")},
}


def companion(path: str, value) -> dict:
    if isinstance(value, dict):
        return COMPANIONS.get((path, value.get("kind")), COMPANIONS.get((path, None), {}))
    return COMPANIONS.get((path, value), {})


def knob_values(model: type[BaseModel] = UNetConfig, prefix: str = ""):
    """(dotted path, value) for every bool and literal field and every union variant of the schema."""
    for name, field in model.model_fields.items():
        if name in ("kind", "schema_version", "levels", "compact"):
            continue
        path = f"{prefix}{name}"
        tp = _unwrap(field.annotation)
        variants = _models_of(tp)
        if len(variants) > 1:
            for variant in variants:
                yield path, {"kind": variant.model_fields["kind"].default}
                yield from knob_values(variant, f"{path}.")
        elif len(variants) == 1:
            yield from knob_values(variants[0], f"{path}.")
        elif tp is bool:
            yield path, not field.default
        elif get_origin(tp) is Literal:
            for value in get_args(tp):
                if value != field.default:
                    yield path, value


def nested(path: str, value) -> dict:
    out: dict = value
    for part in reversed(path.split(".")):
        out = {part: out}
    return out


KNOBS = sorted({(p, repr(v)): (p, v) for p, v in knob_values()}.values(), key=lambda pv: (pv[0], repr(pv[1])))


def test_the_knob_list_covers_the_schema():
    paths = {p for p, _ in KNOBS}
    for expected in ("skip.combine", "skip.taps", "block.order", "block.activation", "block.time_injection",
                     "block.norm", "down", "up", "embedding.encoding", "attention.decoder_blocks", "head", "stem",
                     "zero_init", "learn_sigma", "middle.downsample", "block.rescale", "block.shortcut", "middle",
                     "middle.time", "middle.pos_embedding", "block", "block.pixel_norm",
                     "block.forced_weight_norm"):
        assert expected in paths


def run_forward_backward(config: UNetConfig, batch: int = 2, num_classes: int | None = None):
    model = build_unet(config)
    x = torch.randn(batch, config.in_channels, config.image_size, config.image_size)
    t = torch.randint(0, 1000, (batch,)).float()
    labels = torch.randint(0, num_classes, (batch,)) if num_classes else None
    out = model(x, t, labels)
    (out.float() - torch.randn_like(out)).square().mean().backward()
    return model, out


@pytest.mark.parametrize("path,value", KNOBS, ids=[f"{p}={v!r}" for p, v in KNOBS])
def test_every_knob_value_builds_and_trains(path, value):
    data = deep_merge(SMALL, nested(path, value))
    data = deep_merge(data, companion(path, value))
    config = unet_config_from_dict(data)
    model, out = run_forward_backward(config)
    channels = config.in_channels * (2 if config.learn_sigma else 1)
    assert out.shape == (2, channels, 16, 16)
    assert torch.isfinite(out).all()
    unused = [name for name, p in model.named_parameters() if p.grad is None]
    assert not unused, f"parameters never used in forward: {unused}"


@pytest.mark.parametrize("extra", [
    {"num_classes": 10},
    {"block": {"dropout": 0.2}},
    {"attention": {"head_channels": 8}},
    {"skip": {"taps": "level"}, "levels": [{"width": 16, "blocks": 2, "decoder_blocks": 3}, {"width": 32, "blocks": 0, "decoder_blocks": 1}]},
    {"levels": [{"width": 16, "blocks": 0}, {"width": 16, "blocks": 2, "decoder_width": 32, "attention": True}]},
    {"middle": {"blocks": 0, "attention": True}},
    {"middle": {"blocks": 3, "attention": False}},
    {"block": {"norm": {"groups": 32, "min_channels_per_group": 4}}},
    {"compact": {"base_width": 8, "multipliers": [1, 1.5, 2], "blocks": 1, "attention_resolutions": [8]}, "levels": None},
    {"middle": {"kind": "transformer", "width": 24, "heads": 3, "downsample": True, "dropout": 0.1}, "num_classes": 10},
    {"levels": [{"width": 16, "blocks": 1, "dropout": 0.0, "heads": 4, "attention": True},
                {"width": 32, "blocks": 1, "dropout": 0.3, "head_channels": 8, "attention": True}], "block": {"dropout": 0.1}},
], ids=lambda e: ",".join(e))
def test_other_shapes_build_and_train(extra):
    data = deep_merge(SMALL, extra)
    data = {k: v for k, v in data.items() if v is not None}
    config = unet_config_from_dict(data)
    model, out = run_forward_backward(config, num_classes=config.num_classes)
    assert out.shape[-2:] == (16, 16)
    assert all(p.grad is not None for p in model.parameters())


def test_class_labels_change_the_output_and_negative_means_unconditional():
    config = unet_config_from_dict({**SMALL, "num_classes": 4, "zero_init": False})
    model = build_unet(config).eval()
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([10.0, 500.0])
    a = model(x, t, torch.tensor([0, 1]))
    b = model(x, t, torch.tensor([2, 3]))
    assert not torch.allclose(a, b)
    assert torch.allclose(model(x, t, torch.tensor([-1, -1])), model(x, t, None))


def test_zero_init_makes_the_initial_output_zero():
    model = build_unet(unet_config_from_dict(SMALL))
    out = model(torch.randn(2, 3, 16, 16), torch.tensor([1.0, 2.0]))
    assert out.abs().max() == 0


def test_state_dict_reads_like_the_architecture():
    keys = set(build_unet(unet_config_from_dict(preset_dict("ddpm-cifar10"))).state_dict())
    for key in ("encoder.1.blocks.0.conv1.weight", "encoder.1.attentions.1.qkv.weight", "encoder.0.resample.conv.weight",
                "middle.blocks.1.emb_proj.weight", "middle.attentions.0.proj.weight", "decoder.3.blocks.2.shortcut.weight",
                "decoder.1.resample.conv.weight", "embedding.mlp.0.weight", "stem.weight", "head.norm.weight", "head.conv.weight"):
        assert key in keys, key


@pytest.mark.parametrize(
    "name,count",
    [("seed", 4_530_243), ("ddpm-cifar10", 35_746_307), ("adm-imagenet64", 295_904_454), ("edm-adm-imagenet64", 295_899_267),
     ("edm-ddpmpp-cifar10", 55_732_739), ("edm-ncsnpp-cifar10", 56_395_523),
     ("edm-ddpmpp-cifar10 augment_dim=9", 55_733_891), ("edm-ncsnpp-cifar10 augment_dim=9", 56_397_827),

     ("edm2-img512-xs", 124_713_125), ("edm2-img64-s", 280_209_253)],
)
def test_preset_parameter_counts(name, count):
    # EDM's SongUNet (NVlabs/edm 008a4e5) at train.py's --arch=ddpmpp / --arch=ncsnpp settings
    # for unconditional CIFAR-10, with augment_dim 0 and 9 (--augment), counted by
    # benchmarks/edm_counts.py into benchmarks/data/edm_counts.json; "NAME augment_dim=9" is the
    # preset with `embedding: {augment_dim: 9}`.
    # guided-diffusion's create_model for the ImageNet-64 README flags counts 295,904,454.
    # EDM's DhariwalUNet (NVlabs/edm 008a4e5, training/networks.py), instantiated with
    # img_resolution=64, in_channels=out_channels=3, label_dim=1000, model_channels=192,
    # channel_mult=[1,2,3,4], num_blocks=3, attn_resolutions=[32,16,8], dropout=0.1 (train.py
    # --arch=adm) and summed with sum(p.numel()), counts 295,899,267: ADM's count less the 3
    # learned-sigma output channels of the head conv (192*3*9 + 3 = 5,187).
    # EDM2's UNet (NVlabs/edm2 4bf8162, training/networks_edm2.py), instantiated through its
    # Precond with img_resolution=64, label_dim=1000 and img_channels=4, model_channels=128
    # (img512-xs) or img_channels=3, model_channels=192 (img64-s), counted without Precond's
    # logvar layer by benchmarks/edm_counts.py (benchmarks/data/edm_counts.json): 124,713,125
    # and 280,209,253, every one a weight of a bias-free MP conv or one of the scalar gains.
    name, _, augment = name.partition(" augment_dim=")
    data = deep_merge(preset_dict(name), {"embedding": {"augment_dim": int(augment)}} if augment else {})
    with torch.device("meta"):
        model = build_unet(unet_config_from_dict(data))
    assert sum(p.numel() for p in model.parameters()) == count


SEED_NAMES = {
    "time_emb.mlp": "embedding.mlp", "enc1": "encoder.0.blocks.0", "enc2": "encoder.1.blocks.0",
    "enc3": "encoder.2.blocks.0", "mid_attn": "middle.attentions.0", "mid": "middle.blocks.0",
    "dec3": "decoder.2.blocks.0", "dec2": "decoder.1.blocks.0", "dec1": "decoder.0.blocks.0", "out": "head.conv",
}
SEED_LEAVES = {"time_mlp": "emb_proj", "skip": "shortcut"}


def seed_to_ours(name: str) -> str:
    for theirs, ours in SEED_NAMES.items():
        if name.startswith(theirs + "."):
            name = ours + name[len(theirs):]
            break
    return ".".join(SEED_LEAVES.get(part, part) for part in name.split("."))


def test_seed_preset_matches_the_seed_network():
    from seed_unet_oracle import UNet as SeedUNet

    torch.manual_seed(0)
    seed = SeedUNet().eval()
    ours = build_unet(unet_config_from_dict(preset_dict("seed"))).eval()
    ours.load_state_dict({seed_to_ours(k): v for k, v in seed.state_dict().items()}, strict=True)
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([3.0, 777.0])
    with torch.no_grad():
        assert (seed(x, t) - ours(x, t)).abs().max() < 1e-5
