"""Read a node module into what the side-by-side code page shows: sections and methods as line
ranges, and the lines that implement each variant. Everything comes from the source (``ast``
and the comment banners), so the page follows the code as it changes.

A section starts at a banner comment, ``# -- inbound -------``, inside the node class; its key is
the banner's text up to any parenthesis. Before the first banner come four preamble parts: the
module docstring, the imports and module names, the ``Progress`` subclass, the node class's
header and state (``__init__``).

A variant is a field of :class:`consensus.node.Config` that is not a timing or flow-control knob
(``code_map.TUNING_KNOBS``). Its lines are found by the field's name: an attribute, a name, a
keyword argument or a parameter spelt like the field (``self.config.pre_vote``, ``msg.pre_vote``,
``pre_vote=True``); a call to a shared predicate that reads the field (``in_leader_lease`` reads
``check_quorum``); and a docstring paragraph that names it in double backquotes, alone or
with a value (``election: any``). A reference in the condition of an ``if`` marks the whole
branch it guards, and a method called only inside such branches (in its file or in node.py)
is marked whole: it runs only under the variant.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from consensus.node import Config
from consensus.report.code_map import PREAMBLE, TUNING_KNOBS

BANNER = re.compile(r"^\s*# -- (?P<title>.+?) -+\s*$")


@dataclass(frozen=True, slots=True)
class Chunk:
    """Lines ``start``..``end`` (1-based, inclusive) of a file."""

    start: int
    end: int

    def lines(self) -> range:
        return range(self.start, self.end + 1)


@dataclass(slots=True)
class Section:
    key: str  # "role changes"
    title: str  # the banner's whole text
    header: Chunk  # the banner and the comment lines under it
    methods: dict[str, Chunk] = field(default_factory=dict)  # in source order


@dataclass(slots=True)
class SourceMap:
    """One file as the page shows it."""

    path: Path
    lines: list[str]
    preamble: dict[str, Chunk]  # PREAMBLE key -> lines
    sections: list[Section]
    classes: tuple[str, ...]  # the classes whose methods are listed
    variant_lines: dict[int, list[str]]  # line -> variants implemented there (sorted)

    def section(self, key: str) -> Section | None:
        return next((s for s in self.sections if s.key == key), None)

    def methods(self) -> list[str]:
        return [m for s in self.sections for m in s.methods]


def variant_fields() -> list[str]:
    """The Config fields that are variants, in declaration order."""
    return [f.name for f in dataclasses.fields(Config) if f.name not in TUNING_KNOBS]


def banner_key(title: str) -> str:
    return title.split(" (")[0].strip().lower()


def _strip(lines: list[str], start: int, end: int) -> Chunk | None:
    """``start``..``end`` without leading and trailing blank lines (None if nothing is left)."""
    while start <= end and not lines[start - 1].strip():
        start += 1
    while end >= start and not lines[end - 1].strip():
        end -= 1
    return Chunk(start, end) if start <= end else None


def _first_line(node: ast.stmt) -> int:
    decorators = getattr(node, "decorator_list", [])
    return min([node.lineno, *(d.lineno for d in decorators)])


def _sections(lines: list[str], cls: ast.ClassDef, prefix: str = "") -> list[Section]:
    """The banner sections of a class body, each with its methods' line ranges (keyed
    ``prefix + name``). A method's range reaches back to the end of whatever came before it,
    so comments and class-level lines between methods are shown with the method they
    precede."""
    end_of_class = cls.end_lineno or cls.lineno
    banners = [(i, m.group("title")) for i in range(cls.lineno, end_of_class + 1)
               if (m := BANNER.match(lines[i - 1]))]
    sections = []
    for n, (line, title) in enumerate(banners):
        stop = banners[n + 1][0] - 1 if n + 1 < len(banners) else end_of_class
        head_end = line
        while head_end < stop and lines[head_end].lstrip().startswith("#"):
            head_end += 1
        section = Section(banner_key(title), title, Chunk(line, head_end))
        prev_end = head_end
        for node in cls.body:
            if (isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                    and line < node.lineno <= stop):
                chunk = _strip(lines, prev_end + 1, node.end_lineno or node.lineno)
                assert chunk is not None
                key = prefix + node.name
                old = section.methods.get(key)  # a property's getter and setter
                section.methods[key] = Chunk(old.start, chunk.end) if old else chunk
                prev_end = chunk.end
        sections.append(section)
    return sections


def _merge_sections(groups: list[list[Section]]) -> list[Section]:
    """Sections of several classes, same-named ones merged, in order of first appearance."""
    out: dict[str, Section] = {}
    for sections in groups:
        for s in sections:
            if s.key in out:
                out[s.key].methods.update(s.methods)
            else:
                out[s.key] = s
    return list(out.values())


def _class_named(tree: ast.Module, name: str) -> ast.ClassDef:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    raise ValueError(f"no class {name} in the module")


def _subclass_of(tree: ast.Module, base: str) -> ast.ClassDef:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Name) and b.id == base for b in node.bases):
            return node
    raise ValueError(f"no subclass of {base} in the module")


def _first_banner(lines: list[str], cls: ast.ClassDef) -> int:
    for i in range(cls.lineno, (cls.end_lineno or cls.lineno) + 1):
        if BANNER.match(lines[i - 1]):
            return i
    return (cls.end_lineno or cls.lineno) + 1


def algorithm_source(path: Path, shared: SharedFacts | None = None) -> SourceMap:
    """An algorithm's node module (``raft/node.py``): its ``Progress`` subclass and its
    ``ConsensusNode`` subclass, which holds the banners. ``shared`` is what node.py tells about
    variants (see :func:`shared_facts`)."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    tree = ast.parse(text, str(path))
    node_cls = _subclass_of(tree, "ConsensusNode")
    progress = _subclass_of(tree, "Progress")
    doc = tree.body[0]
    if not (isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)):
        raise ValueError(f"{path} has no module docstring (its theory of operation)")
    parts = [
        Chunk(1, doc.end_lineno or 1),
        _strip(lines, (doc.end_lineno or 1) + 1, _first_line(progress) - 1),
        Chunk(_first_line(progress), progress.end_lineno or progress.lineno),
        _strip(lines, _first_line(node_cls), _first_banner(lines, node_cls) - 1),
    ]
    preamble = {k: c for k, c in zip(PREAMBLE, parts, strict=True) if c is not None}
    return SourceMap(path, lines, preamble, _sections(lines, node_cls),
                     (progress.name, node_cls.name),
                     _variant_lines(tree, lines, shared or SharedFacts({}, {})))


