"""Every shipped file under search_spaces/ validates, and every network a shipped space samples
plans: a user copying one never starts from a broken example. Validation reads no data, so the
CIFAR-10 spaces validate on a machine without CIFAR-10."""

from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from archsearch.cli import app
from archsearch.schema.files import file_kind, json_schema, load_any
from archsearch.search.sampling import sample_configs

ROOT = Path(__file__).parent.parent / "search_spaces"
FILES = sorted(ROOT.rglob("*.yaml"))
NAMES = [str(p.relative_to(ROOT)) for p in FILES]


SPACES = [p for p in FILES if file_kind(yaml.safe_load(p.read_text())) == "space"]
PRESETS = sorted((Path(__file__).parent.parent / "archsearch" / "presets").glob("*.yaml"))


def test_the_shipped_files_are_there():
    assert {"quickstart.yaml", "train_digits.yaml", "seed.yaml", "ddpm_cifar10.yaml"} <= set(NAMES)


@pytest.mark.parametrize("path", FILES, ids=NAMES)
def test_every_shipped_file_validates(path):
    kind, obj = load_any(path)
    assert kind in ("space file", "ablation file")


@pytest.mark.parametrize("path", FILES + PRESETS, ids=NAMES + [f"presets/{p.name}" for p in PRESETS])
def test_every_shipped_file_matches_its_json_schema(path):
    data = yaml.safe_load(path.read_text())
    kind = "unet" if path in PRESETS else file_kind(data)
    jsonschema.Draft202012Validator(json_schema(kind)).validate(data)


@pytest.mark.parametrize("path", SPACES, ids=[p.name for p in SPACES])
def test_every_sample_of_a_shipped_space_plans(path):
    _, space = load_any(path)
    if space.is_fixed():
        assert space.fixed_architecture() and space.fixed_train()
        return
    configs = [c for seed in range(10) for c in sample_configs(space, 4, seed=seed)]  # raises on any broken rule
    assert len({c.model_dump_json() for c in configs}) > 1  # the space really varies


def test_the_train_file_describes_one_cpu_trial():
    _, space = load_any(ROOT / "train_digits.yaml")
    assert space.is_fixed() and space.study.device == "cpu" and space.data.source == "digits"


@pytest.mark.parametrize("name, base_params", [("seed.yaml", "levels"), ("ddpm_cifar10.yaml", "compact")])
def test_the_gpu_spaces_search_around_their_preset_on_cifar10(name, base_params):
    _, space = load_any(ROOT / name)
    assert space.study.device == "cuda" and space.data.source == "cifar10" and not space.data.download
    assert (space.architecture["image_size"], space.architecture["in_channels"]) == (32, 3)
    assert base_params in space.architecture and not space.is_fixed()


def test_the_edm_space_draws_every_block_family_at_cifar10_size():
    _, space = load_any(ROOT / "edm_cifar10.yaml")
    assert space.study.device == "cuda" and space.data.source == "cifar10" and not space.data.download

    def family(config) -> str:
        if config.block.kind == "mp":
            return "edm2"
        return "ddpm++" if config.block.rescale else "adm"

    configs = [c for seed in range(5) for c in sample_configs(space, 8, seed=seed)]
    assert {family(c) for c in configs} == {"adm", "ddpm++", "edm2"}
    assert {(c.image_size, c.in_channels, c.num_classes) for c in configs} == {(32, 3, None)}


@pytest.mark.parametrize("name", ["seed.yaml", "ddpm_cifar10.yaml", "edm_cifar10.yaml"])
def test_build_shows_three_samples(name):
    result = CliRunner().invoke(app, ["build", str(ROOT / name), "--sample", "3"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert [f"sample {i}" in result.output for i in range(3)] == [True] * 3
    assert result.output.count("parameters: ") == 3


def test_every_quickstart_architecture_exports_to_diffusers():
    """The quickstart promises `archsearch export results/quickstart --trial knee --to diffusers`
    works whatever the search found: every architecture its space draws is one UNet2DModel expresses
    (the wider digits space is the contrast: it draws add-skips, GELU and pooling)."""
    from archsearch.errors import ConfigErrors
    from archsearch.export.diffusers import diffusers_config
    from archsearch.schema.space import load_space
    from archsearch.search.sampling import sample_configs

    root = Path(__file__).parent.parent / "search_spaces"
    for config in sample_configs(load_space(root / "quickstart.yaml"), 200, seed=0):
        diffusers_config(config)  # raises ConfigErrors listing what UNet2DModel cannot express
    refused = 0
    for config in sample_configs(load_space(root / "digits.yaml"), 20, seed=0):
        try:
            diffusers_config(config)
        except ConfigErrors:
            refused += 1
    assert refused == 20
