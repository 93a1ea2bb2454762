"""`consensus-lab code`: Raft's and Multi-Paxos's node modules side by side, as a web page."""

from __future__ import annotations

import os
import sys
import webbrowser
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from consensus.cli import app, console, fail


def has_display() -> bool:
    """Whether a graphical browser can open here. On Linux and the BSDs without X or Wayland,
    Python's webbrowser falls back to a text browser that would take over the terminal."""
    if sys.platform in ("darwin", "win32", "cygwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_in_browser(path: Path) -> bool:
    """Best effort: True if a browser was asked to show ``path``."""
    if not has_display():
        return False
    try:
        return webbrowser.open(path.resolve().as_uri())
    except webbrowser.Error:
        return False


@app.command()
def code(
    out: Annotated[Path, typer.Option(
        help="The HTML file to write (a folder gets index.html inside).")]
        = Path("reports/code/index.html"),
    reports: Annotated[Path | None, typer.Option(
        help="The report gallery the experiment links point at (default: the folder above "
             "--out's folder, as for reports/code/index.html).")] = None,
    open_page: Annotated[bool, typer.Option(
        "--open/--no-open", help="Open the page in a browser (skipped without a display).")]
        = True,
) -> None:
    """Write (and open) the side-by-side page of raft/node.py and paxos/node.py: aligned by
    section and handler, TLA+ actions as anchors, each variant's lines highlighted, each
    difference linked to the experiment that shows it."""
    from consensus.report.code_page import write_code_page

    if out.is_dir() or out.suffix == "":
        out = out / "index.html"
    try:
        written = write_code_page(out, reports=reports)
    except OSError as exc:
        raise fail(f"cannot write {out}: {exc.strerror or exc}", code=2) from None
    console.print(f"code page: [bold]{escape(str(written))}[/]")
    if open_page and not open_in_browser(written):
        console.print(f"(no browser opened here; open {escape(written.resolve().as_uri())})")
