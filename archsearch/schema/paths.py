"""Dotted paths into nested config data: `block.norm.groups`, `levels.2.attention`.

The same dotted names are config paths, Optuna parameter names and results-table columns.
"""

from __future__ import annotations

import copy
from typing import Any

from ..errors import ConfigError, ConfigErrors

__all__ = ["split_path", "get_path", "set_path", "apply_sets", "flatten"]


def split_path(path: str) -> list[str | int]:
    """`levels.2.width` -> ["levels", 2, "width"] (all-digit parts are list indices)."""
    return [int(p) if p.isdigit() else p for p in path.split(".") if p != ""]


def get_path(data: Any, path: str, default: Any = None) -> Any:
    node = data
    for part in split_path(path):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return default
    return node


def set_path(data: dict, path: str, value: Any) -> dict:
    """A copy of `data` with `path` set to `value`, creating mappings on the way."""
    parts = split_path(path)
    if not parts:
        raise ConfigErrors([ConfigError(path, "empty path")])
    out = copy.deepcopy(data)
    node = out
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(node, list):
            if not isinstance(part, int) or part >= len(node):
                raise ConfigErrors([ConfigError(path, f"index {part} is out of range (the list has {len(node)} items)")])
        elif not isinstance(node.get(part), (dict, list)):
            node[part] = [] if isinstance(nxt, int) else {}
        node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or last >= len(node):
            raise ConfigErrors([ConfigError(path, f"index {last} is out of range (the list has {len(node)} items)")])
    node[last] = value
    return out


def apply_sets(data: dict, sets: dict[str, Any] | None) -> dict:
    """A copy of `data` with every `--set path=value` override applied, in order."""
    for path, value in (sets or {}).items():
        data = set_path(data, path, value)
    return data


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings and lists -> {dotted path: leaf value} (lists of scalars stay whole)."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
    elif isinstance(data, list) and any(isinstance(v, (dict, list)) for v in data):
        for i, value in enumerate(data):
            out.update(flatten(value, f"{prefix}{i}."))
    else:
        out[prefix[:-1]] = data
    return out
