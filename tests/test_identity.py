"""Trial identities (config_hash, settings_hash) stay stable when archsearch gains a field.

A study stores each trial's hashes; a resumed study reuses a duplicate's result and an ablation
or verify finds its finished trials by them. The hashes below were computed by archsearch before
`attention.qkv_order` existed (the commit before the export work of issue 13): a field added with
a default must be registered in `LATER_FIELDS`, or these fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from archsearch.schema.loading import unet_config_from_dict
from archsearch.schema.space import load_space
from archsearch.schema.train import TrainConfig
from archsearch.search.objective import LATER_FIELDS, config_hash, settings_hash

ROOT = Path(__file__).resolve().parents[1]
ARCH = {"levels": [{"width": 32}, {"width": 64, "attention": True}], "attention": {"heads": 2}}


def test_a_config_hashes_as_before_the_newer_fields():
    assert config_hash(unet_config_from_dict(ARCH)) == "fead7e3f34faf15c"


def test_settings_hash_as_before_the_newer_fields():
    space = load_space(ROOT / "search_spaces" / "digits.yaml")
    assert settings_hash(TrainConfig(**space.train), space) == "60af7bfff3ece52d"


def test_a_later_field_away_from_its_default_changes_the_identity():
    legacy = unet_config_from_dict({**ARCH, "attention": {"heads": 2, "qkv_order": "legacy"}})
    assert config_hash(legacy) != config_hash(unet_config_from_dict(ARCH))


def _defaults(section: str) -> dict:
    from archsearch.schema.measure import MeasureConfig
    from archsearch.schema.train import EvalConfig

    make = {"architecture": lambda: unet_config_from_dict({}), "train": TrainConfig, "eval": EvalConfig,
            "measure": MeasureConfig}[section]  # `data` has no default source: give one here when a field is added
    dump = make().model_dump(mode="json")
    if section == "architecture":  # the default is written `compact`; per-level fields need `levels` too
        dump["levels"] = unet_config_from_dict(ARCH).model_dump(mode="json")["levels"]
    return dump


@pytest.mark.parametrize("section", sorted(s for s, fields in LATER_FIELDS.items() if fields))
def test_later_fields_name_real_fields_at_their_real_defaults(section):
    for path, default in LATER_FIELDS[section].items():
        nodes = [_defaults(section)]
        for key in path.split("."):
            nodes = [item for node in nodes for item in node] if key == "*" else [node[key] for node in nodes]
        assert nodes and all(node == default for node in nodes), f"{section}.{path}: its defaults are {nodes!r}, not {default!r}"


def test_a_later_per_level_field_away_from_its_default_changes_the_identity():
    dropped = {**ARCH, "levels": [{"width": 32, "dropout": 0.0}, {"width": 64, "attention": True}]}
    assert config_hash(unet_config_from_dict(dropped)) != config_hash(unet_config_from_dict(ARCH))
