"""`archsearch verify`: would a study's ranking hold with longer training, and is its speed real?

    from archsearch.verify import verify_study

    run = verify_study("results/quickstart", factor=10)   # retrains, re-measures, writes verify.md
    run.verification.verdict    # 'the 60-step ranking held at 600 steps (τ = 0.8 [0.6, 0.93]); ...'
    run = verify_study("results/quickstart", quality=True)  # --quality: each retrain's sample quality too
    run.verification.quality.tau     # short-run objective vs long-run FD: Agreement('τ', 0.6, (0.2, 0.9), 6)

`selection` (which trials, which budgets), `stats` (rank correlations, bootstrap intervals, front
recall), `analysis` (a verify study against its source) and `report` (verify.md, plots, the
section of `archsearch report`) import no torch; `runner` trains through the search layer's
engine (a queue of fixed retrains) and `remeasure` times the front with archsearch.measure, both
importing torch only once they run. May import every layer below report (results, folder, search,
trial and what they stand on) and report's plotting helpers; nothing imports it but the CLI.
"""

from __future__ import annotations

from .analysis import QualityAgreement, Verification, find_verify_study, quality_agreement, verification_of
from .report import write_verification
from .runner import VerifyRun, verify_study
from .selection import select_trials
from .stats import bootstrap_interval, front_agreement, kendall_tau, spearman_rho

__all__ = ["QualityAgreement", "Verification", "VerifyRun", "bootstrap_interval", "find_verify_study", "front_agreement", "kendall_tau",
           "quality_agreement", "select_trials", "spearman_rho", "verification_of", "verify_study", "write_verification"]
