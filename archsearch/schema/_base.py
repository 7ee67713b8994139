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
