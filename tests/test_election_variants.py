"""The election variants, pinned by the qualitative outcomes the literature reports.

- Howard & Abraham 2020 ("Raft does not guarantee liveness in the face of network faults"):
  servers 1-3 connected to each other, 4 only to 2, 5 only to 3, the leader. Plain Raft never
  keeps a leader (4 and 5 time out and raise the term by turns); PreVote with CheckQuorum does.
  Multi-Paxos behaves the same with the same knobs.
- OmniPaxos (Ng et al., EuroSys 2023), constrained election: follower 1 lags behind a cut to
  the leader, then the leader is cut from everyone and the others from each other, except to
  follower 1. Only the stale follower 1 reaches a majority: with ``election: up-to-date`` no
  one may lead until the heal, with ``election: any`` follower 1 leads (catching up from its
  votes or promises) and commits.
- Safety: ``election`` either way on both algorithms, the random fault schedule over many
  seeds, no violation.

Every run is a seeded simulation, so each outcome is the same on every machine.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from consensus import variants
from consensus.experiment.spec import SpecError, parse_spec, with_variant
from consensus.experiment.workload import SimClient, Workload
from consensus.node import Config
from consensus.sim import Simulation
from consensus.simulate import simulate, sweep_disk_ms
from tests.helpers import wait_for_leader

PLAIN = Config(pre_vote=False, check_quorum=False)


def cut_both_ways(sim: Simulation, pairs: list[tuple[str, str]]) -> None:
    for a, b in pairs:
        sim.cut([a], [b])
        sim.cut([b], [a])


# -- the omission scenario (Howard & Abraham 2020) --------------------------------------------


def omission(algorithm: str, config: Config, seed: int) -> tuple[int, int]:
    """Leaders seen and client operations completed during 5 s under the omission cuts."""
    sim = Simulation(algorithm, 5, seed=seed, config=config)
    leader = wait_for_leader(sim)
    # Relative to the leader (the paper's server 3): a, b complete the connected trio; c
    # (server 4) reaches only b, d (server 5) only the leader.
    a, b, c, d = (n for n in sim.ids if n != leader)
    cut_both_ways(sim, [(c, a), (c, leader), (c, d), (d, a), (d, b)])
    before = len(sim.leaders_seen)
    load = SimClient("c1", sim, Workload())
    load.start(sim.now)
    sim.run(sim.now + 5000)
    load.stop()
    assert sim.finish() == []
    return len(sim.leaders_seen) - before, sum(1 for op in load.history if op.outcome == "ok")


@pytest.mark.parametrize("algorithm", ["raft", "paxos"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_omission_plain_never_keeps_a_leader(algorithm, seed):
    """Plain Raft, as the paper says; plain Multi-Paxos too (a higher ballot from the
    partly connected nodes preempts the leader just as a higher term deposes it)."""
    changes, _ = omission(algorithm, PLAIN, seed)
    assert changes >= 5, f"plain {algorithm} settled ({changes} new leaders in 5 s)"


@pytest.mark.parametrize("algorithm", ["raft", "paxos"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_omission_pre_vote_and_check_quorum_keep_the_leader(algorithm, seed):
    changes, ok = omission(algorithm, Config(pre_vote=True, check_quorum=True), seed)
    assert changes == 0
    assert ok > 100


# -- constrained election (OmniPaxos) ---------------------------------------------------------


def constrained(algorithm: str, election: str, seed: int = 1) -> dict[str, object]:
    """Stage constrained election under load; report who led and what committed while the
    fault lasted, and after the heal."""
    sim = Simulation(algorithm, 5, seed=seed, config=Config(election=election))
    leader = wait_for_leader(sim)
    f1, *rest = (n for n in sim.ids if n != leader)
    clients = [SimClient(f"c{i}", sim, Workload()) for i in range(1, 5)]
    for c in clients:
        c.start(sim.now)
    sim.run(sim.now + 300)
    cut_both_ways(sim, [(leader, f1)])
    sim.run(sim.now + 100)  # half an election timeout or so: f1 falls behind
    lag = sim.status(rest[0]).commit_index - sim.status(f1).commit_index  # type: ignore[union-attr]
    # Only f1 can reach a majority now (itself and the three others).
    sim.set_blocked({(x, y) for x in sim.ids for y in sim.ids
                     if x != y and (f1 not in (x, y) or leader in (x, y))},
                    "constrained election")
    sim.run(sim.now + 20)  # what was in flight lands (the latency is 1-5 ms)
    committed_before = max(st.commit_index for st in sim.statuses.values())
    seen_before = set(sim.leaders_seen)
    sim.run(sim.now + 3000)
    during = sorted(n for term, n in sim.leaders_seen - seen_before)
    committed_during = max(st.commit_index for st in sim.statuses.values()) - committed_before
    sim.heal()
    sim.run(sim.now + 2000)
    for c in clients:
        c.stop()
    sim.run(sim.now + 1000)
    return {"f1": f1, "lag": lag, "leaders_during": during,
            "committed_during": committed_during, "leader_after": sim.leader(),
            "violations": sim.finish()}


@pytest.mark.parametrize("algorithm", ["raft", "paxos"])
def test_constrained_election_up_to_date_has_no_leader_until_the_heal(algorithm):
    out = constrained(algorithm, "up-to-date")
    assert out["lag"] > 0, "follower 1 must lag for the scenario to mean anything"
    assert out["leaders_during"] == [] and out["committed_during"] == 0
    assert out["leader_after"] is not None and out["violations"] == []


@pytest.mark.parametrize("algorithm", ["raft", "paxos"])
def test_constrained_election_any_elects_the_stale_follower_which_commits(algorithm):
    out = constrained(algorithm, "any")
    assert out["lag"] > 0
    assert out["leaders_during"] and set(out["leaders_during"]) == {out["f1"]}
    assert out["committed_during"] > 0
    assert out["violations"] == []


# -- safety over the random sweep -------------------------------------------------------------


@pytest.mark.parametrize("election", ["any", "up-to-date"])
@pytest.mark.parametrize("algorithm", ["raft", "paxos"])
def test_either_election_rule_is_safe_under_random_faults(algorithm, election):
    """The sweep's schedule (crashes, restarts, pauses, partitions, one-way cuts, loss, the
    disk delays of one seed in four) with pre-vote and check-quorum by seed, as in sweep_run."""
    for seed in range(40, 52):
        config = Config(pre_vote=seed % 2 == 0, check_quorum=seed % 3 != 0, election=election)
        result = simulate(algorithm, 5, 6.0, seed, "random", config=config, settle_s=5.0,
                          disk_ms=sweep_disk_ms(seed))
        assert result.violations == [], (seed, result.violations[:3])
        assert result.stalled == [], (seed, result.stalled[:3])


# -- switches and their refusal ---------------------------------------------------------------


def test_pairs_parse_to_the_config_field_types():
    assert variants.parse_pairs(["election=any", "pre-vote=false", "check_quorum=on"]) == {
        "election": "any", "pre_vote": False, "check_quorum": True}
    config = variants.apply(Config(), "raft", {"election": "any", "pre_vote": False})
    assert (config.election, config.pre_vote, config.check_quorum) == ("any", False, True)
    assert variants.label({"pre_vote": False, "election": "any"}) == "election=any,pre_vote=false"


@pytest.mark.parametrize(("algorithm", "variant", "message"), [
    ("null", {"election": "any"}, "null has no variant 'election' (only raft, paxos)"),
    ("raft", {"election": "sometimes"}, "raft does not offer election=sometimes; election "
                                        "accepts up-to-date, any"),
    ("paxos", {"lease": True}, "paxos has no variant 'lease'; its variants: alpha, check_quorum"),
])
def test_an_unsupported_key_or_value_is_refused_by_name(algorithm, variant, message):
    with pytest.raises(variants.VariantError) as info:
        variants.apply(Config(), algorithm, variant)
    assert message in str(info.value)


@pytest.mark.parametrize(("pair", "message"), [
    ("election", "takes key=value"),
    ("pre_vote=maybe", "pre_vote=maybe"),
    ("frobnicate=1", "unknown variant 'frobnicate'"),
])
def test_a_bad_pair_is_refused(pair, message):
    with pytest.raises(variants.VariantError, match=message):
        variants.parse_pairs([pair])


def test_the_spec_block_is_checked_with_field_and_line():
    spec = parse_spec("name: v\nvariant:\n  pre_vote: false\n  check_quorum: false\n"
                      "  election: any\n")
    assert spec.config("paxos") == Config(pre_vote=False, check_quorum=False, election="any")
    with pytest.raises(SpecError) as info:
        parse_spec("name: v\nvariant:\n  election: sometimes\n  pre_vot: false\n")
    assert info.value.errors == [
        "variant.election (line 3): raft does not offer election=sometimes; election accepts "
        "up-to-date, any",
        "variant.pre_vot (line 4): unknown variant 'pre_vot' (variants: alpha, check_quorum, "
        "election, lease_drift, membership_change, pre_vote, read_path, snapshot_entries)",
    ]
    with pytest.raises(SpecError, match=r"variant.pre_vote \(line 5\): pre_vote is set under "
                                        r"timing too"):
        parse_spec("name: v\ntiming:\n  pre_vote: false\nvariant:\n  pre_vote: true\n")


def test_the_command_line_variant_wins_over_the_file():
    spec = parse_spec("name: v\ntiming:\n  pre_vote: false\nvariant:\n  election: any\n")
    spec = with_variant(spec, {"pre_vote": True})
    assert spec.variant == {"election": "any", "pre_vote": True}
    assert spec.config("raft").pre_vote is True


def test_simulate_refuses_a_variant_an_algorithm_lacks_with_exit_2():
    run = subprocess.run([sys.executable, "-m", "consensus", "simulate", "--algorithm", "null",
                          "--duration", "0.1", "--variant", "election=any", "--json"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "null has no variant 'election'" in run.stdout


def test_the_new_fields_cross_the_wire():
    """A vote carrying entries, a Prepare ranking its log, a Nack for a log behind: the codec
    carries them and validates a vote's entries like AppendEntries'."""
    from consensus.codec import DecodeError, decode_message, encode_message
    from consensus.messages import Command
    from consensus.paxos.messages import Ballot, Nack, Prepare
    from consensus.raft.messages import Entry, RequestVoteReply

    cmd = Command("c1", 1, "SET x = 1")
    vote = RequestVoteReply(src="n2", dst="n1", term=4, granted=True, prev_log_index=2,
                            prev_log_term=1, entries=(Entry(3, 3, cmd), Entry(3, 4, None)))
    prepare = Prepare(src="n1", dst="n2", ballot=Ballot(5, 0, "n1"), first_slot=3,
                      log_ballot=Ballot(4, 2, "n3"), last_slot=9)
    nack = Nack(src="n2", dst="n1", ballot=Ballot(5, 0, "n1"), promised=Ballot(4, 2, "n3"),
                behind=True)
    for msg in (vote, prepare, nack):
        assert decode_message(encode_message(msg)) == msg
    assert nack.rejection() == "n2 Nack to n1: its log is behind n2's"
    bad = RequestVoteReply(src="n2", dst="n1", term=2, granted=True, prev_log_index=2,
                           prev_log_term=1, entries=(Entry(3, 3, cmd),))
    with pytest.raises(DecodeError):
        decode_message(encode_message(bad))


def test_node_processes_on_the_bus_are_started_with_the_variant(tmp_path):
    """A bus run's config reaches every node process as --variant flags (the knobs only;
    defaults are not repeated), and the node command refuses one its algorithm lacks."""
    from consensus.cluster import node_command
    from consensus.experiment.bus import BusCluster, BusOptions

    config = Config(pre_vote=False, election="any")
    cluster = BusCluster("paxos", ("n1", "n2", "n3"), config, tmp_path / "nodes",
                         BusOptions("mqtt://127.0.0.1:1"))
    assert cluster.state.variant == {"election": "any", "pre_vote": False}
    command = node_command(cluster.state, "n1")
    assert command[-4:] == ["--variant", "election=any", "--variant", "pre_vote=false"]
    assert BusCluster.attach(cluster.state).config == config
    run = subprocess.run([sys.executable, "-m", "consensus", "node", "--algorithm", "raft",
                          "--id", "n1", "--peers", "n1,n2,n3", "--broker", "mqtt://127.0.0.1:1",
                          "--data-dir", str(tmp_path), "--variant", "election=sometimes"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "raft does not offer election=sometimes" in run.stderr


def test_cluster_up_refuses_a_variant_before_starting_anything(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from consensus.cli import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["cluster", "up", "--algorithm", "paxos",
                                      "--variant", "read_path=quorum"])
    assert result.exit_code == 2
    assert "paxos does not offer read_path=quorum" in result.output
    assert not (tmp_path / ".consensus-lab").exists()
