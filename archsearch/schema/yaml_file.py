"""Reading a YAML config file safely: whatever the bytes, a mapping or one `file: message` error.

    data = read_yaml("space.yaml")     # dict, or ConfigErrors naming the file and the line

A config file is small and written by hand, so anything unusual is a mistake to report, not a
structure to process:

- **Text**: UTF-8, or UTF-16/32 announced by a byte-order mark (what Windows editors save);
  other bytes are reported with their position. An empty file (or one holding only comments)
  is an error: it describes nothing, and is most often a file truncated by a failed copy.
- **Duplicate keys** are errors: PyYAML silently keeps the last one, so a second `train:`
  section would quietly replace the first.
- **Depth** is capped (`MAX_DEPTH` levels of nesting), before PyYAML's recursive composer can
  hit Python's recursion limit.
- **Aliases** may share a node (`&defaults` / `*defaults`), but the file expanded into a tree
  may hold at most `MAX_NODES` nodes: a "billion laughs" alias bomb is refused at its anchor's
  line before any code walks the expanded tree, and a node that contains itself is refused too.
- **Merge keys** (`<<: *defaults`): one per mapping, merging a mapping or a list of them;
  PyYAML would quietly apply a second `<<` too, and its error for a merged scalar points at the
  anchor, not at the `<<`.
- **Keys are names**: a key YAML reads as something else (`on:` and `no:` are booleans, `~:` is
  null, `1:` a number) is an error naming what it was read as, not a field called `True`.
- Only YAML's plain types are built (`yaml.SafeLoader`): a `!!python/...` tag is an error.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, ConfigErrors, excerpt

__all__ = ["read_yaml", "read_yaml_value", "MAX_DEPTH", "MAX_NODES", "MAX_BYTES"]

MAX_DEPTH = 64          # nesting levels; a space file uses about 8
MAX_NODES = 100_000     # nodes of the file expanded through its aliases; a space file has a few hundred
MAX_BYTES = 10_000_000  # a config file is a few kilobytes

# Longest first: the UTF-32 little-endian mark starts with the UTF-16 one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a config file into a mapping; every problem is a ConfigError located at the file."""
    path = Path(path)
    try:
        raw = _read_bytes(path)
    except OSError as exc:
        raise _error(path, f"cannot read the file ({exc.strerror or exc})") from None
    text = _decode(path, raw)
    try:
        node = _compose(text)
    except yaml.YAMLError as exc:
        raise _error(path, _describe_yaml_error(exc)) from None
    except RecursionError:
        raise _error(path, f"nested too deeply to read (more than {MAX_DEPTH} levels)") from None
    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"):
        raise _error(path, "the file is empty: it holds no fields (was it truncated?)")
    if not isinstance(node, yaml.MappingNode):
        kind = "a list" if isinstance(node, yaml.SequenceNode) else f"the single value {excerpt(node.value)}"
        raise _error(path, f"line {node.start_mark.line + 1}: expected a mapping of fields (`name: value` lines), got {kind}")
    _check_expansion(path, node)
    try:
        _check_keys(node)
        data = _Loader.construct(node)
    except yaml.YAMLError as exc:
        raise _error(path, _describe_yaml_error(exc)) from None
    if not data:
        raise _error(path, "the file holds an empty mapping: it describes nothing")
    return data


def read_yaml_value(text: str, where: str) -> Any:
    """A value written as YAML text (`--set train.lr=1e-3`, `--set levels=[...]`), read under the
    rules of a file; problems are ConfigErrors located at `where`. Text that is not YAML at all
    (`a: b: c`) is the text itself."""
    try:
        node = _compose(text)
    except RecursionError:
        raise _error(where, f"nested too deeply to read (more than {MAX_DEPTH} levels)") from None
    except yaml.YAMLError as exc:
        if isinstance(exc, yaml.MarkedYAMLError):  # a syntax error (the depth check raises a plain YAMLError)
            return text  # not YAML: a string, as the shell gave it
        raise _error(where, _describe_yaml_error(exc)) from None
    if node is None:
        return None
    _check_expansion(where, node)
    try:
        _check_keys(node)
        return _Loader.construct(node)
    except yaml.YAMLError as exc:
        raise _error(where, _describe_yaml_error(exc)) from None


def _error(path: Path | str, message: str) -> ConfigErrors:
    return ConfigErrors([ConfigError(str(path), message)])


def _read_bytes(path: Path) -> bytes:
    if path.is_dir():
        raise IsADirectoryError(21, "it is a folder, not a file")
    with path.open("rb") as f:
        raw = f.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise OSError(27, f"it is larger than {MAX_BYTES // 1_000_000} MB; a config file is a few kilobytes")
    return raw


