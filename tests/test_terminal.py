"""What the terminal shows: a live display that moves on its own, and tables that fit 80 and 120
columns without splitting a header or cutting a number (or plain lines when not a terminal)."""

from __future__ import annotations

import io

from rich.console import Console

from archsearch.report.console import training_progress
from archsearch.report.live import StudyDisplay


def terminal(width: int = 100) -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=width, color_system=None)


# --------------------------------------------------------------------------- the live display


def test_the_live_display_renders_afresh_on_every_refresh():
    console = terminal()
    display = StudyDisplay(console, "demo", 4, ["val_loss", "train_throughput"], ["minimize", "maximize"])
    with display:
        display.start_trial(0)
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
