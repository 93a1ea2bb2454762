"""The report's charts (matplotlib, Agg backend, seaborn styling).

Every function takes plain data and returns a :class:`~matplotlib.figure.Figure`, or None
when the chart does not apply (no faults, no failovers, ...). Colours are fixed: one per
algorithm from seaborn's colour-blind-safe palette at the index the registry gives it (Raft
blue, Multi-Paxos orange, the same everywhere), and one per message *phase*, which each
message class declares, so that analogous messages (RequestVote ~ Prepare, AppendEntries ~
Accept, ...) share a colour without this module knowing either algorithm.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import matplotlib.transforms as mtransforms
import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from consensus.algorithms import get_algorithm, message_classes
from consensus.messages import HEARTBEAT, Phase
from consensus.report.data import Fault, title

PALETTE = sns.color_palette("colorblind").as_hex()

# Message phases in stacking order, with their colours; any other phase is drawn as "other".
PHASE_COLOURS: dict[str, str] = {
    Phase.REPLICATE: PALETTE[2], Phase.ACKNOWLEDGE: PALETTE[9], Phase.HEARTBEAT: PALETTE[7],
    Phase.COMMIT: PALETTE[8], Phase.ASK_FOR_VOTES: PALETTE[4], Phase.VOTE: PALETTE[5],
    Phase.REJECT: PALETTE[3],
}
OTHER_COLOUR = PALETTE[6]
UNAVAILABLE_COLOUR = "#1a1a1a"
_PHASE_ORDER = {phase: i for i, phase in enumerate(PHASE_COLOURS)}
ELECTION_PHASES = (Phase.ASK_FOR_VOTES, Phase.VOTE, Phase.REJECT)

# Figures are drawn about 10 in wide at DPI, i.e. as wide as the report's column (~800 px),
# so a point is a CSS pixel there: text below 9 pt would read as tiny, hence the floor.
# The Markdown's PNGs are rendered at PNG_SCALE x for sharpness; the HTML gets SVG.
DPI = 80
PNG_SCALE = 2
RC = {
    "font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "xtick.labelsize": 10,
    "ytick.labelsize": 10, "legend.fontsize": 10, "figure.titlesize": 13,
    "axes.titleweight": "bold", "figure.dpi": DPI, "savefig.dpi": DPI,
}


def algorithm_colour(algorithm: str) -> str:
    """The algorithm's colour in every chart: the registry's palette index, or for a name it
    does not know (an old run folder) a colour derived from the name."""
    try:
        index = get_algorithm(algorithm).palette
    except ValueError:
        index = 2 + sum(map(ord, algorithm)) % 8
    return PALETTE[index % len(PALETTE)]


def phase_of(kind: str) -> tuple[str, str]:
    """(phase label, colour) of a message kind as traces and metrics record it."""
    if kind.endswith(HEARTBEAT):
        phase = str(Phase.HEARTBEAT)
    else:
        cls = message_classes().get(kind)
        phase = str(cls.phase) if cls is not None else str(Phase.OTHER)
    return phase, PHASE_COLOURS.get(phase, OTHER_COLOUR)


def is_reply(kind: str) -> bool:
    """Whether a message kind answers another (drawn dashed)."""
    cls = message_classes().get(kind)
    return cls is not None and cls.is_reply


def _styled(fn: Callable[..., Figure | None]) -> Callable[..., Figure | None]:
    def wrapper(*args: Any, **kwargs: Any) -> Figure | None:
        with sns.axes_style("whitegrid"), plt.rc_context(RC):
            return fn(*args, **kwargs)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def save_png(fig: Figure, path: Path, *, close: bool = True) -> Path:
    """Write a compact PNG at PNG_SCALE x (palette-quantised: charts need few colours), so
    that it stays sharp on GitHub and high-density screens."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI * PNG_SCALE, bbox_inches="tight", pad_inches=0.08)
    if close:
        plt.close(fig)
    buf.seek(0)
    image = Image.open(buf).convert("RGB")
    # Octree keeps rare colours (legend swatches) that median cut would merge away.
    image = image.quantize(colors=256, method=Image.Quantize.FASTOCTREE,
                           dither=Image.Dither.NONE)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", optimize=True)
    return path


