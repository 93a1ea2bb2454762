"""Experiment files: the library validates; bad files get every error with field and line."""

from pathlib import Path

import pytest

from consensus.experiment.spec import SpecError, load_spec, parse_spec

EXPERIMENTS = sorted(Path(__file__).resolve().parent.parent.glob("experiments/*.yaml"))


def test_the_library_is_there():
    names = {p.stem for p in EXPERIMENTS}
    assert {"quickstart", "leader-crash", "minority-partition", "majority-partition",
            "isolated-leader", "bridge", "majorities-ring", "flaky-network",
            "rolling-restarts", "quiz1-quorum", "quiz2-heartbeat", "quiz3-fixed-timeouts",
            "quiz3-randomised-timeouts", "quiz4-stale-leader", "load-sweep", "quorum-loss",
            "constrained-election", "chained", "omission", "replace-follower",
            "replace-leader", "replace-majority", "grow-3-to-5", "shrink-5-to-3",
            "removed-server", "transfer-leadership", "omnipaxos-reconfiguration"} <= names


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_experiment_validates_and_says_what_it_asks(path):
    spec = load_spec(path)
    assert spec.name == path.stem
    assert len(spec.description) > 40, "each file explains the question it answers"
    assert set(spec.algorithms) == {"raft", "paxos"}


def test_the_issue_example_is_the_leader_crash_file():
    spec = load_spec(Path(__file__).resolve().parent.parent / "experiments/leader-crash.yaml")
    assert spec.workload.rate == 400 and spec.workload.key_distribution == "zipfian"
    assert [f.action for f in spec.faults] == ["crash", "restart", "partition", "heal"]
    assert spec.faults[2].partition == [["n1", "n2"], ["n3", "n4", "n5"]]


BAD = """\
name: bad name
algorithms: [raft, zab]
cluster:
  nodes: 0
timing:
  election_timeout_ms: [300, 150]
workload:
  rate: -3
  colour: blue
faults:
  - {at: 1, crash: n9}
  - {at: 2, loss: 0.5}
  - {at: 3}
  - {at: 4, partition: donut}
"""


def test_a_bad_file_gets_every_error_at_once_with_field_and_line():
    with pytest.raises(SpecError) as info:
        parse_spec(BAD, "bad.yaml")
    errors = info.value.errors
    expected = [
        ("name (line 1)", "pattern"),
        ("algorithms[1] (line 2)", "'raft' or 'paxos'"),
        ("cluster.nodes (line 4)", "greater than or equal to 1"),
        ("timing.election_timeout_ms (line 6)", "above the maximum"),
        ("workload.rate (line 8)", "greater than 0"),
        ("workload.colour (line 9)", "unknown key"),
        ("faults[1] (line 12)", "needs a 'duration'"),
        ("faults[2] (line 13)", "exactly one of"),
        ("faults[3] (line 14)", "majorities-ring"),
    ]
    for where, what in expected:
        assert any(e.startswith(where) and what in e for e in errors), (where, errors)
    assert "bad.yaml" in str(info.value)


def test_unknown_node_names_are_refused():
    with pytest.raises(SpecError, match="names n9"):
        parse_spec("name: x\nfaults:\n  - {at: 1, crash: n9}\n")


def test_faults_must_fall_inside_the_workload():
    with pytest.raises(SpecError, match="not before the end"):
        parse_spec("name: x\nworkload: {duration_s: 5}\nfaults:\n  - {at: 6, heal: true}\n")


def test_not_yaml_and_not_a_mapping():
    with pytest.raises(SpecError, match="not valid YAML"):
        parse_spec("name: [unclosed")
    with pytest.raises(SpecError, match="must be a YAML mapping"):
        parse_spec("- just\n- a list\n")


def test_fault_errors_name_the_fault_field_and_its_line():
    text = ("name: x\n"
            "workload: {duration_s: 5}\n"
            "faults:\n"
            "  - {at: 1, heal: true}\n"
            "  - at: 2\n"
            "    crash: n9\n"
            "  - {at: 6, heal: true}\n")
    with pytest.raises(SpecError) as info:
        parse_spec(text, "faults.yaml")
    errors = info.value.errors
    assert len(errors) == 2, errors
    assert errors[0].startswith("faults[1].crash (line 6): names n9"), errors
    assert errors[1].startswith("faults[2].at (line 7): 6s is not before the end"), errors
    assert not any("top level" in e for e in errors)


def test_mqtt_tls_needs_the_runs_own_broker() -> None:
    assert parse_spec("name: t\ntransport: mqtt\nmqtt: {tls: true}\n").mqtt.tls
    with pytest.raises(SpecError, match=r"mqtt \(line 2\): tls: true needs each run's own"):
        parse_spec("name: t\nmqtt: {tls: true, broker: 'mqtt://127.0.0.1:1883'}\n")
