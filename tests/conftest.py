"""Suite-wide hooks: a run that skipped tests says so at the end, with why and how to fix it.

Tests that need software from outside the Python environment (mosquitto, its command-line
clients, Chromium, root with `ip netns`) skip when it is missing, so the suite still runs on
a fresh machine. That must not pass unnoticed: the terminal summary lists each skip reason
with its count, then what is missing here and the command that installs it. ``.ci/run``
installs everything and sets ``CONSENSUS_LAB_REQUIRE_ALL=1``, which turns a missing
requirement into a failed run.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from consensus.broker import find_mosquitto

STRICT_ENV = "CONSENSUS_LAB_REQUIRE_ALL"


@dataclass(frozen=True, slots=True)
class Requirement:
    name: str
    needed_by: str
    install: str
    present: Callable[[], bool]


def _chromium() -> bool:
    # The same lookup as tests/test_dashboard_browser.py.
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return os.path.exists(path)


def _netns_unavailable() -> str | None:
    # The same probe tests/test_multihost.py skips on (it makes and deletes a namespace).
    from tests.netns import unavailable

    return unavailable()


REQUIREMENTS = (
    Requirement("mosquitto", "the tests against a real broker (the rest use amqtt)",
                "apt-get install mosquitto", lambda: find_mosquitto() is not None),
    Requirement("mosquitto-clients", "the cluster driven by mosquitto_pub/mosquitto_sub",
                "apt-get install mosquitto-clients", lambda: shutil.which("mosquitto_pub")
                is not None),
    Requirement("chromium", "the dashboard's browser tests", "apt-get install chromium",
                _chromium),
    Requirement("root + ip netns", "the multi-host tests (nodes in network namespaces)",
                "run the suite as root with iproute2: apt-get install iproute2",
                lambda: _netns_unavailable() is None),
    Requirement("playwright", "the dashboard's browser tests", "pip install -e '.[dev]'",
                lambda: importlib.util.find_spec("playwright") is not None),
)


def missing_requirements() -> list[Requirement]:
    return [r for r in REQUIREMENTS if not r.present()]


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ")


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")  # a pytest-xdist worker: the controller reports


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    missing = missing_requirements()
    if not skipped and not missing:
        return
    terminalreporter.write_sep("=", f"{len(skipped)} skipped", yellow=True)
    for reason, count in Counter(_reason(r) for r in skipped).most_common():
        terminalreporter.write_line(f"{count:4d} skipped: {reason}")
    if missing:
        terminalreporter.write_line("missing on this machine (Debian; `sudo .ci/run` installs "
                                    "them all and runs the suite):")
        for r in missing:
            terminalreporter.write_line(f"  {r.name}: {r.needed_by}; {r.install}")
        if os.environ.get(STRICT_ENV):
            terminalreporter.write_line(f"{STRICT_ENV} is set: a missing requirement fails "
                                        "the run", red=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get(STRICT_ENV) and not _is_worker(session.config) and missing_requirements():
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
