"""Pydantic models of archsearch's config files, and their loading. Imports no torch."""

from .loading import PRESETS, load_unet_config, preset_dict, read_yaml, unet_config_from_dict
from .unet import SCHEMA_VERSION, UNetConfig

__all__ = [
    "PRESETS",
    "SCHEMA_VERSION",
    "UNetConfig",
    "load_unet_config",
    "preset_dict",
    "read_yaml",
    "unet_config_from_dict",
]