def shared_source(path: Path) -> SourceMap:
    """``consensus/node.py`` as the third column: its docstring, ``Config`` (where the variants
    are declared), ``Progress``, and the ``Node`` and ``ConsensusNode`` classes by section
    (methods keyed ``Class.method``: both classes define ``tick``, ``campaign``...)."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    tree = ast.parse(text, str(path))
    node, consensus = _class_named(tree, "Node"), _class_named(tree, "ConsensusNode")
    config, progress = _class_named(tree, "Config"), _class_named(tree, "Progress")
    doc = tree.body[0]
    assert isinstance(doc, ast.Expr)
    header = _strip(lines, _first_line(consensus), _first_banner(lines, consensus) - 1)
    assert header is not None
    preamble = {
        PREAMBLE[0]: Chunk(1, doc.end_lineno or 1),
        PREAMBLE[1]: Chunk(_first_line(config), config.end_lineno or config.lineno),
        PREAMBLE[2]: Chunk(_first_line(progress), progress.end_lineno or progress.lineno),
        PREAMBLE[3]: header,
    }
    sections = _merge_sections([_sections(lines, node, "Node."),
                                _sections(lines, consensus, "ConsensusNode.")])
    return SourceMap(path, lines, preamble, sections, ("Node", "ConsensusNode"),
                     _variant_lines(tree, lines, SharedFacts({}, {})))


def shared_predicates(tree: ast.Module) -> dict[str, str]:
    """Methods of ``consensus/node.py`` that answer a yes/no question about a variant: their
    return is annotated ``bool`` and their body reads ``config.<variant>``. Name -> variant."""
    fields = set(variant_fields())
    out = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef):
            continue
        if not (isinstance(node.returns, ast.Name) and node.returns.id == "bool"):
            continue
        for sub in ast.walk(node):
            if (isinstance(sub, ast.Attribute) and sub.attr in fields
                    and _is_config(sub.value)):
                out[node.name] = sub.attr
                break
    return out


def _is_config(node: ast.expr) -> bool:
    return ((isinstance(node, ast.Attribute) and node.attr == "config")
            or (isinstance(node, ast.Name) and node.id in ("config", "cfg")))


def _references(tree: ast.Module, predicates: dict[str, str]) -> list[tuple[ast.AST, str]]:
    """Every node that names a variant, with the variant."""
    fields = set(variant_fields())
    found: list[tuple[ast.AST, str]] = []
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Attribute):
            name = node.attr
        elif isinstance(node, ast.Name):
            name = node.id
        elif isinstance(node, ast.keyword | ast.arg):
            name = node.arg
        if name in fields:
            found.append((node, name))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "self"
                and node.func.attr in predicates):
            found.append((node, predicates[node.func.attr]))
    return found


def _parents(tree: ast.Module) -> dict[ast.AST, ast.AST]:
    return {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}


def _span(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> tuple[int, int, bool]:
    """The lines a variant reference marks, and whether they are a branch it guards: the
    innermost statement around it; a whole branch when it is in an ``if``/``while`` condition;
    only the header of another compound statement (a ``def`` whose parameter it is, a ``for``,
    a ``with``)."""
    child = node
    stmt = parents.get(node)
    while stmt is not None and not isinstance(stmt, ast.stmt):
        child, stmt = stmt, parents.get(stmt)
    if stmt is None:
        line = getattr(node, "lineno", 1)
        return line, getattr(node, "end_lineno", line) or line, False
    body = getattr(stmt, "body", None)
    if isinstance(stmt, ast.If | ast.While) and child is stmt.test:
        return stmt.lineno, stmt.body[-1].end_lineno or stmt.lineno, True
    if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
        return stmt.lineno, max(stmt.lineno, body[0].lineno - 1), False
    return stmt.lineno, stmt.end_lineno or stmt.lineno, False


def _docstring_paragraphs(tree: ast.AST, lines: list[str]) -> list[tuple[int, int, str]]:
    """(first line, last line, text) of each paragraph of every docstring."""
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef):
            continue
        first = node.body[0] if node.body else None
        if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)):
            continue
        start = first.lineno
        for i in range(first.lineno, (first.end_lineno or first.lineno) + 1):
            if not lines[i - 1].strip():
                out.append((start, i - 1, "\n".join(lines[start - 1:i - 1])))
                start = i + 1
        end = first.end_lineno or first.lineno
        out.append((start, end, "\n".join(lines[start - 1:end])))
    return out


@dataclass(frozen=True, slots=True)
class SharedFacts:
    """What consensus/node.py tells about variants that an algorithm file cannot see alone."""

    predicates: dict[str, str]  # see shared_predicates
    # method -> the variants guarding each call of it in node.py (one set per call)
    call_sites: dict[str, list[set[str]]]


def shared_facts(path: Path) -> SharedFacts:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    predicates = shared_predicates(tree)
    _, gated = _reference_marks(tree, predicates)
    return SharedFacts(predicates, _call_sites(tree, gated))


def _reference_marks(tree: ast.Module, predicates: dict[str, str],
                     ) -> tuple[dict[int, set[str]], dict[int, set[str]]]:
    """Lines marked by a reference to a variant (all of them), and the lines inside a branch
    that a variant's condition guards (``gated``: code that runs only under it)."""
    marks: dict[int, set[str]] = {}
    gated: dict[int, set[str]] = {}
    parents = _parents(tree)
    for node, name in _references(tree, predicates):
        lo, hi, branch = _span(node, parents)
        for i in range(lo, hi + 1):
            marks.setdefault(i, set()).add(name)
            if branch and i > lo:
                gated.setdefault(i, set()).add(name)
    return marks, gated


