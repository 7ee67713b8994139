"""The report's "Samples" section: a grid of generated images for every front member with weights.

    plan = plan_grids(folder, space, df, front, objectives)  # who has weights, captions (no torch; analysis does it)
    grids = draw_grids(plan)                  # sample on the CPU: trials/<n>/samples.png + samples.json
    blocks = sample_blocks(grids, level)      # the section's text and images
    summary_line(grids)                       # `archsearch report`'s console line

Whatever was found, failed or drawn is data on the grids (`Grid.status`, `Grid.reason`); only
drawing imports torch (archsearch.samples), so the module imports none.

Every grid uses one sampler, the study's `eval.samples` (sampler kind, steps, rows, cols, seed)
from its space.yaml, so the grids differ only by the models: the same noise seed starts every
one. Each model samples under the noise schedule and prediction target it was trained with
(its checkpoint's `train` settings; archsearch.samples.checkpoint_samples), on the CPU by
default, so a report works on a machine without the study's GPU.

The weights are a trial's `trials/<n>/checkpoint.pt` (archsearch.search.records.CHECKPOINT_NAME,
kept when `study.checkpoints` asks for it); a reused duplicate trial (`reused_from`) has none of
its own and is drawn with its origin's. A member without weights, or whose checkpoint does not
load or fit its config, is listed in the section with why; it never stops the report. A member
without weights whose folder already holds a samples.png (another run drew it) shows that one.

Cache: beside each grid, `samples.json` records what it was drawn from (the sampler settings,
the checkpoint's path, size and modification time, the scale, the device). A later report draws
a grid again only when one of those differs; a changed caption alone (the study's normalized
speeds move as it grows) is redrawn on the cached grid, without sampling.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import ConfigError, ConfigErrors
from ..io import atomic_write, atomic_write_json
from ..metrics import METRICS
from ..schema.loading import validate_model
from ..schema.train import SampleConfig
from .console import format_metric
from .document import Block, Bullets, Heading, Image, Paragraph

__all__ = ["GRID_NAME", "SIDECAR_NAME", "Grid", "SampleGrids", "grid_path_for", "weights_of", "grid_caption",
           "plan_grids", "draw_grids", "sample_blocks", "summary_line", "NO_CHECKPOINT", "HOW_TO_GET_GRIDS",
           "LOST_CHECKPOINT"]

GRID_NAME = "samples.png"      # trials/<n>/samples.png, beside trials/<n>/checkpoint.pt
SIDECAR_NAME = "samples.json"  # what that grid was drawn from (the cache key)
_CACHE_FORMAT = 1

NO_CHECKPOINT = "no checkpoint: study.checkpoints is none, or the trial ran before checkpoints were saved"
LOST_CHECKPOINT = "no checkpoint: it could not be written"  # then the trial's missing_files, in brackets
HOW_TO_GET_GRIDS = ("set `study.checkpoints: front` (or `all`) in the space file so that trials keep their final "
                    "weights, then run `archsearch report` again")


@dataclass
class Grid:
    """One front member's grid: where it goes, what it shows, and what became of it."""

    number: int
    caption: str
    path: Path                      # trials/<n>/samples.png
    checkpoint: Path | None         # the weights: the trial's own, or its origin's when it was reused
    origin: int | None = None       # the trial whose weights a reused trial has
    status: str = "planned"         # planned | drawn | cached | kept | missing | failed
    reason: str = ""                # why missing or failed
    size: tuple[int, int] | None = None  # the PNG's pixels, once drawn
    scale: int | None = None        # the enlargement it was drawn with

    @property
    def shown(self) -> bool:
        return self.status in ("drawn", "cached", "kept")


@dataclass
class SampleGrids:
    """A study's front grids and the one sampler that drew them."""

    sampler: SampleConfig
    grids: list[Grid] = field(default_factory=list)
    device: str = "cpu"
    scale: int | None = None        # None: each grid's auto scale (cells of at least 64 px)
    note: str = ""                  # how the sampler was chosen when the space file did not say

    @property
    def shown(self) -> list[Grid]:
        return [g for g in self.grids if g.shown]

    @property
    def with_weights(self) -> list[Grid]:
        return [g for g in self.grids if g.checkpoint is not None]


