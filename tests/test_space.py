"""Space files (`archsearch.schema.space`): loading, `--set` overrides, `depth`, and every problem
reported as `path: message` before any trial runs."""

import pytest
import yaml

from archsearch.errors import ConfigErrors
from archsearch.schema.distributions import as_distribution
from archsearch.schema.space import field_type, load_space, space_from_dict, walk_distributions
from archsearch.schema.study import Constraint
from archsearch.schema.unet import Level, UNetConfig

ARCH = {"levels": [{"width": 8}, {"width": 16}], "block": {"norm": {"groups": 4}}, "embedding": {"dim": 8}}


def errors_of(data) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        space_from_dict(data)
    return info.value.lines()


def with_arch(**fields):
    return {"architecture": {**ARCH, **fields}}


@pytest.fixture
def space_file(tmp_path):
    path = tmp_path / "my-space.yaml"
    path.write_text(yaml.safe_dump({"study": {"trials": 3}, "architecture": ARCH}))
    return path


def test_the_file_names_the_study_and_data_sets_the_image(space_file):
    space = load_space(space_file)
    assert space.study.name == "my-space" and space.study.trials == 3
    assert space.is_fixed()
    config = space.fixed_architecture()
    assert isinstance(config, UNetConfig)
    assert (config.image_size, config.in_channels) == (16, 1)  # from the default data: digits 16x16 gray
    assert space.fixed_train().steps == 300
    assert [o.metric for o in space.objectives] == ["val_loss", "train_throughput_normalized"]  # the default


def test_set_overrides_any_path_before_validation(space_file):
    space = load_space(space_file, {"study.trials": 9, "study.name": "other", "train.steps": 7, "data.image_size": 8,
                                    "architecture.levels.0.width": {"choice": [8, 16]}})
    assert (space.study.trials, space.study.name, space.train) == (9, "other", {"steps": 7})
    assert space.architecture["levels"][0]["width"] == {"choice": [8, 16]} and not space.is_fixed()
    assert space.architecture["image_size"] == 8


@pytest.mark.parametrize("sets, line", [
    ({"architecture.levels.5.width": 8}, "architecture.levels.5.width: index 5 is out of range (the list has 2 items)"),
    ({"train.steps": 0}, "train.steps: Input should be greater than or equal to 1"),
    ({"study.name": "a/b"}, "study.name: use letters, digits"),
])
def test_a_bad_override_is_reported_at_its_path(space_file, sets, line):
    with pytest.raises(ConfigErrors) as info:
        load_space(space_file, sets)
    assert any(text.startswith(line) for text in info.value.lines()), info.value.lines()


@pytest.mark.parametrize("arch, line", [
    ({"block": {"activation": {"choice": ["silu", "swish"]}, "norm": {"groups": 4}}},
     "architecture.block.activation.choice.1: Input should be 'silu', 'gelu', 'relu' or 'mish' (got 'swish')"),
    ({"levels": [{"width": 8, "blocks": {"int": [-1, 2]}}, {"width": 16}]},
     "architecture.levels.0.blocks.low: Input should be greater than or equal to 0 (got -1)"),
    ({"levels": [{"width": {"int": [1]}}, {"width": 16}]}, "architecture.levels.0.width: write [low, high]"),
    ({"levels": [{"width": {"int": [8, 4]}}, {"width": 16}]}, "architecture.levels.0.width: high (4) is below low (8)"),
    ({"block": {"activaton": {"choice": ["silu"]}, "norm": {"groups": 4}}}, "architecture.block.activaton: no such field"),
    ({"stem": "conv5", "depth": {"choice": [1, 2]}}, "architecture.stem: Input should be 'conv3x3' or 'none'"),
    ({"depth": {"choice": [1, 3]}}, "architecture.depth: 3 is not between 1 and the 2 levels written"),
    ({"compact": {"base_width": 8}, "levels": None, "depth": 1}, "architecture.depth: needs `levels` written per level"),
    ({"image_size": 32}, "architecture.image_size: 32 but data.image_size is 16"),
    ({"base": "nope"}, "architecture.base: unknown preset 'nope'"),
])
def test_architecture_problems_name_their_field(arch, line):
    lines = errors_of(with_arch(**arch))
    assert len(lines) == 1 and lines[0].startswith(line), lines


def test_every_problem_at_once_across_sections():
    lines = errors_of({
        "study": {"sampler": {"kind": "nope"}},
        "objectives": [{"metric": "accuracy"}],
        "constraints": ["params << 3"],
    })
    paths = [line.split(":")[0] for line in lines]
    assert paths == ["study.sampler.kind", "objectives.0.metric", "constraints.0"], lines
    lines = errors_of({"train": {"stepz": 3, "lr": {"float": [0, 1]}},
                       "architecture": {**ARCH, "stem": "conv5", "levels": [{"width": {"choice": [8, -8]}}]}})
    paths = [line.split(":")[0] for line in lines]
    assert sorted(paths) == ["architecture.levels.0.width.choice.1", "architecture.stem", "train.lr.low", "train.stepz"]


def test_a_fixed_space_is_planned_at_load():
    lines = errors_of({"data": {"image_size": 8}, **with_arch(block={"norm": {"groups": 3}})})
    assert lines == [line for line in lines if line.startswith("architecture.block.norm.groups: 3 does not divide")]


def test_the_noise_schedule_cannot_be_searched():
    lines = errors_of({**with_arch(), "train": {"schedule": {"choice": ["linear", "cosine"]}}})
    assert lines[0].startswith("train.schedule: cannot be searched")


