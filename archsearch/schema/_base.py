"""The base of every archsearch config model: strict, frozen, documented; and the one way data
becomes a model or a field's value (`validate_model`, `validate_value`), every problem a
`ConfigError` at the path the user wrote.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from ..errors import from_validation_error

__all__ = [
    "Model",
    "validate_model",
    "validate_value",
    "number_bounds",
    "bool_problem",
    "MAX_CHANNELS",
    "MAX_BLOCKS",
    "MAX_LEVELS",
    "MAX_HEADS",
    "MAX_IMAGE_SIZE",
    "MAX_CLASSES",
    "MAX_SEED",
    "MAX_COUNT",
    "MAX_SECONDS",
    "Seed",
]

# Upper bounds of the integer fields: far above any published network or run, low enough that
# a slip (an extra zero, 10**30) is an error at load rather than a planner looping for hours
# or a number overflowing the results table's int64 columns. `archsearch schema` shows them.
MAX_CHANNELS = 65_536        # widths, embedding widths, image channels
MAX_BLOCKS = 64              # res blocks of one level or of the middle
MAX_LEVELS = 16              # resolutions (4096 pixels halve 12 times)
MAX_HEADS = 4_096            # attention heads
MAX_IMAGE_SIZE = 4_096       # pixels per side
MAX_CLASSES = 1_000_000      # class labels
MAX_SEED = 2**32 - 1         # the seed range of numpy and of Optuna's samplers
MAX_COUNT = 10**9            # steps, trials, images, batch sizes, timesteps, ...
MAX_SECONDS = 10**9          # time budgets (about 32 years)

Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]


class Model(BaseModel):
    """A config section: unknown keys are errors, instances are immutable and hashable.

    Types are coerced the lax way pydantic does by default (YAML's `1e-4` is a string to
    PyYAML; it must still be accepted as a float), but nothing unknown is ever ignored. No float
    field takes infinity or NaN (`.inf` in YAML): where "no limit" makes sense, the field is
    optional and null means it. No number takes a boolean: pydantic would read `true` as 1, and
    YAML reads `yes`, `no`, `on` and `off` as booleans, so `steps: yes` would train one step.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        validate_default=True,
        use_attribute_docstrings=False,
    )

    @model_validator(mode="wrap")
    @classmethod
    def _no_boolean_numbers(cls, data: Any, handler):
        # A model validator, not a field one: pydantic allows no field validator on the `kind`
        # of a union told apart by a field name (the samplers). The other fields are validated
        # without the refused ones, so every problem of the section is reported at once.
        refused = _boolean_numbers(cls, data) if isinstance(data, dict) else {}
        if not refused:
            return handler(data)
        errors = [InitErrorDetails(type=PydanticCustomError("bool_number", message), loc=(name,), input=data[name])
                  for name, message in refused.items()]
        try:
            handler({k: v for k, v in data.items() if k not in refused})
        except ValidationError as exc:
            errors += [InitErrorDetails(type=PydanticCustomError(e["type"], e["msg"]), loc=e["loc"], input=e["input"])
                       for e in exc.errors(include_url=False) if e["loc"][:1] and e["loc"][0] not in refused]
        raise ValidationError.from_exception_data(cls.__name__, errors)


def _boolean_numbers(model: type[BaseModel], data: dict) -> dict[str, str]:
    """{field: why} for the fields of `model` that `data` gives a boolean where they hold a number."""
    out = {}
    for name, value in data.items():
        if value.__class__ in (bool, list, dict):  # the only values that can hold a boolean
            info = model.model_fields.get(name) if isinstance(name, str) else None
            problem = bool_problem(info.annotation, value) if info is not None else None
            if problem:
                out[name] = problem
    return out


# --------------------------------------------------------------------------- one way in


