#!/usr/bin/env python3
"""One script per developer task, needing nothing but Python 3.11+.

    python3 ops/dev.py demo [args]   # venv + install + `turnout demo`
    python3 ops/dev.py test [args]   # venv + dev install + the whole test suite
    python3 ops/dev.py lint          # ruff + mypy --strict
    python3 ops/dev.py serve [args]  # venv + install + `turnout serve`
    python3 ops/dev.py bench [args]  # the benchmark in ops/bench/

The virtualenv lives in .venv (override with TURNOUT_VENV); it is (re)installed when
pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("TURNOUT_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


def _run(*cmd: str | Path) -> None:
    subprocess.run([str(c) for c in cmd], cwd=ROOT, check=True)


def ensure_venv(extra: str) -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this script must explain, not crash
        sys.exit(f"Turnout needs Python 3.11+, this is {sys.version.split()[0]}")
    if not PY.exists():
        print(f"creating virtualenv {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    stamp = VENV / f".turnout-{extra or 'base'}-{digest}"
    if stamp.exists():
        return
    print(f"installing turnout{f'[{extra}]' if extra else ''} into {VENV}", flush=True)
    _run(PY, "-m", "pip", "install", "-q", "--upgrade", "pip")
    _run(PY, "-m", "pip", "install", "-q", "-e", f".[{extra}]" if extra else ".")
    stamp.touch()


def _exec(*cmd: str | Path) -> None:
    os.chdir(ROOT)
    args = [str(c) for c in cmd]
    os.execv(args[0], args)


def main(argv: list[str]) -> None:
    task, rest = (argv[0], argv[1:]) if argv else ("help", [])
    if task == "demo":
        ensure_venv("")
        _exec(PY, "-m", "gateway", "demo", *rest)
    elif task == "serve":
        ensure_venv("")
        _exec(PY, "-m", "gateway", "serve", *rest)
    elif task == "test":
        ensure_venv("dev")
        _exec(PY, "-m", "pytest", *rest)
    elif task == "bench":
        ensure_venv("dev")
        _exec(PY, "-m", "ops.bench.run", *rest)
    elif task == "lint":
        ensure_venv("dev")
        _run(PY, "-m", "ruff", "check", ".")
        _run(PY, "-m", "ruff", "format", "--check", "gateway", "health", "policies", "ops")
        _exec(PY, "-m", "mypy", "--strict", "gateway", "health", "policies", "ops")
    else:
        print(__doc__)
        sys.exit(0 if task in ("help", "-h", "--help") else 2)


if __name__ == "__main__":
    main(sys.argv[1:])
