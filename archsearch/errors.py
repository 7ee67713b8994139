"""Errors a user can act on.

Every problem with a user's input becomes a `ConfigError(path, message)`: `path` is the dotted
path of the field in the file the user wrote (`levels.1.width`, `block.norm.groups`), and
`message` says what is wrong and how to fix it. Several problems travel together in
`ConfigErrors`, so a user sees all of them at once. The CLI prints them as `path: message` lines
and exits with status 2.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["ConfigError", "ConfigErrors", "Interrupted", "excerpt", "elide", "format_loc", "from_validation_error"]

EXCERPT = 60  # the most characters of a user's value a message quotes


def excerpt(value, limit: int = EXCERPT) -> str:
    """`repr(value)` for a message, its middle elided past `limit` characters:
    `'xxxxxxxxxxxxxxxxxxxxxxxxxx…(150,000 chars)…xxxxxxxxxxxx'`. A message quotes a user's value
    through this, so that a 5 MB value costs a short line (and linear time), not a 5 MB one."""
    text = repr(value)
    return elide(text, limit, len(value) if isinstance(value, (str, bytes)) else len(text))


def elide(text: str, limit: int = EXCERPT, size: int | None = None) -> str:
    """`text`, its middle replaced by `…(N chars)…` when longer than `limit` (N: `size`, or its length)."""
    if len(text) <= limit:
        return text
    marker = f"…({len(text) if size is None else size:,} chars)…"
    keep = max(limit - len(marker), 12)
    return f"{text[: keep - keep // 3]}{marker}{text[-(keep // 3):]}"


def format_loc(loc: Sequence[str | int]) -> str:
    """Join a pydantic location tuple into a dotted path (`("levels", 1, "width")` -> `levels.1.width`);
    a key longer than a path's part ever is shows elided."""
    return ".".join(elide(str(part)) for part in loc)


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


class Interrupted(BaseException):
    """SIGINT/SIGTERM arrived while a study ran; `code` is the exit status to end with (130 or 143).

    A BaseException, like KeyboardInterrupt: no `except Exception` on the way may swallow it.
    """

    def __init__(self, signum: int):
        import signal

        self.signum = signum
        self.code = 128 + signum
        super().__init__(signal.Signals(signum).name)


def from_validation_error(exc, data=None, prefix: str = "") -> ConfigErrors:
    """Turn a pydantic `ValidationError` into `ConfigErrors` with the paths the user wrote.

    Pydantic puts the tag of a discriminated union into the location (`norm.group.groups` for
    `norm: {kind: group, groups: ...}`); walking the input `data` along the location drops it,
    so the path reads `norm.groups`.
    """
    errors = []
    for err in exc.errors(include_url=False):
        loc = _user_loc(err["loc"], data)
        message = _elided_values(err)
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        if err["type"] == "extra_forbidden":
            message = "unknown field (check its spelling; `archsearch schema` lists the fields)"
            parent = _node_at(loc[:-1], data)
            if isinstance(parent, dict) and parent.get("kind") in OTHER_UNION_TAGS:  # a field of another kind?
                message = (f"unknown field for kind {excerpt(parent['kind'])} (check its spelling, or the kind; "
                           "`archsearch schema` lists each kind's fields)")
        elif err["type"] == "missing":
            message = "required field is missing"
        elif err["type"] == "invalid_kind" and isinstance(err.get("input"), dict):
            key = "source" if "source" in err["input"] else "kind"
            loc, message = [*loc, key], f"{message} (got {excerpt(err['input'].get(key))})"
        elif err["type"] in ("union_tag_invalid", "literal_error", "enum") or _is_scalar(err.get("input")):
            message = f"{message} (got {excerpt(err.get('input'), 40)})"
        errors.append(ConfigError(format_loc(loc), message).prefixed(prefix))
    return ConfigErrors(errors)


# Tags of the discriminated unions of archsearch.schema (filled by schema._base.tagged_union),
# so that error paths drop them and read like the user's file.
UNION_TAGS: set[str] = set()
# The tags that are not their union's default (`kind: mp`): an unknown field under one of them is
# most likely a field of the default kind, and its message says which kind was written.
OTHER_UNION_TAGS: set[str] = set()


def _user_loc(loc: Sequence[str | int], data) -> list[str | int]:
    out, node = [], data
    for part in loc:
        if isinstance(part, str) and part.startswith(("function-", "tagged-union[", "list[", "dict[")):
            continue
        if isinstance(node, dict) and isinstance(part, str) and part not in node:
            if part in UNION_TAGS or part in (node.get("kind"), node.get("source")):  # a union tag, not a key
                continue
        out.append(part)
        node = _child(node, part)
    return out


def _is_scalar(value) -> bool:
    return isinstance(value, (int, float, str)) and not isinstance(value, bool)


def _elided_values(err: dict) -> str:
    """Pydantic's message, with the long text values it quotes elided: a union's message says
    `Input tag '<the whole value>' found using 'kind' ...`, and a validator's may quote its input."""
    message = err["msg"]
    quoted = (err.get("input"), (err.get("ctx") or {}).get("tag"))  # what the user wrote (not the expected values)
    for value in {v for v in quoted if isinstance(v, str) and len(v) > EXCERPT}:
        for form in (value, repr(value)[1:-1]):  # as written, and as a validator's {value!r} escapes it
            message = message.replace(form, elide(form, size=len(value)))
    return message


def _node_at(loc, data):
    node = data
    for part in loc:
        node = _child(node, part)
    return node


def _child(node, part):
    if isinstance(node, dict):
        return node.get(part)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return None
