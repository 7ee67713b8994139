"""Take a found network home: export it to diffusers' UNet2DModel or as an archsearch folder.

    from archsearch.export import export, study_source
    result = export(study_source("results/quickstart", "knee"), "diffusers", "out/")

Sits above the results layer (it picks trials from a study's table and front) beside report and
ablation. `diffusers` (the config and the weights, both ways), `check` (the fp32 comparison every
diffusers export passes), `source` (what to export) and `targets` (the folders written).
diffusers itself is an optional dependency (`pip install 'archsearch[diffusers]'`), imported
only when a diffusers model is built. May import every layer below report (results, trial, nn,
plan, schema, ...); nothing imports it but the CLI.
"""

from .check import TOLERANCE, max_abs_difference, random_weights
from .diffusers import diffusers_config, from_diffusers, to_diffusers
from .source import Source, file_source, select_trial, study_source, study_trial
from .targets import TARGETS, ExportMismatch, ExportResult, export

__all__ = [
    "TOLERANCE", "max_abs_difference", "random_weights",
    "diffusers_config", "from_diffusers", "to_diffusers",
    "Source", "file_source", "select_trial", "study_source", "study_trial",
    "TARGETS", "ExportMismatch", "ExportResult", "export",
]
