"""`archsearch build`'s view of a network: which networks a file describes (computed), then a
table per level, parameters and forward GFLOPs (drawn).

    networks = networks_to_build(Path("my_unet.yaml"))      # or preset="seed", or a space with sample=3
    print_networks(networks, console)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..errors import ConfigError, ConfigErrors
from ..plan import UNetPlan, plan_unet
from ..schema.paths import apply_sets
from ..schema.unet import UNetConfig

__all__ = ["Network", "level_table", "middle_summary", "dropout_summary", "network_summary", "configs_to_build", "networks_to_build", "print_networks"]


def level_table(plan: UNetPlan, title: str = "") -> Table:
    """One row per level (and the middle): resolution, channels, blocks, attention heads."""
    table = Table(title=title or None, title_justify="left")
    for col in ("level", "resolution", "channels enc→dec", "blocks enc/dec", "attention", "skips"):
        table.add_column(col, justify="right" if col != "attention" else "left")
    for lv in plan.levels:
        heads = {b.attention_heads for b in lv.encoder + lv.decoder if b.attention_heads}
        attention = f"{max(heads)} head{'s' if max(heads) > 1 else ''}" if heads else "–"
        table.add_row(
            str(lv.index),
            f"{lv.resolution}×{lv.resolution}",
            f"{lv.width}→{lv.decoder_width}",
            f"{len(lv.encoder)}/{len(lv.decoder)}",
            attention,
            str(len(lv.taps)),
        )
    table.add_row(*_middle_row(plan), style="dim")
    return table


def _middle_row(plan: UNetPlan) -> tuple[str, ...]:
    res = f"{plan.middle_resolution}×{plan.middle_resolution}"
    tr = plan.middle_transformer
    if tr is not None:  # a transformer: token width and blocks (middle_summary has the rest)
        width = f"{tr.channels}→{tr.width}→{tr.channels}" if tr.project_in else str(tr.width)
        return ("middle", res, width, f"{tr.depth} transformer", f"{tr.heads} head{'s' if tr.heads > 1 else ''}", "")
    heads = plan.middle_attention_heads
    attention = f"{heads} head{'s' if heads > 1 else ''}" if heads else "–"
    return ("middle", res, str(plan.middle_channels), str(len(plan.middle)), attention, "")


def middle_summary(plan: UNetPlan) -> str | None:
    """A line on a transformer middle's tokens, heads and MLP; None for a res-block middle."""
    tr = plan.middle_transformer
    if tr is None:
        return None
    tokens = f"{tr.tokens} tokens ({tr.resolution}×{tr.resolution} pixels" + (" + the embedding)" if tr.extra_tokens else ")")
    return (f"middle: transformer, {tr.depth} blocks over {tokens} of {tr.width} channels, {tr.heads} heads × "
            f"{tr.head_channels}, MLP {tr.mlp_channels}, time: {tr.time}"
            + (", learned positions" if tr.pos_embedding else "") + (f", dropout {tr.dropout:g}" if tr.dropout else ""))


def design_summary(plan: UNetPlan) -> str | None:
    """A line on the settings the level table does not show and that depart from DDPM/ADM's:
    EDM2's block family, EDM-SongUNet's stem width, FIR filter and progressive paths, its class
    input; None when there are none."""
    cfg = plan.config
    parts = []
    if cfg.block.kind == "mp":
        parts.append("mp blocks (EDM2, magnitude preserving)")
    if plan.stem_channels and plan.stem_channels != plan.levels[0].width:
        parts.append(f"stem {plan.stem_channels} channels")
    if list(cfg.resample_filter) != [1, 1]:
        parts.append(f"resample filter {list(cfg.resample_filter)}")
    if cfg.encoder_type != "standard":
        parts.append(f"progressive input: {cfg.encoder_type}")
    if cfg.decoder_type != "standard":
        parts.append(f"progressive output: {cfg.decoder_type}")
    if cfg.num_classes and cfg.embedding.class_input != "table":
        parts.append(f"classes: {cfg.embedding.class_input} into the encoding")
    if cfg.embedding.augment_dim:
        parts.append(f"augment labels: {cfg.embedding.augment_dim}")
    return "design: " + ", ".join(parts) if parts else None


