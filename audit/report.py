"""One report model, three renderings: a terminal table, Markdown and HTML (with PNG charts and CSV tables).

The report folder is written under a temporary name and renamed into place, so a killed audit never
leaves a report that looks complete.
"""

from __future__ import annotations

import html
import math
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

TERMINAL_ROWS = 25


@dataclass
class Table:
    title: str
    meaning: str
    frame: pl.DataFrame


@dataclass
class Chart:
    file: str
    title: str
    draw: Callable[[Any], None]  # receives a matplotlib Figure


@dataclass
class Section:
    title: str
    tables: list[Table] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    code: str = ""  # a verbatim block, e.g. a config


@dataclass
class Report:
    title: str
    subject: dict[str, str]
    sections: list[Section]
    findings: list[str] = field(default_factory=list)


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:,.0f}" if abs(value) >= 1e5 else f"{value:.4g}"
    return str(value)


def rows_of(frame: pl.DataFrame, limit: int | None = None) -> list[list[str]]:
    shown = frame if limit is None else frame.head(limit)
    return [[cell(v) for v in row] for row in shown.iter_rows()]


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def numeric_columns(frame: pl.DataFrame) -> set[int]:
    return {i for i, dtype in enumerate(frame.dtypes) if dtype.is_numeric()}


# --- terminal -------------------------------------------------------------------------------------

def terminal_table(table: Table, limit: int = TERMINAL_ROWS) -> str:
    header = list(table.frame.columns)
    body = rows_of(table.frame, limit)
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    right = numeric_columns(table.frame)

    def line(values: list[str]) -> str:
        cells = enumerate(zip(values, widths, strict=True))
        return "  ".join(v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in cells)

    out = [f"  {table.title}", "  " + line(header), "  " + "  ".join("-" * w for w in widths)]
    out += ["  " + line(r) for r in body]
    if table.frame.height > limit:
        out.append(f"  ... {table.frame.height - limit} more rows (full table in the report)")
    if table.frame.height == 0:
        out.append("  (none)")
    return "\n".join(out)


def render_terminal(report: Report, out_dir: Path | None = None) -> str:
    parts = [f"== {report.title}"] + [f"   {k}: {v}" for k, v in report.subject.items()]
    for section in report.sections:
        parts.append(f"\n-- {section.title}")
        parts += [terminal_table(t) for t in section.tables]
    parts.append("\n-- findings")
    parts += [f"  ! {f}" for f in report.findings] or ["  none: every recorded count matches the tables"]
    if out_dir is not None:
        parts.append(f"\nreport: {out_dir / 'report.md'}  {out_dir / 'report.html'}")
    return "\n".join(parts)


# --- Markdown -------------------------------------------------------------------------------------

def _md_escape(text: str) -> str:
    """Text from the data (source names, ids, reasons) as literal Markdown: Markdown passes raw HTML through,
    so <, > and & become entities; | would end a table cell, a newline the row."""
    return html.escape(str(text), quote=False).replace("|", "\\|").replace("\n", " ")


def markdown_table(table: Table) -> str:
    header = table.frame.columns
    right = numeric_columns(table.frame)
    lines = [f"### {_md_escape(table.title)}", "", _md_escape(table.meaning), "",
             "| " + " | ".join(_md_escape(h) for h in header) + " |",
             "|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(_md_escape(v) for v in row) + " |" for row in rows_of(table.frame)]
    if table.frame.height == 0:
        lines.append("| " + " | ".join("" for _ in header) + " |")
    return "\n".join(lines)


def render_markdown(report: Report, charts: dict[str, str]) -> str:
    parts = [f"# {report.title}", ""] + [f"- **{k}**: `{v}`" for k, v in report.subject.items()]
    parts += ["", "## Findings", ""]
    parts += [f"- {_md_escape(f)}" for f in report.findings] or ["None: every recorded count matches the tables."]
    for section in report.sections:
        parts += ["", f"## {_md_escape(section.title)}", ""]
        for chart in section.charts:
            if chart.file in charts:
                parts += [f"![{_md_escape(chart.title)}]({charts[chart.file]})", ""]
        parts += [markdown_table(t) + "\n" for t in section.tables]
        if section.code:
            parts += ["```yaml", section.code.rstrip(), "```"]
    return "\n".join(parts) + "\n"


# --- HTML -----------------------------------------------------------------------------------------

STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 8px}
th{background:#f0f0f0}td.n{text-align:right;font-variant-numeric:tabular-nums}
.finding{color:#a00}img{max-width:100%;border:1px solid #eee}p.meaning{color:#555;font-size:.9em}"""


def html_table(table: Table) -> str:
    right = numeric_columns(table.frame)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.frame.columns)
    body = "".join("<tr>" + "".join(f"<td class=\"n\">{html.escape(v)}</td>" if i in right
                                    else f"<td>{html.escape(v)}</td>" for i, v in enumerate(row)) + "</tr>"
                   for row in rows_of(table.frame))
    return (f"<h3>{html.escape(table.title)}</h3><p class=\"meaning\">{html.escape(table.meaning)}</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def render_html(report: Report, charts: dict[str, str]) -> str:
    subject = "".join(f"<li><b>{html.escape(k)}</b>: <code>{html.escape(v)}</code></li>"
                      for k, v in report.subject.items())
    findings = "".join(f"<li class=\"finding\">{html.escape(f)}</li>" for f in report.findings) or (
        "<li>None: every recorded count matches the tables.</li>")
    parts = [f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(report.title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{html.escape(report.title)}</h1><ul>{subject}</ul>"
             f"<h2>Findings</h2><ul>{findings}</ul>"]
    for section in report.sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts += [f"<figure><img src=\"{html.escape(charts[c.file])}\" alt=\"{html.escape(c.title)}\">"
                  f"<figcaption>{html.escape(c.title)}</figcaption></figure>"
                  for c in section.charts if c.file in charts]
        parts += [html_table(t) for t in section.tables]
        if section.code:
            parts.append(f"<pre>{html.escape(section.code)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


# --- files ----------------------------------------------------------------------------------------

def draw_charts(report: Report, folder: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    written = {}
    for section in report.sections:
        for chart in section.charts:
            figure = Figure(figsize=(8, 4.2), layout="constrained")
            chart.draw(figure)
            if not figure.axes:
                continue
            figure.savefig(folder / chart.file, dpi=100)
            written[chart.file] = chart.file
    return written


def write_report(report: Report, out_dir: Path) -> Path:
    """Write report.md, report.html, the PNG charts and tables/*.csv into `out_dir`, atomically."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "tables").mkdir(parents=True)
    try:
        charts = draw_charts(report, staging)
        for section in report.sections:
            for table in section.tables:
                table.frame.write_csv(staging / "tables" / f"{slug(section.title)}__{slug(table.title)}.csv")
        (staging / "report.md").write_text(render_markdown(report, charts), encoding="utf-8")
        (staging / "report.html").write_text(render_html(report, charts), encoding="utf-8")
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            out_dir.rename(old)
            staging.rename(out_dir)
            shutil.rmtree(old)
        else:
            staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir
