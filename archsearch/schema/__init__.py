"""Pydantic models of archsearch's config files, and their loading. Imports no torch.

Owns the vocabulary: every field's name, type, bound and description, the presets, and reading
YAML safely (`yaml_file`). May import `errors` and `metrics` only (and `plan`, for the one call
that plans a config as it loads; see tests/test_layering.py).
"""

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