def grid_path_for(checkpoint: Path) -> Path:
    """Where a checkpoint's grid goes by default: `samples.png` in its folder for a trial's
    `checkpoint.pt`, else `<stem>-samples.png` beside it."""
    from ..search.records import CHECKPOINT_NAME

    checkpoint = Path(checkpoint)
    return checkpoint.with_name(GRID_NAME if checkpoint.name == CHECKPOINT_NAME else f"{checkpoint.stem}-{GRID_NAME}")


def weights_of(folder: Path, df: pd.DataFrame, number: int) -> tuple[Path | None, int | None]:
    """(the checkpoint, the trial it belongs to) for trial `number` of the study in `folder`: its
    own `trials/<n>/checkpoint.pt`, or for a reused trial its origin's; (None, origin) without."""
    from ..search.records import checkpoint_path

    reused = df.set_index("number")["reused_from"] if "reused_from" in df.columns else pd.Series(dtype=object)
    owner, seen = int(number), set()
    while owner in reused.index and pd.notna(reused[owner]) and owner not in seen:  # a chain of reuses
        seen.add(owner)
        owner = int(reused[owner])
    path = checkpoint_path(folder, owner)
    return (path if path.is_file() else None), (owner if owner != int(number) else None)


def grid_caption(row: pd.Series, objectives: list[str]) -> str:
    """`trial 7 · val_loss 0.0832 · train_throughput 1,234 img/s`: the trial, its validation loss
    and its other objectives, each with its unit."""
    parts = [f"trial {int(row['number'])}"]
    for name in dict.fromkeys(["val_loss", *objectives]):
        if name in row.index and pd.notna(row[name]):
            unit = METRICS[name].unit if name in METRICS and name != "val_loss" else ""
            parts.append(f"{name} {format_metric(name, _plain(row[name]))}{' ' + unit if unit else ''}")
    return " · ".join(parts)


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def plan_grids(folder: Path | None, space: dict[str, Any] | None, df: pd.DataFrame, members: pd.DataFrame,
               objectives: list[str], device: str = "cpu", scale: int | None = None) -> SampleGrids | None:
    """The grids of `members` (the front's rows; any trials of `df`), with the sampler of the
    space file's `eval.samples`; None for a study without a folder. Reads no weights."""
    if folder is None:
        return None
    raw = ((space or {}).get("eval") or {}).get("samples")
    note = "" if raw is not None else "the study's space.yaml names no `eval.samples`: the default sampler"
    try:
        sampler = validate_model(SampleConfig, raw or {}, "eval.samples")
    except ConfigErrors as exc:
        sampler, note = SampleConfig(), f"space.yaml's {exc.lines()[0]}; the default sampler instead"
    grids = []
    for _, row in members.iterrows():
        number = int(row["number"])
        checkpoint, origin = weights_of(folder, df, number)
        grid = Grid(number, grid_caption(row, objectives), Path(folder) / "trials" / str(number) / GRID_NAME,
                    checkpoint, origin)
        if checkpoint is None:
            written = row.get("missing_files")
            grid.status = "missing"
            lost = isinstance(written, str) and written  # its checkpoint could not be written (a full disk)
            grid.reason = f"{LOST_CHECKPOINT} ({written})" if lost else _why_missing(space, origin)
            if grid.path.is_file():  # written by another run (training, an earlier checkpoint): shown as it is
                grid.status = "kept"
        grids.append(grid)
    return SampleGrids(sampler, grids, device, scale, note)


def _why_missing(space: dict[str, Any] | None, origin: int | None) -> str:
    setting = ((space or {}).get("study") or {}).get("checkpoints")
    if setting == "none":
        why = "no checkpoint: study.checkpoints is none"
    elif setting in ("front", "all"):
        why = f"no checkpoint: study.checkpoints is {setting}, but the trial ran before checkpoints were saved"
    else:
        why = NO_CHECKPOINT
    return f"{why} (it reused trial #{origin}, which has none)" if origin is not None else why


