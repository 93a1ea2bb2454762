"""Render a :class:`Report` as self-contained HTML and as Markdown.

The HTML embeds every figure as a base64 SVG (sharp at any zoom; a PNG when a figure has no
SVG) and all its CSS inline: it opens from disk with no server and fetches nothing. The
Markdown links the figures' 2x PNGs, which sit beside it (GitHub shows them).
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    path: Path  # the PNG (2x), inside the output folder: the Markdown's
    title: str
    caption: str
    svg: Path | None = None  # the same figure as SVG, beside it: the HTML's


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class Report:
    """Everything a report shows, already computed; rendering only lays it out."""

    title: str
    description: str
    # correctness: check name -> column label ("Raft seed 1") -> verdict (pass/fail/unknown)
    checks: dict[str, dict[str, str]]
    failures: list[str]
    findings: list[str]
    summary: Table
    figures: list[Figure]
    faults: list[str]
    manifest: dict[str, Any]
    spec_text: str = ""
    notes: list[str] = field(default_factory=list)
    extra_tables: list[tuple[str, Table]] = field(default_factory=list)
    summary_heading: str = "Summary"
    # how many comparisons the summary makes, and how many would exclude zero by chance
    chance: str = ""
    # set when too few seeds to word any finding: why the report is exploratory
    exploratory: str = ""
    # verdicts behind ``checks`` when its cells aggregate several (a load sweep's seeds)
    verdicts: int | None = None
    # (heading, Markdown text) written by hand or generated, after the figures
    sections: list[tuple[str, str]] = field(default_factory=list)

    @property
    def verdict_count(self) -> int:
        if self.verdicts is not None:
            return self.verdicts
        return sum(len(per) for per in self.checks.values())

    @property
    def passed(self) -> bool:
        """At least one verdict, every one a pass: zero verdicts is never "passed"."""
        return (not self.failures and self.verdict_count > 0
                and all(v == "pass" for per in self.checks.values() for v in per.values()))

    @property
    def unchecked(self) -> bool:
        """Nothing failed because nothing was checked."""
        return not self.failures and self.verdict_count == 0


CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;
max-width:1100px;margin:1.5em auto;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
.desc{color:#444;margin-top:0}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #d6d6d6;padding:.25em .6em;text-align:right;vertical-align:top}
th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}
td.pass{background:#e3f4e8;color:#0b5d1e;font-weight:600;text-align:center}
td.fail{background:#d55e00;color:#fff;font-weight:700;text-align:center}
td.unknown{background:#ffe9a8;color:#5a4500;font-weight:700;text-align:center}
td.verdict{text-align:left;max-width:28em}
.banner{padding:.8em 1em;border-radius:6px;font-weight:600;margin:1em 0}
.banner.ok{background:#e3f4e8;color:#0b5d1e;border:1px solid #9dd3ac}
.banner.bad{background:#b00020;color:#fff;font-size:1.25em;border:3px solid #6d0014}
.banner.none{background:#ffe9a8;color:#5a4500;border:1px solid #d9b94a}
.banner.explore{background:#eef3fb;color:#1d3a66;border:1px solid #a9bfe3;font-weight:500}
.banner.bad ul{font-size:.8em;font-weight:500;margin:.4em 0 0}
figure{margin:1.2em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#444;font-size:.92em;margin-top:.3em}
ul.findings li{margin:.2em 0}.note{color:#555;font-size:.9em}
pre{background:#f6f6f6;padding:.8em;overflow:auto;font-size:.85em}
code{background:#f3f3f3;padding:0 .2em}
"""


def _e(text: Any) -> str:
    return html.escape(str(text))


