"""The node process keeps its long-lived objects out of full collections, and still collects
garbage cycles. Run in a child interpreter: the hook is process-wide."""

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import gc, weakref
    from consensus.long_lived import keep_long_lived_out_of_gc

    keep_long_lived_out_of_gc()
    frozen_at_start = gc.get_freeze_count()
    assert frozen_at_start > 0, "start-up objects are frozen"

    class Node:
        pass

    log = [Node() for _ in range(50_000)]  # a log: long-lived, reachable
    gc.collect()  # a full collection: its survivors, the log included, are frozen
    assert gc.get_freeze_count() >= frozen_at_start + 50_000, gc.get_freeze_count()

    # A cycle that becomes garbage after the freeze is still collected.
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = []
    probe = weakref.ref(a, lambda _: gone.append(True))
    del a, b
    gc.collect()
    assert gone == [True], "a garbage cycle was not collected"

    # Installing twice changes nothing.
    before = len(gc.callbacks)
    keep_long_lived_out_of_gc()
    assert len(gc.callbacks) == before
    print("ok")
""")


def test_full_collections_freeze_survivors_and_still_collect_cycles():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
