"""Design choices as switches: a spec's ``variant:`` block, or ``--variant key=value``.

A variant is a set of :class:`~consensus.node.Config` fields, by name, each set to a value
(``{pre_vote: false, check_quorum: false, election: any}``). Nothing here knows what a field
means: the algorithm registry (``consensus/algorithms.py``) declares, per algorithm, which
fields are switches and which values each accepts, and this module only parses values to
the field's type, checks them against that declaration and applies them. A switch one
algorithm lacks is refused with an error naming the algorithm, the key and what it accepts,
so a comparison never silently runs one side without the change. A new knob is a Config
field plus a line in the registry.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any

from pydantic import TypeAdapter, ValidationError

from consensus.algorithms import ALL_NAMES, get_algorithm
from consensus.node import Config

Variant = Mapping[str, Any]


class VariantError(ValueError):
    """A variant that does not parse, or that an algorithm does not offer."""

    def __init__(self, message: str, key: str | None = None) -> None:
        self.key = key
        super().__init__(message)


@cache
def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


@cache
def _adapter(key: str) -> TypeAdapter[Any]:
    return TypeAdapter(_field_types()[key])


def known_keys() -> tuple[str, ...]:
    """Every switch some registered algorithm offers, sorted."""
    return tuple(sorted({k for name in ALL_NAMES for k in get_algorithm(name).variants}))


def _show(value: Any) -> str:
    """A value as a user types it: false, any, 0.5."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def coerce(key: str, value: Any) -> Any:
    """``value`` (from YAML, or the text after ``=``) as the Config field ``key``'s type."""
    if key not in known_keys():
        raise VariantError(f"unknown variant {key!r} (variants: {', '.join(known_keys())})",
                           key)
    try:
        return _adapter(key).validate_python(value)
    except ValidationError as exc:
        why = exc.errors()[0]["msg"]
        raise VariantError(f"{key}={_show(value)}: {why}", key) from None


def parse_pairs(pairs: Iterable[str]) -> dict[str, Any]:
    """``["election=any", "pre_vote=false"]`` -> ``{"election": "any", "pre_vote": False}``;
    a key given twice keeps its last value, as command-line options do."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise VariantError(f"--variant takes key=value, got {pair!r}")
        out[key] = coerce(key, text.strip())
    return out


def check(algorithm: str, variant: Variant) -> None:
    """Refuse a key ``algorithm`` does not offer, or a value it does not accept."""
    offered = get_algorithm(algorithm).variants
    for key, value in variant.items():
        if key not in offered:
            others = [n for n in ALL_NAMES if key in get_algorithm(n).variants]
            where = f" (only {', '.join(others)})" if others else ""
            raise VariantError(f"{algorithm} has no variant {key!r}{where}; its variants: "
                               f"{', '.join(sorted(offered)) or 'none'}", key)
        accepted = offered[key]
        if accepted is not None and value not in accepted:
            raise VariantError(f"{algorithm} does not offer {key}={_show(value)}; "
                               f"{key} accepts {', '.join(_show(v) for v in accepted)}", key)


def apply(config: Config, algorithm: str, variant: Variant) -> Config:
    """``config`` with ``variant`` switched on for ``algorithm`` (checked first)."""
    check(algorithm, variant)
    if not variant:
        return config
    try:
        return dataclasses.replace(config, **variant)
    except ValueError as exc:  # Config's own check of how the fields go together
        raise VariantError(str(exc)) from None


def of_config(config: Config, algorithm: str) -> dict[str, Any]:
    """The switches ``config`` sets away from the defaults, among those ``algorithm`` offers:
    what a node process must be told (``consensus-lab node --variant``) to run the same."""
    default = Config()
    return {k: getattr(config, k) for k in sorted(get_algorithm(algorithm).variants)
            if getattr(config, k) != getattr(default, k)}


def as_pairs(variant: Variant) -> list[str]:
    """``{"election": "any"}`` -> ``["election=any"]``, what :func:`parse_pairs` reads back."""
    return [f"{k}={_show(v)}" for k, v in sorted(variant.items())]


def label(variant: Variant) -> str:
    """A short, stable name for reports and run keys: ``election=any,pre_vote=false``."""
    return ",".join(f"{k}={_show(v)}" for k, v in sorted(variant.items())) or "default"


def merge(base: Variant, override: Variant) -> dict[str, Any]:
    """``override``'s keys win (the command line over the spec file)."""
    return {**base, **override}


def as_json(variant: Variant) -> dict[str, Any]:
    """The variant for a manifest or summary: plain JSON values, keys sorted."""
    return {k: variant[k] for k in sorted(variant)}


def describe_support(algorithms: Sequence[str]) -> list[str]:
    """One line per algorithm: the switches it offers and their values (for ``--help``)."""
    lines = []
    for name in algorithms:
        offered = get_algorithm(name).variants
        parts = [f"{k}={'|'.join(_show(v) for v in vals) if vals else '...'}"
                 for k, vals in sorted(offered.items())]
        lines.append(f"{name}: {' '.join(parts) or 'none'}")
    return lines
