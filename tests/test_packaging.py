"""The wheel a user installs: it carries the experiment library, and finds it from anywhere.

Built offline from a copy of the source tree (``pip wheel --no-build-isolation --no-index``:
setuptools comes from the dev extras), so the checkout is left untouched. The wheel is then
unpacked and run from another folder: no pip install, no network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = sorted((ROOT / "experiments").glob("*.yaml"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("consensus", "experiments"):
        shutil.copytree(ROOT / folder, src / folder, ignore=ignore)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "-w", str(out), str(src)],
                   check=True, capture_output=True, text=True, cwd=src)
    (path,) = out.glob("consensus_lab-*.whl")
    return path


def test_the_wheel_carries_every_library_experiment_unchanged(wheel: Path) -> None:
    assert LIBRARY, "the checkout's experiments/ folder is empty"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for path in LIBRARY:
            assert zf.read(f"consensus/experiments/{path.name}") == path.read_bytes()
    assert {"consensus/library.py", "consensus/cli.py",
            "consensus/dashboard/static/index.html"} <= names
    assert not any(n.startswith(("experiments/", "tests/")) for n in names)


def test_an_unpacked_wheel_finds_its_library_outside_the_checkout(wheel: Path,
                                                                   tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    listed = subprocess.run([sys.executable, "-m", "consensus", "experiments", "--json"],
                            cwd=elsewhere, env=env, check=True, capture_output=True,
                            text=True).stdout
    entries = json.loads(listed)
    assert [e["name"] for e in entries] == [p.stem for p in LIBRARY]
    packaged = site / "consensus" / "experiments"
    assert all(Path(e["path"]).parent == packaged for e in entries)
    assert all(e["description"] for e in entries)
    resolved = subprocess.run(
        [sys.executable, "-c", "from consensus import library; "
                               "print(library.resolve('leader-crash'))"],
        cwd=elsewhere, env=env, check=True, capture_output=True, text=True).stdout.strip()
    assert Path(resolved) == packaged / "leader-crash.yaml"
