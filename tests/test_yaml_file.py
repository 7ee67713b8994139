"""Reading config files: every odd file is one `file: message` error naming the line, never a hang."""

from __future__ import annotations

import codecs

import pytest

from archsearch.errors import ConfigErrors
from archsearch.schema.yaml_file import MAX_DEPTH, MAX_NODES, read_yaml

SPACE = "study: {name: demo}\ntrain: {steps: 5}\n"


def read_error(tmp_path, content: bytes | str) -> str:
    path = tmp_path / "f.yaml"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(ConfigErrors) as exc:
        read_yaml(path)
    (error,) = exc.value.errors
    assert error.path == str(path)
    return error.message


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"])
def test_files_with_a_byte_order_mark_are_read(tmp_path, encoding):
    path = tmp_path / "f.yaml"
    text = SPACE.encode(encoding)
    bom = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE,
           "utf-32-le": codecs.BOM_UTF32_LE, "utf-32-be": codecs.BOM_UTF32_BE}.get(encoding, b"")
    path.write_bytes(bom + text)
    assert read_yaml(path) == {"study": {"name": "demo"}, "train": {"steps": 5}}


def test_other_encodings_name_the_byte(tmp_path):
    message = read_error(tmp_path, "study: {name: demo}\ntrain: {name: caf\xe9}\n".encode("latin-1"))
    assert "line 2, column 18" in message and "0xe9" in message and "UTF-8" in message


def test_a_binary_file(tmp_path):
    assert "binary" in read_error(tmp_path, b"\x00\x01garbage")


@pytest.mark.parametrize("content", ["", "\n\n", "# nothing but a comment\n", "{}\n", "---\n"])
def test_an_empty_file(tmp_path, content):
    assert "empty" in read_error(tmp_path, content)


@pytest.mark.parametrize("content,got", [("- a\n- b\n", "a list"), ("just text\n", "'just text'")])
def test_the_top_level_must_be_a_mapping(tmp_path, content, got):
    message = read_error(tmp_path, content)
    assert "expected a mapping" in message and got in message


def test_duplicate_keys_name_both_lines(tmp_path):
    message = read_error(tmp_path, "train: {steps: 5}\nstudy: {name: a}\ntrain: {steps: 9}\n")
    assert "line 3" in message and "duplicate key 'train'" in message and "first at line 1" in message
    nested = read_error(tmp_path, "train:\n  steps: 5\n  lr: 0.1\n  steps: 6\n")
    assert "line 4" in nested and "'steps'" in nested


def test_merge_keys_may_be_overridden(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text("defaults: &d {steps: 5, lr: 0.1}\ntrain:\n  <<: *d\n  lr: 0.2\n")
    assert read_yaml(path)["train"] == {"steps": 5, "lr": 0.2}


def test_deep_nesting(tmp_path):
    message = read_error(tmp_path, "architecture: " + "[" * 5000 + "]" * 5000 + "\n")
    assert f"more than {MAX_DEPTH} levels" in message and "line 1" in message
    block = "".join("  " * i + f"k{i}:\n" for i in range(MAX_DEPTH + 5)) + "  " * (MAX_DEPTH + 5) + "x: 1\n"
    assert f"more than {MAX_DEPTH} levels" in read_error(tmp_path, block)


def test_an_alias_bomb_is_refused_at_its_line(tmp_path):
    text, previous = "architecture:\n  a: &a [x, x, x, x, x, x, x, x, x, x]\n", "a"
    for name in "bcdefghi":
        text += f"  {name}: &{name} [{', '.join(['*' + previous] * 10)}]\n"
        previous = name
    message = read_error(tmp_path, text)
    assert f"more than {MAX_NODES:,} values" in message and "line 6" in message  # e: 10**5 leaves


def test_aliases_that_nest_deeply_or_contain_themselves(tmp_path):
    chain = "a0: &a0 1\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 200))
    assert f"more than {MAX_DEPTH} levels" in read_error(tmp_path, chain)
    assert "contains itself" in read_error(tmp_path, "a: &a [1, *a]\n")


def test_python_tags_are_not_executed(tmp_path):
    marker = tmp_path / "ran"
    message = read_error(tmp_path, f"a: !!python/object/apply:os.system ['touch {marker}']\n")
    assert "unsupported tag" in message and not marker.exists()


def test_syntax_errors_name_the_line(tmp_path):
    assert "line 2" in read_error(tmp_path, "study: {name: a}\ntrain: {steps: [5}\n")


def test_a_folder_or_a_missing_file(tmp_path):
    with pytest.raises(ConfigErrors, match="folder"):
        read_yaml(tmp_path)
    with pytest.raises(ConfigErrors, match="cannot read"):
        read_yaml(tmp_path / "missing.yaml")
