"""`consensus-lab bench`: both algorithms against the bus limit, a null protocol and PySyncObj.

Modules: :mod:`search` (the max-sustained-throughput search, pure), :mod:`loadgen` (load
generator processes that send requests over the bus), :mod:`null_protocol` (a bench-only node
that applies and replies without replicating), :mod:`pysyncobj_bench` (PySyncObj measured by
the same method), :mod:`throughput` and :mod:`failover` (real node processes),
:mod:`report` (table, bench.json, charts, manifest) and :mod:`run` (the whole benchmark).
"""
