"""The metric registry (archsearch.metrics) over every entry, and the lists it replaced.

Each metric is declared once; these tests check that every entry says how it reads, that the
layers which used to keep their own list (the trial's keys, the recorded user attributes, the
results table, the terminal, the figures) follow the registry, and that no module starts a
second list of metric names again.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime as dt
from pathlib import Path

import optuna
import pytest

from archsearch.metrics import (
    MEASURED_METRICS,
    METRICS,
    OBJECTIVE_METRICS,
    RECORDED_METRICS,
    TrialMetrics,
    bucket_columns,
    table_metrics,
)
from archsearch.report.console import format_metric, metrics_table
from archsearch.report.plots import axis_label
from archsearch.report.tables import Column
from archsearch.results import trials_dataframe

PACKAGE = Path(__file__).resolve().parents[1] / "archsearch"

# A value of each format, as a trial records it.
SAMPLE = {"count": 1234567, "number": 0.0123456, "text": "fp32", "flag": True, "buckets": [0.31, 0.12, 0.05],
          "curve": [[10, 0.3], [20, 0.2]], "record": {"train_step_ms": 12.5}}


@pytest.mark.parametrize("name", METRICS)
def test_every_metric_says_how_it_reads(name):
    info = METRICS[name]
    assert info.name == name and info.about.strip()
    assert info.format in SAMPLE
    if info.format in ("number", "buckets", "curve"):  # a quantity: a unit under its column, a way to be better
        assert info.unit and info.direction in ("minimize", "maximize")
    if info.direction is not None or info.objective:
        assert info.label and info.direction in ("minimize", "maximize")
        assert axis_label(name) == info.label and info.label != name
    if info.spread is not None:
        assert METRICS[info.spread].unit == info.unit and METRICS[info.spread].table == info.table
    assert (info.format == "buckets") == ("{i}" in info.columns)


@pytest.mark.parametrize("name", OBJECTIVE_METRICS)
def test_every_objective_metric_is_a_recorded_scalar_with_a_column(name):
    info = METRICS[name]
    assert info.recorded and info.table == "metrics" and info.format in ("count", "number")
    assert Column.metric(name).unit == info.unit


def frozen_trial(number: int, attrs: dict) -> optuna.trial.FrozenTrial:
    start = dt.datetime(2026, 1, 1, 12, 0, 0)
    return optuna.trial.FrozenTrial(
        number=number, state=optuna.trial.TrialState.COMPLETE, value=None,
        values=[attrs["val_loss"], attrs["train_throughput"]], datetime_start=start,
        datetime_complete=start + dt.timedelta(seconds=5), params={}, distributions={}, user_attrs=attrs,
        system_attrs={}, intermediate_values={}, trial_id=number)


def recorded_attrs() -> dict:
    attrs = {name: SAMPLE[METRICS[name].format] for name in RECORDED_METRICS}
    return {**attrs, "config_hash": "abc", "fail_reason": None, "config": {"levels": [{"width": 32}]},
            "train": {"lr": 0.001}}


def test_the_results_table_has_a_column_for_each_recorded_metric_in_the_documented_order():
    df = trials_dataframe([frozen_trial(0, recorded_attrs())], ["val_loss", "train_throughput"])
    columns = list(df.columns)
    for info in METRICS.values():
        if info.recorded and info.table is not None:
            for column in info.column_names(SAMPLE[info.format]):
                assert column in columns, column
        elif info.table is None:
            assert info.name not in columns
    assert bucket_columns(columns) == ["val_loss_t0", "val_loss_t1", "val_loss_t2"]
    # DESIGN.md's trials.csv contract, as a subsequence of the columns.
    contract = ["number", "state", "val_loss", "train_throughput", "params", "flops", "infer_throughput",
                "latency_ms", "peak_mem_mb", "val_loss_t0", "val_loss_t1", "val_loss_t2", "duration_s",
                "config_hash", "fail_reason", "architecture.levels.0.width", "train.lr"]
    assert [c for c in columns if c in contract] == contract
    row = df.iloc[0]
    assert row["val_loss_t1"] == 0.12 and row["params"] == 1234567 and row["precision"] == "fp32"


def test_an_empty_table_has_the_same_leading_columns():
    full = list(trials_dataframe([frozen_trial(0, recorded_attrs())], ["val_loss"]).columns)
    empty = list(trials_dataframe([], ["val_loss"]).columns)
    assert [c for c in empty if c in full] == [c for c in full if c in empty]
    assert {"params", "val_loss", "duration_s", "config_hash", "fail_reason", "outcome"} <= set(empty)


def test_bucket_columns_sort_by_bucket_number_and_ignore_lookalikes():
    assert bucket_columns(["val_loss_t10", "val_loss", "val_loss_t2", "val_loss_tx", "architecture.val_loss_t1"]) == \
        ["val_loss_t2", "val_loss_t10"]


@pytest.mark.parametrize("name", METRICS)
def test_the_terminal_formats_every_metric(name):
    info = METRICS[name]
    text = format_metric(name, SAMPLE[info.format])
    expected = {"count": "1,234,567", "number": "0.01235", "text": "fp32", "flag": "yes", "buckets": "0.31  0.12  0.05",
                "curve": "0.3@10 0.2@20"}.get(info.format)
    assert text == expected if expected is not None else text
    assert format_metric(name, None) == "–"


def test_train_prints_every_shown_metric_with_its_note():
    metrics = {name: SAMPLE[info.format] for name, info in METRICS.items()}
    rows = metrics_table(metrics).rows
    assert [r[0] for r in rows] == [n for n, info in METRICS.items() if info.shown]
    assert all(r[2] == METRICS[r[0]].about for r in rows)


def test_measured_metrics_are_fields_of_a_measurement():
    from archsearch.measure import Measurement

    fields = {f.name for f in dataclasses.fields(Measurement)}
    assert set(MEASURED_METRICS) <= fields and MEASURED_METRICS


def test_the_trial_record_is_the_registry_and_its_dict_has_every_key():
    record = TrialMetrics(val_loss=0.1, steps_trained=5)
    assert list(record.to_dict()) == list(METRICS) == [f.name for f in dataclasses.fields(TrialMetrics)]
    assert record.to_dict()["val_loss"] == 0.1 and record.to_dict()["flops"] is None
    with pytest.raises(TypeError):
        TrialMetrics(val_los=0.1)  # a misspelled metric fails where it is written
    with pytest.raises(AttributeError):
        record.val_los = 0.1


def test_table_groups_partition_the_tabled_metrics():
    grouped = [m.name for m in table_metrics("metrics") + table_metrics("details")]
    assert sorted(grouped) == sorted(n for n, info in METRICS.items() if info.table is not None)


# Literals in the package that still name 3+ metrics: which columns a table shows, not what a
# metric is. Pinned exactly, so a new list fails and removing one means crossing it off.
KNOWN_SELECTIONS = {
    ("report/console.py", "results_table"),  # `archsearch results`: columns and their priorities
    ("report/sections.py", "front_display"),  # the front's size columns
}


class _MetricLists(ast.NodeVisitor):
    """(file, innermost enclosing function) of every list, tuple, set or dict literal naming 3+ metrics."""

    def __init__(self, rel: str):
        self.rel, self.scope, self.found = rel, ["<module>"], set()

    def visit_FunctionDef(self, node):
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    def generic_visit(self, node):
        if isinstance(node, (ast.List, ast.Tuple, ast.Set, ast.Dict)):
            items = node.keys if isinstance(node, ast.Dict) else node.elts
            if len({i.value for i in items if isinstance(i, ast.Constant) and i.value in METRICS}) >= 3:
                self.found.add((self.rel, self.scope[-1]))
        super().generic_visit(node)


def metric_lists() -> set[tuple[str, str]]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel != "metrics.py":
            visitor = _MetricLists(rel)
            visitor.visit(ast.parse(path.read_text()))
            found |= visitor.found
    return found


def test_the_checker_finds_a_list_of_metric_names():
    visitor = _MetricLists("x.py")
    visitor.visit(ast.parse("def f():\n    return {'val_loss': 1, 'params': 2, 'flops': 3}\nKEYS = ['a', 'val_loss']"))
    assert visitor.found == {("x.py", "f")}


def test_no_module_keeps_a_second_list_of_metric_names():
    assert metric_lists() == KNOWN_SELECTIONS
