"""Durable state: the records a node persisted, in memory (simulator) or in a file (runtime).

A node's ``Ready.persist`` records (Raft's HardState/LogAppend/CommitMark, Paxos's
Promised/AcceptedRun/...) are appended in order; on restart ``load()`` returns them so the
node's ``restore`` can fold them back. The driver appends *before* it sends the messages that
depend on them, and :class:`FileStorage` fsyncs before ``append`` returns (``fsync=False``
trades that guarantee for speed, for studying the cost and the danger).

Compaction: a record whose class says ``compacts = True`` (a node's snapshot record) holds
everything the node needs from the records before it, so appending one *replaces* them: the
memory backend drops them, the file backend writes the snapshot (and what follows it in the
same batch) to a new file, fsyncs it and renames it over the old one (then fsyncs the folder),
so a crash leaves either the old log or the new one, never a mix.

Runs: a leader appends one entry record per client request, but a drain of a hundred requests
need not be a hundred lines. A record class with ``continues(previous)`` and
``joined(run)`` (Raft's LogAppend, Paxos's AcceptedRun: entries or slots that carry on where
the previous record stopped) is written as one record per run of adjacent continuations,
which restores to the same state. :func:`coalesce` does it, on the file backend only.

File format (a write-ahead log): one record per line, ``<crc32 as 8 hex digits> <json>\\n``.
A crash can tear only the last line: a last line with no newline or a bad checksum is
discarded with a warning and cut off the file. A bad line anywhere else means the file was
damaged after it was written, and loading stops with :class:`CorruptLogError` rather than
silently misreading a vote or a promise.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from consensus.codec import DecodeError, decode_record, encode_record

log = logging.getLogger(__name__)


class CorruptLogError(RuntimeError):
    """A write-ahead log damaged somewhere other than its last record."""


class Storage(Protocol):
    def load(self) -> list[Any]: ...

    def append(self, records: Sequence[Any], *, sync: bool = True) -> None: ...

    def close(self) -> None: ...


def compacts(record: Any) -> bool:
    """Whether ``record`` supersedes every record before it (a snapshot; module doc)."""
    return getattr(record, "compacts", False)


def coalesce(records: Sequence[Any]) -> list[Any]:
    """``records`` with each run of adjacent continuations joined into one record (module
    doc); everything else, and the order, unchanged."""
    runs: list[list[Any]] = []
    for record in records:
        last = runs[-1][-1] if runs else None
        if (last.__class__ is record.__class__ and hasattr(record, "continues")
                and record.continues(last)):
            runs[-1].append(record)
        else:
            runs.append([record])
    return [run[0] if len(run) == 1 else run[0].joined(run) for run in runs]


def _after_last_compaction(records: Sequence[Any]) -> int:
    """The position of the last compacting record in ``records``, or -1 if none."""
    for i in range(len(records) - 1, -1, -1):
        if compacts(records[i]):
            return i
    return -1


def needs_sync(record: Any) -> bool:
    """Whether ``record`` must be fsynced before the output that follows it may leave.

    Record classes say ``sync = False`` for volatile state persisted only as a convenience
    (the commit index); everything else (terms, votes, promises, log entries) must be durable.
    """
    return getattr(record, "sync", True)


class MemoryStorage:
    """Records kept in a list (``records``, or a new one): what survives a simulated crash."""

    def __init__(self, records: list[Any] | None = None) -> None:
        self.records: list[Any] = [] if records is None else records

    def load(self) -> list[Any]:
        return list(self.records)

    def append(self, records: Sequence[Any], *, sync: bool = True) -> None:
        cut = _after_last_compaction(records)
        if cut >= 0:
            del self.records[:]
            records = records[cut:]
        self.records.extend(records)

    def close(self) -> None:
        pass


class FileStorage:
    """An append-only, checksummed, fsynced log file; see the module docstring."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.torn_records = 0  # discarded on load: how many torn tails were found
        self._file = open(self.path, "ab")  # noqa: SIM115 - held open for the node's life
        if fsync:
            _fsync_dir(self.path.parent)

    def load(self) -> list[Any]:
        """Every intact record in order; a torn last record is cut off the file."""
        *lines, tail = self.path.read_bytes().split(b"\n")  # tail: bytes after the last newline
        records: list[Any] = []
        offset = 0
        for number, line in enumerate(lines, 1):
            try:
                records.append(_decode_line(line))
            except ValueError as exc:
                if number < len(lines) or tail:
                    raise CorruptLogError(f"{self.path}: record {number} is damaged ({exc}); "
                                          f"refusing to guess what this node promised") from exc
                self._discard_tail(offset, f"record {number}: {exc}")
                return records
            offset += len(line) + 1
        if tail:
            self._discard_tail(offset, f"record {len(lines) + 1} has no newline")
        return records

    def append(self, records: Sequence[Any], *, sync: bool = True) -> None:
        """Write ``records``; fsync too unless ``sync=False`` (see :func:`needs_sync`)."""
        if not records:
            return
        cut = _after_last_compaction(records)
        if cut >= 0:
            self._rewrite(records[cut:])
            return
        self._file.write(b"".join(_encode_line(r) for r in coalesce(records)))
        self._file.flush()
        if self.fsync and sync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def size(self) -> int:
        """Bytes in the log file now."""
        self._file.flush()
        return self.path.stat().st_size

    def _rewrite(self, records: Sequence[Any]) -> None:
        """Replace the whole log by ``records`` atomically (compaction; module doc). Always
        fsynced when ``fsync`` is on, whatever the records' ``sync``: the old log is gone."""
        tmp = self.path.with_name(self.path.name + ".compact")
        with open(tmp, "wb") as f:
            f.write(b"".join(_encode_line(r) for r in records))
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        self._file.close()
        os.replace(tmp, self.path)
        if self.fsync:
            _fsync_dir(self.path.parent)
        self._file = open(self.path, "ab")  # noqa: SIM115 - held open for the node's life

    def _discard_tail(self, size: int, why: str) -> None:
        log.warning("%s: discarding a torn last record (%s)", self.path, why)
        self.torn_records += 1
        self._file.flush()
        os.truncate(self.path, size)
        if self.fsync:
            os.fsync(self._file.fileno())


def _encode_line(record: Any) -> bytes:
    body = encode_record(record)
    return b"%08x %s\n" % (zlib.crc32(body), body)


def _decode_line(line: bytes) -> Any:
    crc, _, body = line.partition(b" ")
    if len(crc) != 8 or not body:
        raise ValueError("malformed line")
    try:
        expected = int(crc, 16)
    except ValueError:
        raise ValueError("malformed checksum") from None
    if zlib.crc32(body) != expected:
        raise ValueError("checksum mismatch")
    try:
        return decode_record(body)
    except DecodeError as exc:
        raise ValueError(str(exc)) from None


def _fsync_dir(path: Path) -> None:
    """Make the file's directory entry durable too (a new file could vanish otherwise)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