def save_svg(fig: Figure, path: Path, *, close: bool = True) -> Path:
    """Write the figure as SVG (the HTML report's: sharp at any zoom). Ids and metadata are
    fixed, so the same run gives the same bytes. Text stays text (DejaVu Sans, else the
    browser's sans-serif): glyphs as paths made each report's HTML 1.7x larger."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with plt.rc_context({"svg.hashsalt": "consensus-lab", "svg.fonttype": "none"}):
        fig.savefig(path, format="svg", bbox_inches="tight", pad_inches=0.08,
                    metadata={"Date": None, "Creator": None})
    if close:
        plt.close(fig)
    return path


def save_figure(fig: Figure, folder: Path, name: str) -> tuple[Path, Path]:
    """``<name>.png`` (2x, for Markdown) and ``<name>.svg`` (for HTML) in ``folder``."""
    svg = save_svg(fig, folder / f"{name}.svg", close=False)
    png = save_png(fig, folder / f"{name}.png")
    return png, svg


# A series is one algorithm, or (algorithm, variant) when runs are compared: the colour says
# the algorithm, the line style (or hatch) the variant.
SeriesKey = str | tuple[str, str]
LINESTYLES = ("-", "--", ":", "-.")


def _algo(key: SeriesKey) -> str:
    return key if isinstance(key, str) else key[0]


def series_name(key: SeriesKey) -> str:
    """'Raft', or 'Raft · variant' for a compared run."""
    return title(key) if isinstance(key, str) else f"{title(key[0])} · {key[1]}"


def _linestyle(key: SeriesKey, variants: Sequence[str]) -> str:
    if isinstance(key, str) or key[1] not in variants:
        return "-"
    return LINESTYLES[variants.index(key[1]) % len(LINESTYLES)]


def _variants(keys: Any) -> list[str]:
    return list(dict.fromkeys(k[1] for k in keys if not isinstance(k, str)))


# -- 1. latency ECDF ---------------------------------------------------------------------------

def _ecdf_points(values: Sequence[float], max_points: int = 1500) -> tuple[Any, Any]:
    xs = np.sort(np.asarray(values, dtype=float))
    xs = np.maximum(xs, 1e-3)
    ys = np.arange(1, len(xs) + 1) / len(xs)
    if len(xs) > max_points:
        idx = np.unique(np.r_[np.linspace(0, len(xs) - 1, max_points).astype(int),
                              np.arange(max(0, len(xs) - 50), len(xs))])
        xs, ys = xs[idx], ys[idx]
    return xs, ys


@_styled
def latency_ecdf(latencies: Mapping[SeriesKey, Mapping[str, Sequence[float]]]) -> (
        Figure | None):
    """Latency ECDF on a log axis: one panel per operation type, one line per algorithm.

    ``latencies[series][op_type]`` lists the latencies (ms) of operations answered ok,
    pooled across seeds.
    """
    variants = _variants(latencies)
    types = sorted({t for per in latencies.values() for t, v in per.items() if v})
    if not types:
        return None
    fig, axes = plt.subplots(1, len(types), figsize=(min(4.2 * len(types), 11), 3.4),
                             sharey=True, squeeze=False)
    lo = min(max(min(v), 1e-3) for per in latencies.values() for v in per.values() if v)
    hi = max(max(v) for per in latencies.values() for v in per.values() if v)
    for ax, op in zip(axes[0], types, strict=True):
        for key, per in latencies.items():
            values = per.get(op) or []
            if not values:
                continue
            xs, ys = _ecdf_points(values)
            ax.step(xs, ys, where="post", color=algorithm_colour(_algo(key)), lw=1.8,
                    ls=_linestyle(key, variants), label=f"{series_name(key)} (n={len(values):,})")
        ax.set_xscale("log")
        ax.set_xlim(lo * 0.8, hi * 1.25)
        ax.set_ylim(0, 1.02)
        for q, name in ((0.5, "p50"), (0.99, "p99")):
            ax.axhline(q, color="0.45", lw=0.8, ls=":")
            ax.text(1.0, q, f" {name}", transform=mtransforms.blended_transform_factory(
                ax.transAxes, ax.transData), va="center", ha="left", fontsize=9, color="0.35")
        ax.set_title(f"{op} operations")
        ax.set_xlabel("latency (ms, log scale)")
        ax.legend(loc="lower right", frameon=True)
    axes[0][0].set_ylabel("fraction of operations ≤ latency")
    fig.suptitle("Latency distribution (ECDF), operations answered ok, all seeds", x=0.01,
                 ha="left")
    fig.tight_layout()
    return fig


# -- 2. throughput over time with the faults ---------------------------------------------------

@dataclass(frozen=True, slots=True)
class Timeline:
    """One algorithm's throughput over time: ops answered per bin, per seed."""

    algorithm: str
    bin_ms: float
    bins_by_seed: Mapping[int, Sequence[int]]
    faults: Sequence[Fault]
    unavailable_by_seed: Mapping[int, Sequence[tuple[float, float]]]
    variant: str | None = None  # the run's label when runs are compared
    end_ms: float | None = None  # end of the workload (the quiet settle time is not drawn)


_FAULT_STYLE = {  # action -> (kind of mark, colour)
    "crash": ("line", "#222222"), "restart": ("line", "#222222"),
    "pause": ("line", "#555555"), "resume": ("line", "#555555"), "heal": ("line", "#555555"),
    "loss": ("span", PALETTE[8]), "delay": ("span", PALETTE[8]),
    "duplicate": ("span", PALETTE[8]), "partition": ("span", "#9a9a9a"),
    "isolate": ("span", "#9a9a9a"), "cut": ("span", "#9a9a9a"),
    "add": ("line", PALETTE[2]), "remove": ("line", PALETTE[2]), "replace": ("line", PALETTE[2]),
    "transfer": ("line", PALETTE[4]),
}


def _draw_faults(ax: Any, faults: Sequence[Fault], labels: bool, span_s: float) -> int:
    """Draw faults on ``ax`` (seconds on x); label them above it when ``labels``. Rows used."""
    for f in faults:
        kind, colour = _FAULT_STYLE.get(f.action, ("line", "#222222"))
        x0 = f.at_ms / 1000
        if kind == "span" and f.end_ms is not None and f.end_ms > f.at_ms:
            hatch = "///" if f.action in ("partition", "isolate", "cut") else None
            ax.axvspan(x0, f.end_ms / 1000, color=colour, alpha=0.22, lw=0, hatch=hatch,
                       zorder=0)
        else:
            ax.axvline(x0, color=colour, lw=1.1, ls="--" if f.action != "crash" else "-",
                       zorder=1)
    if not labels:
        return 0
    merged: dict[float, list[str]] = {}
    for f in faults:  # a window's label says how long it lasts ("loss 30% for 1.0s")
        merged.setdefault(round(f.at_ms / 1000, 3), []).append(f.label)
    xs = sorted(merged)
    texts = [" + ".join(_shorten(merged[x])) for x in xs]
    # Stagger the labels into rows so none overlap (~6.6 px per character at 9 pt, ~760 px).
    rows = []
    last_end: list[float] = []
    for x, text in zip(xs, texts, strict=True):
        width = len(text) * 6.6 / 760 * span_s
        for row, end in enumerate(last_end):
            if x - width / 2 > end + 0.01 * span_s:
                last_end[row] = x + width / 2
                rows.append(row)
                break
        else:
            last_end.append(x + width / 2)
            rows.append(len(last_end) - 1)
    trans = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
    for x, text, row in zip(xs, texts, rows, strict=True):
        ax.text(x, 1.03 + 0.11 * row, text, transform=trans, ha="center", va="bottom",
                fontsize=9, color="#222222", clip_on=False,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "0.7", "lw": 0.5})
    return max(rows) + 1 if rows else 0


