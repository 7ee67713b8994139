"""Torch modules of archsearch: the U-Net and its blocks.

Owns the modules and their names (a state dict reads like the config). Builds from a `UNetPlan`
and decides nothing the plan does not say; may import `plan`, `schema` and `errors`.
"""

from .unet import UNet, build_unet, meta_unet

__all__ = ["UNet", "build_unet", "meta_unet"]
