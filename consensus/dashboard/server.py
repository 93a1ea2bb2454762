"""The dashboard's web server: one page, its static files, a WebSocket and a JSON API.

Routes::

    GET  /              the page (static/index.html)
    GET  /static/...    app.js, style.css
    GET  /ws            WebSocket: a full "state" message at once, then "update" frames about
                        20 times a second; the page sends {"type": "command", "id", "op", ...}
                        and gets {"type": "ack", "id", "ok", "error"?} back
    GET  /api/state     the same full state as JSON (tests, curl)
    POST /api/command   one command as JSON, answered like the WebSocket's ack

One asyncio task, the pump, moves the backend's clock by the wall time that passed (sim mode)
and broadcasts a frame to every connected page; a page that connects late gets the current
state at once, so nothing depends on having watched from the start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any, Protocol

import orjson
from aiohttp import WSMsgType, web

log = logging.getLogger("consensus.dashboard")

STATIC = Path(__file__).parent / "static"
FRAME_INTERVAL_S = 0.05
MAX_COMMAND_BYTES = 64 * 1024


class Backend(Protocol):
    """What the server needs from the simulated or the MQTT backend."""

    mode: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def advance_wall(self, wall_ms: float) -> None: ...

    async def apply(self, cmd: dict[str, Any]) -> dict[str, Any]: ...

    def snapshot(self) -> dict[str, Any]: ...

    def frame(self) -> dict[str, Any]: ...


BACKEND = web.AppKey("backend", Any)
SOCKETS = web.AppKey("sockets", set)
PUMP = web.AppKey("pump", Any)


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


async def _broadcast(app: web.Application, payload: dict[str, Any]) -> None:
    text = _dumps(payload)
    for ws in list(app[SOCKETS]):
        if ws.closed:
            app[SOCKETS].discard(ws)
            continue
        try:
            await ws.send_str(text)
        except (ConnectionError, RuntimeError):
            app[SOCKETS].discard(ws)


async def _pump(app: web.Application) -> None:
    """Advance the backend's clock and push a frame, forever (until the app stops)."""
    backend: Backend = app[BACKEND]
    last = time.monotonic()
    while True:
        await asyncio.sleep(FRAME_INTERVAL_S)
        now = time.monotonic()
        try:
            backend.advance_wall((now - last) * 1000.0)
            frame = backend.frame()
        except Exception:  # one bad frame must not stop the dashboard
            log.exception("dashboard backend failed to advance")
            frame = None
        last = now
        if frame is not None and app[SOCKETS]:
            await _broadcast(app, frame)


async def run_command(app: web.Application, cmd: Any) -> dict[str, Any]:
    """Apply one command; after a reset or a preset every page gets a fresh snapshot."""
    if not isinstance(cmd, dict) or not isinstance(cmd.get("op"), str):
        return {"ok": False, "error": "a command is a JSON object with an \"op\""}
    backend: Backend = app[BACKEND]
    result = await backend.apply(cmd)
    if result.pop("snapshot", False):
        await _broadcast(app, backend.snapshot())
    return result


async def index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def api_state(request: web.Request) -> web.Response:
    return web.json_response(request.app[BACKEND].snapshot(), dumps=_dumps)


async def api_command(request: web.Request) -> web.Response:
    try:
        cmd = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return web.json_response({"ok": False, "error": "not JSON"}, status=400)
    result = await run_command(request.app, cmd)
    return web.json_response(result, status=200 if result.get("ok") else 400, dumps=_dumps)


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=MAX_COMMAND_BYTES)
    await ws.prepare(request)
    app = request.app
    await ws.send_str(_dumps(app[BACKEND].snapshot()))  # a late page draws at once
    app[SOCKETS].add(ws)
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                cmd = orjson.loads(msg.data)
            except orjson.JSONDecodeError:
                await ws.send_str(_dumps({"type": "ack", "ok": False, "error": "not JSON"}))
                continue
            result = await run_command(app, cmd)
            ack = {"type": "ack", "id": cmd.get("id") if isinstance(cmd, dict) else None,
                   **result}
            await ws.send_str(_dumps(ack))
    finally:
        app[SOCKETS].discard(ws)
    return ws


async def _on_startup(app: web.Application) -> None:
    await app[BACKEND].start()
    app[PUMP] = asyncio.create_task(_pump(app))


async def _on_cleanup(app: web.Application) -> None:
    task = app[PUMP]
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    for ws in list(app[SOCKETS]):
        await ws.close()
    await app[BACKEND].close()


def create_app(backend: Backend) -> web.Application:
    """The aiohttp application serving ``backend`` (a SimBackend or an MqttBackend)."""
    app = web.Application()
    app[BACKEND] = backend
    app[SOCKETS] = set()
    app.router.add_get("/", index)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/api/state", api_state)
    app.router.add_post("/api/command", api_command)
    app.router.add_static("/static", STATIC, append_version=False)
    app.on_startup.append(_on_startup)
    app.on_cleanup.append(_on_cleanup)
    return app


async def serve(backend: Backend, host: str = "127.0.0.1", port: int = 8080,
                started: asyncio.Event | None = None) -> None:
    """Serve until cancelled (Ctrl-C in the CLI)."""
    runner = web.AppRunner(create_app(backend), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        if started is not None:
            started.set()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


__all__ = ["Backend", "create_app", "serve"]
