"""Turning a space into configs (`archsearch.search.sampling`): every sample validates, parameters
are named by their field's one name (`architecture.levels.1.width`), a study of format version 1
keeps its old names, and a parameter that does not apply is never asked for."""

import json

import optuna
import pytest

from archsearch.errors import ConfigErrors
from archsearch.schema.loading import unet_config_from_dict, validate_model
from archsearch.schema.paths import field_name, param_name
from archsearch.schema.space import space_from_dict
from archsearch.schema.train import TrainConfig
from archsearch.search.grid import grid_search_space
from archsearch.search.sampling import (
    instantiate,
    optuna_suggester,
    random_suggester,
    sample_configs,
    sample_trial_configs,
)

# Conditional on purpose: depth, union kinds with their own options, attention settings, add-skips.
# Every combination plans (all widths divide by 4 groups and 8 channels per head).
RICH = {
    "data": {"source": "digits", "image_size": 16},
    "train": {"lr": {"float": {"low": 1e-4, "high": 1e-2, "log": True}}, "batch_size": {"choice": [16, 32]}},
    "architecture": {
        "depth": {"choice": [1, 2, 3]},
        "levels": [
            {"width": {"choice": [8, 16]}, "blocks": {"int": [1, 2]}},
            {"width": {"int": {"low": 16, "high": 32, "step": 8}}, "attention": {"choice": [False, True]}},
            {"width": 32, "attention": {"choice": [False, True]}},
        ],
        "middle": {"blocks": 1, "attention": {"choice": [False, True]}},
        "skip": {"combine": {"choice": ["concat", "add"]}, "project": {"choice": [True]}},
        "block": {
            "norm": {"kind": {"choice": ["group", "none"]}, "groups": {"choice": [2, 4]}},
            "dropout": {"float": {"low": 0.0, "high": 0.2}},
        },
        "attention": {"head_channels": {"choice": [None, 8]}, "heads": {"choice": [1, 2]}},
        "embedding": {"dim": 8},
        "down": {"kind": {"choice": ["conv", "avgpool"]}, "padding": {"choice": ["symmetric", "same"]}},
        "up": {"kind": {"choice": ["nearest", "nearest_conv"]}},
    },
}


def recording(seed=0):
    """A random suggester that also records {name: value} of every parameter asked for."""
    asked = {}
    inner = random_suggester(seed)

    def suggest(name, dist):
        assert name not in asked, f"{name} asked twice"
        asked[name] = inner(name, dist)
        return asked[name]

    return suggest, asked


def fixed(**values):
    """A suggester of architecture parameters that answers from `values` and records what was
    asked, both by the path within the architecture (the name is `architecture.<path>`)."""
    asked = []

    def suggest(name, dist):
        section, path = name.split(".", 1)
        assert section == "architecture", name
        asked.append(path)
        return values[path] if path in values else dist.candidates()[0]

    return suggest, asked


@pytest.fixture(scope="module")
def rich():
    return space_from_dict(RICH)


@pytest.mark.parametrize("seed", range(25))
def test_every_sampled_config_validates_and_plans(rich, seed):
    suggest, asked = recording(seed)
    arch, train = sample_trial_configs(rich, suggest)
    config = unet_config_from_dict(arch, prefix="architecture")  # planned: raises on any broken rule
    validate_model(TrainConfig, train, "train")
    assert len(config.levels) == asked["architecture.depth"]
    assert set(asked) >= {"architecture.depth", "architecture.levels.0.width", "train.lr", "train.batch_size",
                          "architecture.skip.combine", "architecture.block.norm.kind"}


def test_depth_decides_which_levels_exist(rich):
    suggest, asked = fixed(depth=1)
    arch = instantiate(rich.architecture, suggest)
    assert len(arch["levels"]) == 1
    assert not [n for n in asked if n.startswith(("levels.1.", "levels.2."))]
    suggest, asked = fixed(depth=3)
    instantiate(rich.architecture, suggest)
    assert {"levels.1.width", "levels.1.attention", "levels.2.attention"} <= set(asked)


def test_a_union_kind_is_decided_first_and_keeps_only_its_fields(rich):
    suggest, asked = fixed(**{"block.norm.kind": "none", "down.kind": "avgpool"})
    arch = instantiate(rich.architecture, suggest)
    assert arch["block"]["norm"] == {"kind": "none"} and arch["down"] == {"kind": "avgpool"}
    assert "block.norm.groups" not in asked and "down.padding" not in asked
    assert asked.index("block.norm.kind") < asked.index("block.dropout")
    suggest, asked = fixed(**{"block.norm.kind": "group", "block.norm.groups": 4, "down.kind": "conv"})
    arch = instantiate(rich.architecture, suggest)
    assert arch["block"]["norm"] == {"kind": "group", "groups": 4} and "down.padding" in asked


