"""`archsearch build`'s view of a network: a table per level, parameters and forward GFLOPs."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..plan import UNetPlan, plan_unet
from ..schema.unet import UNetConfig

__all__ = ["level_table", "network_summary", "describe_configs"]


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


def describe_configs(configs: list[tuple[str, UNetConfig]], console: Console) -> None:
    for title, config in configs:
        plan = plan_unet(config)
        console.print(level_table(plan, title))
        summary = network_summary(config)
        console.print(f"parameters: {summary['params']:,}")
        console.print(f"forward GFLOPs per image: {summary['flops'] / 1e9:.3f}")
        console.print()
