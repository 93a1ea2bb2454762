"""The executors: a local process pool, a Dask LocalCluster and an existing Dask scheduler give
the same results, seed for seed; a bad --executor or a missing Dask says what to do."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from consensus.cli import app
from consensus.executor import (
    DASK_MISSING,
    Executor,
    ExecutorError,
    chunk_size,
    parse_executor,
)
from consensus.sweep import SeedJob, SweepSettings, run_seed

runner = CliRunner()
TINY = SweepSettings(nodes=3, duration=2.0)


def _tiny_jobs() -> list[SeedJob]:
    return [SeedJob(TINY, a, s) for a in ("raft", "paxos") for s in range(1, 5)]


def _hashes(spec_text: str, workers: int = 2) -> dict[str, str]:
    with Executor(parse_executor(spec_text, workers)) as ex:
        return {r["key"]: r["trace_sha256"] for _, r in ex.map(run_seed, _tiny_jobs())}


@pytest.fixture(scope="module")
def pool_hashes() -> dict[str, str]:
    return _hashes("local")


def test_the_process_pool_runs_every_job_once_and_matches_a_plain_loop(pool_hashes):
    plain = {job.key(): run_seed(job)["trace_sha256"] for job in _tiny_jobs()[::3]}
    assert len(pool_hashes) == len(_tiny_jobs())
    assert all(pool_hashes[k] == v for k, v in plain.items())


def test_a_dask_local_cluster_gives_the_pool_s_results_seed_for_seed(pool_hashes):
    assert _hashes("dask", workers=2) == pool_hashes


def test_an_existing_dask_scheduler_gives_the_pool_s_results_seed_for_seed(pool_hashes):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://")
        with Executor(parse_executor(address)) as ex:
            assert ex.workers == 2
            got = {r["key"]: r["trace_sha256"] for _, r in ex.map(run_seed, _tiny_jobs())}
    assert got == pool_hashes


def test_map_yields_each_index_once_whatever_the_chunking():
    with Executor(parse_executor("local", 2)) as ex:
        out = dict(ex.map(abs, list(range(-20, 0)), chunk=3))
    assert out == {i: 20 - i for i in range(20)}


def test_chunks_stay_small_and_never_empty():
    assert chunk_size(1, 2) == 1
    assert chunk_size(20_000, 2) == 8
    assert chunk_size(100, 4) == 4


@pytest.mark.parametrize(("text", "kind"), [("local", "local"), ("dask", "dask"),
                                            ("tcp://10.0.0.5:8786", "scheduler"),
                                            (" tcp://sched.lab:8786 ", "scheduler")])
def test_executor_values_that_parse(text, kind):
    spec = parse_executor(text, 3)
    assert spec.kind == kind and spec.workers == 3


@pytest.mark.parametrize("text", ["", "threads", "tcp://", "tcp://host", "tcp://host:port",
                                  "tcp://host:99999", "http://host:8786"])
def test_executor_values_that_do_not_parse(text):
    with pytest.raises(ValueError, match=r"local, dask or tcp://|tcp://HOST:PORT"):
        parse_executor(text)


def test_a_bad_executor_is_a_usage_error_naming_the_choices():
    result = runner.invoke(app, ["sweep", "--executor", "threads", "--seeds", "1"])
    assert result.exit_code == 2
    assert "unknown executor 'threads'" in result.output
    assert "local, dask or tcp://HOST:PORT" in result.output


def test_a_missing_dask_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails as if not installed
    with pytest.raises(ExecutorError) as caught, Executor(parse_executor("dask", 1)):
        pass
    assert str(caught.value) == DASK_MISSING
    assert "pip install 'consensus-lab[dask]'" in DASK_MISSING
    result = runner.invoke(app, ["sweep", "--executor", "dask", "--seeds", "1", "--json",
                                 "--out", str(tmp_path / "sweep")])
    assert result.exit_code == 1
    assert not (tmp_path / "sweep").exists()
    assert "consensus-lab[dask]" in result.stdout


def test_pool_workers_leave_when_the_client_is_killed(tmp_path):
    """SIGKILL gives the client no chance to shut its pool down: the workers must notice."""
    import os
    import signal
    import subprocess
    import time

    client = subprocess.Popen(
        [sys.executable, "-m", "consensus", "sweep", "--seeds", "200", "--duration", "3",
         "--workers", "2", "--out", str(tmp_path / "sweep")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        workers: list[str] = []
        while len(workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            workers = subprocess.run(["pgrep", "-P", str(client.pid)], capture_output=True,
                                     text=True).stdout.split()
        assert len(workers) >= 2, "the pool did not start"
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait()

    def alive(pid: str) -> bool:
        try:
            with open(f"/proc/{pid}/status") as f:
                return "zombie" not in f.read()
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 10
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [w for w in workers if alive(w)]
    for pid in left:  # do not leave them running if the check fails
        os.kill(int(pid), signal.SIGKILL)
    assert not left


def test_the_scaling_bench_compares_backends_on_the_same_seeds() -> None:
    from consensus.bench.executors import run, table

    rows = run(1, [1], log=lambda line: None)
    assert [(r["executor"], r["workers"]) for r in rows] == [("local", 1), ("dask", 1)]
    assert all(r["same_hashes"] and r["seeds"] == 2 and r["seeds_per_s"] > 0 for r in rows)
    assert "| dask | 1 |" in table(rows)