def test_attention_settings_only_when_some_block_attends(rich):
    no_attention = {"depth": 2, "levels.1.attention": False, "middle.attention": False}
    suggest, asked = fixed(**no_attention)
    instantiate(rich.architecture, suggest)
    assert not [n for n in asked if n.startswith("attention.")]
    suggest, asked = fixed(**{**no_attention, "middle.attention": True, "attention.head_channels": 8})
    arch = instantiate(rich.architecture, suggest)
    assert "attention.head_channels" in asked and "attention.heads" not in asked  # head_channels decides the heads
    assert arch["attention"] == {"head_channels": 8}
    suggest, asked = fixed(**{**no_attention, "levels.1.attention": True, "attention.head_channels": None})
    instantiate(rich.architecture, suggest)
    assert "attention.heads" in asked


def test_skip_projection_only_with_add_skips(rich):
    suggest, asked = fixed(**{"skip.combine": "concat"})
    instantiate(rich.architecture, suggest)
    assert "skip.project" not in asked
    suggest, asked = fixed(**{"skip.combine": "add"})
    instantiate(rich.architecture, suggest)
    assert "skip.project" in asked


def test_optuna_parameters_are_the_fields_names_and_list_choices_round_trip():
    space = space_from_dict({
        "data": {"image_size": 32},
        "train": {"lr": {"float": {"low": 1e-4, "high": 1e-3, "log": True}}},
        "architecture": {
            "compact": {"base_width": {"int": {"low": 32, "high": 64, "step": 32}},
                        "multipliers": {"choice": [[1, 2], [1, 2, 2]]}, "attention_resolutions": [16]},
            "block": {"norm": {"groups": 32}, "dropout": {"float": {"low": 0.0, "high": 0.3, "step": 0.1}}},
        },
    })
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(6):
        trial = study.ask()
        arch, train = sample_trial_configs(space, optuna_suggester(trial))
        assert set(trial.params) == {"architecture.compact.base_width", "architecture.compact.multipliers",
                                     "architecture.block.dropout", "train.lr"}
        assert arch["compact"]["multipliers"] in ([1, 2], [1, 2, 2])  # a list again, not its JSON text
        assert json.loads(trial.params["architecture.compact.multipliers"]) == arch["compact"]["multipliers"]
        assert arch["compact"]["base_width"] in (32, 64) and 1e-4 <= train["lr"] <= 1e-3
        assert round(arch["block"]["dropout"], 6) in (0.0, 0.1, 0.2, 0.3)
        unet_config_from_dict(arch)
        study.tell(trial, 0.0)


def test_random_samples_are_seeded(rich):
    dump = lambda configs: [c.model_dump() for c in configs]  # noqa: E731
    assert dump(sample_configs(rich, 4, seed=1)) == dump(sample_configs(rich, 4, seed=1))
    assert dump(sample_configs(rich, 4, seed=1)) != dump(sample_configs(rich, 4, seed=2))


def test_an_invalid_sample_names_its_field_under_architecture():
    space = space_from_dict({"architecture": {"levels": [{"width": {"choice": [12]}}, {"width": 16}],
                                              "block": {"norm": {"groups": 8}}, "embedding": {"dim": 8}}})
    with pytest.raises(ConfigErrors) as info:
        sample_configs(space, 1)
    assert any(line.startswith("architecture.block.norm.groups: 8 does not divide") for line in info.value.lines())


def test_grid_lists_every_value_by_parameter_name():
    space = space_from_dict({
        "study": {"sampler": {"kind": "grid"}},
        "train": {"lr": {"float": {"low": 0.001, "high": 0.003, "step": 0.001}}},
        "architecture": {"levels": [{"width": {"int": {"low": 8, "high": 24, "step": 8}}}, {"width": 16}],
                         "block": {"norm": {"groups": 4}}, "embedding": {"dim": 8},
                         "skip": {"combine": {"choice": ["concat", "add"]}}},
    })
    grid = grid_search_space(space)
    assert grid.keys() == {"architecture.levels.0.width", "architecture.skip.combine", "train.lr"}
    assert grid["architecture.levels.0.width"] == [8, 16, 24] and grid["architecture.skip.combine"] == ["concat", "add"]
    assert [round(v, 6) for v in grid["train.lr"]] == [0.001, 0.002, 0.003]
    # A study of format version 1 named the architecture's parameters by their path alone.
    old = grid_search_space(space, version=1)
    assert old.keys() == {"levels.0.width", "skip.combine", "train.lr"} and list(old.values()) == list(grid.values())


def test_a_version_1_study_is_asked_its_old_parameter_names(rich):
    asked = {}
    for version in (1, 2):  # the same seed: the same draws, under each version's names
        trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
        sample_trial_configs(rich, optuna_suggester(trial, version))
        asked[version] = trial.params
    assert "levels.0.width" in asked[1] and "train.lr" in asked[1] and "architecture.levels.0.width" in asked[2]
    assert {param_name(name, 1) for name in asked[2]} == set(asked[1])
    assert {field_name(name): value for name, value in asked[1].items()} == asked[2]
