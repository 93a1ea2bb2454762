"""The side-by-side code page: ``raft/node.py`` and ``paxos/node.py`` in two columns, aligned
section by section and method by method, with ``consensus/node.py`` (what both share) as a
third column that can be shown or hidden.

Generated from the source on every call (``consensus-lab code``, and the gallery), so it never
goes stale: ``code_source`` reads sections, methods and variant lines from the files, and
``code_map`` only says which method sits beside which, the TLA+ action each implements and the
experiment that shows each difference. One self-contained HTML file: inline CSS, no script, no
network; syntax colours from pygments when it is installed (rich depends on it), plain escaped
text otherwise.
"""

from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass
from pathlib import Path

from consensus.algorithms import get_algorithm
from consensus.node import Config
from consensus.report.code_map import (
    ALGORITHMS,
    PREAMBLE,
    ROWS,
    SHARED_SECTION_HOME,
    TOPICS,
    Row,
    Side,
)
from consensus.report.code_source import (
    BANNER,
    Chunk,
    SourceMap,
    algorithm_source,
    shared_facts,
    shared_source,
    variant_fields,
)

PACKAGE = Path(__file__).resolve().parent.parent
TITLES = {"raft": "Raft", "paxos": "Multi-Paxos", "shared": "Shared (node.py)"}
# One colour per variant, in Config's field order; more variants than colours reuse them.
PALETTE = ("#f2c14e", "#7fc8a9", "#f28f8f", "#9db4f0", "#d7a4e8", "#f5a962", "#8fd3e8")


@dataclass(frozen=True, slots=True)
class Sources:
    raft: SourceMap
    paxos: SourceMap
    shared: SourceMap

    def of(self, column: str) -> SourceMap:
        return getattr(self, column)


def load_sources(package: Path = PACKAGE) -> Sources:
    """Read the three files from ``package`` (the ``consensus`` folder)."""
    shared_path = package / "node.py"
    facts = shared_facts(shared_path)
    return Sources(algorithm_source(package / "raft" / "node.py", facts),
                   algorithm_source(package / "paxos" / "node.py", facts),
                   shared_source(shared_path))


# -- syntax colours ------------------------------------------------------------------------

def _call_link(name: str, text: str, links: dict[str, str]) -> str:
    """``text`` (the method name after ``self.``) as a link to the method's code, if shown."""
    target = links.get(name)
    if target is None:
        return text
    where = "in node.py" if target.startswith("shared-") else "in this file"
    return f'<a class="call" href="#{target}" title="{name}, {where}">{text}</a>'


def _highlighted_lines(text: str, links: dict[str, str]) -> list[str]:
    """The file's lines as HTML, one per source line (token spans never cross a line), with
    each ``self.<method>`` call linked through ``links`` (method -> anchor)."""
    lines = text.splitlines()
    try:
        from pygments.lexers import PythonLexer
        from pygments.token import STANDARD_TYPES
    except ImportError:  # plain text, still escaped, numbered and linked
        return [re.sub(r"(?<=\bself\.)(\w+)", lambda m: _call_link(m[1], m[1], links),
                       html.escape(line)) for line in lines]
    out: list[str] = []
    current: list[str] = []
    prev: list[str] = []  # the last two significant token values: "self", "."
    for ttype, value in PythonLexer().get_tokens(text):
        t = ttype
        while t not in STANDARD_TYPES and t.parent is not None:
            t = t.parent
        css = STANDARD_TYPES.get(t, "")
        for n, piece in enumerate(value.split("\n")):
            if n:
                out.append("".join(current))
                current = []
            if not piece:
                continue
            span = f'<span class="{css}">{html.escape(piece)}</span>' if css else html.escape(piece)
            if prev == ["self", "."] and css.startswith("n"):
                span = _call_link(piece, span, links)
            current.append(span)
        if value.strip():
            prev = [*prev, value.strip()][-2:]
    if current:
        out.append("".join(current))
    return (out + [""] * len(lines))[:len(lines)]


def _style_css() -> str:
    try:
        from pygments.formatters import HtmlFormatter
    except ImportError:
        return ""
    return HtmlFormatter(style="default").get_style_defs(".src")


# -- the page ------------------------------------------------------------------------------

def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


