"""The in-process load generator end to end, in a quick form: a real 3-node cluster on a real
mosquitto, the generator inside the leader's process, a few hundred operations. No timing
assertions: what is checked is that the requests are answered in that process (never
published), and that bad commands on its socket get an error, not a crash."""

from __future__ import annotations

import json
import socket

import pytest

from consensus.broker import find_mosquitto

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="needs mosquitto")


@pytest.fixture(scope="module")
def broker():
    from consensus.broker import start_broker

    handle = start_broker(prefer="mosquitto")
    yield handle
    handle.stop()


def test_the_leader_answers_its_own_process_load_and_publishes_no_reply(broker):
    from consensus.bench.inprocess import socket_path
    from consensus.bench.throughput import BusCluster

    cluster = BusCluster("raft", 3, broker.url, fsync=False, load="in-process",
                         broker_pid=broker.pid)
    try:
        assert cluster.label == "raft 3n in-process" and cluster.gens is None
        quiet = cluster.settle()
        assert quiet.pending == 0
        step = cluster.step(200, 0.5)
        # Answered at all means answered in the leader's process: these client ids have no
        # reply route on the bus (their requests never crossed it).
        assert step.offered == 100 and step.acked > 0
        assert step.extra["redirects"] == 0 and step.extra["errors"] == 0
        # The generator lives in the leader: no load generator processes, no client CPU.
        assert set(step.extra["cpu_us_per_op"]) == {"leader", "follower", "broker"}
        cluster.settle()
        # Every node serves the socket (any of them may lead); a bad command is answered
        # with an error and the connection stays usable.
        path = socket_path(cluster.state.directory, cluster.leader)
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(path))
            f = s.makefile("rwb")
            for bad in (b"not json\n", b'{"rate": -5, "duration": 1, "start_at": 0}\n'):
                f.write(bad)
                f.flush()
                assert "bad load command" in json.loads(f.readline())["error"]
            f.write(b'{"outstanding": true}\n')
            f.flush()
            assert json.loads(f.readline()) == {"outstanding": 0}
        assert oct(path.stat().st_mode & 0o777) == "0o600"
    finally:
        cluster.close()


def test_an_unknown_load_mode_is_refused_before_anything_starts(broker):
    from consensus.bench.throughput import BusCluster

    with pytest.raises(ValueError, match="load must be one of bus, in-process"):
        BusCluster("raft", 3, broker.url, load="carrier-pigeon")
