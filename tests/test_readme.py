"""The README's examples are true: every ```yaml block validates (with archsearch and against the
JSON Schema of its kind) and every ```python block runs verbatim in a fresh clone's root."""

import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from archsearch.schema.files import file_kind, json_schema, load_any

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.S | re.M)


YAML_BLOCKS = code_blocks(README, "yaml")
PYTHON_BLOCKS = code_blocks(README, "python")


def test_the_readme_has_examples():
    assert len(YAML_BLOCKS) >= 3 and len(PYTHON_BLOCKS) >= 1


@pytest.mark.parametrize("text", YAML_BLOCKS, ids=[f"yaml{i}" for i in range(len(YAML_BLOCKS))])
def test_every_yaml_example_validates(text, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # paths in the README are relative to the repository root
    data = yaml.safe_load(text)
    jsonschema.Draft202012Validator(json_schema(file_kind(data))).validate(data)
    path = tmp_path / "example.yaml"
    path.write_text(text)
    load_any(path)  # raises ConfigErrors on any problem


@pytest.mark.parametrize("text", PYTHON_BLOCKS, ids=[f"python{i}" for i in range(len(PYTHON_BLOCKS))])
def test_every_python_example_runs(text, monkeypatch):
    monkeypatch.chdir(ROOT)  # paths in the README are relative to the repository root
    namespace: dict = {}
    exec(compile(text, "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
    if "eps" in namespace:
        assert namespace["eps"].shape == namespace["x"].shape


# --------------------------------------------------------------------------- docs/readme_ablation.py


def _script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_ablation", ROOT / "docs" / "readme_ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_says_how_its_ablation_table_is_made():
    script = _script()
    block = README.split(script.BEGIN, 1)[1].split(script.END, 1)[0]
    assert "| variant | description | Δ val loss [95% CI] |" in block and "seed_ablation_forest.png" in block
    assert "`python docs/readme_ablation.py`" in README.split(script.BEGIN, 1)[0]


@pytest.mark.parametrize("fresh", [False, True], ids=["results-dir", "fresh"])
def test_the_readme_ablation_script_rewrites_only_its_block(tmp_path, fresh):
    from test_ablation_cli import TINY
    from typer.testing import CliRunner

    from archsearch.cli import app

    script = _script()
    ablation = tmp_path / "tiny.yaml"
    seeds = 1 if fresh else 2  # base + 2 variants, 3 steps each
    ablation.write_text(yaml.safe_dump({**TINY, "seeds": seeds}, sort_keys=False))
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n\n{script.BEGIN}\nold table\n{script.END}\n\nafter\n")
    plot = tmp_path / "docs" / "forest.png"
    args = ["--ablation", str(ablation), "--readme", str(readme), "--plot", str(plot)]
    results = tmp_path / "results"
    if not fresh:
        assert CliRunner().invoke(app, ["ablate", str(ablation), "--results-dir", str(results)]).exit_code == 0
        args += ["--results-dir", str(results)]
    assert script.main(args) == 0

    head, rest = readme.read_text().split(script.BEGIN + "\n")
    block, tail = rest.split("\n" + script.END)
    assert head == "# title\n\nbefore\n\n" and tail == "\n\nafter\n"
    lines = block.splitlines()
    assert lines[0].startswith(f"(`archsearch ablate {ablation.as_posix()}`: {3 * seeds} trainings, ")
    assert lines[-1] == "![forest plot of the tiny ablation](docs/forest.png)"
    assert "| add-skips | add skips instead of concat |" in block and "| relu | ReLU instead of SiLU |" in block
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if not fresh:  # the very table of the study's ablation.md
        table = "\n".join(lines[2:-2])
        assert table.startswith("Base: val loss ") and table in (results / "tiny" / "ablation.md").read_text()


def test_the_readme_ablation_script_rewrites_the_named_block_only(tmp_path):
    from test_ablation_cli import TINY
    from typer.testing import CliRunner

    from archsearch.cli import app

    script = _script()
    ablation = tmp_path / "tiny.yaml"
    ablation.write_text(yaml.safe_dump({**TINY, "seeds": 1}, sort_keys=False))
    results = tmp_path / "results"
    assert CliRunner().invoke(app, ["ablate", str(ablation), "--results-dir", str(results)]).exit_code == 0
    readme = tmp_path / "README.md"
    seed_block = f"{script.BEGIN}\nseed table\n{script.END}"
    readme.write_text(f"{seed_block}\n\n<!-- other:begin -->\nold\n<!-- other:end -->\n")
    args = ["--ablation", str(ablation), "--readme", str(readme), "--plot", str(tmp_path / "f.png"),
            "--results-dir", str(results), "--marker", "other"]
    assert script.main(args) == 0
    text = readme.read_text()
    assert text.startswith(seed_block + "\n\n<!-- other:begin -->\n(`archsearch ablate ")
    assert "old" not in text and text.endswith("<!-- other:end -->\n")