class _Column:
    """One file rendered as the page needs it: highlighted lines, anchors and links."""

    def __init__(self, name: str, source: SourceMap, link_targets: dict[str, str]) -> None:
        self.name = name
        self.source = source
        # A method called as self.<name> links to the anchor of its code.
        self.html = _highlighted_lines("\n".join(source.lines), link_targets)

    def chunk(self, chunk: Chunk, anchors: tuple[str, ...] = (), title: str = "") -> str:
        ids = "".join(f'<span class="anchor" id="{html.escape(a)}"></span>' for a in anchors)
        head = f'<div class="chunk-title">{title}</div>' if title else ""
        body = "".join(self.line(i) for i in chunk.lines())
        return f'<div class="chunk">{ids}{head}{body}</div>'

    def line(self, number: int) -> str:
        variants = self.source.variant_lines.get(number, [])
        banner = ["bn"] if BANNER.match(self.source.lines[number - 1]) else []
        classes = " ".join(["ln", *banner, *(f"v-{v}" for v in variants)])
        marks = "".join(f'<i class="m m-{v}" title="{v}"></i>' for v in variants)
        code = self.html[number - 1]
        lid = f"{self.name}-L{number}"
        return (f'<div class="{classes}" id="{lid}"><a class="no" href="#{lid}">{number}</a>'
                f'<span class="ms">{marks}</span><span class="src">{code}</span></div>')


def _link_targets(column: str, sources: Sources) -> dict[str, str]:
    """self.<method> -> anchor: the file's own method, else ConsensusNode's, else Node's."""
    targets: dict[str, str] = {}
    shared = sources.shared.methods()
    for cls in ("Node.", "ConsensusNode."):  # the more derived class wins
        targets.update({m[len(cls):]: f"shared-{m}" for m in shared if m.startswith(cls)})
    if column != "shared":
        targets.update({m: f"{column}-{m}" for m in sources.of(column).methods()})
    return targets


def _experiment_link(topic: str | None, reports: str) -> str:
    name = TOPICS.get(topic or "")
    if name is None:
        return ""
    return (f'<a class="exp" href="{html.escape(reports)}/{name}/report.html">'
            f"experiment: {name}</a>")


def page_sections(sources: Sources) -> list[str]:
    """The page's sections in order: the preamble parts, then Raft's banners."""
    return [*PREAMBLE, *(s.key for s in sources.raft.sections)]


def _side_cell(col: _Column, side: Side, section: str) -> str:
    if not side.methods:
        return f'<div class="cell {col.name} empty">no counterpart</div>'
    parts = []
    found = col.source.section(section)
    for n, method in enumerate(side.methods):
        chunk = found.methods.get(method) if found else None
        if chunk is None:
            parts.append(f'<div class="missing">{method}: not in this section</div>')
            continue
        anchors = [f"{col.name}-{method}"]
        title = f"<code>{method}</code>"
        if n == 0 and side.action:
            anchors.append(f"{col.name}-{side.action}")
            title += f' <span class="tla">{side.action}</span>'
        parts.append(col.chunk(chunk, tuple(anchors), title))
    return f'<div class="cell {col.name}">{"".join(parts)}</div>'


def shared_homes(shared: SourceMap, page_keys: list[str]) -> dict[str, str]:
    """Section of node.py -> the page section it is shown in: its namesake; else its place in
    ``SHARED_SECTION_HOME``; else wherever the section before it in node.py went (a section
    only node.py has, such as the read paths, stays beside the code it follows)."""
    homes: dict[str, str] = {}
    last = PREAMBLE[3]
    for s in shared.sections:
        last = s.key if s.key in page_keys else SHARED_SECTION_HOME.get(s.key, last)
        homes[s.key] = last
    return homes


def _shared_cell(col: _Column, key: str, span: int, page_keys: list[str]) -> str:
    src = col.source
    parts = []
    if key in src.preamble:
        parts.append(col.chunk(src.preamble[key]))
    homes = shared_homes(src, page_keys)
    homed = [s for s in src.sections if homes[s.key] == key]
    for s in homed:
        parts.append(col.chunk(s.header))
        # Folded where it is the interface (Node, the abstract hooks), not the section's code.
        unfold = " open" if s.key == key else ""
        for method, chunk in s.methods.items():
            parts.append(f'<details class="fold" id="shared-{method}"{unfold}>'
                         f"<summary><code>{method}</code></summary>{col.chunk(chunk)}</details>")
    if not parts:
        parts.append('<div class="empty">nothing shared here</div>')
    return (f'<div class="cell shared" style="grid-row: 1 / span {span}">'
            f'{"".join(parts)}</div>')