def _decode(path: Path, raw: bytes) -> str:
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            try:
                return raw[len(bom):].decode(encoding)
            except UnicodeDecodeError as exc:
                raise _error(path, f"starts with a {encoding.upper()} byte-order mark but is not valid {encoding.upper()} "
                                   f"(byte {exc.start}); save it as UTF-8") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _error(path, f"line {line}, column {column}: byte 0x{raw[exc.start]:02x} is not UTF-8 text "
                           f"(is it a binary file, or saved in another encoding?); save it as UTF-8") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise _error(path, f"line {line}: a NUL byte; this is a binary file, not YAML text")
    return text


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys."""

    @classmethod
    def construct(cls, node: yaml.Node) -> Any:
        loader = cls("")
        try:
            return loader.construct_document(node)
        finally:
            loader.dispose()

    def construct_mapping(self, node, deep=False):
        # Written keys only: a key merged in with `<<: *defaults` may be overridden, as YAML intends.
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the base class reports it
                    break
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None,
                        f"duplicate key {excerpt(key)} (first at line {first.start_mark.line + 1}); each key may appear once",
                        key_node.start_mark,
                    )
                seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


_MERGE = "tag:yaml.org,2002:merge"
_STR = "tag:yaml.org,2002:str"
_READ_AS = {"tag:yaml.org,2002:bool": "a boolean", "tag:yaml.org,2002:null": "null", "tag:yaml.org,2002:int": "an integer",
            "tag:yaml.org,2002:float": "a number", "tag:yaml.org,2002:timestamp": "a date"}


def _check_keys(root: yaml.Node) -> None:
    """Every mapping of the composed graph (each node once, aliases shared): keys are text, and
    at most one `<<` merges a mapping or a list of mappings. Raises a ConstructorError at the key."""
    seen: set[int] = set()
    todo = [root]
    while todo:
        node = todo.pop()
        if id(node) in seen or isinstance(node, yaml.ScalarNode):
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            todo.extend(node.value)
            continue
        merge = None
        for key, value in node.value:
            if key.tag == _MERGE:
                if merge is not None:
                    _refuse(key, f"a second merge key `<<` in this mapping (the first at line {merge.start_mark.line + 1}); "
                                 "merge several mappings with one: `<<: [*first, *second]`")
                merge = key
                _check_merged(key, value, {k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)})
            elif not isinstance(key, yaml.ScalarNode):
                _refuse(key, f"a {'list' if isinstance(key, yaml.SequenceNode) else 'mapping'} as a key; keys are field names")
            elif key.tag != _STR:
                what = _READ_AS.get(key.tag, f"a value tagged {key.tag}")
                _refuse(key, f"the key {excerpt(key.value)} is read by YAML as {what}, but keys are field names; quote it "
                             "if it is one")
            todo.extend((key, value))


def _check_merged(key: yaml.Node, value: yaml.Node, own: set[str]) -> None:
    """What `<<` merges: mappings, no two of which set a key the mapping does not set itself (which
    of them wins differs between YAML readers, and between PyYAML releases)."""
    merged = value.value if isinstance(value, yaml.SequenceNode) else [value]
    first_set: dict[str, yaml.Node] = {}  # key -> the merged mapping that sets it first
    for item in merged:
        if not isinstance(item, yaml.MappingNode):
            what = "a list" if isinstance(item, yaml.SequenceNode) else f"the value {excerpt(item.value)}"
            # An alias names a node written earlier: say where, since that is what the user must look at.
            anchored = f", anchored at line {item.start_mark.line + 1}" if item.start_mark.line < key.start_mark.line else ""
            inside = " in its list" if item is not value else ""
            _refuse(key, f"`<<` merges a mapping or a list of mappings, but finds {what}{inside}{anchored}")
        for name, _ in item.value:
            if not isinstance(name, yaml.ScalarNode) or name.tag == _MERGE or name.value in own:
                continue
            first = first_set.setdefault(name.value, item)
            if first is not item:
                _refuse(key, f"{excerpt(name.value)} is set by more than one of the merged mappings (lines "
                             f"{first.start_mark.line + 1} and {item.start_mark.line + 1}); which one "
                             f"wins differs between YAML readers: set it in this mapping, or merge only one")


def _refuse(node: yaml.Node, problem: str) -> None:
    raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark)


def _compose(text: str) -> yaml.Node | None:
    _check_depth(text)
    loader = _Loader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


_OPEN = (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken, yaml.FlowMappingStartToken, yaml.FlowSequenceStartToken)
_CLOSE = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)


def _check_depth(text: str) -> None:
    """Count nesting on the token stream (PyYAML's scanner is iterative; its composer recurses)."""
    depth = 0
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(token, _OPEN):
            depth += 1
            if depth > MAX_DEPTH:
                raise yaml.YAMLError(f"line {token.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep")
        elif isinstance(token, _CLOSE):
            depth -= 1


def _check_expansion(path: Path, root: yaml.Node) -> None:
    """Size and depth of the tree the aliases expand into, computed on the shared graph.

    Linear time: an alias points to a node composed earlier in the file, so a depth-first walk
    in file order has always measured it already (or is inside it: a node containing itself).
    The error names the first node, in post-order, past a cap: the line where nested aliases
    start to multiply, not merely the top of the file.
    """
    measured: dict[int, tuple[int, int]] = {}  # id -> (nodes, height) of the expanded subtree
    visiting: set[int] = set()

    def measure(node: yaml.Node) -> tuple[int, int]:
        key = id(node)
        if key in measured:
            return measured[key]
        if key in visiting:
            raise _error(path, f"line {node.start_mark.line + 1}: this value contains itself through an alias")
        visiting.add(key)
        children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else (
            node.value if isinstance(node, yaml.SequenceNode) else [])
        sizes = [measure(child) for child in children]
        nodes, height = 1 + sum(n for n, _ in sizes), 1 + max((h for _, h in sizes), default=0)
        line = node.start_mark.line + 1
        if nodes > MAX_NODES:
            raise _error(path, f"line {line}: aliases expand this value to more than {MAX_NODES:,} values "
                               f"(an alias bomb?); write the values out or nest fewer aliases")
        if height > MAX_DEPTH:
            raise _error(path, f"line {line}: aliases nest this value more than {MAX_DEPTH} levels deep")
        visiting.discard(key)
        measured[key] = nodes, height
        return measured[key]

    measure(root)


def _describe_yaml_error(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    if "could not determine a constructor" in problem:
        problem = problem.replace("could not determine a constructor for the tag", "unsupported tag") + \
            " (only plain YAML values are read)"
    return f"invalid YAML at {where}{problem}" if where else f"invalid YAML: {problem}"
