"""The quickstart as a user runs it: twelve trials, all trained, a real spread of outcomes."""

from pathlib import Path

import pytest

from archsearch.schema.space import load_space
from archsearch import run_study

pytestmark = pytest.mark.slow

QUICKSTART = Path(__file__).parent.parent / "search_spaces" / "quickstart.yaml"


def test_quickstart_runs_and_has_a_pareto_front(tmp_path):
    summary = run_study(load_space(QUICKSTART), tmp_path)
    assert summary.trials == 12
    assert summary.completed == 12, "every quickstart trial should train"
    assert len(summary.front) >= 3
    table = (tmp_path / "quickstart" / "trials.csv").read_text().splitlines()
    assert len(table) == 13
    kept = {int(p.parent.name) for p in (tmp_path / "quickstart" / "trials").glob("*/checkpoint.pt")}
    assert kept == set(summary.front["number"].astype(int)), "study.checkpoints: front keeps the front's weights"
