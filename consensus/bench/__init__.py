"""`consensus-lab bench`: both algorithms against the bus limit, a null protocol and PySyncObj.

Modules: :mod:`search` (the max-sustained-throughput search and the repeats of its maximum,
pure), :mod:`settle` (waiting out and checking a step's backlog before the next, pure),
:mod:`loadgen` (load generator processes that send requests over the bus), :mod:`inprocess`
(the load generator inside the leader's process, PySyncObj's shape), :mod:`null_protocol` (a
bench-only node that applies and replies without replicating), :mod:`pysyncobj_bench`
(PySyncObj measured by the same method), :mod:`throughput` and :mod:`failover` (real node
processes), :mod:`memory` (peak RSS after many operations, with and without compaction),
:mod:`wire` (bytes per operation by message kind, counted at the broker), :mod:`runs`
(medians and ranges over several runs, merging bench.json files), :mod:`report` (tables,
bench.json, charts, manifest) and :mod:`run` (the whole benchmark).
"""