def validate_model(model: type[BaseModel], data: Any, prefix: str = "") -> Any:
    """`model.model_validate(data)`, with errors as `ConfigErrors` located under `prefix`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc, data, prefix) from None


def validate_value(tp: Any, value: Any, prefix: str = "") -> Any:
    """`value` as a field of annotated type `tp` takes it (`field_type(UNetConfig, "levels.0.width")`),
    under the rules of `Model` (no boolean for a number, no infinity or NaN); errors as
    `ConfigErrors` located under `prefix`."""
    adapter = TypeAdapter(Annotated[tp, BeforeValidator(_refuse_booleans(tp))], config=_VALUE_CONFIG)
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise from_validation_error(exc, value, prefix) from None


_VALUE_CONFIG = ConfigDict(allow_inf_nan=False)


def _refuse_booleans(tp: Any):
    def check(value: Any) -> Any:
        problem = bool_problem(tp, value)
        if problem:
            raise ValueError(problem)
        return value

    return check


# --------------------------------------------------------------------------- booleans are not numbers


_BOOL_WORDS = "YAML reads yes/no, on/off and true/false as booleans"


def bool_problem(tp: Any, value: Any) -> str | None:
    """Why `value` does not fit a field of type `tp` because it holds a boolean where the field
    holds a number (`width: true`, `multipliers: [1, yes]`), or None."""
    where = _bool_in(_number_shape(tp), value)
    if where is None:
        return None
    item = "".join(f"item {i}: " if isinstance(i, int) else f"{i}: " for i in where)
    found = _find(value, where)
    return f"{item}expected a number (got {str(found).lower()}: {_BOOL_WORDS})"


def _find(value: Any, where: list) -> Any:
    for part in where:
        value = value[part]
    return value


def _bool_in(shape: Any, value: Any) -> list | None:
    """The location of a boolean standing where `shape` (see `_number_shape`) holds a number."""
    if shape is None:
        return None
    if shape == "number":
        return [] if isinstance(value, bool) else None
    kind, inner = shape
    items = enumerate(value) if kind == "list" and isinstance(value, list) else \
        value.items() if kind == "dict" and isinstance(value, dict) else ()
    for key, item in items:
        below = _bool_in(inner, item)
        if below is not None:
            return [key, *below]
    return None


def _number_shape(tp: Any) -> Any:
    """Where a type holds numbers: "number", ("list", shape) or ("dict", shape), or None for
    nowhere (models check their own fields; `bool` itself, and `Any`, hold no number)."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _number_shape(get_args(tp)[0])
    if origin in (Union, types.UnionType):
        members = get_args(tp)
        if bool in members:
            return None
        shapes = [s for s in map(_number_shape, members) if s is not None]
        return "number" if "number" in shapes else (shapes[0] if shapes else None)
    if origin is Literal:
        values = get_args(tp)
        return "number" if any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) else None
    if origin in (list, tuple, set, frozenset):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        inner = _number_shape(args[0]) if args else None
        return ("list", inner) if inner is not None else None
    if origin is dict:
        inner = _number_shape(get_args(tp)[1])
        return ("dict", inner) if inner is not None else None
    return "number" if tp in (int, float) else None


def number_bounds(tp: Any) -> tuple[tuple[float, bool] | None, tuple[float, bool] | None]:
    """The (lower, upper) bounds of a numeric field's annotated type, each (value, inclusive) or
    None: `field_type(TrainConfig, "steps")` -> ((1, True), (10**9, True))."""
    low = high = None
    for item in _constraints(tp):
        for name, inclusive, is_low in (("ge", True, True), ("gt", False, True), ("le", True, False), ("lt", False, False)):
            bound = getattr(item, name, None)
            if bound is not None:
                if is_low:
                    low = (bound, inclusive)
                else:
                    high = (bound, inclusive)
    return low, high


def _constraints(tp: Any) -> list:
    origin = get_origin(tp)
    if origin is Annotated:
        out = []
        for item in get_args(tp)[1:]:
            out += list(getattr(item, "metadata", [])) or [item]  # a Field(...) holds its own metadata
        return _constraints(get_args(tp)[0]) + out
    if origin in (Union, types.UnionType):
        return [c for arg in get_args(tp) if arg is not type(None) for c in _constraints(arg)]
    return []


def tagged_union(default: str, *variants: type[Model], key: str = "kind"):
    """A union of config models told apart by their `key` field (`kind: group`), which may be
    left out to mean `default` (so `norm: {groups: 8}` is a group norm)."""
    from typing import Annotated, Union

    from pydantic import Discriminator, Tag

    from ..errors import OTHER_UNION_TAGS, UNION_TAGS

    tags = [variant.model_fields[key].default for variant in variants]
    UNION_TAGS.update(tags)
    OTHER_UNION_TAGS.update(tag for tag in tags if tag != default)

    def pick(value):
        if isinstance(value, dict):
            return value.get(key, default)
        return getattr(value, key, default)

    members = tuple(Annotated[variant, Tag(tag)] for variant, tag in zip(variants, tags))
    return Annotated[Union[members], Discriminator(pick, custom_error_type="invalid_kind",
                                                    custom_error_message=f"unknown {key}; use one of {', '.join(map(repr, tags))}")]
