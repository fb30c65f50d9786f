"""ops.bench imports as a package and measures end to end: every module imports, the cheapest
real measurement (body_memory: a sim, a gateway and one 1 MiB body, all on 127.0.0.1, ~3 s)
runs as `python -m`, and the shared helpers and run.py's report work on known inputs."""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import ops.bench
from ops.bench.loadtool import LoadResult
from ops.bench.net import is_loopback
from ops.bench.procfs import memory_kib, proc_status
from ops.bench.stats import percentile, slope
from ops.bench.summary import json_doc, judge, load_table, summary_lines
from tests.builders import REPO_ROOT


def _run(argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TURNOUT_HOST", "TURNOUT_PORT")}
    return subprocess.run(
        [sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_every_bench_module_imports() -> None:
    names = [m.name for m in pkgutil.iter_modules(ops.bench.__path__, "ops.bench.")]
    assert {"ops.bench.run", "ops.bench.soak", "ops.bench.redis_load"} <= set(names)
    for name in names:
        importlib.import_module(name)


def test_body_memory_measures_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "body_memory.json"
    argv = ["-m", "ops.bench.body_memory", "--counts", "1", "2", "--mib", "1", "--json", str(out)]
    done = _run(argv, REPO_ROOT, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "peak RSS" in done.stdout
    doc = json.loads(out.read_text())
    assert doc["body_bytes"] > 1024 * 1024
    assert [row["count"] for row in doc["rows"]] == [1, 2]
    for row in doc["rows"]:
        before, peak = row["rss_before_mb"], row["peak_mb"]
        assert all(isinstance(v, float) and math.isfinite(v) for v in (before, peak))
        assert 10 < before <= peak < 2048
        assert row["statuses"] == {"200": row["count"]}


@pytest.mark.parametrize(
    "variant", [[], ["--anthropic", "--stream"], ["--gemini"], ["--gemini", "--stream"]]
)
def test_the_instruction_count_workload_runs(variant: list[str]) -> None:
    # What ops.bench.instructions counts under callgrind (the count itself takes minutes).
    done = _run(["-m", "ops.bench.inproc", "40", *variant], REPO_ROOT, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("upstream", [[], ["--anthropic"]], ids=["translated", "as-sent"])
def test_the_anthropic_client_workload_runs(upstream: list[str]) -> None:
    done = _run(["-m", "ops.bench.inproc", "40", "--messages", *upstream], REPO_ROOT, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("upstream", [[], ["--anthropic"]], ids=["openai", "anthropic"])
@pytest.mark.parametrize("stream", [[], ["--stream"]], ids=["reply", "stream"])
def test_the_responses_client_workload_runs(upstream: list[str], stream: list[str]) -> None:
    argv = ["-m", "ops.bench.inproc", "40", "--responses", *upstream, *stream]
    done = _run(argv, REPO_ROOT, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_bench_file_runs_as_its_module_from_anywhere(tmp_path: Path) -> None:
    done = _run([str(REPO_ROOT / "ops" / "bench" / "run.py"), "--help"], tmp_path, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "--quick" in done.stdout


def test_shared_helpers() -> None:
    samples = [float(x) for x in range(1, 101)]
    assert (percentile(samples, 50), percentile(samples, 99), percentile([], 50)) == (50, 99, None)
    assert slope([0, 1, 2], [1, 3, 5]) == pytest.approx(2.0) and slope([1], [1]) == 0.0
    assert is_loopback("http://127.0.0.1:8080/v1") and not is_loopback("http://10.0.0.1:80/")
    assert proc_status(os.getpid())["VmRSS"] > 0
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert memory_kib(dead.pid) == {}


def _load(target: str, rps: float, cpu: float | None) -> LoadResult:
    return LoadResult(target, 1, "python", rps, 2.0, 9.0, int(rps * 3), {}, 3.0, cpu, 0.8, 0.2)


def test_run_report_from_known_numbers() -> None:
    results = {
        "direct": [_load("direct", 5000, None)],
        "passthrough": [_load("passthrough", 2000, 0.45)],
        "turnout": [_load("turnout", 1500, 0.25)],
    }
    path = {"n": 80, "errors": {}, "ttft_p50_ms": 62.0, "ttft_p99_ms": 66.0}
    path |= {"total_p50_ms": 250.0, "total_p99_ms": 260.0}
    proxy = {**path, "added_ttft_p50_ms": 0.5, "added_ttft_p99_ms": 2.0, "cpu_ms_per_req": 4.0}
    stream = {
        "max_start_lag_ms": 1.0,
        "foreign_busy": 0.0,
        "foreign_top": [],
        "paths": {
            "direct": path,
            "passthrough": proxy,
            "turnout": {**proxy, "cpu_ms_per_req": 6.0},
        },
    }
    o = judge(results, stream)
    assert o.checks["rps_ratio"] == pytest.approx(0.75) and not o.failed
    assert o.passed == {"rps_ratio": True, "cpu_ms": True, "ttft_p50_ms": True, "ttft_p99_ms": True}
    args = argparse.Namespace(
        quick=True, connections=32, duration=3, warmup=1, rounds=1, stream_rate=20.0,
        stream_duration=4.0, arrivals="fixed", upstream="tiny", nice=0,
    )  # fmt: skip
    text = "\n".join(summary_lines(args, ["header"], o))
    assert "Turnout rps / pass-through rps     0.75" in text and "MISSED" not in text
    assert "(c) Turnout" in "\n".join(load_table(o.results["turnout"], show_round=True))
    doc = json.loads(json.dumps(json_doc(args, {"cpu": "?"}, True, o, None)))
    assert doc["non_streaming"]["chosen"]["turnout"]["rps"] == 1500