def markdown_html(text: str) -> str:
    """A Markdown section as HTML (CommonMark with tables; raw HTML in it is escaped)."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)


def _cell_class(value: str) -> str:
    return {"pass": "pass", "fail": "fail", "unknown": "unknown"}.get(value.lower(), "")


def _html_table(table: Table, verdict_col: int | None = None) -> str:
    out = ["<table><thead><tr>", *(f"<th>{_e(h)}</th>" for h in table.headers),
           "</tr></thead><tbody>"]
    for row in table.rows:
        out.append("<tr>")
        for i, cell in enumerate(row):
            cls = _cell_class(cell) or ("verdict" if i == verdict_col else "")
            text = cell.upper() if _cell_class(cell) else cell
            out.append(f'<td class="{cls}">{_e(text)}</td>' if cls else f"<td>{_e(text)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    if table.note:
        out.append(f'<p class="note">{_e(table.note)}</p>')
    return "".join(out)


def checks_table(checks: dict[str, dict[str, str]]) -> Table:
    """The correctness panel: one row per check, one column per algorithm and seed."""
    columns = list(dict.fromkeys(c for per in checks.values() for c in per))
    rows = [[name, *(per.get(c, "-") for c in columns)] for name, per in checks.items()]
    return Table(["check", *columns], rows)


NO_VERDICTS = ("No checks ran: 0 verdicts were recorded, so this run is not marked as "
               "passed.")
FINDINGS_RULE = ("Only differences whose 95% t-interval on the paired per-seed differences "
                 "excludes zero, from at least 5 paired seeds, are worded here.")


def _banner_html(report: Report) -> str:
    if report.passed:
        n = report.verdict_count
        return (f'<div class="banner ok">&#10004; All checks passed: {n} verdicts across every '
                f"algorithm and seed.</div>")
    if report.unchecked:
        return f'<div class="banner none">&#9888; {_e(NO_VERDICTS)}</div>'
    items = "".join(f"<li>{_e(f)}</li>" for f in report.failures) or "<li>see the table</li>"
    return (f'<div class="banner bad">&#10008; CHECK FAILED: this run violated a correctness '
            f"check.<ul>{items}</ul></div>")


def _verdict_col(table: Table) -> int | None:
    return len(table.headers) - 1 if table.headers and table.headers[-1] == "verdict" else None


def _image_data(fig: Figure) -> str:
    """The figure as a data URI: its SVG when it has one, else its PNG."""
    if fig.svg is not None and fig.svg.exists():
        return "data:image/svg+xml;base64," + base64.b64encode(fig.svg.read_bytes()).decode(
            "ascii")
    return "data:image/png;base64," + base64.b64encode(fig.path.read_bytes()).decode("ascii")


def to_html(report: Report) -> str:
    """The report as one self-contained HTML page."""
    parts = ['<!doctype html><html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width,initial-scale=1">',
             f"<title>{_e(report.title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{_e(report.title)}</h1>",
             f'<p class="desc">{_e(report.description)}</p>' if report.description else "",
             _banner_html(report)]
    if report.exploratory:
        parts.append(f'<div class="banner explore">Exploratory: {_e(report.exploratory)}</div>')
    parts.append("<h2>Correctness</h2>")
    parts.append(_html_table(checks_table(report.checks)) if report.checks
                 else '<p class="note">No correctness verdicts were recorded.</p>')
    if report.findings:
        parts += ["<h2>Findings</h2>", f'<p class="note">{_e(FINDINGS_RULE)}</p>',
                  '<ul class="findings">', *(f"<li>{_e(f)}</li>" for f in report.findings),
                  "</ul>"]
    if report.summary.rows:
        parts += [f"<h2>{_e(report.summary_heading)}</h2>",
                  f'<p class="note">{_e(report.chance)}</p>' if report.chance else "",
                  _html_table(report.summary, verdict_col=_verdict_col(report.summary))]
    for heading, table in report.extra_tables:
        parts += [f"<h2>{_e(heading)}</h2>", _html_table(table)]
    if report.faults:
        parts += ["<h2>Fault schedule</h2><ul>", *(f"<li>{_e(f)}</li>" for f in report.faults),
                  "</ul>"]
    for fig in report.figures:
        parts += [f"<h2>{_e(fig.title)}</h2>", "<figure>",
                  f'<img alt="{_e(fig.title)}" src="{_image_data(fig)}">',
                  f"<figcaption>{_e(fig.caption)}</figcaption></figure>"]
    for heading, text in report.sections:
        parts += [f"<h2>{_e(heading)}</h2>", markdown_html(text)]
    if report.notes:
        parts += ["<h2>Notes</h2><ul>", *(f"<li>{_e(n)}</li>" for n in report.notes), "</ul>"]
    parts += ["<h2>Manifest</h2>", _html_table(manifest_table(report.manifest))]
    if report.spec_text:
        parts += ["<details><summary>Experiment file as run</summary>",
                  f"<pre>{_e(report.spec_text)}</pre></details>"]
    parts.append("</body></html>\n")
    return "\n".join(p for p in parts if p)


MANIFEST_ORDER = ("experiment", "experiments", "version", "git_commit", "python", "platform",
                  "transport", "broker", "mqtt_client", "client_library", "seeds", "algorithms",
                  "started", "command", "note")


def manifest_table(manifest: dict[str, Any]) -> Table:
    keys = [k for k in MANIFEST_ORDER if k in manifest]
    keys += sorted(k for k in manifest if k not in keys)
    rows = []
    for k in keys:
        v = manifest[k]
        if isinstance(v, list | tuple):
            v = ", ".join(str(x) for x in v)
        elif isinstance(v, dict):
            v = ", ".join(f"{a}={b}" for a, b in v.items())
        rows.append([k, "-" if v is None else str(v)])
    return Table(["", "value"], rows)


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> str:
    def fmt(cell: str) -> str:
        c = _cell_class(cell)
        if c == "pass":
            return "✅ pass"
        if c == "fail":
            return "❌ **FAIL**"
        if c == "unknown":
            return "⚠️ **UNKNOWN**"
        return _md_escape(cell)

    lines = ["| " + " | ".join(_md_escape(h) for h in table.headers) + " |",
             "|" + "|".join(":--" if i == 0 else "--:" for i in range(len(table.headers))) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in table.rows]
    if table.note:
        lines += ["", f"_{table.note}_"]
    return "\n".join(lines)


def to_markdown(report: Report, base: Path) -> str:
    """The report as Markdown; images are linked relative to ``base`` (the .md's folder)."""
    out = [f"# {report.title}", ""]
    if report.description:
        out += [report.description, ""]
    if report.passed:
        n = report.verdict_count
        out += [f"> ✅ **All checks passed**: {n} verdicts across every algorithm and seed.", ""]
    elif report.unchecked:
        out += [f"> ⚠️ **{NO_VERDICTS}**", ""]
    else:
        out += ["> ❌ **CHECK FAILED: this run violated a correctness check.**", ">"]
        out += [f"> - {_md_escape(f)}" for f in report.failures] + [""]
    if report.exploratory:
        out += [f"> **Exploratory:** {_md_escape(report.exploratory)}", ""]
    out += ["## Correctness", ""]
    out += [_md_table(checks_table(report.checks)) if report.checks
            else "_No correctness verdicts were recorded._", ""]
    if report.findings:
        out += ["## Findings", "", f"_{FINDINGS_RULE}_", ""]
        out += [f"- {f}" for f in report.findings] + [""]
    if report.summary.rows:
        out += [f"## {report.summary_heading}", ""]
        if report.chance:
            out += [f"_{report.chance}_", ""]
        out += [_md_table(report.summary), ""]
    for heading, table in report.extra_tables:
        out += [f"## {heading}", "", _md_table(table), ""]
    if report.faults:
        out += ["## Fault schedule", ""] + [f"- {f}" for f in report.faults] + [""]
    for fig in report.figures:
        rel = fig.path.relative_to(base).as_posix()
        out += [f"## {fig.title}", "", f"![{fig.title}]({rel})", "", fig.caption, ""]
    for heading, text in report.sections:
        out += [f"## {heading}", "", text.strip(), ""]
    if report.notes:
        out += ["## Notes", ""] + [f"- {n}" for n in report.notes] + [""]
    out += ["## Manifest", "", _md_table(manifest_table(report.manifest)), ""]
    if report.spec_text:
        out += ["<details><summary>Experiment file as run</summary>", "", "```yaml",
                report.spec_text.rstrip(), "```", "", "</details>", ""]
    return "\n".join(out)


def write(report: Report, folder: Path, stem: str = "report") -> list[Path]:
    """Write ``<stem>.html`` and ``<stem>.md`` into ``folder``; return their paths."""
    html_path = folder / f"{stem}.html"
    md_path = folder / f"{stem}.md"
    html_path.write_text(to_html(report), encoding="utf-8")
    md_path.write_text(to_markdown(report, folder), encoding="utf-8")
    return [html_path, md_path]

