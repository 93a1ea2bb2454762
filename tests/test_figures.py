"""The report's figures: readable text, SVG for HTML and 2x PNG for Markdown, a broken time
axis on the message-sequence diagram without overlapping labels, an honest throughput chart."""

from __future__ import annotations

import itertools
import re
import struct
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("seaborn")

from matplotlib.text import Text

from consensus.report import build_report, charts
from consensus.report.build import CAPTIONS
from consensus.report.data import Fault

MIN_FONT_PT = 9.0


def _fault(at: float, action: str = "crash", nodes: tuple[str, ...] = ("n1",)) -> Fault:
    return Fault(at, action, f"{action} {','.join(nodes)}", None, nodes)


def _election_trace(fault: float, campaign: float) -> tuple[list[dict], list[dict]]:
    """Heartbeats every 50 ms before and after a crash of n1 at ``fault``; n2 campaigns at
    ``campaign`` and wins 4 ms later."""
    trace = []
    for t in range(int(fault) - 200, int(fault), 50):
        for dst in ("n2", "n3"):
            trace.append({"sent": float(t), "delivered": t + 2.0, "src": "n1", "dst": dst,
                          "kind": "AppendEntries"})
    for dst in ("n1", "n3"):
        trace.append({"sent": campaign, "delivered": campaign + 2.0, "src": "n2", "dst": dst,
                      "kind": "RequestVote"})
    trace.append({"sent": campaign + 2.0, "delivered": campaign + 4.0, "src": "n3",
                  "dst": "n2", "kind": "RequestVoteReply"})
    events = [{"t": campaign, "type": "role", "node": "n2", "role": "candidate", "term": 2},
              {"t": campaign + 4.0, "type": "role", "node": "n2", "role": "leader", "term": 2},
              {"t": campaign + 4.0, "type": "leader", "node": "n2", "term": 2}]
    return trace, events


def _sequence(fault: float = 1000.0, campaign: float = 1230.0) -> charts.SequenceData:
    trace, events = _election_trace(fault, campaign)
    return charts.SequenceData("raft", 1, ["n1", "n2", "n3"], trace, events, [_fault(fault)])


def test_broken_axis_keeps_segment_lengths_and_cuts_the_rest() -> None:
    axis = charts.BrokenAxis([(0.0, 40.0), (200.0, 230.0)])
    assert axis.length == 40 + 30 + charts.BREAK_MS
    assert axis.y(0) == 0 and axis.y(40) == 40
    assert axis.y(200) == 40 + charts.BREAK_MS and axis.y(230) == axis.length
    assert 40 < axis.y(120) < 40 + charts.BREAK_MS  # a cut time lands in its band
    ts = [0, 10, 40, 90, 199, 200, 215, 230]
    assert [axis.y(t) for t in ts] == sorted(axis.y(t) for t in ts)
    assert axis.shown(215) and not axis.shown(120)
    ((mid, a, b),) = axis.breaks()
    assert (a, b) == (40, 200) and 40 < mid < 40 + charts.BREAK_MS


def test_sequence_segments_zoom_on_the_fault_and_the_election() -> None:
    d = _sequence(fault=1000.0, campaign=1230.0)
    start, end = charts.sequence_window([d])
    segments = charts.sequence_segments(d, start, end)
    assert len(segments) == 2
    (a0, b0), (a1, b1) = segments
    assert a0 <= 1000 <= b0 and a1 <= 1230 and b1 >= 1234
    assert b0 < 1100 < a1  # the quiet stretch after the crash is cut
    # Everything shown spans under a third of the window: the axis is zoomed.
    assert sum(b - a for a, b in segments) < (end - start) / 3


def test_close_moments_share_one_segment() -> None:
    d = _sequence(fault=1000.0, campaign=1020.0)
    start, end = charts.sequence_window([d])
    assert len(charts.sequence_segments(d, start, end)) == 1


def test_stagger_separates_labels_that_overlap_horizontally() -> None:
    ys = charts._stagger([(0.0, 0.0, 1.5), (0.5, 1.0, 2.0), (0.5, 3.0, 4.0)], gap=2.0)
    assert ys[1] >= ys[0] + 2.0  # overlaps the first label's x range: moved down
    assert ys[2] == 0.5  # another column, clear of both: stays


def _texts(fig) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def _assert_readable(fig) -> None:
    small = {(t.get_text(), t.get_fontsize()) for t in _texts(fig)
             if t.get_fontsize() < MIN_FONT_PT}
    assert not small, small


