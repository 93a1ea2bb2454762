"""The side-by-side code page (``consensus-lab code``): generated from the source, it must show
every method of both node modules beside its counterpart, anchored with its TLA+ action, with
the variants' lines marked, and be one self-contained, well-formed HTML file."""

from __future__ import annotations

import ast
import dataclasses
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from consensus import library
from consensus.cli import app
from consensus.node import Config
from consensus.report import code_source
from consensus.report.code_map import ROWS, TOPICS, is_handler
from consensus.report.code_page import build_page, load_sources, write_code_page
from consensus.report.code_source import algorithm_source, variant_fields
from consensus.report.gallery import write_index

ALGS = ("raft", "paxos")
VOID = {"meta", "input", "br", "hr", "img", "link", "wbr"}


@pytest.fixture(scope="module")
def sources():
    return load_sources()


@pytest.fixture(scope="module")
def page(sources) -> str:
    return build_page(sources)


class _Page(HTMLParser):
    """Collects ids, links and tag-nesting errors."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: Counter[str] = Counter()
        self.hrefs: list[str] = []
        self.classes_by_id: dict[str, str] = {}
        self.tags: Counter[str] = Counter()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags[tag] += 1
        if "id" in a:
            self.ids[a["id"]] += 1
            self.classes_by_id[a["id"]] = a.get("class") or ""
        if "href" in a:
            self.hrefs.append(a["href"])
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()


@pytest.fixture(scope="module")
def parsed(page) -> _Page:
    p = _Page()
    p.feed(page)
    p.close()
    return p


def _methods(path: Path) -> list[str]:
    """Every method of the file's node class, read with ast (not through the page code)."""
    tree = ast.parse(path.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef)
               and any(isinstance(b, ast.Name) and b.id == "ConsensusNode" for b in n.bases))
    return list(dict.fromkeys(n.name for n in cls.body if isinstance(n, ast.FunctionDef)
                              and n.name != "__init__"))


@pytest.mark.parametrize("alg", ALGS)
def test_every_method_has_exactly_one_row(sources, alg):
    listed = Counter(m for r in ROWS for m in getattr(r, alg).methods)
    methods = _methods(sources.of(alg).path)
    missing = [m for m in methods if not listed[m]]
    assert not missing, (f"{alg}/node.py methods with no row in code_map.ROWS (add one, with "
                         f"its TLA+ action if it is a handler): {missing}")
    assert not [m for m, n in listed.items() if n > 1], "a method is listed in two rows"
    assert not set(listed) - set(methods), "a row lists a method the file does not have"


@pytest.mark.parametrize("alg", ALGS)
def test_every_handler_is_anchored_with_its_tla_action(sources, alg, parsed):
    actions = []
    for row in ROWS:
        side = getattr(row, alg)
        for n, m in enumerate(side.methods):
            if is_handler(m):
                assert n == 0 and side.action, f"{alg}.{m} is a handler with no TLA+ action"
        if side.action:
            actions.append(side.action)
            assert parsed.ids[f"{alg}-{side.action}"] == 1, side.action
    assert len(actions) == len(set(actions)), f"{alg}: a TLA+ action names two rows"
    for m in _methods(sources.of(alg).path):
        assert parsed.ids[f"{alg}-{m}"] == 1, f"{alg}.{m} has no anchor on the page"


def test_the_design_table_actions_are_there(parsed):
    for anchor in ("raft-HandleRequestVoteRequest", "raft-HandleAppendEntriesRequest",
                   "raft-AdvanceCommitIndex", "raft-BecomeLeader", "raft-Timeout",
                   "raft-ClientRequest", "raft-RequestVote", "paxos-Phase1a", "paxos-Phase1b",
                   "paxos-Phase2a", "paxos-Phase2b"):
        assert parsed.ids[anchor] == 1, anchor


def test_the_two_files_have_the_same_sections_in_the_same_order(sources):
    raft = [s.key for s in sources.raft.sections]
    paxos = [s.key for s in sources.paxos.sections]
    assert raft == paxos, "raft/node.py and paxos/node.py must keep the same banners in order"
    assert raft[:3] == ["restart", "role changes", "time"]
    for row in ROWS:
        assert row.section in raft, f"row {row.label!r}: no section {row.section!r}"
        for alg in ALGS:
            section = sources.of(alg).section(row.section)
            for m in getattr(row, alg).methods:
                assert m in section.methods, f"{alg}.{m} is not under '# -- {row.section}'"


def test_rows_follow_each_files_order(sources):
    """Reading a column top to bottom is reading the file: rows are in source order."""
    for alg in ALGS:
        order = [m for s in sources.of(alg).sections for m in s.methods]
        shown = [m for r in ROWS for m in getattr(r, alg).methods]
        assert shown == [m for m in order if m in shown], alg


def test_every_source_line_is_on_the_page(sources, parsed):
    """Nothing is dropped: every non-blank line of both files has its numbered line."""
    for alg in ALGS:
        src = sources.of(alg)
        for i, line in enumerate(src.lines, 1):
            if line.strip():
                assert parsed.ids[f"{alg}-L{i}"] == 1, f"{alg}/node.py:{i} not shown: {line}"


