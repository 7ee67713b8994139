"""Booleans are not numbers, a malformed value is an error at its path, and `--set` paths are exact.

YAML reads `yes`, `no`, `on`, `off`, `true` and `false` as booleans, and pydantic would take a
boolean as 1 or 0: `train.steps: yes` would train one step. The schema's models are walked here,
so that every int and float field of every section (and every variant of a union) is tried with
`true` in a file that `archsearch validate` must refuse, naming that field; a field added later
is tried too.
"""

from __future__ import annotations

import types
import typing

import pytest
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from archsearch.cli import app, parse_sets
from archsearch.errors import ConfigErrors
from archsearch.schema._base import Model, bool_problem
from archsearch.schema.ablation import AblationSpec
from archsearch.schema.distributions import as_distribution
from archsearch.schema.paths import path_problem, set_path
from archsearch.schema.space import SearchSpace, space_from_dict
from archsearch.schema.train import TrainConfig
from archsearch.schema.unet import UNetConfig

runner = CliRunner()

ARCH = {"levels": [{"width": 8, "blocks": 1}, {"width": 16, "blocks": 1}], "block": {"norm": {"groups": 4}},
        "middle": {"blocks": 1, "attention": False}}
SPACE = {"study": {"name": "strict", "trials": 2}, "train": {"steps": 2, "batch_size": 8},
         "constraints": [{"metric": "params", "op": "<=", "value": 1e9}], "architecture": ARCH}
ABLATION = {"base": ARCH, "seeds": 1, "variants": {"wide": {"levels.1.width": 32}}}

# Sections a space file holds as plain mappings, validated as these models.
AS_MODEL = {("train",): TrainConfig, ("architecture",): UNetConfig}


# --------------------------------------------------------------------------- walking the schema


def _strip(tp):
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _is_model(tp) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _numbers_only(tp) -> bool:
    """A scalar number type: int, float, a Literal of numbers, or a union holding one (no bool)."""
    tp = _strip(tp)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        members = [_strip(a) for a in typing.get_args(tp) if a is not type(None)]
        return bool not in members and any(_numbers_only(m) for m in members)
    if origin is typing.Literal:
        return any(isinstance(v, int) and not isinstance(v, bool) for v in typing.get_args(tp))
    return tp in (int, float)


def numeric_fields(model: type[BaseModel], path: tuple = (), needs: dict | None = None):
    """(path, value, needs) for every number a file of `model` can hold: `value` is what puts a
    boolean there (`true`, or `[1, true]` for a list of numbers) and `needs` the settings that
    make that field exist (a union's `kind`, `source`)."""
    needs = needs or {}
    for name, info in model.model_fields.items():
        where = (*path, name)
        if where in AS_MODEL:
            yield from numeric_fields(AS_MODEL[where], where, needs)
            continue
        yield from _walk(info.annotation, where, needs)


def _walk(tp, path, needs):
    tp = _strip(tp)
    origin = typing.get_origin(tp)
    if _numbers_only(tp):
        yield path, True, needs
    elif origin is list:
        inner = _strip(typing.get_args(tp)[0])
        if _numbers_only(inner):
            yield path, [1, True], needs
        elif _is_model(inner):
            yield from numeric_fields(inner, (*path, 0), needs)
    elif origin in (typing.Union, types.UnionType):
        members = [_strip(a) for a in typing.get_args(tp) if a is not type(None)]
        variants = [m for m in members if _is_model(m)]
        for other in (m for m in members if not _is_model(m)):  # `list[Level] | None`
            yield from _walk(other, path, needs)
        for variant in variants:
            tag = next((k for k in ("kind", "source") if k in variant.model_fields), None)
            more = {(*path, tag): variant.model_fields[tag].default} if tag and len(variants) > 1 else {}
            yield from numeric_fields(variant, path, {**needs, **more})
    elif _is_model(tp):
        yield from numeric_fields(tp, path, needs)