def _shorten(texts: list[str]) -> list[str]:
    """'crash n4' + 'crash n5' -> 'crash n4,n5'."""
    out: list[str] = []
    for t in texts:
        verb, _, rest = t.partition(" ")
        if out and out[-1].split(" ", 1)[0] == verb and rest and " " not in rest:
            out[-1] += f",{rest}"
        else:
            out.append(t)
    return out


def full_bins(bins: Sequence[int], bin_ms: float, end_ms: float | None) -> list[int]:
    """The bins that lie wholly inside the workload (``end_ms``; all when unknown): the one
    the workload ends in, and the settle time after it, would read as an outage."""
    if not end_ms:
        return list(bins)
    return list(bins[:int(end_ms // bin_ms)])


@_styled
def throughput_timeline(timelines: Sequence[Timeline]) -> Figure | None:
    """Throughput over time (100 ms bins), one panel per algorithm on a shared time axis,
    with every fault and each seed's unavailability window."""
    timelines = [t for t in timelines if t.bins_by_seed]
    if not timelines:
        return None
    n = len(timelines)
    span_s = max(len(b) * t.bin_ms for t in timelines for b in t.bins_by_seed.values()) / 1000
    ends = [t.end_ms for t in timelines if t.end_ms]
    if ends:
        span_s = min(span_s, max(ends) / 1000)
    fig, axes = plt.subplots(n, 1, figsize=(10, 1.2 + 2.3 * n), sharex=True, sharey=True,
                             squeeze=False)
    rows_used = 0
    labelled_below = False
    for i, (ax, tl) in enumerate(zip(axes[:, 0], timelines, strict=True)):
        colour = algorithm_colour(tl.algorithm)
        series = []
        for _seed, bins in sorted(tl.bins_by_seed.items()):
            rate = np.asarray(full_bins(bins, tl.bin_ms, tl.end_ms),
                              dtype=float) * (1000 / tl.bin_ms)
            xs = (np.arange(len(rate)) + 0.5) * tl.bin_ms / 1000
            series.append(rate)
            if len(tl.bins_by_seed) > 1:
                ax.plot(xs, rate, color=colour, lw=0.6, alpha=0.35)
        width = max(len(s) for s in series)
        padded = np.full((len(series), width), np.nan)
        for j, s in enumerate(series):
            padded[j, :len(s)] = s
        median = np.nanmedian(padded, axis=0)
        xs = (np.arange(width) + 0.5) * tl.bin_ms / 1000
        ax.plot(xs, median, color=colour, lw=1.6,
                label="median of seeds" if len(series) > 1 else "throughput")
        same_faults = i > 0 and [(f.at_ms, f.end_ms) for f in tl.faults] == [
            (f.at_ms, f.end_ms) for f in timelines[0].faults]
        rows = _draw_faults(ax, tl.faults, labels=(i == 0 or not same_faults), span_s=span_s)
        if i == 0:
            rows_used = rows
        elif rows:
            labelled_below = True
        trans = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
        for j, (_seed, windows) in enumerate(sorted(tl.unavailable_by_seed.items())):
            for start, end in windows:
                ax.plot([start / 1000, end / 1000], [0.04 + 0.05 * j] * 2, transform=trans,
                        color=UNAVAILABLE_COLOUR, lw=3.5, solid_capstyle="butt", zorder=4)
        ax.set_ylabel("ops/s answered ok")
        ax.set_ylim(bottom=0)
        name = series_name(tl.algorithm if tl.variant is None else (tl.algorithm, tl.variant))
        ax.text(0.005, 0.97, name, transform=ax.transAxes, ha="left", va="top",
                fontsize=12, fontweight="bold", color=colour,
                bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 1.5})
    axes[-1, 0].set_xlabel("time since start (s)")
    axes[-1, 0].set_xlim(0, span_s)
    peak = max((max(full_bins(b, t.bin_ms, t.end_ms), default=0) * 1000 / t.bin_ms
                for t in timelines for b in t.bins_by_seed.values()), default=1)
    axes[-1, 0].set_ylim(0, max(peak, 1) * 1.08)
    handles = [Line2D([], [], color="0.3", lw=1.6, label="median of seeds"),
               Line2D([], [], color="0.3", lw=0.6, alpha=0.5, label="one seed"),
               Line2D([], [], color=UNAVAILABLE_COLOUR, lw=3.5,
                      label="unavailable (longest gap per fault; a row per seed)")]
    actions = {f.action for tl in timelines for f in tl.faults}
    if "crash" in actions:
        handles.append(Line2D([], [], color="#222222", lw=1.1, label="crash"))
    if actions & {"restart", "pause", "resume", "heal"}:
        handles.append(Line2D([], [], color="#555555", lw=1.1, ls="--",
                              label="restart / pause / resume / heal"))
    if actions & {"loss", "delay", "duplicate"}:
        handles.append(Patch(color=PALETTE[8], alpha=0.35, label="loss/delay/duplicate window"))
    if actions & {"partition", "isolate", "cut"}:
        handles.append(Patch(fc="#9a9a9a", alpha=0.35, hatch="///", label="partitioned"))
    if actions & {"add", "remove", "replace"}:
        handles.append(Line2D([], [], color=PALETTE[2], lw=1.1, ls="--",
                              label="membership change requested"))
    if "transfer" in actions:
        handles.append(Line2D([], [], color=PALETTE[4], lw=1.1, ls="--",
                              label="leadership transfer requested"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 3), frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.05 + 0.03 * (len(handles) > 3), 1, 1))
    height = fig.get_figheight()
    axis_in = axes[0, 0].get_position().height * height
    room_in = 0.3 + (0.03 + 0.11 * rows_used) * axis_in + 0.05
    fig.subplots_adjust(top=1 - room_in / height, hspace=0.45 if labelled_below else 0.12)
    fig.suptitle("Throughput over time (100 ms bins) and faults", x=0.01, ha="left",
                 y=1 - 0.04 / height, va="top")
    return fig


# -- 3. messages per committed operation -------------------------------------------------------

@_styled
def messages_per_op(by_kind: Mapping[SeriesKey, Mapping[str, float]]) -> Figure | None:
    """Protocol messages per committed operation, stacked by message type, one bar per
    series (``by_kind[algorithm][kind]``, e.g. medians across seeds)."""
    algorithms = [a for a, kinds in by_kind.items() if kinds]
    if not algorithms:
        return None
    # The legend and the note on thin segments get a row of their own under the bars, so
    # the bars are wide enough for their labels.
    fig, (ax, lax) = plt.subplots(2, 1, figsize=(max(8.5, 2.6 * len(algorithms)), 6.4),
                                  gridspec_kw={"height_ratios": [3.3, 1.3]})
    lax.axis("off")
    phases_seen: dict[str, dict[str, None]] = {}
    totals = []
    for x, algorithm in enumerate(algorithms):
        kinds = sorted(by_kind[algorithm].items(),
                       key=lambda kv: (_PHASE_ORDER.get(phase_of(kv[0])[0], 99), kv[0]))
        bottom = 0.0
        total = sum(v for _, v in kinds)
        totals.append(total)
        for kind, value in kinds:
            phase, colour = phase_of(kind)
            phases_seen.setdefault(phase, {})[kind] = None
            hatch = "//" if kind.endswith(HEARTBEAT) else None
            ax.bar(x, value, bottom=bottom, color=colour, width=0.55, edgecolor="white",
                   lw=0.6, hatch=hatch)
            if value >= 0.06 * max(total, 1e-9):
                ax.text(x, bottom + value / 2, f"{kind}\n{value:.2f}", ha="center",
                        va="center", fontsize=9.5, linespacing=1.1)
            bottom += value
        ax.text(x, total, f"{total:.2f}", ha="center", va="bottom", fontsize=11,
                fontweight="bold")
    small = []
    for algorithm in algorithms:
        total = sum(by_kind[algorithm].values())
        tiny = [f"{k} {v:.3f}" for k, v in sorted(by_kind[algorithm].items())
                if v < 0.06 * max(total, 1e-9)]
        if tiny:
            small.append(f"{series_name(algorithm)}: {', '.join(tiny)}")
    if small:
        lax.text(0.0, 0.0, "Too thin to label: " + "; ".join(small), fontsize=9,
                 color="0.25", ha="left", va="bottom", wrap=True, transform=lax.transAxes)
    ax.set_xticks(range(len(algorithms)), [series_name(a).replace(" · ", "\n")
                                           for a in algorithms])
    for tick, algorithm in zip(ax.get_xticklabels(), algorithms, strict=True):
        tick.set_color(algorithm_colour(_algo(algorithm)))
        tick.set_fontweight("bold")
        tick.set_fontsize(11)
    ax.set_xlim(-0.6, len(algorithms) - 0.4)
    ax.set_ylim(0, max(totals) * 1.12)
    ax.set_ylabel("messages per committed operation")
    ax.set_title("Protocol messages per committed operation, by type (median of seeds; "
                 "client messages excluded)", loc="left", fontsize=11)
    handles = [Patch(fc=PHASE_COLOURS.get(phase, OTHER_COLOUR),
                     hatch="//" if phase == Phase.HEARTBEAT else None,
                     label=f"{phase}: {' / '.join(k.removesuffix(HEARTBEAT) for k in kinds)}")
               for phase, kinds in sorted(phases_seen.items(),
                                         key=lambda kv: _PHASE_ORDER.get(kv[0], 99))]
    lax.legend(handles=handles, loc="upper left", ncol=2, frameon=False,
               title="message role", title_fontsize=10, alignment="left")
    ax.grid(axis="x", visible=False)
    fig.tight_layout()
    return fig


# -- 4. failover -------------------------------------------------------------------------------

FAILOVER_PARTS = (("detect_ms", "detect\n(fault → first campaign)"),
                  ("elect_ms", "elect\n(fault → new leader)"),
                  ("commit_ms", "commit\n(fault → first write answered)"),
                  ("client_gap_ms", "client gap\n(median client's wait)"))


@_styled
def failover(values: Mapping[SeriesKey, Mapping[str, Sequence[float]]]) -> Figure | None:
    """Time to detect, elect, commit again, and the clients' gap: box + points per algorithm,
    across seeds and faults (``values[algorithm]["detect_ms"]`` ...)."""
    parts = [(key, label) for key, label in FAILOVER_PARTS
             if any(values[a].get(key) for a in values)]
    if not parts:
        return None
    algorithms = list(values)
    width = 3.3 if len(algorithms) <= 2 else 1.6 * len(algorithms)
    fig, axes = plt.subplots(1, len(parts), figsize=(width * len(parts) + 0.5, 3.4),
                             squeeze=False)
    names = {a: series_name(a).replace(" · ", "\n") for a in algorithms}
    palette = {names[a]: algorithm_colour(_algo(a)) for a in algorithms}
    for ax, (key, label) in zip(axes[0], parts, strict=True):
        xs: list[str] = []
        ys: list[float] = []
        for a in algorithms:
            for v in values[a].get(key) or []:
                xs.append(names[a])
                ys.append(float(v))
        order = [names[a] for a in algorithms]
        with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib 3.11's deprecated vert
            warnings.simplefilter("ignore", matplotlib.MatplotlibDeprecationWarning)
            sns.boxplot(x=xs, y=ys, hue=xs, order=order, hue_order=order, palette=palette,
                        ax=ax, width=0.5, fliersize=0, boxprops={"alpha": 0.35}, legend=False)
        # seaborn jitters with numpy's global generator: seed it so a report redraws the same.
        state = np.random.get_state()
        np.random.seed(0)
        try:
            sns.stripplot(x=xs, y=ys, hue=xs, order=order, hue_order=order, palette=palette,
                          ax=ax, size=5, jitter=0.12, edgecolor="white", linewidth=0.6,
                          legend=False)
        finally:
            np.random.set_state(state)
        for i, a in enumerate(algorithms):
            n = len(values[a].get(key) or [])
            ax.text(i, 0.0, f"n={n}", transform=mtransforms.blended_transform_factory(
                ax.transData, ax.transAxes), ha="center", va="bottom", fontsize=9, color="0.3")
        ax.set_title(label, fontsize=11)
        ax.set_ylabel("ms after the fault" if key != "client_gap_ms" else "ms")
        ax.set_ylim(bottom=0)
        ymax = ax.get_ylim()[1]
        ax.set_ylim(-0.08 * ymax, ymax)
        for tick, a in zip(ax.get_xticklabels(), algorithms, strict=False):
            tick.set_color(algorithm_colour(_algo(a)))
    fig.suptitle("Failover: every leader-losing fault on every seed", x=0.01, ha="left")
    fig.tight_layout()
    return fig


# -- 5. throughput vs latency (load sweeps) ----------------------------------------------------

@dataclass(frozen=True, slots=True)
class LoadPoint:
    algorithm: str
    offered: float  # ops/s asked for (workload.rate)
    throughput: float  # ops/s answered ok
    p50: float  # ms
    p99: float  # ms


@_styled
def load_curve(points: Sequence[LoadPoint]) -> Figure | None:
    """Throughput vs latency (p50 and p99), one line per algorithm, points at each offered
    rate; needs at least two rates."""
    if len({p.offered for p in points}) < 2:
        return None
    from matplotlib.ticker import LogLocator, NullFormatter

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharex=True)
    for ax, attr, name in ((axes[0], "p50", "median (p50)"), (axes[1], "p99", "p99")):
        for i, algorithm in enumerate(dict.fromkeys(p.algorithm for p in points)):
            pts = sorted((p for p in points if p.algorithm == algorithm),
                         key=lambda p: p.offered)
            ax.plot([p.throughput for p in pts], [getattr(p, attr) for p in pts], marker="o",
                    ms=4, color=algorithm_colour(algorithm), label=title(algorithm))
            for p in pts:  # first algorithm's labels above its points, the second's below
                ax.annotate(f"{p.offered:g}", (p.throughput, getattr(p, attr)), fontsize=9,
                            xytext=(3, 4 if i % 2 == 0 else -10), textcoords="offset points",
                            color=algorithm_colour(algorithm))
        # Rates and latencies span decades: log both axes, ticks only at 1-2-3-5 steps, plain
        # numbers (no 6x10^1), no labelled minor ticks to crowd them.
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1
                                                   else f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("throughput answered ok (ops/s, log scale)")
        ax.set_ylabel(f"{name} latency (ms, log scale)")
        ax.set_title(f"{name} latency vs throughput", fontsize=11)
        ax.legend(loc="upper left")
    fig.suptitle("Throughput vs latency (labels: offered rate, ops/s)", x=0.01, ha="left")
    fig.tight_layout()
    return fig


