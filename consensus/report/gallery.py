"""The committed gallery: every experiment in ``experiments/`` run on the simulator with its
default seeds, its report copied into ``reports/<name>/``, and ``reports/README.md`` linking
them. Only report files land in ``reports/<name>/``; the raw run data goes to
``reports/runs/gallery/<name>/`` (gitignored), so ``consensus-lab report`` can rebuild a report
from it without re-running.

    python -m consensus.report.gallery [--out reports] [--only leader-crash ...]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consensus.report.data import folder_verdicts, passed
from consensus.report.stats import MIN_FINDING_SEEDS

if TYPE_CHECKING:
    from consensus.executor import Executor
    from consensus.experiment.runner import RunResult
    from consensus.experiment.spec import ExperimentSpec

README_HEAD = """# Report gallery

Every experiment in [`experiments/`](../experiments) run on the **simulator** (`transport: sim`)
with its default seeds, both algorithms, all checks. Each report opens from disk
(`report.html`, self-contained) or on GitHub (`report.md`, with its `figures/`).
Regenerate the whole gallery with `make reports` (`consensus-lab gallery`); the raw histories
are not committed (run an experiment yourself to get them: `consensus-lab run FILE`).

| experiment | checks | what it shows |
|:--|:--|:--|
"""


# Seeds a gallery run on the simulator gets at least, when its file asks for a slower
# transport with fewer: as many as a worded finding needs.
MIN_SIM_SEEDS = MIN_FINDING_SEEDS


def gallery_spec(spec_path: Path) -> tuple[ExperimentSpec, str | None]:
    """The experiment as the gallery runs it (on the simulator), and a note saying what was
    changed for that, if anything."""
    from consensus.experiment.spec import load_spec

    spec = load_spec(spec_path)
    note = None
    if spec.transport != "sim":
        note = (f"{spec_path.name} says transport: {spec.transport}; the gallery runs it on "
                f"the simulator (transport: sim).")
        update: dict[str, Any] = {"transport": "sim"}
        if len(spec.seeds) < MIN_SIM_SEEDS:  # its seeds were chosen for a slow transport
            update["seeds"] = list(range(1, MIN_SIM_SEEDS + 1))
            note += (f" Its {len(spec.seeds)} seed(s) are raised to {MIN_SIM_SEEDS} there, "
                     "where a run is cheap.")
        spec = spec.model_copy(update=update)
    return spec, note


def run_experiment(spec_path: Path, run_dir: Path,
                   executor: Executor | None = None) -> dict[str, Any]:
    """Run one experiment file on the simulator into ``run_dir``; return its summary."""
    from consensus.experiment.execute import run_experiment as execute

    spec, note = gallery_spec(spec_path)
    return execute(spec, run_dir, manifest_extra={"note": note} if note else None,
                   executor=executor)


def checks_word(run_dir: Path) -> str:
    """"passed" only with at least one verdict and none failing; "no verdicts" when nothing
    was checked (never a pass); else "failed"."""
    if passed(run_dir):
        return "passed"
    total, _ = folder_verdicts(run_dir)
    failures = json.loads((run_dir / "summary.json").read_text()).get("failures")
    return "no verdicts" if total == 0 and not failures else "failed"


def copy_report(run_dir: Path, dest: Path) -> None:
    """Copy only the report files (HTML, Markdown, figures) of a run folder to ``dest``."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for f in ("report.html", "report.md"):
        shutil.copy2(run_dir / f, dest / f)
    shutil.copytree(run_dir / "figures", dest / "figures")


def _first_sentence(text: str) -> str:
    """The description's first sentence (two when the first is only a few words)."""
    text = " ".join(text.split())
    parts = [p for p in text.replace("? ", "?\n").replace(". ", ".\n").split("\n") if p]
    if not parts:
        return ""
    return " ".join(parts[:2]) if len(parts[0]) < 40 and len(parts) > 1 else parts[0]


def build_gallery(experiments: Path, out: Path, *, only: Sequence[str] | None = None,
                  executor: str = "local", workers: int | None = None, rerun: bool = True,
                  runs: Path | None = None, log: Callable[[str], Any] = print) -> Path:
    """Run every experiment file (or ``only`` these names) and write the gallery.

    All the experiments' runs go to one executor (``local``: a process pool, one worker per
    core unless ``workers``; ``dask``; ``tcp://HOST:PORT``) at once; this process writes each
    experiment's folder and report as soon as its runs are in, while the workers go on with
    the next. ``rerun=False`` rebuilds the reports from run data kept by an earlier gallery
    run. Raises ValueError for a bad ``executor``.
    """
    from consensus.executor import parallel, parse_executor, started
    from consensus.report import build_report

    chosen = parse_executor(executor, workers)
    specs = sorted(experiments.glob("*.yaml"))
    if only:
        specs = [p for p in specs if p.stem in set(only)]
    runs = runs or out / "runs" / "gallery"
    out.mkdir(parents=True, exist_ok=True)
    todo = [p for p in specs if rerun or not (runs / p.stem / "summary.json").exists()]
    for p in specs:
        if p not in todo:
            build_report(runs / p.stem)
            _copy_and_log(p, out, runs, log)
    loaded = {p: gallery_spec(p) for p in todo}
    runs_to_do = sum(spec.run_count for spec, _ in loaded.values())
    with started(parallel(chosen, workers, runs_to_do)) as running:
        if running is None:
            for p in todo:
                _fresh(runs / p.stem)
                run_experiment(p, runs / p.stem)
                _copy_and_log(p, out, runs, log)
        else:
            _run_all(loaded, runs, running, lambda p: _copy_and_log(p, out, runs, log))
    write_index(out, experiments)
    return out / "README.md"


