"""The experiment library: the ready-to-run files a user finds by name.

In a checkout they are the top-level ``experiments/`` folder (DESIGN.md fixes that layout, and
users edit and copy them there). A wheel cannot carry a folder outside the package, so the
build copies them into ``consensus/experiments/`` (see ``consensus/_build.py``); this module
looks in both places, so ``consensus-lab run leader-crash`` works from a checkout and from an
installed wheel alike. A path the user gives always wins over a library name.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

__all__ = ["LibraryEntry", "entries", "library_dir", "resolve"]

SUFFIX = ".yaml"


@dataclass(frozen=True, slots=True)
class LibraryEntry:
    name: str
    path: Path
    description: str


def library_dir() -> Path | None:
    """The folder holding the library: the wheel's packaged copy, else the checkout's."""
    packaged = Path(str(resources.files("consensus") / "experiments"))
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parent.parent / "experiments"
    return checkout if checkout.is_dir() else None


def entries() -> list[LibraryEntry]:
    """Every experiment in the library, by name, with its question (``description:``)."""
    folder = library_dir()
    if folder is None:
        return []
    out = []
    for path in sorted(folder.glob(f"*{SUFFIX}")):
        out.append(LibraryEntry(path.stem, path, _description(path)))
    return out


def resolve(arg: str | Path) -> Path:
    """The experiment file ``arg`` names: an existing path as given, else a library name.

    A name may carry the ``.yaml`` suffix or not. Anything else is returned unchanged, so the
    spec loader reports the missing file with the user's own spelling.
    """
    path = Path(arg)
    if path.exists():
        return path
    name = str(arg)
    if "/" in name or "\\" in name:
        return path
    folder = library_dir()
    if folder is not None:
        candidate = folder / (name if name.endswith(SUFFIX) else name + SUFFIX)
        if candidate.is_file():
            return candidate
    return path


def _description(path: Path) -> str:
    # Read only the question: a file with a mistake elsewhere is still listed, and `run`
    # reports the mistake with its line.
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return "(unreadable)"
    text = data.get("description", "") if isinstance(data, dict) else ""
    return " ".join(str(text).split())