def dropout_summary(plan: UNetPlan) -> str | None:
    """A line on per-level dropout when the levels differ; None when every res block has block.dropout."""
    rates = [lv.dropout for lv in plan.levels]
    if all(r == plan.config.block.dropout for r in rates):
        return None
    middle = f" (middle res blocks: {plan.config.block.dropout:g})" if plan.middle else ""
    return f"dropout per level: {', '.join(f'{r:g}' for r in rates)}{middle}"


def network_summary(config: UNetConfig) -> dict:
    """Parameters and forward FLOPs per image, computed on the 'meta' device (no memory, no math)."""
    from ..measure import count_flops, count_params
    from ..nn import meta_unet

    model = meta_unet(config)
    params = count_params(model)
    shape = (config.in_channels, config.image_size, config.image_size)
    flops = count_flops(model, shape, config.num_classes, device="meta")
    return {"params": params, "flops": flops}


@dataclass(frozen=True)
class Network:
    """One network `archsearch build` shows: where it came from, its plan and its cost."""

    title: str       # the file, `preset NAME`, `sample i` or an ablation variant's name
    config: UNetConfig
    plan: UNetPlan
    params: int
    flops: int       # forward FLOPs per image


def configs_to_build(file: Path | None, preset: str | None = None, sample: int = 0,
                     sets: dict[str, Any] | None = None) -> list[tuple[str, UNetConfig]]:
    """(title, config) of every network a file or preset describes: a U-Net config's one, a
    fixed space's architecture, `sample` sampled architectures of a space (one when it has
    distributions and `sample` is 0), or every variant of an ablation file."""
    from ..schema.files import load_any
    from ..schema.loading import preset_dict, unet_config_from_dict

    if (file is None) == (preset is None):
        raise ConfigErrors([ConfigError("build", "give a FILE or --preset NAME (one of them)")])
    if not 0 <= sample <= 1000:
        raise ConfigErrors([ConfigError("--sample", f"{sample}; show between 0 and 1000 sampled networks")])
    if preset is not None:
        return [(f"preset {preset}", unet_config_from_dict(apply_sets(preset_dict(preset), sets)))]
    kind, obj = load_any(file, sets)
    if kind == "U-Net config":
        return [(str(file), obj)]
    if kind == "space file":
        from ..search.sampling import sample_configs

        if sample > 0 or not obj.is_fixed():
            return [(f"sample {i}", cfg) for i, cfg in enumerate(sample_configs(obj, max(sample, 1)))]
        return [(str(file), obj.fixed_architecture())]
    if kind == "ablation file":
        return [(name, cfg) for name, cfg in obj.variant_configs()]
    raise ConfigErrors([ConfigError(str(file), f"a {kind} describes no network")])


def networks_to_build(file: Path | None, preset: str | None = None, sample: int = 0,
                      sets: dict[str, Any] | None = None) -> list[Network]:
    """What `archsearch build` shows: every network of `configs_to_build`, planned and counted."""
    networks = []
    for title, config in configs_to_build(file, preset, sample, sets):
        summary = network_summary(config)
        networks.append(Network(title, config, plan_unet(config), summary["params"], summary["flops"]))
    return networks


def print_networks(networks: list[Network], console: Console) -> None:
    """A level table, the parameter count and the forward GFLOPs of each network."""
    for network in networks:
        console.print(level_table(network.plan, network.title))
        for line in (design_summary(network.plan), middle_summary(network.plan), dropout_summary(network.plan)):
            if line:
                console.print(line)
        console.print(f"parameters: {network.params:,}")
        console.print(f"forward GFLOPs per image: {network.flops / 1e9:.3f}")
        console.print()