# -- 6. message-sequence (Lamport) diagram -----------------------------------------------------

@dataclass(frozen=True, slots=True)
class SequenceData:
    """One algorithm's messages around the first fault."""

    algorithm: str
    seed: int
    nodes: Sequence[str]
    trace: Sequence[Mapping[str, Any]]  # sent, delivered (None: dropped), src, dst, kind
    events: Sequence[Mapping[str, Any]]  # role/leader events (t, node, role, term)
    faults: Sequence[Fault]  # every fault; the diagram centres on the first

    @property
    def fault_ms(self) -> float:
        return min(f.at_ms for f in self.faults)

    def first_faults(self) -> list[Fault]:
        return [f for f in self.faults if f.at_ms == self.fault_ms]

    def down_intervals(self, end_ms: float) -> dict[str, list[tuple[float, float]]]:
        """When each node was crashed or paused: node -> [(from, to)]."""
        out: dict[str, list[tuple[float, float]]] = {}
        since: dict[str, float] = {}
        for f in sorted(self.faults, key=lambda f: f.at_ms):
            if f.action in ("crash", "pause"):
                for n in f.nodes:
                    since.setdefault(n, f.at_ms)
            elif f.action in ("restart", "resume"):
                for n in f.nodes:
                    if n in since:
                        out.setdefault(n, []).append((since.pop(n), f.at_ms))
        for n, t in since.items():
            out.setdefault(n, []).append((t, end_ms))
        return out