def test_the_shared_column_has_consensus_node_and_links(sources, parsed, page):
    tree = ast.parse(sources.shared.path.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ConsensusNode")
    for f in cls.body:
        if isinstance(f, ast.FunctionDef) and f.name != "__init__":
            assert parsed.ids[f"shared-ConsensusNode.{f.name}"] == 1, f.name
    # A call to shared code links to it; a call to the file's own method to its anchor.
    assert 'href="#shared-ConsensusNode.step_down"' in page
    assert 'href="#raft-become_candidate"' in page
    # Every in-page link has its target.
    broken = [h for h in parsed.hrefs if h.startswith("#") and not parsed.ids[h[1:]]]
    assert not broken, broken[:10]


def test_variant_lines_are_marked(sources, parsed):
    assert {"pre_vote", "check_quorum"} <= set(variant_fields())
    for col in ("raft", "paxos", "shared"):
        src = sources.of(col)
        for i, line in enumerate(src.lines, 1):
            for v in variant_fields():
                if re.search(rf"config\.{v}\b|\b{v}=", line):
                    assert f"v-{v}" in parsed.classes_by_id[f"{col}-L{i}"], (col, i, line)
    # check_quorum reaches the algorithms through the shared predicate in_leader_lease.
    raft_lines = sources.raft.lines
    lease = [i for i, t in enumerate(raft_lines, 1) if "self.in_leader_lease()" in t]
    assert lease and all("v-check_quorum" in parsed.classes_by_id[f"raft-L{i}"] for i in lease)
    # Lines that have nothing to do with a variant stay plain.
    assert "v-" not in parsed.classes_by_id["raft-L1"]


def test_a_new_variant_lights_up_without_touching_the_generator(tmp_path, monkeypatch):
    """A field added to Config (as the read-path and election variants do) is found in the
    code by its name: the branch its ``if`` guards, a keyword, a parameter, a docstring
    paragraph, and a method called only inside its branches."""
    @dataclasses.dataclass(frozen=True)
    class Wider(Config):
        read_path: str = "log"

    monkeypatch.setattr(code_source, "Config", Wider)
    module = tmp_path / "node.py"
    module.write_text('''"""A node.

Reads go through ``read_path``: the log, or a lease.

Unrelated paragraph.
"""
from consensus.node import ConsensusNode, Progress


class P(Progress):
    pass


class N(ConsensusNode):
    # -- inbound ---------------------------------------------------------------

    def handle_read(self, req):
        x = 1
        if self.config.read_path == "lease":
            self.answer(req)
            return
        self.send_read(req, read_path="log")

    def answer(self, req):
        """Called only where read_path is lease: runs only under it."""
        self.reply(req, "ok")

    def send_read(self, req, read_path):
        self.send(req)
''')
    src = algorithm_source(module)
    marked = {i for i, vs in src.variant_lines.items() if "read_path" in vs}
    lines = src.lines
    expect = {i for i, t in enumerate(lines, 1) if t.strip().startswith(
        ('if self.config.read_path', 'self.answer', 'return', 'self.send_read', 'Reads go',
         'def answer', '"""Called only', 'self.reply', 'def send_read'))}
    assert marked == expect
    assert "read_path" in variant_fields()


def test_the_page_is_well_formed_and_self_contained(page, parsed):
    assert page.startswith("<!DOCTYPE html>")
    assert not parsed.errors, parsed.errors[:5]
    assert parsed.stack == [], f"unclosed: {parsed.stack}"
    assert [i for i, n in parsed.ids.items() if n > 1] == []
    assert parsed.tags["script"] == 0 and parsed.tags["link"] == 0 and parsed.tags["img"] == 0
    assert "http://" not in page and "https://" not in page and "url(" not in page
    assert "<span class=\"k\">def</span>" in page  # syntax colours (pygments comes with rich)


def test_every_linked_experiment_is_in_the_library(page):
    names = {e.name for e in library.entries()}
    for topic, name in TOPICS.items():
        assert name in names, f"TOPICS[{topic!r}] -> {name}: no such experiment"
    for row in ROWS:
        assert row.topic is None or row.topic in TOPICS, f"row {row.label!r}: {row.topic}"
    assert 'href="../isolated-leader/report.html"' in page


def test_the_code_command_writes_the_page(tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    out = tmp_path / "reports" / "code" / "index.html"
    result = CliRunner().invoke(app, ["code", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and "no browser opened" in result.stdout
    result = CliRunner().invoke(app, ["code", "--out", str(tmp_path / "dir"), "--no-open"])
    assert result.exit_code == 0 and (tmp_path / "dir" / "index.html").is_file()
    assert "no browser" not in result.stdout
    blocked = tmp_path / "file"
    blocked.write_text("")
    result = CliRunner().invoke(app, ["code", "--out", str(blocked / "x.html"), "--no-open"])
    assert result.exit_code == 2 and "cannot write" in result.output


def test_links_point_at_the_gallery_from_wherever_the_page_is(tmp_path):
    page = write_code_page(tmp_path / "a" / "b" / "code.html", reports=tmp_path / "reports")
    assert 'href="../../reports/isolated-leader/report.html"' in page.read_text()


def test_the_gallery_index_links_the_page(tmp_path):
    path = write_index(tmp_path, tmp_path / "no-experiments")
    assert "(code/index.html)" in path.read_text()
    assert (tmp_path / "code" / "index.html").is_file()


def test_without_pygments_the_code_is_plain_escaped_and_still_linked(monkeypatch, sources):
    import sys

    for name in ("pygments.lexers", "pygments.token", "pygments.formatters"):
        monkeypatch.setitem(sys.modules, name, None)  # importing it now raises ImportError
    page = build_page(sources)
    p = _Page()
    p.feed(page)
    assert not p.errors and p.stack == []
    assert 'class="k"' not in page  # no token colours
    assert "    def handle_request_vote(self, msg: RequestVote) -&gt; None:" in page
    assert 'href="#shared-ConsensusNode.step_down"' in page
    assert p.ids["raft-L1"] == 1 and p.ids["paxos-HandleAcceptReplies"] == 1
