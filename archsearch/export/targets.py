"""Writing an export: a diffusers UNet2DModel folder, or an archsearch folder.

    result = export(study_source("results/quickstart", "knee"), "diffusers", "out/")
    result.files, result.max_abs_difference, result.weights

`diffusers`: `config.json` (+ `diffusion_pytorch_model.safetensors` when the source has weights),
what `UNet2DModel.from_pretrained(OUT)` reads. Before anything is written, both networks are
built with the same weights (random ones when the source has none) and compared on random
inputs in fp32; a difference above archsearch.export.check.TOLERANCE is an error.

`archsearch`: `config.yaml`, `checkpoint.pt` (archsearch.train's checkpoint format, a copy of
the source's, which `archsearch sample` also reads) when there are weights, and a README.md
with the lines that load them with `build_unet`.

Either folder appears whole or not at all (archsearch.io.atomic_folder).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import ConfigError, ConfigErrors
from ..io import atomic_folder, folder_taken
from .check import BATCH, TOLERANCE, max_abs_difference, random_weights
from .diffusers import diffusers_config, to_diffusers
from .source import CHECKPOINT_NAME, Source

__all__ = ["TARGETS", "ExportResult", "ExportMismatch", "export"]

TARGETS = ("diffusers", "archsearch")
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"


class ExportMismatch(RuntimeError):
    """The exported network's outputs differ from archsearch's by more than the tolerance."""


@dataclass
class ExportResult:
    out: Path
    target: str
    label: str                       # what was exported (trial 6 of results/quickstart, ...)
    weights: Path | None             # the checkpoint the weights came from; None: config only
    files: list[str] = field(default_factory=list)
    max_abs_difference: float | None = None  # diffusers: ours vs theirs on random inputs
    compared_on: str = ""            # "trained weights" or "random weights"

    def lines(self) -> list[str]:
        """What the export did, for a person: the source, the weights, the check, the files."""
        weights = f"weights from {self.weights}" if self.weights else "no trained weights: the config only"
        out = [f"{self.label}: {weights}"]
        if self.max_abs_difference is not None:
            out.append(f"checked against diffusers UNet2DModel on {BATCH} random inputs ({self.compared_on}, fp32): "
                       f"max abs difference {self.max_abs_difference:.2g} (limit {TOLERANCE:g})")
        out.append(f"wrote {self.out}/: {', '.join(self.files)}")
        if self.target == "diffusers":
            load = (f'UNet2DModel.from_pretrained("{self.out}")' if self.weights else
                    f'UNet2DModel.from_config(UNet2DModel.load_config("{self.out}"))  # untrained')
            out.append(f"load it with: {load}")
        else:
            out.append(f"load it as {self.out}/README.md shows (build_unet)")
        return out


def export(source: Source, to: str, out: str | Path, overwrite: bool = False) -> ExportResult:
    """Export `source` as `to` (diffusers or archsearch) into the folder `out`."""
    if to not in TARGETS:
        raise ConfigErrors([ConfigError("--to", f"{to!r} is not one of {', '.join(TARGETS)}")])
    out = Path(out)
    if folder_taken(out) and not overwrite:
        raise ConfigErrors([ConfigError(str(out), "exists and is not empty; choose another folder or pass --overwrite")])
    result = ExportResult(out, to, source.label, source.checkpoint)
    write = _diffusers(source, result) if to == "diffusers" else _archsearch(source, result)
    atomic_folder(out, write, overwrite=overwrite)
    result.files = sorted(p.name for p in out.iterdir())
    return result


def _diffusers(source: Source, result: ExportResult):
    """Check the export (before writing anything) and return the function that writes it."""
    config = diffusers_config(source.config, source.prefix)  # every field it cannot express, at once
    try:
        from diffusers import UNet2DModel
    except ImportError:
        raise ConfigErrors([ConfigError("--to", "diffusers is not installed: pip install 'archsearch[diffusers]'")]) from None
    from ..nn import build_unet
    from ..plan import plan_unet

    trained = source.state_dict()
    state = trained if trained is not None else random_weights(source.config)
    ours = build_unet(source.config)
    ours.load_state_dict(state)
    theirs = UNet2DModel.from_config(config)
    theirs.load_state_dict(to_diffusers({k: v.float() for k, v in ours.state_dict().items()}, plan_unet(source.config)))
    diff = max_abs_difference(ours, theirs, source.config)
    result.max_abs_difference = diff
    result.compared_on = "trained weights" if trained is not None else "random weights"
    if not diff <= TOLERANCE:  # NaN fails too
        raise ExportMismatch(f"the diffusers model's outputs differ from archsearch's by {diff:.3g} (> {TOLERANCE:g}) "
                             f"on {BATCH} random inputs; nothing written")

    def write(folder: Path) -> None:
        if trained is not None:
            theirs.save_pretrained(folder, safe_serialization=True)
        else:
            theirs.save_config(folder)

    return write


README = """\
# {label}

archsearch U-Net: `config.yaml`{weights_note}.

```python
import torch
from archsearch import build_unet, load_unet_config
model = build_unet(load_unet_config("{out}/config.yaml"))
{load_line}
```
"""


def _archsearch(source: Source, result: ExportResult):
    """Return the function that writes config.yaml, the checkpoint (when there is one) and README.md."""
    source.state_dict()  # the weights fit the config, or nothing is written
    text = yaml.safe_dump(source.config.model_dump(mode="json"), sort_keys=False)
    if source.checkpoint is not None:
        note = f", weights `{CHECKPOINT_NAME}` (archsearch's checkpoint format: torch.save of config, state_dict, train, data)"
        load = f'model.load_state_dict(torch.load("{result.out}/{CHECKPOINT_NAME}", weights_only=True)["state_dict"])'
    else:
        note = " only: the source had no trained weights"
        load = "# no weights were exported: this model is freshly initialized"
    readme = README.format(label=source.label, weights_note=note, out=result.out.as_posix(), load_line=load)

    def write(folder: Path) -> None:
        (folder / "config.yaml").write_text(text)
        (folder / "README.md").write_text(readme)
        if source.checkpoint is not None:
            shutil.copyfile(source.checkpoint, folder / CHECKPOINT_NAME)

    return write
