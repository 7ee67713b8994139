"""`archsearch validate`, `build` and `schema`: exit codes, `path: message` lines, no tracebacks."""

import json

import jsonschema
import pytest
from typer.testing import CliRunner

from archsearch.cli import app
from archsearch.schema.files import json_schema

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.mark.parametrize("name,count", [("seed", "4,530,243"), ("ddpm-cifar10", "35,746,307")])
def test_build_preset_prints_the_parameter_count(name, count):
    result = invoke("build", "--preset", name)
    assert result.exit_code == 0, result.output
    assert f"parameters: {count}" in result.output
    assert "forward GFLOPs per image:" in result.output
    assert "resolution" in result.output


def test_every_shipped_preset_is_registered_and_listed_in_the_help():
    from importlib import resources

    from archsearch.schema import PRESETS

    files = {f.name[:-5] for f in resources.files("archsearch.presets").iterdir() if f.name.endswith(".yaml")}
    assert files == set(PRESETS)
    help_text = " ".join(invoke("build", "--help").output.split())
    for name in PRESETS:
        assert name in help_text


def test_build_adm_preset(tmp_path):
    result = invoke("build", "--preset", "adm-imagenet64")
    assert result.exit_code == 0
    assert "parameters: 295,904,454" in result.output


def test_validate_reports_every_problem_with_exit_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "image_size: 30\n"
        "levels:\n  - {width: 60}\n  - {width: 64, attention: true}\n  - {width: 64}\n"
        "block: {norm: {groups: 32}, activaton: silu}\n"
    )
    result = invoke("validate", str(path))
    assert result.exit_code == 2
    assert "block.activaton: unknown field" in result.output
    assert "Traceback" not in result.output
    path.write_text("image_size: 30\nlevels:\n  - {width: 60}\n  - {width: 64, attention: true}\n  - {width: 64}\n")
    result = invoke("validate", str(path))
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert any(line.startswith("image_size: 30 is not divisible by 4") for line in lines)
    assert any(line.startswith("block.norm.groups: 32 does not divide the 60 channels") for line in lines)


def test_validate_accepts_a_good_config(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text("base: seed\nimage_size: 64\nblock: {activation: gelu}\n")
    result = invoke("validate", str(path))
    assert result.exit_code == 0
    assert "valid U-Net config" in result.output


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("image_size: 32\nlevels: [\n")
    result = invoke("validate", str(path))
    assert result.exit_code == 2
    assert "invalid YAML at line" in result.output


def test_missing_file_is_exit_2(tmp_path):
    result = invoke("validate", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert "cannot read the file" in result.output


def test_build_with_set_override(tmp_path):
    result = invoke("build", "--preset", "seed", "--set", "in_channels=1")
    assert result.exit_code == 0
    # 1 channel in and out: enc1.conv1 -1,152, enc1.skip -128, head -130 = 4,530,243 - 1,410
    assert "parameters: 4,528,833" in result.output


def test_schema_is_json_schema_with_distributions(tmp_path):
    out = tmp_path / "schema.json"
    assert invoke("schema", "space", "--out", str(out)).exit_code == 0
    schema = json.loads(out.read_text())
    assert schema["properties"]["architecture"] == {"$ref": "#/$defs/UNetConfig"}
    assert "Distribution" in schema["$defs"]
    unet = json.loads(invoke("schema", "unet").output)
    assert "levels" in unet["properties"] and unet["additionalProperties"] is False


@pytest.mark.parametrize("kind", ["unet", "space", "ablation"])
def test_schema_names_its_dialect_and_id(kind):
    schema = json.loads(invoke("schema", kind).output)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://archsearch.dev/schema/{kind}.json"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("kind, good, bad", [
    ("unet", {"base": "ddpm-cifar10", "compact": {"base_width": 64}}, {"base": "ddpm-cifar10", "levles": []}),
    ("unet", {"base": "seed"}, {"base": "no-such-preset"}),
    ("space", {"architecture": {"base": "seed"}, "constraints": ["params <= 5e6", "peak_mem_mb<=4000"]},
     {"architecture": {"base": "seed"}, "constraints": ["params << 5e6"]}),
    ("ablation", {"base": {"base": "seed"}, "variants": {"relu": {"block.activation": "relu"}}},
     {"base": {"base": "seed", "depht": 2}, "variants": {"relu": {}}}),
])
def test_the_json_schema_accepts_the_documented_forms_and_rejects_typos(kind, good, bad):
    validator = jsonschema.Draft202012Validator(json_schema(kind))
    assert list(validator.iter_errors(good)) == []
    assert list(validator.iter_errors(bad)) != []


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output.strip() == "archsearch 0.1.0"


def test_help_lists_debug_and_version():
    result = invoke("--help")
    assert result.exit_code == 0
    assert "--debug" in result.output and "traceback" in result.output.lower()
    assert "--version" in result.output
