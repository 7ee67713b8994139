"""Every number a config can hold is bounded: integers from above, floats to finite values.

The rules are checked over every model of archsearch.schema, so a field added later without a
bound fails here rather than hanging the planner or overflowing the results table.
"""

from __future__ import annotations

import math
import typing

import pytest
from pydantic import ValidationError

import archsearch.schema  # noqa: F401 - imports every schema module
from archsearch.schema import ablation, data, distributions, measure, space, study, train, unet  # noqa: F401
from archsearch.schema._base import MAX_SEED, Model


def all_models() -> list[type[Model]]:
    seen, todo = [], [Model]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.append(sub)
                todo.append(sub)
    return sorted(seen, key=lambda m: (m.__module__, m.__name__))


def _scalar_types(annotation) -> set[type]:
    """int/float/bool found in an annotation (through Optional, list, Annotated)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _scalar_types(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return set()
    if origin is not None:
        return {t for arg in typing.get_args(annotation) for t in _scalar_types(arg)}
    return {annotation} & {int, float, bool}


def _huge(annotation, value):
    """`value` where the field holds a number, `[value]` where it holds a list of them."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _huge(typing.get_args(annotation)[0], value)
    if origin is list:
        return [value]
    if origin is not None and any(typing.get_origin(a) is list for a in typing.get_args(annotation)):
        return [value]
    return value


INT_FIELDS = [(m, name) for m in all_models() for name, info in m.model_fields.items()
              if int in _scalar_types(info.annotation)]
FLOAT_FIELDS = [(m, name) for m in all_models() for name, info in m.model_fields.items()
                if float in _scalar_types(info.annotation)]


def test_the_registry_is_walked():
    names = {m.__name__ for m in all_models()}
    assert {"UNetConfig", "Level", "TrainConfig", "StudyConfig", "EvalConfig", "MeasureConfig", "Folder"} <= names
    assert len(INT_FIELDS) > 40 and len(FLOAT_FIELDS) > 15


@pytest.mark.parametrize("model,name", INT_FIELDS, ids=[f"{m.__name__}.{n}" for m, n in INT_FIELDS])
def test_every_integer_field_has_an_upper_bound(model, name):
    with pytest.raises(ValidationError) as exc:
        model.model_validate({name: _huge(model.model_fields[name].annotation, 10**30)})
    assert any(e["loc"][:1] == (name,) and "less than" in e["msg"] for e in exc.value.errors()), exc.value


@pytest.mark.parametrize("model,name", FLOAT_FIELDS, ids=[f"{m.__name__}.{n}" for m, n in FLOAT_FIELDS])
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, "nan"])
def test_no_float_field_takes_infinity_or_nan(model, name, value):
    with pytest.raises(ValidationError) as exc:
        model.model_validate({name: _huge(model.model_fields[name].annotation, value)})
    assert any(e["loc"][:1] == (name,) and "finite" in e["msg"] for e in exc.value.errors()), exc.value


SEED_FIELDS = [(m, n) for m, n in INT_FIELDS if n.endswith("seed")]


@pytest.mark.parametrize("model,name", SEED_FIELDS, ids=[f"{m.__name__}.{n}" for m, n in SEED_FIELDS])
def test_seeds_fit_numpy_and_optuna(model, name):
    def errors_at(value):
        try:
            model.model_validate({name: value})
        except ValidationError as exc:
            return [e for e in exc.errors() if e["loc"][:1] == (name,)]
        return []

    assert errors_at(MAX_SEED) == []
    assert errors_at(MAX_SEED + 1)


def test_huge_values_are_errors_with_their_path():
    from archsearch.errors import ConfigErrors
    from archsearch.schema.loading import unet_config_from_dict

    for arch, path in [
        ({"levels": [{"width": 10**30}]}, "levels.0.width"),
        ({"levels": [{"width": 64, "blocks": 10**9}]}, "levels.0.blocks"),
        ({"compact": {"blocks": 10**9}}, "compact.blocks"),
        ({"attention": {"heads": 10**12}}, "attention.heads"),
        ({"image_size": 2**20}, "image_size"),
    ]:
        with pytest.raises(ConfigErrors) as exc:
            unet_config_from_dict(arch)
        assert [e.path for e in exc.value.errors] == [path]


def test_grace_period_must_exceed_the_heartbeat():
    from archsearch.errors import ConfigErrors
    from archsearch.schema.space import space_from_dict

    with pytest.raises(ConfigErrors) as exc:
        space_from_dict({"study": {"heartbeat_interval": 30, "grace_period": 20}})
    (error,) = exc.value.errors
    assert error.path == "study.grace_period" and "heartbeat_interval" in error.message


def test_an_unknown_device_is_a_schema_error():
    from archsearch.errors import ConfigErrors
    from archsearch.schema.space import space_from_dict

    with pytest.raises(ConfigErrors) as exc:
        space_from_dict({"study": {"device": "bogus"}})
    assert [e.path for e in exc.value.errors] == ["study.device"]
    assert space_from_dict({"study": {"device": "CUDA:1"}}).study.device == "cuda:1"


def test_a_prime_width_gets_its_hint_at_once():
    from archsearch.plan import _divisors_hint

    assert _divisors_hint(999_999_937, 8) == "1 or 999999937"
    assert _divisors_hint(64, 12) == "8 or 16"
