"""gateway.runtime.heap: the collector as a long-running server wants it. Run in a child
interpreter: the test process keeps CPython's settings."""

from __future__ import annotations

import json
import subprocess
import sys

from gateway.runtime.heap import THRESHOLDS

CHILD = """
import gc, json
from gateway.runtime import heap
before = gc.get_threshold(), gc.get_freeze_count()
heap.settle()
print(json.dumps([before, [gc.get_threshold(), gc.get_freeze_count()]]))
"""


def test_settle_freezes_the_start_up_heap_and_raises_the_young_threshold() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, check=True, timeout=60
    )

    (threshold0, frozen0), (threshold1, frozen1) = json.loads(out.stdout)
    assert frozen0 == 0 and threshold0[0] < THRESHOLDS[0]  # CPython's own, untouched
    assert tuple(threshold1) == THRESHOLDS
    assert frozen1 > 1000  # the modules and everything built at import time
