"""Keys of a config file: names, and merge keys (`<<`) used one way only, each problem at its line.

PyYAML applies a second `<<` of a mapping silently (a duplicate key, which every other key may
not be), points at the anchor when a merged alias is not a mapping, and turns `on:` into a key
`True`; the reader refuses each at the key's line and column.
"""

from __future__ import annotations

import pytest

from archsearch.errors import ConfigErrors
from archsearch.schema.yaml_file import read_yaml, read_yaml_value


def read(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return read_yaml(path)


def error_of(tmp_path, text: str) -> str:
    with pytest.raises(ConfigErrors) as info:
        read(tmp_path, text)
    (error,) = info.value.errors
    assert error.path.endswith("c.yaml")
    return error.message


def test_one_merge_of_a_mapping_or_a_list_of_them_is_read(tmp_path):
    text = ("a: &a {steps: 5, lr: 0.1}\nb: &b {lr: 0.2, seed: 3}\none:\n  <<: *a\n  lr: 0.3\n"
            "both:\n  <<: [*a, *b]\n  lr: 0.4\n")
    data = read(tmp_path, text)
    assert data["one"] == {"steps": 5, "lr": 0.3}
    assert data["both"] == {"steps": 5, "lr": 0.4, "seed": 3}  # set here: whatever the merged mappings say


def test_a_key_two_merged_mappings_both_set_is_refused(tmp_path):
    # Which one wins differs between PyYAML releases (6.0.3: the first listed; 6.0.4: the last).
    message = error_of(tmp_path, "a: &a {steps: 5, lr: 0.1}\nb: &b {lr: 0.2, seed: 3}\nboth:\n  <<: [*a, *b]\n")
    assert message.startswith("invalid YAML at line 4, column 3: 'lr' is set by more than one of the merged mappings "
                              "(lines 1 and 2)"), message


def test_a_second_merge_key_is_refused_at_its_line(tmp_path):
    message = error_of(tmp_path, "a: &a {steps: 5}\nb: &b {lr: 0.1}\ntrain:\n  <<: *a\n  <<: *b\n")
    assert message.startswith("invalid YAML at line 5, column 3: a second merge key `<<` in this mapping "
                              "(the first at line 4)"), message
    assert "<<: [*first, *second]" in message


def test_a_second_merge_key_inside_a_merged_anchor_is_refused_too(tmp_path):
    # The anchor is flattened when the alias is merged; the check walks the composed graph first.
    text = "x: &x {a: 1}\ny: &y {b: 2}\nd: &d\n  <<: *x\n  <<: *y\ntrain:\n  <<: *d\n"
    assert "line 5, column 3: a second merge key" in error_of(tmp_path, text)


@pytest.mark.parametrize("text,says", [
    ("train:\n  <<: 5\n", "line 2, column 3: `<<` merges a mapping or a list of mappings, but finds the value '5'"),
    ("train:\n  <<: ~\n", "finds the value '~'"),
    ("s: &s hello\ntrain:\n  <<: *s\n", "line 3, column 3: `<<` merges a mapping or a list of mappings, but finds the "
                                        "value 'hello', anchored at line 1"),
    ("l: &l [1, 2]\ntrain:\n  <<: *l\n", "finds the value '1' in its list, anchored at line 1"),
    ("train:\n  <<: [{steps: 5}, [1]]\n", "finds a list in its list"),
])
def test_a_merge_of_something_else_than_mappings_is_refused_at_the_merge_key(tmp_path, text, says):
    assert says in error_of(tmp_path, text)


@pytest.mark.parametrize("key,kind", [("on", "a boolean"), ("no", "a boolean"), ("true", "a boolean"), ("~", "null"),
                                      ("null", "null"), ("1", "an integer"), ("1.5", "a number"),
                                      ("2024-01-01", "a date")])
def test_a_key_yaml_reads_as_another_type_is_refused(tmp_path, key, kind):
    message = error_of(tmp_path, f"train:\n  {key}: 5\n")
    assert message.startswith(f"invalid YAML at line 2, column 3: the key {key!r} is read by YAML as {kind}"), message


@pytest.mark.parametrize("text", ["train:\n  ? [a, b]\n  : 5\n", "train:\n  ? {a: 1}\n  : 5\n"])
def test_a_list_or_mapping_as_a_key_is_refused(tmp_path, text):
    assert "as a key; keys are field names" in error_of(tmp_path, text)


def test_a_quoted_key_is_a_name(tmp_path):
    assert read(tmp_path, "train:\n  'on': 5\n  \"1\": 6\n") == {"train": {"on": 5, "1": 6}}


def test_a_value_is_read_like_a_file():
    assert read_yaml_value("[1, 2]", "--set") == [1, 2]
    assert read_yaml_value("", "--set") is None
    assert read_yaml_value("a: b: c", "--set") == "a: b: c"  # not YAML: the text itself
    for text in ("{a: 1, a: 2}", "{<<: 5}", "{yes: 1}", "[" * 100 + "]" * 100):
        with pytest.raises(ConfigErrors) as info:
            read_yaml_value(text, "--set")
        assert info.value.errors[0].path == "--set"
