"""The dashboard in a real browser: headless Debian Chromium driven by Playwright.

Playwright's own browser download is not used: the tests launch ``/usr/bin/chromium`` (or
``$CHROMIUM``), and skip, saying why, only when no Chromium is installed. The server runs in
a thread on an ephemeral port; every wait is for a condition on the page, with a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("aiohttp")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

from consensus.dashboard.server import serve  # noqa: E402
from consensus.dashboard.sim_backend import SimBackend  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
WAIT_MS = 20_000

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server_url() -> Iterator[str]:
    """A sim dashboard in a background thread, running at real-time speed (1 sim ms per ms)."""
    port = _free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()
    backend = SimBackend(nodes=5, seed=3, speed=1.0)

    async def main() -> None:
        ready = asyncio.Event()
        task = asyncio.create_task(serve(backend, "127.0.0.1", port, ready))
        await ready.wait()
        started.set()
        await stop.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    assert started.wait(10), "dashboard server did not start"
    yield f"http://127.0.0.1:{port}/"
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)
    loop.close()


@pytest.fixture()
def page(server_url: str) -> Iterator[object]:
    with sync_api.sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        ctx = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=ARGS, headless=True,
            viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        pg = ctx.new_page()
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.set_default_timeout(WAIT_MS)
        pg.goto(server_url)
        yield pg
        ctx.close()
        assert errors == [], errors


def leader_selector(cluster: str, not_node: str | None = None) -> str:
    sel = f'svg .node[data-cluster="{cluster}"][data-role="leader"]'
    return sel + (f':not([data-node="{not_node}"])' if not_node else "")


def test_dashboard_end_to_end(page: object) -> None:
    pg = page  # a playwright Page
    pg.wait_for_selector("#conn.ok")
    assert pg.locator('svg .node[data-cluster="raft"]').count() == 5
    assert pg.locator('svg .node[data-cluster="paxos"]').count() == 5
    # Both clusters elect a leader within a few simulated seconds.
    pg.wait_for_selector(leader_selector("raft"))
    pg.wait_for_selector(leader_selector("paxos"))

    # Clicking the Raft leader (click mode "kill / revive", applied to both) kills it.
    leader = pg.locator(leader_selector("raft")).first
    old = leader.get_attribute("data-node")
    leader.click()
    pg.wait_for_selector(f'svg .node[data-cluster="raft"][data-node="{old}"][data-role="crashed"]')
    pg.wait_for_selector(leader_selector("raft", not_node=old))
    pg.wait_for_selector(leader_selector("paxos"))

    # A client request shows up committed on both clusters.
    pg.fill("#req-text", "SET x = 100")
    pg.click("#request")
    for cluster in ("raft", "paxos"):
        pg.wait_for_selector(f'#table-{cluster} .logchip.committed[data-cmd="SET x = 100"]')
    pg.wait_for_selector('#events li.k-commit:has-text("SET x = 100")')

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard-browser-test.png"
    pg.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000


def test_page_reconnects_after_the_socket_drops(page: object) -> None:
    pg = page
    pg.wait_for_selector("#conn.ok")
    pg.evaluate("window.dashboard.ws.close()")
    pg.wait_for_selector("#conn.down")
    pg.wait_for_selector("#conn.ok")  # reconnected, with a fresh snapshot
    pg.wait_for_function("window.dashboard.snap && window.dashboard.snap.type === 'state'")


def test_add_node_button_grows_both_clusters_with_a_new_voter(page: object) -> None:
    pg = page
    pg.wait_for_selector("#conn.ok")
    pg.wait_for_selector(leader_selector("raft"))
    pg.wait_for_selector(leader_selector("paxos"))
    pg.click("#add-node")  # applied to both clusters
    for cluster in ("raft", "paxos"):
        n6 = f'svg .node[data-cluster="{cluster}"][data-node="n6"]'
        pg.wait_for_selector(n6)  # drawn on the ring at once, joining
        pg.wait_for_selector(f'{n6}[data-member="voter"]')  # caught up and promoted
        pg.wait_for_selector(f'#cfg-{cluster}[data-config="voters=n1,n2,n3,n4,n5,n6"]')
        assert pg.locator(f'#table-{cluster} tr[data-node="n6"]').count() == 1
    pg.wait_for_selector('#events li.k-member:has-text("add n6 done")')


def test_remove_the_leader_preset_hands_over_in_both_clusters(page: object) -> None:
    pg = page
    pg.wait_for_selector("#conn.ok")
    pg.click('button[data-preset="remove-leader"]')
    pg.wait_for_selector('#preset-explain:has-text("What happens if you remove the leader?")')
    for cluster in ("raft", "paxos"):
        removed = pg.wait_for_selector(
            f'svg .node[data-cluster="{cluster}"][data-member="removed"]')
        old = removed.get_attribute("data-node")
        pg.wait_for_selector(leader_selector(cluster, not_node=old))
        pg.wait_for_selector(f'#cfg-{cluster}:not([data-config*="{old}"])')
    pg.wait_for_selector('#events li.k-member:has-text("hands leadership to")')
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / "dashboard-remove-leader.png"))


def test_lead_and_remove_buttons_act_on_the_node_of_their_row(page: object) -> None:
    pg = page
    pg.wait_for_selector("#conn.ok")
    raft = pg.wait_for_selector(leader_selector("raft")).get_attribute("data-node")
    paxos = pg.wait_for_selector(leader_selector("paxos")).get_attribute("data-node")
    target = next(n for n in ("n1", "n2", "n3", "n4", "n5") if n not in (raft, paxos))
    pg.click(f'#table-raft tr[data-node="{target}"] button.transfer')  # applied to both
    for cluster in ("raft", "paxos"):
        pg.wait_for_selector(f'svg .node[data-cluster="{cluster}"][data-node="{target}"]'
                             '[data-role="leader"]')
    pg.click(f'#table-paxos tr[data-node="{raft}"] button.remove')
    for cluster in ("raft", "paxos"):
        pg.wait_for_selector(f'svg .node[data-cluster="{cluster}"][data-node="{raft}"]'
                             '[data-member="removed"]')
        pg.wait_for_selector(f'#table-{cluster} tr[data-node="{raft}"][data-member="removed"]')
