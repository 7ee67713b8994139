"""The base of every archsearch config model: strict, frozen, documented."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Model",
    "MAX_CHANNELS",
    "MAX_BLOCKS",
    "MAX_LEVELS",
    "MAX_HEADS",
    "MAX_IMAGE_SIZE",
    "MAX_CLASSES",
    "MAX_SEED",
    "MAX_COUNT",
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

Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]


class Model(BaseModel):
    """A config section: unknown keys are errors, instances are immutable and hashable.

    Types are coerced the lax way pydantic does by default (YAML's `1e-4` is a string to
    PyYAML; it must still be accepted as a float), but nothing unknown is ever ignored. No float
    field takes infinity or NaN (`.inf` in YAML): where "no limit" makes sense, the field is
    optional and null means it.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        validate_default=True,
        use_attribute_docstrings=False,
    )


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
