"""consensus.bench.security: its arguments and its table (the measurement itself is the
benchmark's, run by hand: `python -m consensus.bench.security`)."""

from __future__ import annotations

import pytest
from rich.console import Console

from consensus.bench.security import main, run_security_bench, table


def test_unknown_modes_and_algorithms_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown mode or algorithm ssl"):
        run_security_bench(["open", "ssl"], ["raft"])
    with pytest.raises(ValueError, match="zab"):
        run_security_bench(["open"], ["zab"])
    assert main(["--modes", "open,plain"]) == 2


def test_the_table_puts_each_mode_beside_open() -> None:
    rows = [{"mode": m, "algorithm": "raft", "max_sustained_ops_s": top, "light_p50_ms": p50,
             "light_p99_ms": None, "broker_cpu_us_per_op": 40.0}
            for m, top, p50 in (("tls", 6000.0, 4.0), ("open", 12000.0, 3.0),
                                ("auth", 0.0, None))]
    console = Console(width=160, record=True)
    console.print(table(rows))
    cells = [[c.strip() for c in ln.split("│")[1:-1]]
             for ln in console.export_text().splitlines() if "raft" in ln]
    assert [c[1] for c in cells] == ["open", "auth", "tls"]
    assert cells[0][2:5] == ["12,000", "100%", "3.00 ms"]
    assert cells[1][2:5] == ["-", "-", "-"]  # nothing sustained: no figure, no ratio
    assert cells[2][2:5] == ["6,000", "50%", "4.00 ms"]
