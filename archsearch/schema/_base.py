"""The base of every archsearch config model: strict, frozen, documented."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Model"]


class Model(BaseModel):
    """A config section: unknown keys are errors, instances are immutable and hashable.

    Types are coerced the lax way pydantic does by default (YAML's `1e-4` is a string to
    PyYAML; it must still be accepted as a float), but nothing unknown is ever ignored.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        validate_default=True,
        use_attribute_docstrings=False,
    )


def tagged_union(default: str, *variants: type[Model], key: str = "kind"):
    """A union of config models told apart by their `key` field (`kind: group`), which may be
    left out to mean `default` (so `norm: {groups: 8}` is a group norm)."""
    from typing import Annotated, Union

    from pydantic import Discriminator, Tag

    from ..errors import UNION_TAGS

    tags = [variant.model_fields[key].default for variant in variants]
    UNION_TAGS.update(tags)

    def pick(value):
        if isinstance(value, dict):
            return value.get(key, default)
        return getattr(value, key, default)

    members = tuple(Annotated[variant, Tag(tag)] for variant, tag in zip(variants, tags))
    return Annotated[Union[members], Discriminator(pick, custom_error_type="invalid_kind",
                                                    custom_error_message=f"unknown {key}; use one of {', '.join(map(repr, tags))}")]