def _label(row: Row, rid: str, reports: str) -> str:
    actions = []
    for alg in ("raft", "paxos"):
        side: Side = getattr(row, alg)
        if side.action:
            actions.append(f'<a href="#{alg}-{side.action}">{TITLES[alg]}: '
                           f'<span class="tla">{side.action}</span></a>')
    note = f'<div class="note">{html.escape(row.note)}</div>' if row.note else ""
    return (f'<div class="label" id="{rid}"><a class="here" href="#{rid}">'
            f"{html.escape(row.label)}</a> {' · '.join(actions)} "
            f"{_experiment_link(row.topic, reports)}{note}</div>")


def _rows_of(key: str) -> list[Row]:
    return [r for r in ROWS if r.section == key]


def _unpaired(sources: Sources, key: str) -> Row | None:
    """Methods of a section that no row lists: shown all the same, in a row of their own."""
    listed = {alg: {m for r in _rows_of(key) for m in getattr(r, alg).methods}
              for alg in ("raft", "paxos")}
    extra = {}
    for alg in ("raft", "paxos"):
        section = sources.of(alg).section(key)
        extra[alg] = tuple(m for m in (section.methods if section else ())
                           if m not in listed[alg])
    if not extra["raft"] and not extra["paxos"]:
        return None
    return Row(key, "not paired yet (add a row to code_map.ROWS)",
               Side(extra["raft"]), Side(extra["paxos"]))


def _section_html(key: str, cols: dict[str, _Column], sources: Sources, reports: str) -> str:
    items = []
    if key in PREAMBLE:
        for alg in ("raft", "paxos"):
            chunk = sources.of(alg).preamble.get(key)
            body = cols[alg].chunk(chunk) if chunk else '<div class="empty">-</div>'
            items.append(f'<div class="cell {alg}">{body}</div>')
        nrows = 1
    else:
        for alg in ("raft", "paxos"):
            section = sources.of(alg).section(key)
            body = cols[alg].chunk(section.header) if section else ""
            items.append(f'<div class="cell {alg} banner">{body}</div>')
        nrows = 1
        rows = _rows_of(key)
        extra = _unpaired(sources, key)
        for n, row in enumerate([*rows, *([extra] if extra else [])]):
            rid = f"row-{_slug(key)}-{n + 1}"
            items.append(_label(row, rid, reports))
            items.append(_side_cell(cols["raft"], row.raft, key))
            items.append(_side_cell(cols["paxos"], row.paxos, key))
            nrows += 2
    items.insert(0, _shared_cell(cols["shared"], key, nrows, page_sections(sources)))
    sid = f"sec-{_slug(key)}"
    return (f'<section id="{sid}"><h2><a href="#{sid}">{html.escape(key.capitalize())}</a></h2>'
            f'<div class="grid">{"".join(items)}</div></section>')


def _switch(field: str) -> str:
    """Where the algorithm registry declares switches (``Algorithm.variants``: field -> the
    values it accepts, None for any), what each algorithm accepts for ``field``."""
    parts = []
    for alg in ALGORITHMS:
        declared = getattr(get_algorithm(alg), "variants", None)
        if declared is None:
            return ""  # a registry without declared switches: nothing to say
        if field not in declared:
            parts.append(f"{TITLES[alg]}: not a switch")
        else:
            values = declared[field]
            parts.append(f"{TITLES[alg]}: " + (" | ".join(
                str(x).lower() if isinstance(x, bool) else str(x) for x in values)
                if values else "any value"))
    return "; " + ", ".join(parts)


