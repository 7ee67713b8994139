"""`archsearch verify`: would a study's ranking hold with longer training, and is its speed real?

    from archsearch.verify import verify_study

    run = verify_study("results/quickstart", factor=10)   # retrains, re-measures, writes verify.md
    run.verification.verdict    # 'the 60-step ranking held at 600 steps (τ = 0.8 [0.6, 0.93]); ...'

`selection` (which trials, which budgets), `stats` (rank correlations, bootstrap intervals, front
recall), `analysis` (a verify study against its source) and `report` (verify.md, plots, the
section of `archsearch report`) import no torch; `runner` trains through the search layer's
engine (a queue of fixed retrains) and `remeasure` times the front with archsearch.measure.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "verify_study": "archsearch.verify.runner",
    "VerifyRun": "archsearch.verify.runner",
    "Verification": "archsearch.verify.analysis",
    "verification_of": "archsearch.verify.analysis",
    "find_verify_study": "archsearch.verify.analysis",
    "select_trials": "archsearch.verify.selection",
    "kendall_tau": "archsearch.verify.stats",
    "spearman_rho": "archsearch.verify.stats",
    "bootstrap_interval": "archsearch.verify.stats",
    "front_agreement": "archsearch.verify.stats",
    "write_verification": "archsearch.verify.report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'archsearch.verify' has no attribute {name!r}")