def test_sampler_and_pruner_rules():
    grid = {**with_arch(), "study": {"sampler": {"kind": "grid"}}, "train": {"lr": {"float": [0.001, 0.01]}}}
    assert errors_of(grid) == ["train.lr: the grid sampler needs a `step` for float ranges"]
    space_from_dict({**grid, "train": {"lr": {"float": {"low": 0.001, "high": 0.01, "step": 0.001}}}})
    pruned = {**with_arch(), "study": {"pruner": {"kind": "median"}}}
    assert errors_of(pruned)[0].startswith("study.pruner: Optuna's pruners work with one objective only")
    single = space_from_dict({**pruned, "objectives": [{"metric": "val_loss"}]})
    assert single.objectives[0].direction == "minimize"
    assert errors_of({**with_arch(), "objectives": [{"metric": "val_loss"}] * 2}) == ["objectives: each metric may appear once"]


def test_depth_keeps_the_first_levels():
    space = space_from_dict({"data": {"image_size": 8}, **with_arch(depth=1)})
    assert space.fixed_architecture().levels == [Level(width=8)]


def test_a_preset_base_with_searched_overrides():
    space = space_from_dict({"data": {"source": "cifar10", "root": "/does/not/exist"},
                             "architecture": {"base": "seed", "block": {"activation": {"choice": ["silu", "gelu"]}}}})
    assert "base" not in space.architecture and space.architecture["stem"] == "none"  # the seed's, merged
    assert [p for p, _ in walk_distributions(space.architecture)] == ["block.activation"]
    assert space.architecture["image_size"] == 16 and space.architecture["in_channels"] == 3  # from data


def test_the_base_itself_may_be_a_choice_of_presets():
    """`base: {choice: [...]}` searches between whole presets; the overrides apply to the one drawn."""
    from archsearch.search.sampling import instantiate
    from archsearch.schema.loading import unet_config_from_dict

    space = space_from_dict({"data": {"image_size": 32, "channels": 3},
                             "architecture": {"base": {"choice": ["seed", "ddpm-cifar10"]},
                                              "block": {"dropout": {"choice": [0.0, 0.2]}}}})
    assert [p for p, _ in walk_distributions(space.architecture)] == ["base", "block.dropout"]
    asked = []

    def suggest(name, dist):
        asked.append(name)
        return dist.choices[-1] if name.endswith("dropout") else base

    for base, stem in (("seed", "none"), ("ddpm-cifar10", "conv3x3")):
        asked.clear()
        config = unet_config_from_dict(instantiate(space.architecture, suggest))
        assert asked == ["architecture.base", "architecture.block.dropout"]  # the base first
        assert (config.stem, config.block.dropout, config.image_size) == (stem, 0.2, 32)


@pytest.mark.parametrize("base,line", [
    ({"choice": ["seed", "nope"]}, "architecture.base.choice.1: unknown preset 'nope'"),
    ({"int": [1, 2]}, "architecture.base: a base is chosen from presets with {choice: [...]}"),
])
def test_a_bad_base_choice_names_the_candidate(base, line):
    assert any(e.startswith(line) for e in errors_of({"architecture": {"base": base}}))


def test_an_override_that_fails_on_one_base_says_which():
    # 128 groups divide the ddpm preset's widths (128, 256) but not the seed's first level (64)
    lines = errors_of({"architecture": {"base": {"choice": ["seed", "ddpm-cifar10"]},
                                        "block": {"norm": {"groups": 128}}}})
    assert len(lines) == 1 and lines[0].startswith("architecture.block.norm.groups: 128 does not divide the 64 channels")
    assert lines[0].endswith("(with base 'seed')")


def test_loading_never_reads_the_data(tmp_path):
    """Validation is instant and works before the dataset is downloaded."""
    space = space_from_dict({"data": {"source": "folder", "path": str(tmp_path / "missing")}, **with_arch()})
    assert space.data.source == "folder"


def test_walk_distributions_in_file_order_with_list_indices():
    tree = {"levels": [{"width": {"choice": [8]}}, {"attention": {"choice": [True]}}], "a": {"b": {"int": [1, 2]}}}
    assert [p for p, _ in walk_distributions(tree)] == ["levels.0.width", "levels.1.attention", "a.b"]
    assert as_distribution({"int": [1, 4]}).candidates() == [1, 4]


def test_field_type_walks_models_lists_and_unions():
    from pydantic import TypeAdapter, ValidationError

    assert TypeAdapter(field_type(UNetConfig, "levels.3.width")).validate_python(8) == 8
    with pytest.raises(ValidationError):
        TypeAdapter(field_type(UNetConfig, "levels.3.width")).validate_python(0)  # PositiveInt kept
    assert TypeAdapter(field_type(UNetConfig, "down.kind")).validate_python("maxpool") == "maxpool"
    assert TypeAdapter(field_type(UNetConfig, "block.norm.groups")).validate_python(8) == 8
    with pytest.raises(KeyError, match="nope"):
        field_type(UNetConfig, "block.nope")


@pytest.mark.parametrize("text, metric, op, value, measured, violation", [
    ("params <= 5e6", "params", "<=", 5e6, 6e6, 1e6),
    ("train_throughput >= 200", "train_throughput", ">=", 200.0, 150.0, 50.0),
    ("val_loss < 0.5", "val_loss", "<=", 0.5, 0.25, -0.25),
])
def test_constraints_parse_and_measure_their_violation(text, metric, op, value, measured, violation):
    c = Constraint.model_validate(text)
    assert (c.metric, c.op, c.value) == (metric, op, value)
    assert c.violation(measured) == pytest.approx(violation)