MAX_ARROWS = 220
# The broken time axis: each interesting moment (the fault, a role change, an election
# message) gets SEGMENT_PAD ms around it; moments closer than MERGE_GAP_MS share a segment;
# what lies between segments is cut and drawn as a BREAK_MS-high zig-zag band.
SEGMENT_BEFORE_MS = 8.0
SEGMENT_AFTER_MS = 14.0
FAULT_BEFORE_MS = 15.0
FAULT_AFTER_MS = 15.0
MERGE_GAP_MS = 25.0
MAX_SEGMENTS = 4
BREAK_MS = 9.0
LABEL_CHAR_PX = 7.0  # a 9 pt character's width, roughly, at DPI


def sequence_window(items: Sequence[SequenceData], before_ms: float = 25.0,
                    after_leader_ms: float = 30.0, default_ms: float = 150.0,
                    max_ms: float = 700.0) -> tuple[float, float]:
    """The time window (ms) to draw: just before the fault until shortly after the last
    algorithm has a new leader; when none is elected, shortly after the first campaign (a
    partitioned minority trying), else ``default_ms`` after the fault."""
    t0 = min(d.fault_ms for d in items)
    ends = []
    for d in items:
        elected = [float(e["t"]) for e in d.events if e.get("type") == "leader"
                   and d.fault_ms < float(e["t"]) <= d.fault_ms + max_ms]
        tried = [float(e["t"]) for e in d.events if e.get("type") == "role"
                 and e.get("role") in ("candidate", "precandidate")
                 and d.fault_ms < float(e["t"]) <= d.fault_ms + max_ms]
        first = elected or tried
        ends.append(first[0] + after_leader_ms if first else d.fault_ms + default_ms)
        # Not past the trace's end, but always past the role change that ends the window.
        last = max((float(m["delivered"] if m.get("delivered") is not None else m["sent"])
                    for m in d.trace), default=t0 + default_ms)
        ends[-1] = min(ends[-1], max(last, first[0] + 5.0 if first else last))
    return t0 - before_ms, max(max(ends), t0 + 60.0)


