"""Start mosquitto from a config text for a test, on an address of the test's choosing.

``consensus.broker.start_broker`` serves 127.0.0.1 with the project's own listener; the TLS
and multi-host tests need other listeners (a TLS one, one on a bridge address), so they write
the config themselves and start mosquitto here. The process is ours: stopped by its pid.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from consensus.broker import find_mosquitto


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@contextmanager
def mosquitto(config: str, host: str, port: int, workdir: Path,
              timeout_s: float = 10.0) -> Iterator[subprocess.Popen[bytes]]:
    """Run mosquitto with ``config`` until the block ends; ready once ``host:port`` accepts."""
    binary = find_mosquitto()
    assert binary is not None, "mosquitto is not installed"
    conf = workdir / "mosquitto.conf"
    conf.write_text(config)
    conf.chmod(0o644)  # run as root, mosquitto drops to its own user after reading it
    log = workdir / "mosquitto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        end = time.monotonic() + timeout_s
        while not accepts(host, port):
            if proc.poll() is not None or time.monotonic() > end:
                raise AssertionError(f"mosquitto did not serve {host}:{port}:\n"
                                     f"{log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.02)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def log_of(workdir: Path) -> str:
    path = workdir / "mosquitto.log"
    return path.read_text(errors="replace") if path.exists() else ""