def dotted(path: tuple) -> str:
    return ".".join(map(str, path))


def file_with(base: dict, path: tuple, value, needs: dict) -> dict:
    data = base
    if "compact" in path:  # the other spelling of the levels
        data = set_path(data, "architecture.levels", None)
    for where, tag in needs.items():
        data = set_path(data, dotted(where), tag)
    return set_path(data, dotted(path), value)


SPACE_CASES = list(numeric_fields(SearchSpace))
ABLATION_CASES = [c for c in numeric_fields(AblationSpec) if c[0] != ("train", "seed")]  # `seeds` sets it


def test_the_walk_reaches_every_section_and_variant():
    paths = {dotted(p) for p, _, _ in SPACE_CASES}
    for expected in ("study.trials", "study.sampler.population_size", "study.pruner.percentile", "study.stopping.eta",
                     "data.channels", "data.num_images", "train.steps", "train.lr", "eval.num_images",
                     "eval.samples.sampler.eta", "measure.threads", "constraints.0.value", "architecture.levels.0.width",
                     "architecture.compact.multipliers", "architecture.middle.mlp_ratio", "architecture.block.res_balance",
                     "architecture.embedding.encoding.freq_shift", "architecture.resample_filter", "architecture.schema_version"):
        assert expected in paths, expected
    assert len(SPACE_CASES) > 100
    assert {"seeds", "study.timeout", "train.steps"} <= {dotted(p) for p, _, _ in ABLATION_CASES}


def validate(tmp_path, data: dict, *args: str) -> tuple[int, str]:
    path = tmp_path / "file.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = runner.invoke(app, ["validate", str(path), *args])
    return result.exit_code, result.output


def assert_refused(code: int, output: str, path: str) -> None:
    assert code == 2, output
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.startswith(f"{path}: ") or line.startswith(f"{path}.")]
    assert any("expected a number" in line for line in lines), output


def test_the_base_files_are_valid(tmp_path):
    for data in (SPACE, ABLATION):
        code, output = validate(tmp_path, data)
        assert code == 0, output


@pytest.mark.parametrize("path,value,needs", SPACE_CASES, ids=[dotted(p) for p, _, _ in SPACE_CASES])
def test_a_boolean_is_refused_by_every_number_of_a_space_file(tmp_path, path, value, needs):
    code, output = validate(tmp_path, file_with(SPACE, path, value, needs))
    assert_refused(code, output, dotted(path))


@pytest.mark.parametrize("path,value,needs", ABLATION_CASES, ids=[dotted(p) for p, _, _ in ABLATION_CASES])
def test_a_boolean_is_refused_by_every_number_of_an_ablation_file(tmp_path, path, value, needs):
    code, output = validate(tmp_path, file_with(ABLATION, path, value, needs))
    assert_refused(code, output, dotted(path))


UNET_CASES = [(p[1:], v, {k[1:]: t for k, t in n.items()}) for p, v, n in SPACE_CASES if p[0] == "architecture"]


@pytest.mark.parametrize("path,value,needs", UNET_CASES[::5], ids=[dotted(p) for p, _, _ in UNET_CASES[::5]])
def test_a_boolean_is_refused_by_a_unet_config_file(tmp_path, path, value, needs):
    base = {"image_size": 16, "in_channels": 1, **ARCH}
    if "compact" in path:
        base = {k: v for k, v in base.items() if k != "levels"}
    data = base
    for where, tag in needs.items():
        data = set_path(data, dotted(where), tag)
    code, output = validate(tmp_path, set_path(data, dotted(path), value))
    assert_refused(code, output, dotted(path))


SEARCHED = [(p, v) for p, v, n in SPACE_CASES if p[0] in ("train", "architecture") and not n and v is True
            and p[-1] not in ("image_size", "in_channels", "num_timesteps", "schema_version")]