def _moments(d: SequenceData, start: float, end: float) -> list[float]:
    """When something worth seeing happens: role changes and election messages."""
    out = [float(e["t"]) for e in d.events
           if e.get("type") in ("role", "leader") and start <= float(e["t"]) <= end]
    for m in d.trace:
        if phase_of(m["kind"])[0] in ELECTION_PHASES and start <= float(m["sent"]) <= end:
            out.append(float(m["sent"]))
            if m.get("delivered") is not None and float(m["delivered"]) <= end:
                out.append(float(m["delivered"]))
    return out


def sequence_segments(d: SequenceData, start: float, end: float) -> list[tuple[float, float]]:
    """The stretches of [start, end] (ms) the broken axis shows: one around the fault, one
    around each cluster of role changes and election messages; at most MAX_SEGMENTS (the
    closest ones are merged first)."""
    f = d.fault_ms
    spans = [(max(start, f - FAULT_BEFORE_MS), min(end, f + FAULT_AFTER_MS))]
    spans += [(max(start, t - SEGMENT_BEFORE_MS), min(end, t + SEGMENT_AFTER_MS))
              for t in _moments(d, start, end)]
    spans = sorted((a, b) for a, b in spans if a < b)  # nothing outside the window
    merged: list[list[float]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1] + MERGE_GAP_MS:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    while len(merged) > MAX_SEGMENTS:
        gaps = [merged[i + 1][0] - merged[i][1] for i in range(len(merged) - 1)]
        i = gaps.index(min(gaps))
        merged[i][1] = merged[i + 1][1]
        del merged[i + 1]
    return [(a, b) for a, b in merged]


@dataclass(frozen=True, slots=True)
class BrokenAxis:
    """Maps a time (ms) onto a compressed axis: the segments keep their length, each cut
    between two of them becomes BREAK_MS high."""

    segments: Sequence[tuple[float, float]]

    @property
    def length(self) -> float:
        return sum(b - a for a, b in self.segments) + BREAK_MS * (len(self.segments) - 1)

    def y(self, t: float) -> float:
        """Position of time ``t``; a time inside a cut lands inside its break band."""
        offset = 0.0
        for i, (a, b) in enumerate(self.segments):
            if t < a:
                if i == 0:
                    return t - a
                prev = self.segments[i - 1][1]
                return offset - BREAK_MS + BREAK_MS * (t - prev) / max(a - prev, 1e-9)
            if t <= b:
                return offset + t - a
            offset += b - a + BREAK_MS
        return offset - BREAK_MS + t - self.segments[-1][1]

    def shown(self, t: float) -> bool:
        return any(a <= t <= b for a, b in self.segments)

    def breaks(self) -> list[tuple[float, float, float]]:
        """(y of the band's middle, cut from, cut to) for each cut."""
        out = []
        offset = 0.0
        for i, (a, b) in enumerate(self.segments[:-1]):
            offset += b - a
            out.append((offset + BREAK_MS / 2, b, self.segments[i + 1][0]))
            offset += BREAK_MS
        return out

    def ticks(self, origin: float, target: int = 9) -> tuple[list[float], list[str]]:
        """Tick positions and labels (ms relative to ``origin``), a nice step per segment."""
        total = sum(b - a for a, b in self.segments) or 1.0
        step_ms = total / target
        step = min((s for s in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500) if s >= step_ms),
                   default=1000)
        ys, labels = [], []
        for a, b in self.segments:
            first = math.ceil((a - origin) / step) * step
            for rel in np.arange(first, b - origin + 1e-9, step):
                ys.append(self.y(origin + float(rel)))
                labels.append(f"{float(rel):+g}" if rel else "0")
        return ys, labels


def _thin(messages: list[Mapping[str, Any]], limit: int) -> tuple[list[Mapping[str, Any]], int]:
    """Keep every election message; keep one in k of the others so at most ``limit`` remain."""
    keep = [m for m in messages if phase_of(m["kind"])[0] in ELECTION_PHASES]
    rest = [m for m in messages if phase_of(m["kind"])[0] not in ELECTION_PHASES]
    room = max(limit - len(keep), 1)
    k = max(1, math.ceil(len(rest) / room))
    return sorted(keep + rest[::k], key=lambda m: m["sent"]), k