def draw_grids(plan: SampleGrids) -> SampleGrids:
    """Draw every planned grid that its sidecar does not already match (see the module
    docstring); a checkpoint that fails is recorded on its grid, never raised."""
    return replace(plan, grids=[_draw(grid, plan) if grid.status == "planned" else grid for grid in plan.grids])


def _cache_key(grid: Grid, plan: SampleGrids) -> dict[str, Any]:
    stat = grid.checkpoint.stat()
    return {"format": _CACHE_FORMAT, "sampler": plan.sampler.model_dump(mode="json", exclude={"save"}),
            "checkpoint": {"path": Path(os.path.relpath(grid.checkpoint, grid.path.parent)).as_posix(),  # the folder may move
                           "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns},
            "scale": plan.scale if plan.scale is not None else "auto", "device": plan.device}


def _draw(grid: Grid, plan: SampleGrids) -> Grid:
    sidecar = grid.path.with_name(SIDECAR_NAME)
    cached = _read_json(sidecar)
    try:
        key = _cache_key(grid, plan)
    except OSError as exc:  # removed since it was planned
        return replace(grid, status="failed", reason=_short(f"{grid.checkpoint}: {exc.strerror or exc}"))
    if cached.get("key") == key:
        if "failed" in cached:  # the same file failed before: it would again
            return replace(grid, status="failed", reason=str(cached["failed"]))
        hit = _cached(grid, cached, sidecar)
        if hit is not None:
            return hit
    try:
        from ..samples import add_caption, auto_scale, checkpoint_samples, make_grid

        images = checkpoint_samples(grid.checkpoint, plan.sampler, plan.device)
    except (ConfigError, ConfigErrors) as exc:  # unreadable, or weights that do not fit: a property of the file
        reason = _short("; ".join(exc.lines() if isinstance(exc, ConfigErrors) else [str(exc)]))
        if cached:
            grid.path.unlink(missing_ok=True)  # this report's grid of weights the trial no longer has
        atomic_write_json(sidecar, {"key": key, "failed": reason})
        return replace(grid, status="failed", reason=reason)
    except Exception as exc:  # noqa: BLE001 - one bad checkpoint must not stop the report; tried again next time
        return replace(grid, status="failed", reason=_short(f"{grid.checkpoint}: {type(exc).__name__}: {exc}"))
    scale = plan.scale if plan.scale is not None else auto_scale(images.shape[-2], images.shape[-1])
    plain = make_grid(images, plan.sampler.rows, plan.sampler.cols, scale=scale)
    cell = images.shape[-2] * scale
    image = add_caption(plain, grid.caption, cell=cell)
    atomic_write(grid.path, lambda tmp: image.save(tmp, format="PNG"))
    atomic_write_json(sidecar, {"key": key, "caption": grid.caption, "grid": list(plain.size), "scale_used": scale,
                                "cell": cell})
    return replace(grid, status="drawn", size=image.size, scale=scale)


def _short(reason: str, limit: int = 240) -> str:
    """A failure's first line, cut at `limit` characters (torch's own messages run to paragraphs)."""
    line = reason.strip().splitlines()[0] if reason.strip() else "failed"
    return line if len(line) <= limit else line[:limit - 1].rstrip() + "…"


def _cached(grid: Grid, cached: dict[str, Any], sidecar: Path) -> Grid | None:
    """The grid drawn before from the same checkpoint and sampler, its caption redrawn if it
    changed; None when that file is gone or unreadable (then it is drawn again)."""
    try:
        if cached.get("caption") != grid.caption:
            _recaption(grid, tuple(cached["grid"]), int(cached.get("cell", 64)))
            atomic_write_json(sidecar, {**cached, "caption": grid.caption})
        with _open_png(grid.path) as image:
            return replace(grid, status="cached", size=image.size, scale=cached.get("scale_used"))
    except Exception:  # noqa: BLE001 - a missing or damaged grid is simply drawn again
        return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _open_png(path: Path):
    from PIL import Image as PILImage

    return PILImage.open(path)


def _recaption(grid: Grid, grid_size: tuple[int, int], cell: int) -> None:
    from ..samples import add_caption, strip_caption

    with _open_png(grid.path) as image:
        plain = strip_caption(image, grid_size)
        plain.load()
    image = add_caption(plain, grid.caption, cell=cell)
    atomic_write(grid.path, lambda tmp: image.save(tmp, format="PNG"))


def _describe(plan: SampleGrids) -> str:
    s = plan.sampler
    steps = f"{s.sampler.steps} steps" if s.sampler.steps is not None else "every timestep"
    eta = f", eta {s.sampler.eta:g}" if s.sampler.kind == "ddim" else ""
    guidance = f", guidance scale {s.guidance_scale:g}" if s.guidance_scale != 1 else ""
    return f"{s.sampler.kind.upper()} with {steps}{eta}{guidance}, noise seed {s.seed}, a {s.rows}×{s.cols} grid"


def sample_blocks(plan: SampleGrids | None, level: int) -> list[Block]:
    """The section: the sampler once, each grid with its caption, and the members without one."""
    if plan is None or not plan.grids:
        return []
    blocks: list[Block] = [Heading("Samples from the front's models", level)]
    shown = plan.shown
    if not shown and not plan.with_weights and not _lost(plan):
        return blocks + [Paragraph(f"No front member has saved weights, so there are no sample grids: {HOW_TO_GET_GRIDS}.")]
    drawn = [g for g in shown if g.status != "kept"]
    if drawn:
        scales = sorted({g.scale for g in drawn if g.scale})
        enlarged = (f", each image enlarged ×{scales[0]} (nearest neighbour)" if len(scales) == 1 and scales[0] > 1 else
                    ", each image enlarged to cells of at least 64 pixels (nearest neighbour)" if len(scales) > 1 else "")
        device = "the CPU" if plan.device == "cpu" else f"`{plan.device}`"
        text = (f"The same sampler, steps and noise seed for every grid: {_describe(plan)}{enlarged}, sampled on {device} "
                "from each member's final weights (its EMA weights when it trained with an EMA), under the noise schedule "
                "and prediction target it was trained with. Files: `trials/<n>/samples.png`, drawn again only when the "
                "checkpoint or the sampler changes.")
        blocks.append(Paragraph(text + (f" ({plan.note}.)" if plan.note else "")))
    for grid in shown:
        via = (f" (weights of trial #{grid.origin}, which it reused)" if grid.origin is not None and grid.status != "kept"
               else " (an earlier grid found in the trial's folder: it has no checkpoint to draw it again)"
               if grid.status == "kept" else "")
        blocks.append(Image(grid.path, f"samples of trial {grid.number}", grid.caption + via))
    absent = [g for g in plan.grids if not g.shown]
    if absent:
        blocks.append(Paragraph("Front members without a grid:"))
        blocks.append(Bullets([f"**#{g.number}**: {g.reason}" for g in absent]))
    if not plan.with_weights and not _lost(plan):
        blocks.append(Paragraph(f"To draw grids of every front member, {HOW_TO_GET_GRIDS}."))
    return blocks


def _lost(plan: SampleGrids) -> list[Grid]:
    """The members whose checkpoint the study asked for but could not write."""
    return [g for g in plan.grids if g.reason and g.reason.startswith(LOST_CHECKPOINT)]


def summary_line(plan: SampleGrids | None) -> str | None:
    """`sample grids: 2 front members → trials/<n>/samples.png (1 without weights)`; None without a folder."""
    if plan is None or not plan.grids:
        return None
    shown, missing = len(plan.shown), sum(g.status == "missing" for g in plan.grids)
    failed = sum(g.status == "failed" for g in plan.grids)
    if not shown and not plan.with_weights:
        lost = _lost(plan)
        why = f"{len(lost)} could not be written: {lost[0].reason}" if lost else HOW_TO_GET_GRIDS.replace('`', '')
        return f"sample grids: none (no front member has saved weights; {why})"
    extra = [text for count, text in ((missing, f"{missing} without weights"), (failed, f"{failed} failed to load"))
             if count]
    members = "front member" if shown == 1 else "front members"
    return f"sample grids: {shown} {members} → trials/<n>/samples.png" + (f" ({', '.join(extra)})" if extra else "")
