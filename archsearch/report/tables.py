"""Tables for the terminal that fit its width: whole columns are dropped, values never cut.

    table = TextTable("Pareto front", [Column("trial", priority=9), Column.metric("val_loss", priority=8), ...], rows)
    show(console, table)   # a terminal: fitted to its width; a pipe or file: plain aligned lines

Every table the commands print (the front, `results`, the report summary, `train`'s metrics,
the ablation comparison) is a `TextTable` of already formatted cells. In a terminal, `fit`
drops the lowest-priority columns until the rest fit the width with every header line and every
number whole, and says in the caption what it left out; headers and numbers never wrap, and
only free text (reasons, descriptions) may wrap between words. Units come from the metric
registry (`archsearch.metrics.METRICS`) and sit under the metric's name. When the output
is not a terminal there is no width to fit: every column is printed as plain lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..metrics import METRICS

__all__ = ["Column", "TextTable", "fit", "show", "plain_lines", "markdown"]

Cell = str | Text

# A cell's room beyond its text: one space of padding each side and one vertical rule.
_CELL_EXTRA = 3


@dataclass(frozen=True)
class Column:
    """One column: its name, the unit shown under it, and how long it is kept as the width shrinks
    (the lowest `priority` goes first; ties drop the rightmost first)."""

    name: str
    unit: str = ""
    priority: int = 0
    justify: Literal["left", "right"] = "right"
    wrap: bool = False  # free text that may wrap between words; numbers and names never do
    style: str | None = None

    @classmethod
    def metric(cls, name: str, priority: int = 0) -> Column:
        """A metric's column, its unit from the registry."""
        info = METRICS.get(name)
        return cls(name, unit=info.unit if info else "", priority=priority)

    @property
    def header_lines(self) -> list[str]:
        return [self.name] + ([f"({self.unit})"] if self.unit else [])


@dataclass
class TextTable:
    """A table of formatted cells: text taken literally (no markup), or a rich `Text` for a styled
    cell; a newline separates the lines of a cell."""

    title: str
    columns: list[Column]
    rows: list[list[Cell]] = field(default_factory=list)
    caption: str = ""
    row_styles: list[str | None] = field(default_factory=list)

    def add_row(self, *cells: Cell, style: str | None = None) -> None:
        self.rows.append(list(cells))
        self.row_styles.append(style)

    def only(self, keep: list[int]) -> TextTable:
        """The same table with only the columns at these positions."""
        return replace(self, columns=[self.columns[i] for i in keep], rows=[[row[i] for i in keep] for row in self.rows])


def _plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def _needed_width(column: Column, cells: list[Cell]) -> int:
    """The narrowest the column can be with its header lines and its values whole."""
    lines = [line for cell in cells for line in _plain(cell).splitlines()]
    pieces = [word for line in lines for word in line.split()] if column.wrap else lines
    return max([cell_len(line) for line in column.header_lines] + [cell_len(p) for p in pieces] + [1])


def _widths(table: TextTable) -> list[int]:
    return [_needed_width(column, [row[i] for row in table.rows]) for i, column in enumerate(table.columns)]


def fit(table: TextTable, width: int) -> Table:
    """A rich Table no wider than `width`: drop the lowest-priority columns until the rest fit whole."""
    keep = list(range(len(table.columns)))
    needed = _widths(table)
    while len(keep) > 1 and sum(needed[i] + _CELL_EXTRA for i in keep) + 1 > width:
        drop = min(reversed(keep), key=lambda i: table.columns[i].priority)
        keep.remove(drop)
    dropped = [table.columns[i].name for i in range(len(table.columns)) if i not in keep]
    caption = table.caption
    if dropped:
        note = f"not shown at {width} columns: {', '.join(dropped)}"
        caption = f"{caption}; {note}" if caption else note
    shown = table.only(keep)
    rows_of_header = max(len(column.header_lines) for column in shown.columns)  # names on one line, units below
    out = Table(title=Text(shown.title) if shown.title else None, title_justify="left",
                caption=Text(caption) if caption else None, caption_justify="left")
    for column, need in zip(shown.columns, (needed[i] for i in keep)):
        lines = column.header_lines + [""] * (rows_of_header - len(column.header_lines))
        out.add_column("\n".join(lines), justify=column.justify, style=column.style, min_width=need,
                       no_wrap=not column.wrap, overflow="fold" if column.wrap else "ellipsis")
    styles = shown.row_styles + [None] * (len(shown.rows) - len(shown.row_styles))
    for row, style in zip(shown.rows, styles):
        out.add_row(*(cell if isinstance(cell, Text) else Text(cell) for cell in row), style=style)
    return out


def plain_lines(table: TextTable) -> str:
    """Every column, aligned with spaces, no rules and no markup: for pipes, files and logs."""
    headers = [" ".join(column.header_lines) for column in table.columns]
    rows = [[" ".join(_plain(cell).split()) for cell in row] for row in table.rows]
    widths = [max([cell_len(h)] + [cell_len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        parts = [c.rjust(w) if col.justify == "right" else c.ljust(w) for c, w, col in zip(cells, widths, table.columns)]
        return "  ".join(parts).rstrip()

    out = ([table.title] if table.title else []) + [line(headers)] + [line(r) for r in rows]
    if table.caption:
        out.append(table.caption)
    return "\n".join(out)


def markdown(table: TextTable) -> str:
    """The table in GitHub Markdown, every column, units in the headers."""
    import pandas as pd

    from .document import Table as DocumentTable
    from .document import to_markdown

    frame = pd.DataFrame([[_plain(c) for c in row] for row in table.rows],
                         columns=[" ".join(c.header_lines) for c in table.columns])
    head = f"**{table.title}**\n\n" if table.title else ""
    return head + to_markdown([DocumentTable(frame, table.caption)], Path(".")).rstrip("\n")


def show(console: Console, table: TextTable) -> None:
    """Print `table`: fitted to the terminal's width, or as plain lines when not a terminal."""
    if console.is_terminal:
        console.print(fit(table, console.width))
    else:
        console.print(plain_lines(table), markup=False, highlight=False, soft_wrap=True)
