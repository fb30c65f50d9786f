"""The fault matrix (ops/faults) runs end to end as `python -m`, on a three-row subset: a
same-target retry (json and stream), a cut spliced on a replica, and a cut that cannot be
(in-band `upstream_cut`). Real sims and a real gateway on loopback, a few seconds."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from ops.faults.report import markdown
from ops.faults.scenarios import PLAIN, Case, Expect, Options, run_case
from tests.builders import REPO_ROOT


def test_a_subset_of_the_matrix_runs_and_matches(tmp_path: Path) -> None:
    out = tmp_path / "faults.json"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    argv = ["-m", "ops.faults.matrix", "--quick", "--only", "1,8,12", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, *argv], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("| # | fault | expected | caller got |")
    rows = {line.split("|")[1].strip(): line for line in lines if line.startswith("| ")}
    assert set(rows) == {"#", "1 json", "1 stream", "8", "12"}
    assert rows["8"].rstrip().endswith("| ok |")
    assert "200 error upstream_cut, no [DONE]" in rows["12"]
    assert "**MISMATCH**" not in done.stdout
    assert "4 rows, 4 as expected, 0 MISMATCH" in done.stdout
    doc = json.loads(out.read_text())
    assert doc["ok"] is True
    assert [r["id"] for r in doc["rows"]] == ["1 json", "1 stream", "8", "12"]
    assert doc["rows"][0]["attempts"] == "p 2 [500 200] · b 0"


def test_a_row_that_differs_from_its_expectation_is_a_mismatch() -> None:
    # A one-off 500 is answered by p's retry: expecting the fallback must be flagged.
    wrong = Expect("json", {"p": 1, "b": 1}, "2", "m@b", text="b")
    case = Case(
        "x", "500 once", PLAIN, {"p": {"mode": "status", "status": 500, "count": 1}}, False, wrong
    )
    row = asyncio.run(run_case(case, Options(quick=True)))
    assert not row.ok
    assert "p saw 2 attempts, expected 1" in row.problems
    assert "x-turnout-target m@p != m@b" in row.problems
    assert "**MISMATCH**" in markdown([row])
