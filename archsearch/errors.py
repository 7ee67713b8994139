"""Errors a user can act on.

Every problem with a user's input becomes a `ConfigError(path, message)`: `path` is the dotted
path of the field in the file the user wrote (`levels.1.width`, `block.norm.groups`), and
`message` says what is wrong and how to fix it. Several problems travel together in
`ConfigErrors`, so a user sees all of them at once. The CLI prints them as `path: message` lines
and exits with status 2.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["ConfigError", "ConfigErrors", "format_loc", "from_validation_error"]


def format_loc(loc: Sequence[str | int]) -> str:
    """Join a pydantic location tuple into a dotted path (`("levels", 1, "width")` -> `levels.1.width`)."""
    return ".".join(str(part) for part in loc)


class ConfigError(ValueError):
    """One invalid field: where it is and what to do about it."""

    def __init__(self, path: str, message: str):
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)

    def prefixed(self, prefix: str) -> ConfigError:
        """The same error located under `prefix` (for a config nested in a larger file)."""
        if not prefix:
            return self
        return ConfigError(f"{prefix}.{self.path}" if self.path else prefix, self.message)


class ConfigErrors(ValueError):
    """All the problems found in one input, reported together."""

    def __init__(self, errors: Iterable[ConfigError]):
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))

    def prefixed(self, prefix: str) -> ConfigErrors:
        return ConfigErrors(e.prefixed(prefix) for e in self.errors)

    def lines(self) -> list[str]:
        return [str(e) for e in self.errors]


def from_validation_error(exc, prefix: str = "") -> ConfigErrors:
    """Turn a pydantic `ValidationError` into `ConfigErrors` with dotted paths.

    Pydantic locations of discriminated unions carry the tag (`norm.group.groups`); the tag is
    dropped so the path is the one the user wrote (`norm.groups`).
    """
    errors = []
    for err in exc.errors(include_url=False):
        loc = [part for part in err["loc"] if not _is_union_tag(part, err)]
        message = err["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        if err["type"] == "extra_forbidden":
            message = "unknown field (check its spelling; see `archsearch schema`)"
        elif err["type"] == "missing":
            message = "required field is missing"
        errors.append(ConfigError(format_loc(loc), message).prefixed(prefix))
    return ConfigErrors(errors)


def _is_union_tag(part: str | int, err: dict) -> bool:
    # pydantic inserts the discriminator value (or a `function-after[...]` marker) into the loc.
    return isinstance(part, str) and (part in _UNION_TAGS or part.startswith(("function-", "list[", "tagged-union[")))


# Tags of the discriminated unions in archsearch.schema; kept in one place so that error paths
# read like the user's file. Filled by archsearch.schema at import.
_UNION_TAGS: set[str] = set()
