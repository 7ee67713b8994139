"""`archsearch ablate`: the base and each variant of an ablation file over several seeds, and
each variant against the base with paired confidence intervals.

    from archsearch.ablation import ablate
    from archsearch.schema.ablation import load_ablation

    report = ablate(load_ablation("search_spaces/ablations/seed_design_choices.yaml"), "results")
    report.files          # ablation.md, ablation.csv, plots/forest.png
    report.comparisons[1].changes["fd"].format()   # '-2.00 [-3.24, -0.76]' (with eval.quality or --quality)

`stats` (the numbers) and `report` (the renderings) import no torch; `runner` trains through the
search layer's engine (a queue of network x seed pairs) and may import everything below it, as
`report` may; only `cli` imports the ablation.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ablate": "archsearch.ablation.runner",
    "AblationReport": "archsearch.ablation.runner",
    "run_ablation": "archsearch.ablation.runner",
    "collect_runs": "archsearch.ablation.runner",
    "compare_variants": "archsearch.ablation.stats",
    "paired_interval": "archsearch.ablation.stats",
    "ratio_interval": "archsearch.ablation.stats",
    "Comparison": "archsearch.ablation.stats",
    "Change": "archsearch.ablation.stats",
    "Interval": "archsearch.ablation.stats",
    "write_report": "archsearch.ablation.report",
    "comparison_table": "archsearch.ablation.report",
    "forest_data": "archsearch.ablation.report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'archsearch.ablation' has no attribute {name!r}")
