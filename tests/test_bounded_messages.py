"""A huge value costs a short line: every message quotes a user's value through `errors.excerpt`
(its middle elided), and nothing on the way from the value to the line (pydantic's messages,
`redact`'s scan for URLs) costs more than linear time.

Values of 150 KB, and 5 MB for a few, in the string fields a user types (a union's kind, a data
source, a device, a metric, a `--set` path, a storage URL), through the CLI: exit 2, one
`path: message` line per problem, each under 1 KB, within a hang guard (not a speed test).
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from archsearch.cli import app
from archsearch.errors import elide, excerpt
from test_bad_inputs import answers_within
from test_cli_options import SPACE

runner = CliRunner()
LINE = 1000  # the most characters of one error line


def huge(size: int) -> str:
    return "x" * (size - 1) + "y"  # the last character survives eliding: the excerpt shows both ends


def space_with(path: str, value) -> dict:
    """SPACE with `value` at the dotted `path` (`objectives.0.metric`: the first objective's metric)."""
    if path == "objectives.0.metric":
        return {**SPACE, "objectives": [{"metric": value, "direction": "minimize"}]}
    data = json.loads(json.dumps(SPACE))
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return data


FIELDS = {  # where a value goes in the space file -> the path its error names
    "study.sampler.kind": "study.sampler.kind",
    "study.pruner.kind": "study.pruner.kind",
    "architecture.block.norm.kind": "architecture.block.norm.kind",
    "architecture.block.activation": "architecture.block.activation",
    "data.source": "data.source",
    "study.device": "study.device",
    "study.name": "study.name",
    "objectives.0.metric": "objectives.0.metric",
}


def assert_one_short_line(output: str, path: str, size: int) -> None:
    lines = output.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{path}: "), output[:2000]
    assert len(lines[0]) < LINE, lines[0][:2000]
    assert f"({size:,} chars)" in lines[0] and "xy" in lines[0], lines[0]  # elided, both of its ends quoted


@pytest.mark.parametrize("field", list(FIELDS))
def test_a_huge_value_in_a_space_file_is_one_short_line(tmp_path, field):
    size = 150_000
    (tmp_path / "space.yaml").write_text(json.dumps(space_with(field, huge(size))))  # JSON is YAML
    with answers_within(30):
        result = runner.invoke(app, ["validate", str(tmp_path / "space.yaml")])
    assert result.exit_code == 2, result.output[:2000]
    assert_one_short_line(result.output, FIELDS[field], size)


@pytest.mark.parametrize("option,starts", [
    (f"--set={huge(5_000_000)}=1", "xxxxxxxx"),  # an unknown path: the path itself is elided
    (f"--set=study.device={huge(5_000_000)}", "study.device: "),
    (f"--set={huge(5_000_000)}", "--set: "),  # no `=`
], ids=["path", "value", "no-equals"])
def test_a_huge_set_option_is_one_short_line(tmp_path, option, starts):
    (tmp_path / "space.yaml").write_text(json.dumps(SPACE))
    with answers_within(60):
        result = runner.invoke(app, ["validate", str(tmp_path / "space.yaml"), option])
    assert result.exit_code == 2, result.output[:2000]
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith(starts) and len(lines[0]) < LINE, result.output[:2000]
    assert "(5,000,000 chars)" in lines[0]


def test_a_5mb_kind_in_a_space_file_is_one_short_line(tmp_path):
    size = 5_000_000
    (tmp_path / "space.yaml").write_text(json.dumps(space_with("study.sampler.kind", huge(size))))
    with answers_within(120):  # the YAML reader is pure Python: seconds for 5 MB, not the minutes it took
        result = runner.invoke(app, ["validate", str(tmp_path / "space.yaml")])
    assert result.exit_code == 2
    assert_one_short_line(result.output, "study.sampler.kind", size)


@pytest.mark.parametrize("url", [f"postgresql+psycopg://u:{huge(150_000)}@127.0.0.1:1/x",
                                 f"postgresql+nodriver://u:pw@127.0.0.1:1/{huge(5_000_000)}",
                                 f"grpc://{huge(5_000_000)}"], ids=["password", "database", "proxy"])
def test_a_huge_storage_url_is_one_short_line(tmp_path, monkeypatch, url):
    monkeypatch.chdir(tmp_path)
    with answers_within(60):
        result = runner.invoke(app, ["results", "--storage", url, "--study", "s"])
    assert result.exit_code in (1, 2), result.output[:2000]
    lines = [line for line in result.output.splitlines() if "--debug" not in line]
    assert len(lines) == 1 and len(lines[0]) < LINE and "x" * 200 not in lines[0], lines[0][:2000]


@pytest.mark.parametrize("value,limit", [("x" * 61, 60), ("x" * 5_000_000, 60), (list(range(100_000)), 60),
                                         ("é" * 1000, 40), (b"\x00" * 1000, 60)], ids=["61", "5MB", "list", "utf8", "bytes"])
def test_an_excerpt_is_at_most_its_limit_and_says_how_long_the_value_was(value, limit):
    shown = excerpt(value, limit)
    assert len(shown) <= limit and "chars)…" in shown
    assert shown.startswith(repr(value)[:5]) and shown.endswith(repr(value)[-3:])


def test_a_short_value_is_quoted_whole():
    assert excerpt("tpe") == "'tpe'" and excerpt(8) == "8" and elide("abc") == "abc"
