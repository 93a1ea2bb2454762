"""Comparison reports: charts, tables with confidence intervals, HTML and Markdown.

``build_report(run_dir)`` turns a saved run folder into ``report.html`` (self-contained, SVG) and
``report.md`` (with 2x ``figures/*.png`` beside it); ``compare_runs(a, b, out_dir)`` puts runs
side by side. Both read only saved files: nothing is re-run.
"""

from consensus.report.build import build_report, compare_runs

__all__ = ["build_report", "compare_runs"]
