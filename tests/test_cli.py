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
