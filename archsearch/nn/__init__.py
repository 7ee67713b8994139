"""Torch modules of archsearch: the U-Net and its blocks."""

from .unet import UNet, build_unet, meta_unet

__all__ = ["UNet", "build_unet", "meta_unet"]
