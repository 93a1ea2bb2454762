"""Where runs execute: a local process pool, a Dask LocalCluster, or an existing Dask scheduler.

One abstraction for every command that runs many independent, CPU-bound simulations (``sweep``,
``run``, ``gallery``): :meth:`Executor.map` takes a picklable function and a list of jobs and
yields ``(index, result)`` pairs *as they complete*, so the caller can show progress, write
each result at once and stop early. Jobs are sent in small chunks: a sweep seed takes a
fraction of a second, and one round trip per seed would cost more than the seed itself on
Dask (a few ms per task) and noticeably on a process pool.

The worker gets only the job (settings, not a folder): results come back to the client, which
writes them, so no shared file system is assumed. Dask is optional (``pip install
'consensus-lab[dask]'``) and imported only when a Dask executor is asked for.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar

J = TypeVar("J")
R = TypeVar("R")

DASK_MISSING = ("the Dask executors need dask[distributed]: pip install 'consensus-lab[dask]'")
EXECUTOR_HELP = ("Where runs execute: 'local' (a process pool on this machine), 'dask' (a Dask "
                 "LocalCluster started for this command: processes, one thread each) or "
                 "tcp://HOST:PORT (an existing Dask scheduler; its workers do the work).")

# Chunks per worker the jobs are cut into: enough that the last chunks finish close together
# (and progress moves), few enough that per-chunk overhead stays small.
_CHUNKS_PER_WORKER = 8
_MAX_CHUNK = 8


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True, slots=True)
class ExecutorSpec:
    """A parsed ``--executor`` value and ``--workers`` count."""

    kind: str  # local | dask | scheduler
    workers: int
    address: str | None = None  # the scheduler's, for kind == "scheduler"

    def describe(self) -> str:
        if self.kind == "scheduler":
            return f"dask scheduler {self.address}"
        if self.kind == "dask":
            return f"dask LocalCluster ({self.workers} workers)"
        return f"local process pool ({self.workers} workers)"

    def to_option(self) -> str:
        """The ``--executor`` value that selects this executor again."""
        return self.address if self.kind == "scheduler" and self.address else self.kind


def parse_executor(text: str, workers: int | None = None) -> ExecutorSpec:
    """``local``, ``dask`` or ``tcp://host:port``; anything else is a ValueError saying so."""
    value = text.strip()
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    n = workers or default_workers()
    if value in ("local", "dask"):
        return ExecutorSpec(value, n)
    for scheme in ("tcp://", "tls://"):
        if value.startswith(scheme):
            host, _, port = value[len(scheme):].rpartition(":")
            if host and port.isdigit() and 0 < int(port) < 65536:
                return ExecutorSpec("scheduler", n, value)
            raise ValueError(f"a scheduler address is {scheme}HOST:PORT, e.g. "
                             f"{scheme}10.0.0.5:8786; got {text!r}")
    raise ValueError(f"unknown executor {text!r}: choose local, dask or tcp://HOST:PORT "
                     f"(an existing Dask scheduler)")