def _fresh(run_dir: Path) -> None:
    if run_dir.exists():
        shutil.rmtree(run_dir)


def _copy_and_log(spec_path: Path, out: Path, runs: Path, log: Callable[[str], Any]) -> None:
    name = spec_path.stem
    copy_report(runs / name, out / name)
    word = checks_word(runs / name)
    log(f"{name}: " + {"passed": "all checks passed", "failed": "CHECK FAILED"}.get(
        word, "NO VERDICTS (no checks ran; not passed)"))


def _run_all(loaded: dict[Path, tuple[ExperimentSpec, str | None]], runs: Path,
             executor: Executor, done: Callable[[Path], None]) -> None:
    """Every experiment's runs in one map; this process finishes each experiment (summary,
    report) as soon as its last run is in, while the workers run the next ones."""
    from consensus.experiment.execute import finish_experiment, plan_experiment, run_job
    from consensus.experiment.results import write_run_result

    specs = list(loaded)
    planned = []
    for p, (spec, note) in loaded.items():
        _fresh(runs / p.stem)
        planned.append(plan_experiment(spec, runs / p.stem, executor,
                                       {"note": note} if note else None))
    jobs = [job for plan in planned for job in plan.jobs]
    where = [(e, j) for e, plan in enumerate(planned) for j in range(len(plan.jobs))]
    results: list[list[RunResult | None]] = [[None] * len(plan.jobs) for plan in planned]
    left = [len(plan.jobs) for plan in planned]
    for i, result in executor.map(run_job, jobs, chunk=1):
        e, j = where[i]
        write_run_result(planned[e].dirs[j], result)
        results[e][j] = result
        left[e] -= 1
        if left[e] == 0:
            finish_experiment(planned[e], results[e])
            done(specs[e])


def write_index(out: Path, experiments: Path) -> Path:
    """reports/README.md: one row per report in the gallery, with the experiment's question."""
    from consensus.experiment.spec import load_spec

    rows = []
    for report in sorted(out.glob("*/report.md")):
        name = report.parent.name
        spec_path = experiments / f"{name}.yaml"
        if not spec_path.exists():  # not an experiment's report (differences/ has its section)
            continue
        spec = load_spec(spec_path)
        checks = index_checks(report.read_text())
        sentence = _first_sentence(spec.description)
        if spec.transport != "sim":
            sentence += " (Run here on the simulator, not over MQTT.)"
        rows.append(f"| [{name}]({name}/report.md) ([HTML]({name}/report.html)) | {checks} | "
                    f"{sentence.replace('|', '/')} |")
    path = out / "README.md"
    from consensus.report.code_page import add_to_gallery  # writes out/code/index.html

    path.write_text(README_HEAD + "\n".join(rows) + "\n" + README_TAIL + add_to_gallery(out)
                    + differences_section(out))
    return path


def differences_section(out: Path) -> str:
    """The gallery index's link to the differences matrix (``consensus-lab matrix``), when
    ``out/differences/`` holds its report."""
    if not (out / "differences" / "report.md").exists():
        return ""
    return ("\n## The differences matrix\n\n"
            "[differences/report.md](differences/report.md) ([HTML](differences/report.html)):\n"
            "the partial-connectivity, election and read-path experiments on both algorithms\n"
            "under the variants that explain each difference (pre-vote and check-quorum,\n"
            "election up-to-date or any, read path), 5 seeds each: outcome, time without a\n"
            "leader, time without commits, leader changes and throughput during the fault,\n"
            "and why. Regenerate it with the command in its manifest (`consensus-lab matrix`).\n")


def index_checks(report_md: str) -> str:
    """The gallery's checks cell, read from a report's banner: passed only under the green
    banner (which needs at least one verdict), never by default."""
    if "CHECK FAILED" in report_md:
        return "❌ **FAILED**"
    match = re.search(r"All checks passed\*\*: (\d+) verdicts", report_md)
    if match and int(match.group(1)) > 0:
        return f"✅ passed ({match.group(1)} verdicts)"
    return "⚠️ **no verdicts** (not passed)"


README_TAIL = """
Each report has, when it applies: a correctness panel (every check, every algorithm and
seed), a summary table (medians, paired per-seed differences with Student's t 95% intervals
and their n, verdicts in words only when the interval excludes zero from at least 5 seeds,
and how many comparisons the table makes), the latency ECDF per operation type, throughput
over time with the faults and unavailability windows, messages per committed operation by
type, failover times, and a message-sequence diagram of the first fault. Compare two runs
with `consensus-lab compare RUN_A RUN_B`.
"""


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--experiments", type=Path, default=Path("experiments"))
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--executor", default="local")
    parser.add_argument("--workers", "--jobs", type=int, default=None)
    parser.add_argument("--no-rerun", action="store_true",
                        help="Rebuild the reports from the kept run data (no simulation).")
    args = parser.parse_args(argv)
    build_gallery(args.experiments, args.out, only=args.only, executor=args.executor,
                  workers=args.workers, rerun=not args.no_rerun)


if __name__ == "__main__":
    main()
