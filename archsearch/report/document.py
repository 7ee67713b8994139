"""A report as a list of blocks, rendered to Markdown (for GitHub) or to one HTML file.

    blocks = [Heading("Pareto front"), Paragraph("The knee is trial `#7`."), Table(df), Image(path, "front")]
    to_markdown(blocks)              # image links relative to the report's folder
    to_html(blocks, "quickstart")    # images embedded as base64 data URIs: one self-contained file

Inline markup in text is the small common subset: `code` and **bold**.
"""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

__all__ = ["Heading", "Paragraph", "Bullets", "Table", "Image", "Block", "to_markdown", "to_html"]


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    df: pd.DataFrame        # cells already formatted as text
    caption: str = ""


@dataclass
class Image:
    path: Path              # the PNG on disk
    alt: str
    caption: str = ""


Block = Heading | Paragraph | Bullets | Table | Image


def to_markdown(blocks: list[Block], base_dir: Path) -> str:
    """GitHub-flavoured Markdown; images are linked relative to `base_dir` (the report's folder)."""
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            out.append(block.text)
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            out.append(_markdown_table(block))
        elif isinstance(block, Image):
            link = _relative(block.path, base_dir)
            out.append(f"![{block.alt}]({link})" + (f"\n\n*{block.caption}*" if block.caption else ""))
    return "\n\n".join(out) + "\n"


def _markdown_table(table: Table) -> str:
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(cell(c) for c in table.df.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.df.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.df.itertuples(index=False)]
    text = "\n".join([head, rule, *rows])
    return f"{text}\n\n*{table.caption}*" if table.caption else text


def _relative(path: Path, base: Path) -> str:
    """`path` as a link from `base`: `plots/x.png`, or `../b/trials/3/samples.png` for another
    study's folder."""
    try:
        return Path(os.path.relpath(Path(path).resolve(), Path(base).resolve())).as_posix()
    except ValueError:  # another drive
        return Path(path).as_posix()


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1020px; margin: 2em auto;
       padding: 0 1em; color: #1f2328; line-height: 1.5; }
h1 { border-bottom: 1px solid #d0d7de; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.88em; display: block; overflow-x: auto; }
th, td { border: 1px solid #d0d7de; padding: 4px 9px; text-align: right; white-space: nowrap; }
th { background: #f6f8fa; }
td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #fafbfc; }
code { background: #eff1f3; padding: .1em .35em; border-radius: 4px; font-size: 0.9em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eaeef2; }
figcaption, .caption { color: #57606a; font-size: 0.88em; }
"""


def to_html(blocks: list[Block], title: str) -> str:
    """One self-contained HTML page: inline CSS, images as base64 data URIs."""
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            body.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            body.append(_html_table(block))
        elif isinstance(block, Image):
            data = base64.b64encode(Path(block.path).read_bytes()).decode("ascii")
            caption = f"<figcaption>{_inline(block.caption)}</figcaption>" if block.caption else ""
            body.append(f'<figure><img alt="{html.escape(block.alt)}" src="data:image/png;base64,{data}">{caption}</figure>')
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.df.columns)
    rows = "".join("<tr>" + "".join(f"<td>{_inline(str(v))}</td>" for v in row) + "</tr>"
                   for row in table.df.itertuples(index=False))
    caption = f'<p class="caption">{_inline(table.caption)}</p>' if table.caption else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{caption}"


_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def _inline(text: str) -> str:
    escaped = html.escape(text, quote=False)
    escaped = _CODE.sub(lambda m: f"<code>{m.group(1)}</code>", escaped)
    return _BOLD.sub(lambda m: f"<strong>{m.group(1)}</strong>", escaped)