def _legend(sources: Sources, reports: str) -> str:
    rows = []
    defaults = {f: getattr(Config(), f) for f in variant_fields()}
    for v in variant_fields():
        counts = []
        for col in ("raft", "paxos", "shared"):
            lines = [i for i, vs in sources.of(col).variant_lines.items() if v in vs]
            first = f'<a href="#{col}-L{lines[0]}">{len(lines)}</a>' if lines else "0"
            counts.append(f"{first} in {TITLES[col]}")
        exp = _experiment_link(v, reports)
        rows.append(f'<li><label for="t-v-{v}"><i class="m m-{v}"></i> <code>{v}</code>'
                    f"</label> (default {html.escape(repr(defaults[v]))}"
                    f"{html.escape(_switch(v))}): {', '.join(counts)} lines {exp}</li>")
    return ('<div class="legend"><b>Variants</b> (fields of <code>Config</code>; click a '
            "name to hide or show its colour). A line is marked when it reads the field, "
            "passes it, tests it in an <code>if</code> (the whole branch), calls a shared "
            "predicate that reads it, or sits in a docstring paragraph naming it in double "
            "backquotes; a method called only inside its branches is marked whole."
            f'<ul>{"".join(rows)}</ul></div>')


def _contents(sources: Sources, reports: str) -> str:
    items = []
    for key in page_sections(sources):
        sub = []
        for n, row in enumerate(_rows_of(key)):
            sub.append(f'<li><a href="#row-{_slug(key)}-{n + 1}">{html.escape(row.label)}</a>'
                       + (" *" if row.note else "") + "</li>")
        inner = f"<ol>{''.join(sub)}</ol>" if sub else ""
        items.append(f'<li><a href="#sec-{_slug(key)}">{html.escape(key)}</a>{inner}</li>')
    diffs = []
    for key in page_sections(sources):
        for n, row in enumerate(_rows_of(key)):
            if row.note:
                diffs.append(f'<li><a href="#row-{_slug(key)}-{n + 1}">'
                             f"{html.escape(row.label)}</a>: {html.escape(row.note)} "
                             f"{_experiment_link(row.topic, reports)}</li>")
    return (f'<nav><div><b>Sections</b> (* where the algorithms differ)<ol>{"".join(items)}'
            f'</ol></div><div><b>Where they differ</b><ul>{"".join(diffs)}</ul></div></nav>')


def _css() -> str:
    variant_css = []
    for n, v in enumerate(variant_fields()):
        color = PALETTE[n % len(PALETTE)]
        variant_css.append(f".m-{v}{{background:{color}}}"
                           f"#t-v-{v}:checked ~ main .ln.v-{v}{{background:{color}55}}")
    return BASE_CSS + "\n".join(variant_css) + "\n" + _style_css() + DOC_CSS