@pytest.mark.parametrize("path,value", SEARCHED, ids=[dotted(p) for p, _ in SEARCHED])
def test_a_boolean_candidate_of_a_choice_is_refused(tmp_path, path, value):
    code, output = validate(tmp_path, set_path(SPACE, dotted(path), {"choice": [value]}))
    assert code == 2, output
    assert f"{dotted(path)}.choice.0: expected a number" in output, output


@pytest.mark.parametrize("dist,where", [
    ({"int": {"low": True, "high": 8}}, "low"),
    ({"int": [1, "yes"]}, None),  # the text `yes` quoted: not a boolean, and not a number either
    ({"int": [1, True]}, "high"),
    ({"int": {"low": 1, "high": 8, "step": True}}, "step"),
    ({"float": {"low": True, "high": 0.3}}, "low"),
    ({"float": {"low": 0.0, "high": 0.3, "step": True}}, "step"),
])
def test_a_boolean_end_or_step_of_a_range_is_refused(tmp_path, dist, where):
    code, output = validate(tmp_path, set_path(SPACE, "architecture.block.dropout", dist))
    assert code == 2, output
    if where:
        assert f"architecture.block.dropout.{where}: expected a number" in output, output


@pytest.mark.parametrize("assignment,path", [
    ("train.steps=true", "train.steps"),
    ("study.trials=on", "study.trials"),
    ("architecture.levels.0.width=yes", "architecture.levels.0.width"),
    ("eval.num_images=yes", "eval.num_images"),
])
def test_a_boolean_given_by_set_is_refused(tmp_path, assignment, path):
    code, output = validate(tmp_path, SPACE, "--set", assignment)
    assert_refused(code, output, path)


def test_eval_num_images_yes_names_itself_not_what_one_image_breaks(tmp_path):
    # Read as 1, one validation image could not cover the timesteps: the error named another field.
    code, output = validate(tmp_path, set_path(SPACE, "eval.num_images", True))
    assert code == 2 and output.startswith("eval.num_images: expected a number"), output
    assert "timesteps_per_image" not in output


def test_every_problem_of_a_section_is_reported_with_the_boolean():
    with pytest.raises(ConfigErrors) as info:
        space_from_dict({**SPACE, "eval": {"num_images": True, "buckets": 0}})
    assert sorted(e.path for e in info.value.errors) == ["eval.buckets", "eval.num_images"]


def test_numbers_still_come_as_text_from_yaml():
    # YAML 1.1 reads `1e-4` as a string: the lax coercion of text to numbers stays.
    config = TrainConfig.model_validate({"lr": "1e-4", "steps": "5"})
    assert (config.lr, config.steps) == (1e-4, 5)


def test_bool_problem_finds_the_boolean_inside_lists():
    assert bool_problem(list[float], [1.0, 2.0]) is None
    assert bool_problem(list[float], [1.0, False]).startswith("item 1: expected a number (got false")
    assert bool_problem(int | None, True).startswith("expected a number")
    assert bool_problem(bool | int, True) is None  # a field that takes booleans on purpose
    assert bool_problem(typing.Literal["auto"] | int | None, "auto") is None


def test_no_model_takes_a_boolean_for_a_number():
    def models():
        todo, seen = [Model], []
        while todo:
            for sub in todo.pop().__subclasses__():
                if sub not in seen:
                    seen.append(sub)
                    todo.append(sub)
        return seen

    checked = 0
    for model in models():
        for name, info in model.model_fields.items():
            if _numbers_only(info.annotation):
                errors = []
                try:
                    model.model_validate({name: True})
                except Exception as exc:  # noqa: BLE001 - what matters is which errors
                    errors = exc.errors()
                assert any(e["loc"] == (name,) and "expected a number" in e["msg"] for e in errors), (model, name)
                checked += 1
    assert checked > 60


# --------------------------------------------------------------------------- one way in: every error located


