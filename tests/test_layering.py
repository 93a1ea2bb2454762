"""The layering, as a test: it fails when a module reaches across a line it must not cross.

1. The pure core (the node interface, the state machine, quorum maths, the shared messages and
   the algorithm packages) does no IO and reads no clock: time enters as ``tick(now)``,
   randomness as an injected ``random.Random``, and everything leaves through ``ready()``
   (DESIGN.md, "The node interface: the core does no IO"). So it imports only the standard
   library, minus the modules below, and only core modules of this package.
2. An algorithm package imports the shared core and itself, never another algorithm: a third
   algorithm must touch only its own package and the registry.
3. The checkers (``consensus/check/``) sit below the drivers that call them (the simulator,
   the experiment runner, ...): they import none of them, so a history or a trace can be
   checked without the machinery that produced it.

Imports are read with ``ast`` (module level, inside functions and under ``if TYPE_CHECKING``:
a type-only import is a dependency a reader sees too), so nothing is imported to check them.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import consensus

PACKAGE = Path(consensus.__file__).resolve().parent

# The pure core: modules by dotted name, packages by prefix. ``consensus`` itself is in it:
# its __init__ runs on every import of a core module.
CORE_MODULES = {"consensus", "consensus.node", "consensus.kv", "consensus.quorum",
                "consensus.membership",
                "consensus.messages"}
ALGORITHM_PACKAGES = ("consensus.raft", "consensus.paxos")

# Standard-library modules the core must not import, and why.
_CLOCK = "a clock: time enters the core only as tick(now)"
_FILES = "file or OS access: the driver persists ready().persist"
_NET = "networking: the driver sends ready().messages"
_THREADS = "threads or processes: the core is driven one call at a time"
_ENTROPY = "randomness from the OS: the core draws only from its injected random.Random"
FORBIDDEN_IN_CORE = {
    **dict.fromkeys(("time", "datetime", "calendar", "zoneinfo"), _CLOCK),
    **dict.fromkeys(("os", "io", "pathlib", "shutil", "tempfile", "glob", "fileinput",
                     "fcntl", "mmap", "sqlite3", "shelve", "dbm"), _FILES),
    **dict.fromkeys(("socket", "ssl", "select", "selectors", "socketserver", "http",
                     "urllib", "ftplib", "smtplib", "xmlrpc"), _NET),
    **dict.fromkeys(("threading", "_thread", "multiprocessing", "concurrent", "queue",
                     "subprocess", "signal"), _THREADS),
    **dict.fromkeys(("secrets", "uuid"), _ENTROPY),
    "asyncio": "an event loop: the driver owns it (sim.py or runtime.py)",
    "sys": "the interpreter and its standard streams: the driver's business",
    # A log record reads the wall clock (LogRecord.created) and its handler writes to a
    # stream or a file; the core reports through status() and ready(), and the drivers log,
    # stamping lines with simulated or wall time.
    "logging": "logging writes and reads the wall clock; the drivers log, not the core",
    "importlib": "a dynamic import hides a dependency from this test",
}
# ``random`` is allowed for its Random class only: the core is handed a seeded instance (and
# builds a fixed-seed one when none is given). Its module-level functions share one global
# generator seeded from the OS, which would make a seeded run irreproducible.
RANDOM_ALLOWED = {"Random"}
# Builtins that do IO or import behind this test's back.
FORBIDDEN_BUILTINS = {"open", "print", "input", "breakpoint", "__import__", "exec", "eval"}

# What the checkers must not import: the experiment runner and every driver above them.
ABOVE_CHECK = ("consensus.experiment", "consensus.sim", "consensus.simulate",
               "consensus.runtime", "consensus.transport", "consensus.cluster",
               "consensus.client", "consensus.executor", "consensus.broker",
               "consensus.dashboard", "consensus.report", "consensus.bench", "consensus.cli")


@dataclass(frozen=True)
class Import:
    module: str  # the dotted module imported from (``from a.b import c`` -> ``a.b``)
    names: tuple[str, ...]  # the names taken from it (empty for ``import a.b``)
    alias: str  # what ``import a.b as x`` binds (``a`` without ``as``); "" for from-imports
    line: int

    def targets(self) -> list[str]:
        """Every module this import may load: ``from consensus import quorum`` loads
        ``consensus.quorum`` (if it is a module) as well as ``consensus``."""
        return [self.module, *(f"{self.module}.{n}" for n in self.names if n != "*")]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_of(path: Path, source: str | None) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8") if source is None else source, str(path))


def imports(path: Path, source: str | None = None) -> list[Import]:
    """Every import statement in ``path`` (or ``source``, read as if it were at ``path``),
    wherever it is, relative ones resolved."""
    tree = source_of(path, source)
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                found.append(Import(a.name, (), a.asname or a.name.split(".")[0], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base == "__future__":
                continue
            found.append(Import(base, tuple(a.name for a in node.names), "", node.lineno))
    return found


def files(*modules: str) -> list[Path]:
    """The source files of the given modules and packages."""
    out = []
    for name in modules:
        rel = Path(*name.split(".")[1:])
        if not rel.parts:
            out.append(PACKAGE / "__init__.py")  # the package itself: only its __init__
        elif (PACKAGE / rel).is_dir():
            out += sorted((PACKAGE / rel).rglob("*.py"))
        else:
            out.append(PACKAGE / rel.with_suffix(".py"))
    return out


def is_core(module: str) -> bool:
    return module in CORE_MODULES or any(
        module == p or module.startswith(p + ".") for p in ALGORITHM_PACKAGES)


def core_files() -> list[Path]:
    return files(*sorted(CORE_MODULES), *ALGORITHM_PACKAGES)


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(PACKAGE.parent)}:{line}"


def core_import_problems(path: Path, source: str | None = None) -> list[str]:
    problems = []
    for imp in imports(path, source):
        top = imp.module.split(".")[0]
        if top == "consensus":
            # ``from consensus import quorum``: the names are modules or attributes of the
            # package; either way each must be in the core.
            outside = [t for t in (imp.targets() if imp.module == "consensus" else [imp.module])
                       if t != "consensus" and not is_core(t)]
            problems += [f"{where(path, imp.line)} imports {t}, which is above the core"
                         for t in outside]
        elif top in FORBIDDEN_IN_CORE:
            problems.append(f"{where(path, imp.line)} imports {imp.module}: "
                            f"{FORBIDDEN_IN_CORE[top]}")
        elif top == "random":
            bad = [n for n in imp.names if n not in RANDOM_ALLOWED]
            if bad:
                problems.append(f"{where(path, imp.line)} imports {', '.join(bad)} from "
                                f"random: the core may use only random.Random (injected)")
        elif top not in sys.stdlib_module_names:
            problems.append(f"{where(path, imp.line)} imports {imp.module}: the core uses the "
                            "standard library only (third-party code is outside this test)")
    return problems


def core_call_problems(path: Path, source: str | None = None) -> list[str]:
    """Uses of ``random.<anything but Random>`` and of IO builtins."""
    tree = source_of(path, source)
    random_names = {imp.alias for imp in imports(path, source)
                    if imp.module == "random" and imp.alias}
    problems = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in random_names and node.attr not in RANDOM_ALLOWED):
            problems.append(f"{where(path, node.lineno)} uses random.{node.attr}: the core "
                            "draws only from its injected random.Random")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in FORBIDDEN_BUILTINS):
            problems.append(f"{where(path, node.lineno)} calls {node.func.id}(): no IO or "
                            "hidden imports in the core")
    return problems


def test_the_core_files_exist():
    """Guards the other tests: a core module that moved must be moved here too, not skipped."""
    missing = [str(p) for p in core_files() if not p.is_file()]
    assert not missing, f"core modules not found (update CORE_MODULES): {missing}"
    for pkg in ALGORITHM_PACKAGES:
        assert any(module_name(p).endswith(".node") for p in files(pkg)), pkg


@pytest.mark.parametrize("path", core_files(), ids=lambda p: module_name(p))
def test_the_core_imports_no_io_clock_or_threads_and_nothing_above_it(path):
    problems = core_import_problems(path) + core_call_problems(path)
    assert not problems, "the pure core crosses its line:\n" + "\n".join(problems)


@pytest.mark.parametrize("package", ALGORITHM_PACKAGES)
def test_an_algorithm_imports_no_other_algorithm(package):
    others = [p for p in ALGORITHM_PACKAGES if p != package]
    problems = [f"{where(path, imp.line)} imports {t}"
                for path in files(package) for imp in imports(path) for t in imp.targets()
                if any(t == o or t.startswith(o + ".") for o in others)]
    assert not problems, f"{package} depends on another algorithm:\n" + "\n".join(problems)


def above_check(module: str) -> bool:
    # ``consensus.cli`` covers the ``cli_*`` modules too.
    return any(module == a or module.startswith((a + ".", a + "_")) for a in ABOVE_CHECK)


def check_problems(path: Path, source: str | None = None) -> list[str]:
    return [f"{where(path, imp.line)} imports {imp.module}"
            for imp in imports(path, source) if any(above_check(t) for t in imp.targets())]


def test_the_checkers_import_nothing_that_drives_a_cluster():
    problems = [p for path in files("consensus.check") for p in check_problems(path)]
    assert not problems, ("consensus/check/ must not depend on the experiment runner or the "
                          "drivers above it:\n" + "\n".join(problems))


# The rules above must catch what they are for: each is fed a known-bad snippet.

@pytest.mark.parametrize(("source", "expected"), [
    ("import time\n", "a clock"),
    ("def f():\n    import asyncio\n", "event loop"),
    ("from os import path\n", "file or OS"),
    ("import logging\n", "logging"),
    ("from random import randint\n", "only random.Random"),
    ("import random\nx = random.random()\n", "uses random.random"),
    ("import random as r\nx = r.uniform(0, 1)\n", "uses random.uniform"),
    ("from consensus.sim import Simulation\n", "consensus.sim, which is above the core"),
    ("from consensus import sim\n", "consensus.sim, which is above the core"),
    ("from ..experiment import history\n", "consensus.experiment"),
    ("import numpy\n", "standard library only"),
    ("def f():\n    print('hi')\n", "calls print()"),
])
def test_the_core_rules_catch_a_violation(source, expected):
    at = PACKAGE / "raft" / "node.py"
    problems = core_import_problems(at, source) + core_call_problems(at, source)
    assert any(expected in p for p in problems), problems


def test_the_core_rules_accept_the_injected_random_type():
    at = PACKAGE / "node.py"
    source = ("import random\nfrom random import Random\nfrom consensus import quorum\n"
              "from . import kv\nrng: random.Random = random.Random(0)\n")
    assert core_import_problems(at, source) + core_call_problems(at, source) == []


@pytest.mark.parametrize("source", [
    "from consensus.experiment.history import Operation\n",
    "def f():\n    from consensus import sim\n",
    "from ..experiment import history\n",
    "import consensus.cli_report\n",
])
def test_the_checker_rule_catches_a_violation(source):
    assert check_problems(PACKAGE / "check" / "invariants.py", source)
