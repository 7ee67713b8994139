"""The transformer middle (middle.kind: transformer; archsearch.nn.transformer): its plan, its
shapes in both time modes, its zero-initialized identity, and the planner's rules for it."""

import pytest
import torch

from archsearch.errors import ConfigErrors
from archsearch.nn import build_unet
from archsearch.nn.transformer import TransformerMiddle
from archsearch.plan import plan_unet
from archsearch.report.network import level_table, middle_summary
from archsearch.schema import unet_config_from_dict
from archsearch.schema.loading import deep_merge

BASE = {
    "image_size": 16,
    "levels": [{"width": 16, "blocks": 1}, {"width": 32, "blocks": 1, "attention": True}],
    "block": {"norm": {"kind": "group", "groups": 4}},
    "attention": {"heads": 2},
    "embedding": {"dim": 16},
    "middle": {"kind": "transformer", "depth": 2},
}


def config(**middle):
    return unet_config_from_dict(deep_merge(BASE, {"middle": middle}))


def errors_of(data: dict) -> list[str]:
    with pytest.raises(ConfigErrors) as exc:
        unet_config_from_dict(data)
    return exc.value.lines()


def test_the_plan_holds_the_transformer_shapes():
    plan = plan_unet(config(width=48, head_channels=12, time="token", mlp_ratio=2))
    tr = plan.middle_transformer
    assert (tr.channels, tr.width, tr.heads, tr.head_channels, tr.mlp_channels) == (32, 48, 4, 12, 96)
    assert (tr.resolution, tr.tokens, tr.extra_tokens, tr.project_in) == (8, 65, 1, True)
    assert plan.middle == () and plan.middle_attention_heads == 0
    assert plan.middle_channels == 32 and plan.middle_resolution == 8
    assert plan.levels[1].decoder[0].block_in_channels == 32 + 32  # the decoder gets the map back at 32


def test_defaults_take_the_lowest_width_and_the_attention_heads():
    tr = plan_unet(config()).middle_transformer
    assert (tr.width, tr.heads, tr.mlp_channels, tr.time, tr.pos_embedding, tr.project_in) == (32, 2, 128, "add", True, False)
    assert plan_unet(config(downsample=True)).middle_transformer.resolution == 4


@pytest.mark.parametrize("time", ["add", "token"])
@pytest.mark.parametrize("num_classes", [None, 5])
@pytest.mark.parametrize("extra", [{}, {"downsample": True}, {"width": 48, "heads": 3}, {"pos_embedding": False}],
                         ids=["plain", "downsample", "width48", "no_pos"])
def test_it_builds_runs_and_trains(time, num_classes, extra):
    data = deep_merge(BASE, {"middle": {"time": time, **extra}, "num_classes": num_classes, "zero_init": False})
    model = build_unet(unet_config_from_dict(data))
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([3.0, 700.0])
    labels = torch.tensor([0, 4]) if num_classes else None
    out = model(x, t, labels)
    assert out.shape == (2, 3, 16, 16) and torch.isfinite(out).all()
    out.square().mean().backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not unused, f"parameters without gradient: {unused}"
    assert isinstance(model.middle, TransformerMiddle)
    assert ("middle.proj_in.weight" in model.state_dict()) == ("width" in extra)
    assert ("middle.pos" in model.state_dict()) == ("pos_embedding" not in extra)
    assert ("middle.resample.conv.weight" in model.state_dict()) == ("downsample" in extra)


def test_the_embedding_token_reaches_the_output():
    # time: token — the pixels hear the embedding only by attending to the extra token.
    model = build_unet(unet_config_from_dict(deep_merge(BASE, {"middle": {"time": "token"}, "zero_init": False})))
    h = torch.randn(1, 32, 8, 8)
    emb = model.embedding(torch.tensor([1.0, 900.0]))
    out = model.middle(h.expand(2, -1, -1, -1), emb)
    assert not torch.allclose(out[0], out[1])


def test_pos_embedding_covers_the_embedding_token():
    model = build_unet(config(time="token"))
    assert model.middle.pos.shape == (1, 65, 32)


@pytest.mark.parametrize("middle", [{}, {"width": 48, "heads": 3, "time": "token"}, {"downsample": True}],
                         ids=["plain", "width48_token", "downsample"])
def test_zero_init_makes_the_middle_the_identity(middle):
    model = build_unet(config(**middle))
    h = torch.randn(2, 32, 8, 8) if not middle.get("downsample") else torch.randn(2, 32, 4, 4)
    emb = model.embedding(torch.tensor([5.0, 50.0]))
    tr = model.middle
    x = torch.randn(2, 7, tr.blocks[0].norm1.normalized_shape[0])
    for block in tr.blocks:  # each block alone: its two residual branches start at zero
        assert torch.equal(block(x), x)
    expected = h if tr.resample is None else tr.resample(h, emb)
    assert torch.equal(tr(h, emb), expected)
    unzeroed = build_unet(unet_config_from_dict(deep_merge(BASE, {"middle": middle, "zero_init": False})))
    assert not torch.allclose(unzeroed.middle(h, emb), expected)


def test_dropout_sits_in_every_residual_branch():
    model = build_unet(config(dropout=0.5))
    drops = [n for n, m in model.middle.named_modules() if isinstance(m, torch.nn.Dropout)]
    assert drops == ["blocks.0.attn.drop", "blocks.0.mlp.drop", "blocks.1.attn.drop", "blocks.1.mlp.drop"]
    assert all(m.p == 0.5 for m in model.middle.modules() if isinstance(m, torch.nn.Dropout))


def test_res_block_dropout_does_not_reach_the_transformer():
    model = build_unet(unet_config_from_dict(deep_merge(BASE, {"block": {"dropout": 0.3}})))
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.middle.modules())
    assert model.encoder[1].blocks[0].dropout.p == 0.3


def test_qkv_bias_follows_the_attention_section():
    model = build_unet(unet_config_from_dict(deep_merge(BASE, {"attention": {"qkv_bias": False}})))
    assert model.middle.blocks[0].attn.qkv.bias is None


@pytest.mark.parametrize("middle,line", [
    ({"heads": 5}, "middle.heads: 5 heads do not divide width 32 at the transformer middle; use 2 or 4 heads"),
    ({"width": 48, "head_channels": 20},
     ("middle.head_channels: 20 does not divide width 48 at the transformer middle (middle.width 48); "
      "use a divisor of 48 such as 16 or 24")),
    ({"heads": 2, "head_channels": 16}, "middle.head_channels: give middle.heads or middle.head_channels, not both; drop one"),
    ({"width": 8, "heads": 1, "mlp_ratio": 0.1}, "middle.mlp_ratio: 0.1 gives an MLP of 0 channels at width 8; use at least 0.125"),
])
def test_planner_rules(middle, line):
    assert errors_of(deep_merge(BASE, {"middle": middle})) == [line]


def test_the_attention_section_is_named_when_the_middle_sets_no_heads():
    lines = errors_of(deep_merge(BASE, {"levels": [{"width": 16}, {"width": 24}], "attention": {"heads": 16}}))
    assert lines == ["attention.heads: 16 heads do not divide width 24 at the transformer middle; use 8 or 12 heads"]


def test_each_kind_takes_only_its_own_fields():
    assert errors_of(deep_merge(BASE, {"middle": {"blocks": 2}})) == [
        "middle.blocks: unknown field for kind 'transformer' (check its spelling, or the kind; `archsearch schema` "
        "lists each kind's fields)"]
    assert errors_of({"middle": {"time": "token"}}) == [  # no kind: the res-block middle
        "middle.time: unknown field (check its spelling; `archsearch schema` lists the fields)"]
    assert errors_of({"middle": {"kind": "vit"}}) == ["middle.kind: unknown kind; use one of 'resblocks', 'transformer' (got 'vit')"]


def test_build_prints_the_transformer():
    plan = plan_unet(config(width=48, heads=3, time="token"))
    assert middle_summary(plan) == ("middle: transformer, 2 blocks over 65 tokens (8×8 pixels + the embedding) of 48 "
                                    "channels, 3 heads × 16, MLP 192, time: token, learned positions")
    rows = [list(col.cells) for col in level_table(plan).columns]
    assert [col[-1] for col in rows] == ["middle", "8×8", "32→48→32", "2 transformer", "3 heads", ""]
    assert middle_summary(plan_unet(unet_config_from_dict({**BASE, "middle": {}}))) is None


def recorder(asked: dict, inner):
    def suggest(name, dist):
        asked[name] = inner(name, dist)
        return asked[name]

    return suggest


def test_a_space_searches_the_middle_kind_and_asks_only_the_chosen_kinds_fields():
    from archsearch.schema.space import space_from_dict
    from archsearch.search.sampling import instantiate, random_suggester

    arch = deep_merge(BASE, {"middle": {
        "kind": {"choice": ["resblocks", "transformer"]},
        "blocks": {"int": [1, 2]},                        # resblocks only
        "depth": {"int": [1, 3]}, "time": {"choice": ["add", "token"]},  # transformer only
    }})
    space = space_from_dict({"data": {"source": "digits", "image_size": 16}, "architecture": arch})
    kinds = set()
    for seed in range(12):
        asked: dict = {}
        sampled = instantiate(space.architecture, recorder(asked, random_suggester(seed)))
        kind = asked["architecture.middle.kind"]
        kinds.add(kind)
        own = {"resblocks": {"blocks"}, "transformer": {"depth", "time"}}[kind]
        assert {n.rsplit(".", 1)[1] for n in asked if n.startswith("architecture.middle.")} == own | {"kind"}
        build_unet(unet_config_from_dict(sampled))  # every sample plans and builds
    assert kinds == {"resblocks", "transformer"}


def test_flops_count_every_transformer_block():
    from archsearch.report.network import network_summary

    # One more block at 64 tokens of 32 channels, MLP 128: 2·N·(3D² + D² + 2·D·M) for the linears
    # and 2·2·N²·D for q·k and attn·v.
    per_block = 2 * 64 * (3 * 32 * 32 + 32 * 32 + 2 * 32 * 128) + 4 * 64 * 64 * 32
    assert network_summary(config(depth=3))["flops"] - network_summary(config(depth=2))["flops"] == per_block
