"""archsearch: config-driven architecture search for diffusion U-Nets.

    from archsearch import UNetConfig, build_unet, load_space, run_study, load_results

Names are imported lazily: `import archsearch` and the schema load no torch, so validating a
file or reading a report stays instant.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "UNetConfig": "archsearch.schema.unet",
    "load_unet_config": "archsearch.schema.loading",
    "plan_unet": "archsearch.plan",
    "build_unet": "archsearch.nn.unet",
    "ConfigError": "archsearch.errors",
    "ConfigErrors": "archsearch.errors",
    "load_space": "archsearch.schema.space",
    "run_study": "archsearch.folder",
    "load_results": "archsearch.results",
    "run_trial": "archsearch.trial",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'archsearch' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