def _stagger(wanted: Sequence[tuple[float, float, float]], gap: float) -> list[float]:
    """Label positions near ``wanted`` (y, x from, x to), in order, so that no two labels
    whose x ranges overlap are closer than ``gap`` in y: each moves down just enough."""
    placed: list[tuple[float, float, float]] = []
    out = []
    for y, x0, x1 in wanted:
        moved = True
        while moved:
            moved = False
            for py, px0, px1 in placed:
                # y only ever grows (so this ends); the tolerance absorbs rounding.
                if px0 < x1 and x0 < px1 and py - gap < y < py + gap * (1 - 1e-9):
                    y, moved = py + gap, True
        placed.append((y, x0, x1))
        out.append(y)
    return out


def _from_broker(d: SequenceData) -> bool:
    """Whether the trace was taken on the bus (times are arrivals at the runner's
    subscriber, not send and delivery times)."""
    return any(m.get("observed") == "broker" for m in d.trace)


_ROLE_MARKS = {"leader": ("*", 15, "gold", "leader"), "candidate": ("^", 10, "white", "candidate"),
               "precandidate": ("^", 9, "0.85", "pre-vote")}


def _sequence_panel(ax: Any, d: SequenceData, kinds_seen: dict[str, None]) -> None:
    """One algorithm's lifelines, arrows, role marks and breaks on ``ax``."""
    start, end = sequence_window([d])
    axis = BrokenAxis(sequence_segments(d, start, end))
    y, f = axis.y, d.fault_ms
    xs = {n: i for i, n in enumerate(d.nodes)}
    in_window = [m for m in d.trace if m["src"] in xs and m["dst"] in xs
                 and start <= float(m["sent"]) <= end]
    shown = [m for m in in_window if axis.shown(float(m["sent"]))]
    msgs, k = _thin(shown, MAX_ARROWS)
    box = ax.get_window_extent()  # before tight_layout: near enough to size the labels
    gap = axis.length * 16 / box.height  # one label's height (9 pt text plus a little)
    flat = _from_broker(d)
    down = d.down_intervals(end)
    for n, x in xs.items():
        ax.plot([x, x], [0, axis.length], color="0.35", lw=1.2, zorder=1)
        for a, b in down.get(n, []):
            if b < start or a > end:
                continue
            a, b = max(a, start), min(b, end)
            ax.plot([x, x], [y(a), y(b)], color="white", lw=3, zorder=2)
            ax.plot([x, x], [y(a), y(b)], color="0.6", lw=1.0, ls=(0, (2, 3)), zorder=2)
            ax.plot(x, y(a), marker="X", ms=12, color="black", zorder=6)
    for m in msgs:
        x0, x1 = xs[m["src"]], xs[m["dst"]]
        y0 = y(float(m["sent"]))
        phase, colour = phase_of(m["kind"])
        kinds_seen[m["kind"]] = None
        lw = 1.3 if phase in ELECTION_PHASES else 0.8
        ls = (0, (3, 1.5)) if is_reply(m["kind"]) else "-"
        if m.get("delivered") is None:
            xe = x0 + (x1 - x0) * 0.35
            ye = y0 + (0 if flat else axis.length * 0.012)
            ax.annotate("", xy=(xe, ye), xytext=(x0, y0), arrowprops={
                "arrowstyle": "-", "color": colour, "lw": lw, "shrinkA": 0, "shrinkB": 0,
                "linestyle": ls})
            ax.plot(xe, ye, marker="x", ms=6, mew=1.5, color=colour)
        else:
            ax.annotate("", xy=(x1, y(float(m["delivered"]))), xytext=(x0, y0), arrowprops={
                "arrowstyle": "-|>,head_length=0.4,head_width=0.18", "color": colour,
                "lw": lw, "shrinkA": 0, "shrinkB": 0, "linestyle": ls})
    # Labels beside the lifelines: crashes and role changes, staggered so none overlap.
    labels: list[tuple[float, str, str]] = []  # (t, node, text)
    for n, spans in down.items():
        labels += [(a, n, "down") for a, _ in spans if n in xs and start <= a <= end]
    marks = []
    for e in d.events:
        t = float(e["t"])
        style = _ROLE_MARKS.get(str(e.get("role")))
        if e.get("type") != "role" or style is None or e.get("node") not in xs:
            continue
        if not (start <= t <= end and axis.shown(t)):
            continue
        marks.append((t, e["node"], style))
        labels.append((t, e["node"], f"{style[3]} (term {e.get('term')})"))
    for t, n, style in marks:
        ax.plot(xs[n], y(t), marker=style[0], ms=style[1], mfc=style[2], mec="black",
                mew=0.8, zorder=7)
    labels.sort(key=lambda lb: (lb[0], xs[lb[1]]))
    col_px = box.width / max(len(d.nodes), 1)
    placed = _stagger([(y(t), xs[n], xs[n] + 0.1 + len(text) * LABEL_CHAR_PX / col_px)
                       for t, n, text in labels], gap)
    for (_t, n, text), yl in zip(labels, placed, strict=True):
        ax.text(xs[n] + 0.1, yl, text, fontsize=9, va="top", ha="left", zorder=8,
                bbox={"fc": "white", "ec": "none", "alpha": 0.85, "pad": 0.6})
    # The fault line, its label on the left above it; the breaks as zig-zag bands.
    ax.axhline(y(f), color="black", lw=1.2, ls="--", zorder=5)
    label = " + ".join(_shorten([x.label for x in d.first_faults()]))
    ax.text(-0.47, y(f) - gap * 0.15, f"fault: {label}", color="black", fontsize=9.5,
            ha="left", va="bottom", fontweight="bold", zorder=9,
            bbox={"fc": "white", "ec": "0.5", "lw": 0.5, "pad": 1.5})
    for mid, a, b in axis.breaks():
        _draw_break(ax, mid, len(d.nodes))
        hidden = sum(1 for m in in_window if a < float(m["sent"]) < b)
        ax.text(len(d.nodes) - 0.5, mid, f"{b - a:.0f} ms cut ({hidden} msgs) ",
                fontsize=9, color="0.25", ha="right", va="center", zorder=9,
                bbox={"fc": "white", "ec": "none", "pad": 0.5})
    ticks, tick_labels = axis.ticks(f)
    ax.set_yticks(ticks, tick_labels)
    ax.set_ylim(axis.length, 0)
    ax.set_xticks(range(len(d.nodes)), list(d.nodes))
    ax.xaxis.tick_top()
    ax.set_xlim(-0.5, len(d.nodes) - 0.5)
    ax.grid(axis="x", visible=False)
    notes = [f"seed {d.seed}"]
    if k > 1:
        notes.append(f"1 in {k} replication/heartbeat messages shown")
    if flat:
        notes.append("bus: times are arrivals at the runner's subscriber")
    ax.set_title(f"{title(d.algorithm)}\n({'; '.join(notes)})",
                 color=algorithm_colour(d.algorithm), loc="left", pad=26, fontsize=11)


