"""The command line as a user meets it."""

import json
import re

from typer.testing import CliRunner

from consensus.cli import app

runner = CliRunner()


def test_simulate_json_has_the_documented_fields():
    result = runner.invoke(app, ["simulate", "--duration", "5", "--seed", "7", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("algorithm", "nodes", "seed", "simulated_s", "wall_s", "committed",
                "leader_changes", "violations", "trace_sha256"):
        assert key in data
    assert data["algorithm"] == "raft" and data["nodes"] == 5 and data["seed"] == 7
    assert data["violations"] == [] and data["committed"] > 0


def test_simulate_prints_a_readable_summary():
    result = runner.invoke(app, ["simulate", "--duration", "3", "--nodes", "3"])
    assert result.exit_code == 0, result.output
    assert "commands committed" in result.stdout
    assert "all checks passed" in result.stdout
    assert "x real time" in result.stdout


def test_simulate_show_faults_lists_them_stamped_in_simulated_time():
    result = runner.invoke(app, ["simulate", "--duration", "5", "--nodes", "3", "--seed", "1",
                                 "--show-faults"])
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("T=")]
    assert lines and all(re.match(r"T=\d+\.\d{3}s [a-z]", line) for line in lines)
    assert lines[-1].endswith("heal all, resume and restart every node")


def test_bad_options_get_clear_errors():
    result = runner.invoke(app, ["simulate", "--algorithm", "zab"])
    assert result.exit_code == 2
    assert "unknown algorithm 'zab'" in result.output
    result = runner.invoke(app, ["simulate", "--election-timeout-ms", "300-150"])
    assert result.exit_code == 2
    assert "election_timeout_ms" in result.output
    result = runner.invoke(app, ["simulate", "--faults", "chaos"])
    assert result.exit_code == 2
    assert "unknown fault mode" in result.output


# The experiment library: `experiments` lists it, `run NAME` finds a file in it.

def _library_files() -> dict[str, str]:
    from pathlib import Path

    import yaml

    folder = Path(__file__).resolve().parent.parent / "experiments"
    return {p.stem: " ".join(yaml.safe_load(p.read_text())["description"].split())
            for p in sorted(folder.glob("*.yaml"))}


def test_experiments_lists_the_library_with_each_question():
    expected = _library_files()
    assert {"leader-crash", "quickstart", "quiz1-quorum"} <= set(expected)
    result = runner.invoke(app, ["experiments", "--json"])
    assert result.exit_code == 0, result.output
    listed = {e["name"]: e["description"] for e in json.loads(result.stdout)}
    assert listed == expected
    result = runner.invoke(app, ["experiments"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for name in expected:
        assert name in result.stdout


def test_run_finds_a_library_experiment_by_name_and_a_path_wins(tmp_path, monkeypatch):
    from consensus import library

    monkeypatch.chdir(tmp_path)
    found = library.resolve("leader-crash")
    assert found.name == "leader-crash.yaml" and found.is_file()
    assert library.resolve("leader-crash.yaml") == found
    # A file in the working directory named like a library experiment is the one that runs.
    (tmp_path / "leader-crash").write_text(
        "name: local-copy\nseeds: [1]\ncluster: {nodes: 3}\n"
        "workload: {clients: 2, rate: 50, duration_s: 1, keys: 5}\n")
    result = runner.invoke(app, ["run", "leader-crash", "--out", str(tmp_path / "a"),
                                 "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["experiment"] == "local-copy"
    # Without it, the name reaches the library's file.
    (tmp_path / "leader-crash").unlink()
    result = runner.invoke(app, ["run", "quiz2-heartbeat", "--transport", "sim", "--seeds",
                                 "1", "--out", str(tmp_path / "b"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["experiment"] == "quiz2-heartbeat"


def test_run_with_an_unknown_name_lists_the_library():
    result = runner.invoke(app, ["run", "leader-krash"])
    assert result.exit_code == 2
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())  # unwrap the error box
    assert "no file 'leader-krash' and no library experiment of that name" in text
    assert "leader-crash," in text and "quiz1-quorum," in text
