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

__all__ = ["Network", "level_table", "network_summary", "configs_to_build", "networks_to_build", "print_networks"]


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
    mid_attn = f"{plan.middle_attention_heads} head{'s' if plan.middle_attention_heads > 1 else ''}" if plan.middle_attention_heads else "–"
    table.add_row(
        "middle",
        f"{plan.middle_resolution}×{plan.middle_resolution}",
        str(plan.middle_channels),
        str(len(plan.middle)),
        mid_attn,
        "",
        style="dim",
    )
    return table


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
        console.print(f"parameters: {network.params:,}")
        console.print(f"forward GFLOPs per image: {network.flops / 1e9:.3f}")
        console.print()