BASE_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 1rem;color:#222}
h1{font-size:1.4rem} h2{font-size:1.1rem;margin:1.4rem 0 .3rem}
code,.src,.no{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.toggle{position:absolute;left:-9999px}
.controls label{margin-right:1rem;cursor:pointer}
nav{display:flex;gap:2rem;font-size:13px} nav ol{margin:.2rem 0}
.legend ul{margin:.3rem 0}
.m{display:inline-block;width:.55rem;height:.9rem;vertical-align:middle;margin-right:1px}
.grid{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:0 .6rem;
}
.cell{overflow-x:auto;font-size:12px;border-top:1px solid #ddd;padding:.2rem 0}
.cell.raft{grid-column:1}.cell.paxos{grid-column:2}
.chunk{background:#fbfbfb}
.cell.shared{display:none;grid-column:3;background:#f7f7fb;border-left:2px solid #99c}
#t-shared:checked ~ main .grid{grid-template-columns:minmax(0,1fr) minmax(0,1fr) minmax(0,.85fr)}
#t-shared:checked ~ main .cell.shared{display:block}
#t-shared:checked ~ main .label{grid-column:1 / 3}
.label{grid-column:1 / -1;background:#eef2f7;padding:.25rem .5rem;margin-top:.5rem;
 font-weight:600}
.label .note{font-weight:400;font-size:13px}
.tla{font-family:ui-monospace,monospace;background:#fff3c4;padding:0 .2rem;border-radius:3px}
.exp{font-weight:400;margin-left:.5rem}
.chunk{margin-bottom:.4rem}.chunk-title{font-size:12px;color:#555;margin:.2rem 0}
.ln{display:flex;white-space:pre}
.ln .src{white-space:pre-wrap;overflow-wrap:anywhere;min-width:0;padding-left:4ch;
 text-indent:-4ch}
.ln.bn .src{white-space:pre;overflow:hidden}.ln:target{outline:2px solid #e55}
.no{color:#999;text-decoration:none;min-width:2.6rem;text-align:right;padding-right:.4rem;
 user-select:none}
.ms{min-width:1.2rem;display:inline-flex}
a.call{color:inherit;text-decoration:underline dotted #66c}
.empty,.missing{color:#999;font-style:italic;font-size:12px;padding:.3rem}
.missing{color:#c33}
.anchor{display:block;position:relative;top:-2.5rem}
details.fold summary{font-size:12px;color:#555;cursor:pointer}
.heads{position:sticky;top:0;background:#fff;z-index:2;border-bottom:1px solid #bbb}
.heads h3{margin:.3rem 0;font-size:14px}
.controls label{border:1px solid #99c;border-radius:4px;padding:.15rem .5rem;background:#f3f3fb}
#t-shared:checked ~ header .controls label{background:#ccd}
"""
# Docstrings are the prose of these files (theory of operation, the TLA+ action): read as
# text, not in the string colour. After pygments' rules, so they win.
# pygments gives .src a background, which would hide a variant's colour on the line under it.
DOC_CSS = ".src .sd{color:#33415c;font-style:normal}\n.ln .src{background:transparent}\n"


def build_page(sources: Sources | None = None, *, reports: str = "..") -> str:
    """The whole page as one HTML string. ``reports`` is the gallery folder as seen from the
    page (experiment links go to ``<reports>/<name>/report.html``)."""
    sources = sources or load_sources()
    cols = {c: _Column(c, sources.of(c), _link_targets(c, sources))
            for c in ("raft", "paxos", "shared")}
    toggles = ['<input type="checkbox" class="toggle" id="t-shared">',
               *(f'<input type="checkbox" class="toggle" id="t-v-{v}" checked>'
                 for v in variant_fields())]
    body = "".join(_section_html(k, cols, sources, reports) for k in page_sections(sources))
    heads = "".join(f'<div class="cell {c}"><h3>{TITLES[c]}: <code>'
                    f"{_rel(sources.of(c).path)}</code></h3></div>"
                    for c in ("raft", "paxos", "shared"))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Raft and Multi-Paxos, side by side</title>
<style>{_css()}</style></head>
<body>
{''.join(toggles)}
<header><h1>Raft and Multi-Paxos, side by side</h1>
<p>The two node modules in two columns, aligned by section and by the job each method does.
Each handler is anchored with the TLA+ action it implements (raft.tla for Raft; Lamport's
Paxos.tla phases and the MultiPaxos-SMR actions for Multi-Paxos), e.g.
<a href="#raft-HandleRequestVoteRequest">#raft-HandleRequestVoteRequest</a>,
<a href="#paxos-Phase1b">#paxos-Phase1b</a>. Dotted calls go to the method they call, in this
file or in <code>consensus/node.py</code>, the code both share. Generated from the source by
<code>consensus-lab code</code>.</p>
<div class="controls"><label for="t-shared">&#9776; show the shared code
(<code>consensus/node.py</code>) as a third column</label></div>
{_legend(sources, reports)}
</header>
{_contents(sources, reports)}
<main>
<div class="grid heads">{heads}</div>
{body}
</main>
</body></html>
"""


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PACKAGE.parent))
    except ValueError:
        return str(path)


def write_code_page(out: Path, *, reports: Path | None = None) -> Path:
    """Write the page to ``out`` (a file), linking experiments to the gallery at ``reports``
    (default: the folder above ``out``'s folder, as in ``reports/code/index.html``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    reports = reports if reports is not None else out.parent.parent
    href = Path(os.path.relpath(reports.resolve(), out.parent.resolve())).as_posix()
    out.write_text(build_page(reports=href), encoding="utf-8")
    return out


def add_to_gallery(gallery: Path) -> str:
    """Write the page into the gallery (``<gallery>/code/index.html``) and return the lines
    the gallery's index adds for it."""
    write_code_page(gallery / "code" / "index.html", reports=gallery)
    return ("\n## The code side by side\n\n"
            "[code/index.html](code/index.html) (open it from disk; `consensus-lab code` writes\n"
            "it): `raft/node.py` and `paxos/node.py` in two columns, aligned handler by handler\n"
            "and anchored with their TLA+ actions, each variant's lines highlighted, each\n"
            "difference linked to the report above that shows it.\n")