@pytest.mark.parametrize("node,path", [
    ({"choice": []}, "w.choice"),
    ({"int": 5}, "w"),
    ({"int": [1]}, "w"),
    ({"int": {"low": 1}}, "w.high"),
    ({"int": {"low": 1, "high": 2, "extra": 3}}, "w.extra"),
    ({"int": [1, "a"]}, "w.high"),
    ({"float": "x"}, "w"),
    ({"float": {"low": 2.0, "high": 1.0}}, "w"),
])
def test_a_malformed_distribution_is_config_errors_at_its_path(node, path):
    with pytest.raises(ConfigErrors) as info:
        as_distribution(node, "w")
    assert [e.path for e in info.value.errors][0] == path


@pytest.mark.parametrize("where", ["architecture.levels.0.width", "architecture.depth", "architecture.base",
                                   "train.lr", "train.steps", "architecture.block.norm"])
def test_an_empty_choice_anywhere_is_exit_2_naming_it(tmp_path, where):
    code, output = validate(tmp_path, set_path(SPACE, where, {"choice": []}))
    assert code == 2, output
    assert output.startswith(f"{where}.choice: List should have at least 1 item"), output


@pytest.mark.parametrize("multipliers,item", [([0.01, 1], 0), ([1, 10000], 1)])
def test_a_compact_level_without_channels_or_with_too_many_is_named(tmp_path, multipliers, item):
    arch = {"compact": {"base_width": 8, "multipliers": multipliers}}
    code, output = validate(tmp_path, {**SPACE, "architecture": arch})
    assert code == 2, output
    assert output.startswith(f"architecture.compact.multipliers: item {item}: "), output


# --------------------------------------------------------------------------- --set paths


@pytest.mark.parametrize("assignment,says", [
    ("train..steps=5", "empty part"),
    (".train.steps=5", "starts with a dot"),
    ("train.steps.=5", "ends with a dot"),
    ("train. steps=5", "no spaces"),
    ("train.st eps=5", "no spaces"),
    ("levels[0].width=8", "'levels[0]' is neither a field name nor a list index"),
    ("train.*=5", "'*' is neither"),
    ("=5", "the path is empty"),
    ("train.steps", "is not path=value"),
])
def test_a_malformed_set_path_is_refused(tmp_path, assignment, says):
    code, output = validate(tmp_path, SPACE, "--set", assignment)
    assert code == 2 and output.startswith("--set: "), output
    assert says in output


def test_a_path_set_twice_is_refused_and_every_problem_is_listed():
    with pytest.raises(ConfigErrors) as info:
        parse_sets(["train.steps=5", "train.steps=6", "a..b=1"])
    lines = info.value.lines()
    assert len(lines) == 2 and "a second time" in lines[0] and "empty part" in lines[1], lines


def test_set_values_are_read_under_the_rules_of_a_file():
    assert parse_sets(["train.lr=1e-3", "study.name=a: b: c", "train.steps=5"]) == \
        {"train.lr": "1e-3", "study.name": "a: b: c", "train.steps": 5}
    for value, says in [("{steps: 3, steps: 4}", "duplicate key"), ("{<<: 5}", "`<<` merges a mapping"),
                        ("{on: 3}", "read by YAML as a boolean")]:
        with pytest.raises(ConfigErrors) as info:
            parse_sets([f"train={value}"])
        assert info.value.errors[0].path == "--set" and says in info.value.errors[0].message


@pytest.mark.parametrize("path", ["", "a..b", ".a", "a.", "a b", "a.[0]"])
def test_path_problem_and_set_path_refuse_malformed_paths(path):
    assert path_problem(path)
    with pytest.raises(ConfigErrors):
        set_path({"a": {"b": 1}}, path, 2)


@pytest.mark.parametrize("path", ["train.steps", "levels.0.width", "variants.add-skips.description", "a_b.c+d"])
def test_well_formed_paths_pass(path):
    assert path_problem(path) is None