def test_sequence_diagram_labels_do_not_overlap_and_text_is_readable() -> None:
    # Two role changes on one node 1 ms apart, and a crash at the same moment as the fault.
    d = _sequence(fault=1000.0, campaign=1230.0)
    events = [*d.events, {"t": 1229.0, "type": "role", "node": "n1", "role": "precandidate",
                          "term": 1}]
    d = charts.SequenceData("raft", 1, d.nodes, d.trace, events, d.faults)
    fig = charts.sequence_diagram([d])
    assert fig is not None
    _assert_readable(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    labels = [t for t in ax.texts if t.get_text().strip()]
    assert any("leader (term 2)" in t.get_text() for t in labels)
    assert any("cut" in t.get_text() for t in labels), "the broken axis says what it cut"
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in labels]
    for (ta, a), (tb, b) in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), (ta, tb)
    charts.plt.close(fig)


def test_bus_traces_are_drawn_and_say_their_times_are_arrivals() -> None:
    d = _sequence()
    trace = [{**m, "delivered": m["sent"], "observed": "broker"} for m in d.trace]
    fig = charts.sequence_diagram([charts.SequenceData("raft", 1, d.nodes, trace, d.events,
                                                       d.faults)])
    assert fig is not None
    assert "arrivals" in fig.axes[0].get_title(loc="left")
    charts.plt.close(fig)


def test_throughput_drops_the_partial_last_bin() -> None:
    bins = [5] * 30 + [1, 0, 0]  # 3 s of workload, then the settle time
    assert charts.full_bins(bins, 100.0, 3000.0) == [5] * 30
    assert charts.full_bins(bins, 100.0, 2950.0) == [5] * 29  # the bin it ends in is partial
    assert charts.full_bins(bins, 100.0, None) == bins
    tl = charts.Timeline("raft", 100.0, {1: bins}, [_fault(1000.0)], {1: []}, end_ms=3000.0)
    fig = charts.throughput_timeline([tl])
    assert fig is not None
    _assert_readable(fig)
    line = max(fig.axes[0].get_lines(), key=lambda ln: len(ln.get_xdata()))
    assert min(line.get_ydata()) > 0, "no bin after the workload drawn as an outage"
    charts.plt.close(fig)
    caption = CAPTIONS["throughput"]
    assert "red bars" not in caption and "black bars" in caption


def _png_width(path: Path) -> int:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return struct.unpack(">I", data[16:20])[0]


def test_reports_embed_svg_and_link_2x_pngs(tmp_path: Path) -> None:
    from tests.test_report import _make_run

    run = _make_run(tmp_path / "run")
    files = build_report(run)
    svgs = [p for p in files if p.suffix == ".svg"]
    pngs = [p for p in files if p.suffix == ".png"]
    assert {p.stem for p in svgs} == {p.stem for p in pngs} >= {"throughput", "sequence"}
    for p in svgs:
        assert p.read_text().lstrip().startswith("<?xml") and "<svg" in p.read_text()
    # Drawn ~10 in wide at 80 dpi for the page; the PNG has twice the pixels.
    assert _png_width(run / "figures" / "throughput.png") >= 2 * 700
    html = (run / "report.html").read_text()
    images = re.findall(r'<img[^>]+src="([^"]+)"', html)
    assert images and all(src.startswith("data:image/svg+xml;base64,") for src in images)
    md = (run / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links and all(link.endswith(".png") for link in links)


def test_every_chart_has_readable_text() -> None:
    lat = charts.latency_ecdf({"raft": {"read": [1.0, 2.0, 3.0]},
                               "paxos": {"read": [1.5, 2.5]}})
    msgs = charts.messages_per_op({"raft": {"AppendEntries": 2.0, "RequestVote": 0.01},
                                   "paxos": {"Accept": 2.0}})
    fail = charts.failover({"raft": {"detect_ms": [150.0], "elect_ms": [200.0]},
                            "paxos": {"detect_ms": [160.0], "elect_ms": [210.0]}})
    for fig in (lat, msgs, fail):
        assert fig is not None
        _assert_readable(fig)
        charts.plt.close(fig)


def test_segments_stay_inside_the_window_when_messages_arrive_after_it():
    """A message sent inside the window but delivered after its end (a delay fault) must not
    open a segment that ends before it starts (the axis would run backwards)."""
    d = charts.SequenceData(
        "raft", 1, ["n1", "n2"],
        [{"kind": "RequestVote", "src": "n1", "dst": "n2", "sent": 1100.0,
          "delivered": 1900.0}],
        [{"type": "role", "t": 1100.0, "node": "n1", "role": "candidate", "term": 2}],
        [Fault(1000.0, "delay", "delay +120ms", 2000.0)])
    start, end = charts.sequence_window([d])
    segments = charts.sequence_segments(d, start, end)
    assert segments and all(a < b for a, b in segments)
    assert all(start <= a and b <= end for a, b in segments)
    assert charts.BrokenAxis(segments).length > 0
