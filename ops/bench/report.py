"""What the benches print and write: number formatting for tables, the machine and commit for a
report's header, and the JSON file of results."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from ops.bench.procfs import cpu_model
from ops.bench.procs import REPO


def fmt(v: float | None, spec: str = ".2f", missing: str = "—") -> str:
    return missing if v is None else format(v, spec)


def pctf(v: float | None) -> str:
    """A share of one core (0.42) as a percentage ("42%")."""
    return "—" if v is None else f"{100 * v:.0f}%"


def write_json(path: str | Path, doc: Any) -> None:
    Path(path).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def commit() -> str:
    """The checked-out commit, "(+ uncommitted changes)" if tracked files differ; "?" without git."""

    def git(*argv: str) -> str:
        return subprocess.run(
            ["git", "--no-optional-locks", "-C", str(REPO), *argv],  # read-only
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()

    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return head + (" (+ uncommitted changes)" if dirty else "")
    return "?"


def versions(python: str) -> dict[str, str]:
    """Python, aiohttp, uvloop and orjson versions of the interpreter the servers run with."""
    code = (
        "import json, platform, aiohttp, uvloop, orjson; print(json.dumps({'python': "
        "platform.python_version(), 'aiohttp': aiohttp.__version__, 'uvloop': "
        "uvloop.__version__, 'orjson': orjson.__version__}))"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=30)
    return dict(json.loads(out.stdout))


def machine_info(python: str) -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        **versions(python),
        "commit": commit(),
    }