def _call_sites(tree: ast.Module, gated: dict[int, set[str]]) -> dict[str, list[set[str]]]:
    """``self.<method>(...)`` calls -> the variants guarding each (a method's calls of
    itself left out)."""
    sites: dict[str, list[set[str]]] = {}
    for f in ast.walk(tree):
        if not isinstance(f, ast.FunctionDef):
            continue
        for node in ast.walk(f):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "self"
                    and node.func.attr != f.name):
                sites.setdefault(node.func.attr, []).append(gated.get(node.lineno, set()))
    return sites


def _variant_lines(tree: ast.Module, lines: list[str],
                   shared: SharedFacts) -> dict[int, list[str]]:
    predicates = {**shared.predicates, **shared_predicates(tree)}
    marks, gated = _reference_marks(tree, predicates)
    # A method called only inside one variant's branches (here and in node.py) runs only
    # under it: mark it whole (PreVote's become_pre_candidate, election "any"'s helpers).
    sites = _call_sites(tree, gated)
    for name, more in shared.call_sites.items():
        sites.setdefault(name, []).extend(more)
    for f in ast.walk(tree):
        if isinstance(f, ast.FunctionDef) and sites.get(f.name):
            common = set.intersection(*sites[f.name])
            for i in range(_first_line(f), (f.end_lineno or f.lineno) + 1):
                marks.setdefault(i, set()).update(common)
    for name in variant_fields():
        named = re.compile(rf"``{name}\b")  # ``election`` or ``election: any``
        for lo, hi, text in _docstring_paragraphs(tree, lines):
            if named.search(text):
                for i in range(lo, hi + 1):
                    marks.setdefault(i, set()).add(name)
    order = {n: i for i, n in enumerate(variant_fields())}
    return {i: sorted(v, key=order.__getitem__) for i, v in sorted(marks.items()) if v}