def chunk_size(jobs: int, workers: int) -> int:
    """Jobs per chunk: about ``_CHUNKS_PER_WORKER`` chunks per worker, at most ``_MAX_CHUNK``."""
    return max(1, min(_MAX_CHUNK, -(-jobs // (workers * _CHUNKS_PER_WORKER))))


def _run_chunk(fn: Callable[[Any], Any], chunk: Sequence[tuple[int, Any]]) -> list[tuple[int, Any]]:
    return [(i, fn(job)) for i, job in chunk]


def _worker_init() -> None:
    # Ctrl-C is the client's to handle: it cancels what has not started and keeps what
    # finished. Workers that died of the same SIGINT would break the pool instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A client killed outright (SIGKILL, SIGTERM) cannot shut the pool down, and its workers
    # would wait on the job queue forever: each leaves when its parent is gone.
    parent = os.getppid()
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


class Executor:
    """Runs ``fn`` over jobs on the chosen backend; a context manager that owns its workers."""

    def __init__(self, spec: ExecutorSpec) -> None:
        self.spec = spec
        self.workers = spec.workers
        self._pool: ProcessPoolExecutor | None = None
        self._client: Any = None
        self._cluster: Any = None
        self._pending: list[Any] = []  # this map's futures (one per chunk)
        self._consumed: set[Any] = set()  # local futures whose results were yielded

    def __enter__(self) -> Executor:
        if self.spec.kind == "local":
            self._pool = ProcessPoolExecutor(self.spec.workers, initializer=_worker_init)
            return self
        distributed = _import_distributed()
        if self.spec.kind == "dask":
            self._cluster = distributed.LocalCluster(
                n_workers=self.spec.workers, threads_per_worker=1, processes=True,
                dashboard_address=None, silence_logs=40)  # logging.ERROR
            self._client = distributed.Client(self._cluster)
        else:
            try:
                self._client = distributed.Client(self.spec.address, timeout="10s")
            except OSError as exc:
                raise ExecutorError(f"cannot reach the Dask scheduler at {self.spec.address}: "
                                    f"{exc}") from None
            threads = sum(w.get("nthreads", 1) for w in
                          self._client.scheduler_info().get("workers", {}).values())
            self.workers = threads or 1
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()

    def describe(self) -> str:
        if self.spec.kind == "scheduler":
            return f"dask scheduler {self.spec.address} ({self.workers} worker threads)"
        return self.spec.describe()

    def map(self, fn: Callable[[J], R], jobs: Sequence[J],
            chunk: int | None = None) -> Iterator[tuple[int, R]]:
        """Yield ``(index into jobs, fn(job))`` as chunks complete (any order). A job that
        raises ends the iteration with that exception; :meth:`cancel` drops what is left."""
        if not jobs:
            return
        size = chunk or chunk_size(len(jobs), self.workers)
        indexed = list(enumerate(jobs))
        chunks = [indexed[i:i + size] for i in range(0, len(indexed), size)]
        if self._pool is not None:
            yield from self._map_local(fn, chunks)
        elif self._client is not None:
            yield from self._map_dask(fn, chunks)
        else:
            raise RuntimeError("use the Executor in a with block")

    def map_into(self, fn: Callable[[J], R], jobs: Sequence[J],
                 take: Callable[[int, R], None], *, chunk: int | None = None,
                 on_interrupt: Callable[[], None] | None = None) -> bool:
        """Hand each ``(index into jobs, fn(job))`` to ``take`` as it completes; True if
        Ctrl-C came. Then what has not started is cancelled, ``on_interrupt`` is called, and
        what the running chunks still deliver is taken too, so finished work is kept (a
        second Ctrl-C drops it)."""
        try:
            for i, result in self.map(fn, jobs, chunk):
                take(i, result)
        except KeyboardInterrupt:
            self.cancel()
            if on_interrupt is not None:
                on_interrupt()
            with contextlib.suppress(KeyboardInterrupt):
                for i, result in self.drain():
                    take(i, result)
            return True
        return False

    def _map_local(self, fn: Callable[[J], R],
                   chunks: list[list[tuple[int, J]]]) -> Iterator[tuple[int, R]]:
        assert self._pool is not None
        self._pending = [self._pool.submit(_run_chunk, fn, c) for c in chunks]
        yield from self._collect()

    def _collect(self) -> Iterator[tuple[int, R]]:
        waiting = set(self._pending)
        while waiting:
            done, waiting = wait(waiting, return_when=FIRST_COMPLETED)
            for future in done:
                if future.cancelled() or future in self._consumed:
                    continue
                self._consumed.add(future)
                yield from future.result()

    def drain(self) -> Iterator[tuple[int, R]]:
        """After :meth:`cancel` (say on Ctrl-C, which ends :meth:`map`'s iteration): yield
        what the chunks already running still deliver, so finished work is kept. On Dask,
        cancelling stops running chunks too, so only results already in are yielded."""
        if self._client is not None:
            return
        yield from self._collect()

    def _map_dask(self, fn: Callable[[J], R],
                  chunks: list[list[tuple[int, J]]]) -> Iterator[tuple[int, R]]:
        distributed = _import_distributed()
        futures = [self._client.submit(_run_chunk, fn, c, pure=False) for c in chunks]
        self._pending = futures
        for future in distributed.as_completed(futures):
            if future.cancelled():
                continue
            yield from future.result()

    def cancel(self) -> None:
        """Drop every job that has not started (running ones finish and are discarded)."""
        if self._client is not None and self._pending:
            self._client.cancel(self._pending)
            self._pending = []
        else:
            for future in self._pending:
                future.cancel()


def parallel(spec: ExecutorSpec, workers: int | None, jobs: int) -> ExecutorSpec | None:
    """``spec`` for ``jobs`` jobs, or None to run them one after another in this process: a
    local pool of one worker would only add a process. Without ``--workers``: one worker
    per core, at most one per job."""
    n = workers or max(1, min(default_workers(), jobs))
    if spec.kind == "local" and n == 1:
        return None
    return ExecutorSpec(spec.kind, n, spec.address)


@contextlib.contextmanager
def started(spec: ExecutorSpec | None) -> Iterator[Executor | None]:
    """The executor ``spec`` describes, running for the block (None stays None)."""
    if spec is None:
        yield None
        return
    with Executor(spec) as running:
        yield running


class ExecutorError(RuntimeError):
    """The executor could not be started (Dask missing, scheduler unreachable)."""


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ExecutorError(DASK_MISSING) from None
    return distributed