def _draw_break(ax: Any, mid: float, n_nodes: int) -> None:
    """A white band with zig-zag edges across the panel: time is cut here."""
    ax.axhspan(mid - BREAK_MS * 0.35, mid + BREAK_MS * 0.35, color="white", zorder=3)
    xs = np.linspace(-0.5, n_nodes - 0.5, 4 * n_nodes + 1)
    zig = np.where(np.arange(len(xs)) % 2 == 0, -1.0, 1.0) * BREAK_MS * 0.12
    for edge in (-BREAK_MS * 0.35, BREAK_MS * 0.35):
        ax.plot(xs, mid + edge + zig, color="0.45", lw=0.9, zorder=4, clip_on=False)


@_styled
def sequence_diagram(items: Sequence[SequenceData]) -> Figure | None:
    """Message-sequence diagrams around the first fault, one panel per algorithm: a lifeline
    per node, time flowing down on a broken axis (the fault and the election, quiet stretches
    cut), an arrow per message coloured by role; dropped messages end in an x; role changes
    (candidate, leader) marked on the lifelines."""
    items = [d for d in items if d.trace]
    if not items:
        return None
    height = 8.0
    fig, axes = plt.subplots(1, len(items), figsize=(5.6 * len(items), height), squeeze=False)
    kinds_seen: dict[str, None] = {}
    for ax, d in zip(axes[0], items, strict=True):
        _sequence_panel(ax, d, kinds_seen)
    axes[0][0].set_ylabel("ms after the fault (time flows down)")
    handles = []
    for kind in sorted(kinds_seen, key=lambda k: (_PHASE_ORDER.get(phase_of(k)[0], 99), k)):
        handles.append(Line2D([], [], color=phase_of(kind)[1], lw=2, label=kind,
                              ls=(0, (3, 1.5)) if is_reply(kind) else "-"))
    handles += [Line2D([], [], color="0.4", lw=0, marker="x", mew=1.4, label="dropped"),
                Line2D([], [], lw=0, marker="^", mfc="white", mec="black", label="candidate"),
                Line2D([], [], lw=0, marker="^", mfc="0.85", mec="black",
                       label="pre-vote candidate"),
                Line2D([], [], lw=0, marker="*", ms=12, mfc="gold", mec="black",
                       label="becomes leader")]
    ncol = 4
    fig.legend(handles=handles, loc="lower center", ncol=ncol, frameon=False)
    fig.suptitle("Messages around the first fault (client messages not shown)", x=0.01,
                 ha="left")
    rows = math.ceil(len(handles) / ncol)
    fig.tight_layout(rect=(0, 0.032 * rows, 1, 1))
    return fig


# -- 8. membership changes (issue 13) ----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ChangeWindow:
    """The throughput around one membership change: per algorithm (seconds since the request,
    ops/s), and the rate before the change the recovery is measured against."""

    label: str
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]]
    before: Mapping[str, float]


@_styled
def change_windows(windows: Sequence[ChangeWindow]) -> Figure | None:
    """One panel per change: every algorithm's throughput from just before the request to the
    recovery, the request marked, and 90% of each algorithm's rate before it dotted."""
    if not windows:
        return None
    cols = min(3, len(windows))
    rows = math.ceil(len(windows) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols + 0.6, 2.9 * rows + 0.6),
                             squeeze=False, sharey=True)
    for ax in axes.flat[len(windows):]:
        ax.set_visible(False)
    for ax, window in zip(axes.flat, windows, strict=False):
        for algorithm, (xs, ys) in window.series.items():
            colour = algorithm_colour(algorithm)
            ax.plot(xs, ys, color=colour, lw=1.6, label=title(algorithm))
            if algorithm in window.before:
                ax.axhline(0.9 * window.before[algorithm], color=colour, lw=1.0, ls=":")
        ax.axvline(0.0, color="#222222", lw=1.1)
        ax.set_title(window.label, fontsize=11)
        ax.set_xlabel("s since the request")
        ax.set_ylim(bottom=0)
    for ax in axes[:, 0]:
        ax.set_ylabel("ops/s answered ok")
    handles = [Line2D([], [], color=algorithm_colour(a), lw=1.6, label=title(a))
               for a in dict.fromkeys(a for w in windows for a in w.series)]
    handles += [Line2D([], [], color="0.3", lw=1.0, ls=":", label="90% of the rate before"),
                Line2D([], [], color="#222222", lw=1.1, label="change requested")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    fig.suptitle("Throughput around each membership change", x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig
