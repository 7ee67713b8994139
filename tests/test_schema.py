"""The U-Net schema: strict, frozen, documented, versioned, torch-free; errors name their paths."""


import pytest
from pydantic import BaseModel

from archsearch.errors import ConfigErrors
from archsearch.schema import PRESETS, UNetConfig, preset_dict, unet_config_from_dict
from archsearch.schema.loading import deep_merge


def all_models(model=UNetConfig, seen=None):
    from archsearch.schema.space import _models_of, _unwrap

    seen = seen if seen is not None else []
    if model in seen:
        return seen
    seen.append(model)
    for field in model.model_fields.values():
        tp = _unwrap(field.annotation)
        args = getattr(tp, "__args__", ())
        for candidate in [tp, *args]:
            for sub in _models_of(_unwrap(candidate)):
                all_models(sub, seen)
    return seen


@pytest.mark.parametrize("model", all_models(), ids=lambda m: m.__name__)
def test_every_field_is_documented(model: type[BaseModel]):
    for name, field in model.model_fields.items():
        if name == "kind":
            continue
        assert field.description, f"{model.__name__}.{name} has no description"


def test_unknown_key_is_an_error_with_its_path():
    with pytest.raises(ConfigErrors) as exc:
        unet_config_from_dict({"block": {"norm": {"kind": "group", "grups": 8}}})
    assert exc.value.lines() == [
        "block.norm.grups: unknown field (check its spelling; `archsearch schema` lists the fields)"
    ]


def test_configs_are_frozen_and_versioned():
    config = UNetConfig()
    assert config.schema_version == 1
    with pytest.raises(Exception):
        config.image_size = 64  # type: ignore[misc]
    with pytest.raises(ConfigErrors, match="schema_version"):
        unet_config_from_dict({"schema_version": 2})


def test_compact_form_expands_into_levels():
    config = UNetConfig(image_size=32, compact={"base_width": 64, "multipliers": [1, 2, 3], "blocks": 3, "attention_resolutions": [16, 8]})
    levels = config.resolved_levels()
    assert [lv.width for lv in levels] == [64, 128, 192]
    assert [lv.attention for lv in levels] == [False, True, True]
    assert all(lv.blocks == 3 for lv in levels)


def test_levels_and_compact_are_exclusive():
    with pytest.raises(ConfigErrors, match="not both"):
        unet_config_from_dict({"levels": [{"width": 32}], "compact": {}})


def test_preset_base_with_overrides_merges_key_by_key():
    config = unet_config_from_dict({"base": "seed", "block": {"activation": "gelu"}, "down": {"kind": "avgpool"}})
    assert config.block.activation == "gelu"
    assert config.block.norm.groups == 8  # kept from the preset
    assert config.down.kind == "avgpool"


def test_switching_a_union_kind_drops_the_old_options():
    merged = deep_merge({"down": {"kind": "conv", "padding": "same"}}, {"down": {"kind": "maxpool"}})
    assert merged["down"] == {"kind": "maxpool"}


def test_writing_levels_replaces_a_presets_compact_form():
    config = unet_config_from_dict({"base": "ddpm-cifar10", "levels": [{"width": 64}, {"width": 64}]})
    assert config.compact is None and len(config.levels) == 2


def test_unknown_preset():
    with pytest.raises(ConfigErrors) as exc:
        unet_config_from_dict({"base": "sd-xl"})
    assert exc.value.lines()[0].startswith("base: unknown preset 'sd-xl'")


@pytest.mark.parametrize("name", PRESETS)
def test_presets_validate_and_plan(name):
    unet_config_from_dict(preset_dict(name))




def test_apply_sets_overrides_in_order_into_a_copy():
    from archsearch.schema.paths import apply_sets

    data = {"levels": [{"width": 8}, {"width": 16}], "block": {"norm": {"groups": 4}}}
    out = apply_sets(data, {"levels.1.width": 32, "block.norm": {"groups": 2, "eps": 1e-5}, "block.norm.groups": 8,
                            "a.b": [1]})
    assert out == {"levels": [{"width": 8}, {"width": 32}], "block": {"norm": {"groups": 8, "eps": 1e-5}}, "a": {"b": [1]}}
    assert data["levels"][1]["width"] == 16 and apply_sets(data, None) == data
    with pytest.raises(ConfigErrors, match=r"levels.2.width: index 2 is out of range \(the list has 2 items\)"):
        apply_sets(data, {"levels.2.width": 8})
