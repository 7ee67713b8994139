"""What the terminal shows: a live display that moves on its own, and tables that fit 80 and 120
columns without splitting a header or cutting a number (or plain lines when not a terminal)."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

from archsearch.ablation.report import comparison_table
from archsearch.ablation.stats import compare_variants
from archsearch.report.console import metrics_table, results_table, training_progress
from archsearch.report.live import StudyDisplay, front_table
from archsearch.report.tables import TextTable, fit, show


def terminal(width: int = 100) -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=width, color_system=None)


# --------------------------------------------------------------------------- the live display


def test_the_live_display_renders_afresh_on_every_refresh():
    console = terminal()
    display = StudyDisplay(console, "demo", 4, ["val_loss", "train_throughput"], ["minimize", "maximize"])
    with display:
        display.trial_started(0, "")
        display.progress("training", 3, 60, 0.25)
        display.phase_start -= 7  # seven seconds pass without any event
        display.live.refresh()  # what rich's automatic refresh does 4 times a second
        assert display.live.auto_refresh
    assert "trial 0: training step 3/60, loss 0.25  (7s)" in console.file.getvalue()


def test_the_training_progress_bar_shows_the_step_and_the_loss():
    console = terminal()
    with training_progress(console) as update:
        update("training", 17, 60, 0.0931)
    out = console.file.getvalue()
    assert "17/60" in out and "loss 0.0931" in out


def test_the_training_progress_bar_appears_at_the_first_event():
    console = terminal()
    with training_progress(console) as update:
        console.print("digits: 1617 train + 180 val images")  # what `train` prints while the data is read
        assert console.file.getvalue() == "digits: 1617 train + 180 val images\n"  # no bar yet
        update("building", 0, 60)
        update("training", 17, 60, 0.0931)
    out = console.file.getvalue()
    assert out.index("digits: 1617") < out.index("17/60")
    with training_progress(console) as update:
        pass
    assert console.file.getvalue() == out  # no event, no bar and no blank line


def test_a_long_run_shows_images_per_second_the_eta_and_evaluation_lines():
    console, now = terminal(width=120), [100.0]
    with training_progress(console, batch_size=64) as update:
        update.progress.get_time = lambda: now[0]  # rich's clock, moved by hand
        update("measuring", 0, 600)
        update("training", 300, 600, 0.25)  # a resumed run: its first step is 300, at no speed yet
        for step in range(301, 311):
            now[0] += 0.5  # 2 steps/s: 128 images/s, 290 steps left: 2:25
            update("training", step, 600, 0.25)
        update.progress.refresh()
        update.evaluated(310, 600, 0.1234)
    out = console.file.getvalue()
    assert "310/600" in out and "128 img/s" in out and "0:02:25" in out
    assert "step 310/600  val_loss 0.1234" in out


def test_evaluation_lines_are_printed_without_the_bar():
    console = Console(file=io.StringIO(), width=100)
    with training_progress(console, enabled=False, batch_size=8) as update:
        update("training", 5, 60, 0.5)
        update.evaluated(6, 60, 0.25)
    assert console.file.getvalue() == "step  6/60  val_loss 0.25\n"


# --------------------------------------------------------------------------- tables that fit

FRONT = pd.DataFrame({
    "number": [3, 7, 11], "state": ["COMPLETE"] * 3,
    "val_loss": [0.0893412, 0.0893467, 0.1234], "train_throughput": [1234.5, 1100.2, 2400.8],
    "params": [1234567, 2345678, 345678], "flops": [123456789, 234567890, 34567890],
    "architecture.levels.0.width": [32, 64, 16], "architecture.skip.combine": ["concat", "add", "add"],
    "architecture.block.norm.groups": [8, 16, 8], "architecture.attention.head_channels": [32, 64, 32],
})
METRICS = {
    "outcome": "completed", "val_loss": 0.0893412, "val_loss_buckets": [0.31, 0.1234, 0.0812, 0.0523, 0.0211],
    "train_throughput": 1234.5, "train_throughput_iqr": 12.3, "infer_throughput": 4567.8, "latency_ms": 3.21,
    "params": 1234567, "flops": 123456789, "peak_mem_mb": 123.4, "peak_mem_source": "cpu_proxy", "steps_trained": 60,
    "train_seconds": 12.5, "duration_s": 20.1, "device": "cpu (AMD EPYC 7B13)", "precision": "fp32", "threads": 2,
    "learning_curve": [[15, 0.3], [30, 0.2], [45, 0.15], [60, 0.1]],
}


def _front() -> TextTable:
    return front_table(FRONT, ["val_loss", "train_throughput"], title="Pareto front of quickstart")


def _results() -> TextTable:
    df = FRONT.assign(duration_s=[12.3, 4.5, 6.7], state=["COMPLETE", "FAIL", "COMPLETE"],
                      fail_reason=[None, "error: RuntimeError: something went wrong in the middle of the run", None])
    return results_table(df)


def _metrics() -> TextTable:
    return metrics_table(METRICS, title="search_spaces/train_digits.yaml on cpu (AMD EPYC 7B13)")


def _ablation() -> TextTable:
    rows = []
    for seed in range(3):
        rows += [("base", seed, "COMPLETE", 0.0679 + 0.001 * seed, 686.6 + 5 * seed, 122961, 10261504, None),
                 ("no-norm", seed, "COMPLETE", 0.078 + 0.002 * seed, 800.0 + 40 * seed, 122193, 10261504, None),
                 ("attention-everywhere", seed, "COMPLETE", 0.0683, 400.0 - 30 * seed, 139185, 21468160, None),
                 ("add-skips", seed, "FAIL" if seed == 2 else "COMPLETE", 0.08 if seed < 2 else None, 900.0,
                  103713, 7803904, "diverged: nan" if seed == 2 else None)]
    runs = pd.DataFrame(rows, columns=["variant", "seed", "state", "val_loss", "train_throughput", "params", "flops", "fail_reason"])
    names = {"base": "", "no-norm": "", "attention-everywhere": "", "add-skips": ""}
    return comparison_table(compare_variants(runs, names, seeds=3), title="seed_design_choices")


TABLES = {"front": _front, "results": _results, "metrics": _metrics, "ablation": _ablation}


def _plain(cell) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def check_fits(table: TextTable, width: int) -> list[str]:
    """Print `table` on a terminal of `width` columns and check what a reader would: nothing wider
    than the terminal, no header line split, every value whole, the dropped columns named. Returns
    the names of the columns shown."""
    console = terminal(width)
    show(console, table)
    out = console.file.getvalue()
    lines = out.splitlines()
    assert max(cell_len(line) for line in lines) <= width
    assert "…" not in out
    header_lines = [line for line in lines if "┃" in line]
    body_lines = [line for line in lines if "│" in line]
    shown = [column.header.split("\n")[0] for column in fit(table, width).columns]
    dropped = [c.name for c in table.columns if c.name not in shown]
    if dropped:
        assert f"not shown at {width} columns: {', '.join(dropped)}" in " ".join(out.split())
    for i, column in enumerate(table.columns):
        if column.name not in shown:
            continue
        for header in column.header_lines:
            assert any(f" {header} " in line for line in header_lines), f"header {header!r} is split"
        for row in table.rows:
            cell = _plain(row[i])
            for piece in cell.split() if column.wrap else cell.splitlines():
                assert any(piece in line for line in body_lines), f"{piece!r} of column {column.name} is cut"
    return shown


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("name", TABLES)
def test_every_table_fits_the_terminal_whole(name, width):
    shown = check_fits(TABLES[name](), width)
    assert len(shown) >= 2


def test_a_narrow_terminal_drops_the_least_important_columns_first():
    narrow, wide = check_fits(_front(), 80), check_fits(_front(), 120)
    assert narrow[:3] == ["trial", "val_loss", "train_throughput"] and "flops" not in narrow
    assert set(narrow) < set(wide)
    assert check_fits(_front(), 400) == [c.name for c in _front().columns]  # room for all: nothing dropped
    console = terminal(80)
    show(console, _front())
    out = console.file.getvalue()
    assert "0.08934" in out and "0.08935" in out  # two front members that differ in the 4th digit
    assert "(img/s)" in out and "(MSE)" in out  # units under the metric names, from the registry


def test_the_report_summary_fits(tmp_path):
    from test_report_cli import make_study

    from archsearch.report.build import make_report, print_summary

    report, files = make_report([make_study(tmp_path / "demo", "demo")], importances=False)
    for width in (80, 120):
        console = terminal(width)
        print_summary(report, files, console)
        out = console.file.getvalue()
        assert max(cell_len(line) for line in out.splitlines()) <= width and "…" not in out
        assert "0.15" in out and "(img/s)" in out


def test_outside_a_terminal_tables_are_plain_lines_with_every_column():
    table = _front()
    console = Console(file=io.StringIO(), force_terminal=False, width=80)
    show(console, table)
    lines = console.file.getvalue().splitlines()
    assert not set("┃│━─┏┗") & set("".join(lines))
    assert lines[0] == "Pareto front of quickstart"
    assert lines[1].split() == "trial val_loss (MSE) train_throughput (img/s) params flops (per img) " \
                               "architecture.levels.0.width architecture.skip.combine architecture.block.norm.groups " \
                               "architecture.attention.head_channels".split()
    assert lines[2].split() == ["3", "0.08934", "1234", "1,234,567", "123,456,789", "32", "concat", "8", "32"]
    assert len(lines) == 2 + len(FRONT)


def test_the_study_display_tells_what_data_was_read():
    from archsearch.schema.data import Digits
    from archsearch.schema.train import EvalConfig, TrainConfig
    from archsearch.trial import LazyContext

    console = Console(file=io.StringIO(), force_terminal=False, width=100)
    display = StudyDisplay(console, "demo", 4, ["val_loss"], ["minimize"], enabled=False)
    LazyContext(Digits(), EvalConfig(num_images=16), "cpu", on_load=display.data_loaded)(TrainConfig())
    assert console.file.getvalue().splitlines() == ["digits: 1617 train + 180 val images, 1x16x16, 10 classes"]
