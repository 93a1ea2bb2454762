"""Build step (setuptools only, never imported at run time): ship the experiment library.

The library lives at the top level, ``experiments/*.yaml`` (DESIGN.md's layout), and
setuptools' package data cannot reach outside a package, so the wheel's ``build_py`` copies
the files into ``consensus/experiments/`` where :mod:`consensus.library` finds them, and the
sdist lists them as sources so a wheel built from it has them too. One copy in the tree: an
edited experiment cannot go stale in the wheel. pyproject.toml names this class under
``[tool.setuptools.cmdclass]``.
"""

from __future__ import annotations

from pathlib import Path

from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent.parent
SOURCE = "experiments"
TARGET = ("consensus", "experiments")


def library_files() -> list[Path]:
    return sorted((ROOT / SOURCE).glob("*.yaml"))


class BuildPyWithExperiments(build_py):
    """``build_py`` that also copies ``experiments/*.yaml`` into the built package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's experiments/ directly
        target = Path(self.build_lib).joinpath(*TARGET)
        self.mkpath(str(target))
        for path in library_files():
            self.copy_file(str(path), str(target / path.name))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        if getattr(self, "editable_mode", False):
            return outputs
        target = Path(self.build_lib).joinpath(*TARGET)
        return [*outputs, *(str(target / p.name) for p in library_files())]

    def get_source_files(self) -> list[str]:
        # What the sdist packs: relative to the project root, as setuptools expects.
        return [*super().get_source_files(),
                *(f"{SOURCE}/{p.name}" for p in library_files())]
