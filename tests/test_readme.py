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
def test_every_yaml_example_validates(text, tmp_path):
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
