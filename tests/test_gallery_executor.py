"""The gallery on the executor: its experiments' runs in parallel give the reports and run
data one worker gives."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from consensus.cli import app
from tests.helpers import crash_spec, load_sweep_spec

runner = CliRunner()

EXPERIMENTS = {
    "crash": crash_spec("crash", 3),
    "rates": load_sweep_spec("rates", 1),
}


def _gallery(tmp_path: Path, name: str, *args: str) -> Path:
    experiments = tmp_path / "experiments"
    experiments.mkdir(exist_ok=True)
    for stem, text in EXPERIMENTS.items():
        (experiments / f"{stem}.yaml").write_text(text)
    out = tmp_path / name
    result = runner.invoke(app, ["gallery", "--experiments", str(experiments), "--out",
                                 str(out), *args])
    assert result.exit_code == 0, result.output
    assert "crash: all checks passed" in result.output
    return out


def _data(out: Path) -> dict[str, object]:
    runs = out / "runs" / "gallery"
    found: dict[str, object] = {}
    for path in sorted(runs.rglob("summary.json")):
        found[str(path.relative_to(runs))] = json.loads(path.read_text())
    for path in sorted(runs.rglob("metrics.json")):
        data = json.loads(path.read_text())
        found[str(path.relative_to(runs))] = (data["metrics"], data["info"]["trace_sha256"])
    return found


def test_the_gallery_on_two_workers_matches_one_worker(tmp_path):
    one = _gallery(tmp_path, "one", "--workers", "1")
    two = _gallery(tmp_path, "two", "--workers", "2")
    assert _data(one) == _data(two)
    assert len([k for k in _data(one) if k.endswith("metrics.json")]) == 6 + 2 * 2
    for name in ("crash", "rates"):
        assert (two / name / "report.md").is_file() and (two / name / "figures").is_dir()
    assert (two / "README.md").read_text() == (one / "README.md").read_text()
    manifest = json.loads((two / "runs" / "gallery" / "rates" / "manifest.json").read_text())
    assert manifest["executor"] == "local process pool (2 workers)"


def test_the_gallery_rejects_a_bad_executor(tmp_path):
    result = runner.invoke(app, ["gallery", "--out", str(tmp_path), "--executor", "x"])
    assert result.exit_code == 2
    assert "unknown executor 'x'" in result.output
