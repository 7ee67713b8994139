"""Export to diffusers' UNet2DModel, checked by outputs: the same weights give the same numbers.

Needs diffusers (`pip install -e '.[diffusers]'`; CI installs it). Round trips start from
hand-written diffusers configs (tests/diffusers_configs/): diffusers' model with random weights ->
archsearch config (`base: diffusers:PATH`) and weights (`from_diffusers`) -> `archsearch export`
-> `UNet2DModel.from_pretrained`, whose config.json fields and outputs equal the original's.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="diffusers is not installed: pip install -e '.[diffusers]'")
pytest.importorskip("safetensors", reason="safetensors is not installed: pip install -e '.[diffusers]'")

from diffusers import UNet2DModel  # noqa: E402
from export_study import make_export_study, trial_config  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from archsearch.cli import app  # noqa: E402
from archsearch.export import Source, diffusers_config, export, from_diffusers, max_abs_difference, to_diffusers  # noqa: E402
from archsearch.nn import build_unet  # noqa: E402
from archsearch.plan import plan_unet  # noqa: E402
from archsearch.schema import unet_config_from_dict  # noqa: E402
from archsearch.schema.diffusers import DEFAULTS  # noqa: E402
from archsearch.train import load_checkpoint  # noqa: E402

CONFIGS = Path(__file__).parent / "diffusers_configs"
NAMES = sorted(p.stem for p in CONFIGS.glob("*.json"))
TOLERANCE = 1e-5


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Norm scales and shifts away from 1 and 0, so a misplaced one changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
    return model.eval()


def public(config) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(config).items() if not k.startswith("_")}


def test_the_defaults_table_is_unet2dmodels():
    signature = inspect.signature(UNet2DModel.__init__).parameters
    defaults = {k: p.default for k, p in signature.items() if k != "self"}
    assert {k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items()} == DEFAULTS


@pytest.mark.parametrize("name", NAMES)
def test_a_diffusers_model_round_trips_through_archsearch(name, tmp_path):
    path = CONFIGS / f"{name}.json"
    torch.manual_seed(0)
    theirs = randomized(UNet2DModel.from_config(UNet2DModel.load_config(path)))
    config = unet_config_from_dict({"base": f"diffusers:{path}"})
    ours = build_unet(config)
    ours.load_state_dict(from_diffusers(theirs.state_dict(), plan_unet(config)))
    assert max_abs_difference(ours, theirs, config) <= TOLERANCE

    checkpoint = tmp_path / "ours.pt"
    torch.save({"format": "archsearch-checkpoint-v1", "config": config.model_dump(mode="json"),
                "state_dict": ours.state_dict(), "train": {}, "data": {}}, checkpoint)
    result = export(Source(config, checkpoint, name), "diffusers", tmp_path / "out")
    assert result.files == ["config.json", "diffusion_pytorch_model.safetensors"]
    assert result.max_abs_difference <= TOLERANCE
    back = UNet2DModel.from_pretrained(tmp_path / "out").eval()
    assert public(back.config) == public(theirs.config)
    x = torch.randn(2, config.in_channels, config.image_size, config.image_size)
    t = torch.tensor([5, 900])
    labels = torch.tensor([1, 7]) if config.num_classes else None
    with torch.no_grad():
        assert torch.equal(back(x, t, class_labels=labels).sample, theirs(x, t, class_labels=labels).sample)


@pytest.mark.parametrize("order", ["new", "legacy"])
def test_both_qkv_orders_export_to_the_same_function(order, tmp_path):
    config = unet_config_from_dict({"image_size": 16, "levels": [{"width": 32, "blocks": 1, "attention": True},
                                                                 {"width": 32, "blocks": 1}],
                                    "block": {"norm": {"kind": "group", "groups": 8}},
                                    "attention": {"heads": 4, "qkv_order": order}, "zero_init": False})
    torch.manual_seed(0)
    ours = randomized(build_unet(config))
    theirs = UNet2DModel.from_config(diffusers_config(config))
    theirs.load_state_dict(to_diffusers(ours.state_dict(), plan_unet(config)))
    assert max_abs_difference(ours, theirs, config) <= TOLERANCE
    # The other order's reading of the same fused weights is a different network.
    other = unet_config_from_dict({**config.model_dump(mode="json"),
                                   "attention": {"heads": 4, "qkv_order": "legacy" if order == "new" else "new"}})
    wrong = build_unet(other)
    wrong.load_state_dict(ours.state_dict())
    assert max_abs_difference(wrong, theirs, config) > 1e-3


def test_the_knee_exports_with_its_weights_and_from_pretrained_loads_it(tmp_path):
    study = make_export_study(tmp_path / "study")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["export", str(study), str(out), "--trial", "knee", "--to", "diffusers"])
    assert result.exit_code == 0, result.output
    assert "checked against diffusers UNet2DModel on 2 random inputs (trained weights, fp32): max abs difference" in result.output
    figure = float(result.output.split("max abs difference ")[1].split()[0])
    assert 0 < figure <= TOLERANCE
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    config = trial_config(0)
    ours = build_unet(config)
    ours.load_state_dict(load_checkpoint(study / "trials" / "0" / "checkpoint.pt")["state_dict"])
    assert max_abs_difference(ours, UNet2DModel.from_pretrained(out), config, seed=3) <= TOLERANCE


def test_without_weights_the_config_is_written_and_builds(tmp_path):
    study = make_export_study(tmp_path / "study", with_checkpoint=False)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["export", str(study), str(out), "--trial", "0"])
    assert result.exit_code == 0, result.output
    assert "(random weights, fp32)" in result.output and "UNet2DModel.from_config" in result.output
    assert [p.name for p in out.iterdir()] == ["config.json"]
    model = UNet2DModel.from_config(UNet2DModel.load_config(out))
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in build_unet(trial_config(0)).parameters())
    assert json.loads((out / "config.json").read_text())["block_out_channels"] == [16, 32]


def test_a_mismatch_writes_nothing(tmp_path, monkeypatch):
    study = make_export_study(tmp_path / "study")
    monkeypatch.setattr("archsearch.export.targets.TOLERANCE", -1.0)  # every difference is too large
    result = CliRunner().invoke(app, ["export", str(study), str(tmp_path / "out"), "--trial", "0"])
    assert result.exit_code == 1 and "nothing written" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study"]
