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


def test_the_markdown_page_has_a_row_per_mode_and_algorithm() -> None:
    from consensus.bench.security import markdown

    rows = [{"mode": m, "algorithm": a, "max_sustained_ops_s": 1000.0 * (i + 1),
             "light_p50_ms": 3.0, "light_p99_ms": 5.0, "broker_cpu_us_per_op": None}
            for i, m in enumerate(("open", "auth", "tls")) for a in ("raft", "paxos")]
    page = markdown(rows)
    assert page.count("\n| raft |") == 3 and page.count("\n| paxos |") == 3
    assert "| raft | tls | 3,000 | 300% | 3.00 ms | 5.00 ms | - |" in page
