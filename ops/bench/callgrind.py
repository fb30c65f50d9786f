"""What a callgrind output file says beyond the instruction total: how often the Python
allocators were called (each object, buffer or frame Python allocates goes through one)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

# The allocator entry points of CPython 3.11: objects (PyObject_*) and buffers (PyMem_*).
ALLOCATORS = frozenset({"PyObject_Malloc", "PyObject_Calloc", "PyMem_Malloc", "PyMem_Calloc"})
_NAMED = re.compile(r"^c?fn=\((\d+)\)(?: (.*))?$")


def allocations(out: Path) -> int:
    """Calls to `ALLOCATORS` recorded in the callgrind output `out` (name compression on:
    a function's name is given once, with its id, and the id alone after that)."""
    names: dict[str, str] = {}
    calls: Counter[str] = Counter()
    callee: str | None = None
    with out.open() as f:
        for line in f:
            if line.startswith(("fn=", "cfn=")):
                m = _NAMED.match(line.rstrip("\n"))
                if m is not None:
                    fid, name = m.groups()
                    if name:
                        names[fid] = name
                    callee = fid if line.startswith("cfn=") else None
            elif callee is not None and line.startswith("calls="):
                calls[callee] += int(line[6:].split(maxsplit=1)[0])
                callee = None
    return sum(n for fid, n in calls.items() if names.get(fid) in ALLOCATORS)
