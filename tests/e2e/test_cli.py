"""The command line as users run it: `turnout check` and `turnout demo`, as real processes."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import openai
import pytest

from tests.builders import REPO_ROOT

CHECK_TIMEOUT_S = 30

VALID = """\
providers:
  east:
    base_url: https://api.example.com/v1
    api_key: ${CLI_TEST_KEY}
  local:
    base_url: http://127.0.0.1:8001/v1
targets:
  fast: {provider: local, model: llama}
routes:
  - alias: smart
    candidates: [gpt-4o@east, fast]
  - alias: mini
    candidates: [gpt-4o-mini@east]
"""

BROKEN = """\
server:
  port: 99999
providers:
  a:
    base_url: localhost:8080
    timeouts: {connect_s: soon}
routes:
  - alias: one
    candidates: [m@a]
  - alias: two
    candidates: [m@a, nope, x]
  - alias: one
    candidates: []
    colour: blue
"""

BROKEN_ISSUES = [
    "server.port: must be between 0 and 65535, got 99999",
    "providers.a.base_url: must be an http(s) URL, got 'localhost:8080'",
    "providers.a.timeouts.connect_s: expected a number, got a string",
    "routes[1].candidates[1]: unknown target 'nope'",
    "routes[1].candidates[2]: unknown target 'x'",
    "routes[2].alias: duplicate alias 'one': an earlier route for it has no `match`, "
    "so this one could never be chosen",
    "routes[2].candidates: required: a non-empty list of target ids",
    "routes[2].colour: unknown key (known keys: alias, candidates, continuation, deadline_s, "
    "debug, hedge, match, max_attempts, policy, retry_after_wait_s, same_target_retries, "
    "timeouts, translation)",
]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TURNOUT_", "CLI_TEST_"))}
    env.update(extra)
    return env


def check(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "check", *args],
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_S,
        env=clean_env() if env is None else env,
        cwd=cwd,
        check=False,
    )


# --- turnout check ----------------------------------------------------------------------


def test_check_broken_config_prints_every_error_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN, encoding="utf-8")
    result = check("-c", str(path))
    assert result.returncode == 1, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == f"{path}: invalid configuration ({len(BROKEN_ISSUES)} problems)"
    assert sorted(lines[1:]) == sorted(f"  {issue}" for issue in BROKEN_ISSUES)
    assert "Traceback" not in result.stderr


def test_check_valid_config_prints_summary_and_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(VALID, encoding="utf-8")
    result = check("-c", str(path), env=clean_env(CLI_TEST_KEY="sk-cli-secret"))
    assert result.returncode == 0, result
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        "warning: providers.local.api_key is empty (no Authorization is sent)",
        f"{path}: ok — 2 providers, 3 targets, 2 routes (smart, mini)",
    ]
    assert "sk-cli-secret" not in result.stdout


def check_warnings(tmp_path: Path, providers: str) -> list[str]:
    """The warning lines `turnout check` prints for a config with these providers (YAML)."""
    first = providers.split(":", 1)[0].strip()
    text = f"providers:\n{providers}routes:\n  - alias: one\n    candidates: [m@{first}]\n"
    path = tmp_path / "warn.yaml"
    path.write_text(text, encoding="utf-8")
    result = check("-c", str(path))
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    assert lines[-1].startswith(f"{path}: ok — ")
    return lines[:-1]


def test_check_accepts_a_key_sent_in_a_header_or_query(tmp_path: Path) -> None:
    providers = """\
  azure:
    base_url: https://res.openai.azure.com/openai/deployments/gpt-4o
    headers: {api-key: az-secret}
    query: {api-version: "2024-10-21"}
  anthropic_like:
    base_url: https://llm.example.com/v1
    headers: {X-API-Key: k}
  bearer_header:
    base_url: https://llm.example.com/v1
    headers: {Authorization: Bearer k}
  in_query:
    base_url: https://llm.example.com/v1
    query: {key: k}
  in_url:
    base_url: https://user:pw@llm.example.com/v1
  empty_header:
    base_url: https://llm.example.com/v1
    headers: {api-key: ""}
  other_header_only:
    base_url: https://llm.example.com/v1
    headers: {x-team: blue}
"""
    assert check_warnings(tmp_path, providers) == [
        "warning: providers.empty_header.api_key is empty (no Authorization is sent)",
        "warning: providers.other_header_only.api_key is empty (no Authorization is sent)",
    ]


def test_check_warns_about_a_base_url_without_its_version_path(tmp_path: Path) -> None:
    def provider(name: str, url: str) -> str:
        key = "" if "@" in url else "    api_key: k\n"  # user:password@ is the key
        return f"  {name}:\n    base_url: {url}\n{key}"

    providers = "".join(
        provider(name, url)
        for name, url in (
            ("openai", "https://api.openai.com"),
            ("openai_ok", "https://api.openai.com/v1/"),
            ("groq", "https://api.groq.com/v1"),
            ("groq_ok", "https://api.groq.com/openai/v1"),
            ("together", "https://api.together.xyz/"),
            ("mistral", "https://API.mistral.ai"),
            ("openrouter", "https://openrouter.ai/v1"),
            ("openrouter_ok", "https://openrouter.ai/api/v1"),
            ("fireworks", "https://api.fireworks.ai/v1"),
            ("deepseek", "https://api.deepseek.com"),
            ("deepseek_v1", "https://api.deepseek.com/v1"),
            ("ollama", "http://127.0.0.1:11434"),
            ("creds", "https://u:pw@llm.example.com/"),
            ("custom_ok", "https://llm.example.com/serving/openai"),
        )
    )

    def known(name: str, url: str, want: str, fixed: str) -> str:
        host = url.split("/")[2].lower()
        return (
            f"warning: providers.{name}.base_url {url!r} does not end with {want}, where "
            f"{host} serves the OpenAI API: requests would go to {url}/chat/completions and "
            f"fail (404); use {fixed!r}"
        )

    def generic(name: str, url: str) -> str:
        return (
            f"warning: providers.{name}.base_url {url!r} has no path: requests will go to "
            f"{url}/chat/completions, but most OpenAI-compatible servers serve under /v1 "
            f"(base_url {url + '/v1'!r})"
        )

    assert check_warnings(tmp_path, providers) == [
        known("openai", "https://api.openai.com", "/v1", "https://api.openai.com/v1"),
        known("groq", "https://api.groq.com/v1", "/openai/v1", "https://api.groq.com/openai/v1"),
        known("together", "https://api.together.xyz", "/v1", "https://api.together.xyz/v1"),
        known("mistral", "https://API.mistral.ai", "/v1", "https://API.mistral.ai/v1"),
        known("openrouter", "https://openrouter.ai/v1", "/api/v1", "https://openrouter.ai/api/v1"),
        known(
            "fireworks",
            "https://api.fireworks.ai/v1",
            "/inference/v1",
            "https://api.fireworks.ai/inference/v1",
        ),
        generic("ollama", "http://127.0.0.1:11434"),
        generic("creds", "https://llm.example.com"),  # user:password is not printed
    ]


def test_check_reports_unset_variable_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(VALID, encoding="utf-8")
    result = check("-c", str(path))  # CLI_TEST_KEY is not set
    assert result.returncode == 1, result
    assert result.stderr.splitlines() == [
        f"{path}: invalid configuration (1 problem)",
        "  providers.east.api_key: environment variable CLI_TEST_KEY is not set "
        "(use ${CLI_TEST_KEY:-default})",
    ]


def test_check_yaml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "syntax.yaml"
    path.write_text("server:\n  host: 127.0.0.1\n port: 8080\n", encoding="utf-8")
    result = check("-c", str(path))
    assert result.returncode == 1, result
    lines = result.stderr.splitlines()
    assert lines[0] == f"{path}: invalid configuration (1 problem)"
    assert lines[1].startswith("  YAML syntax error: line 3, column 2: ")
    assert len(lines) == 2


def test_check_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    result = check("-c", str(path))
    assert result.returncode == 1, result
    assert result.stderr.splitlines() == [
        f"{path}: invalid configuration (1 problem)",
        "  cannot read config file: No such file or directory",
    ]


def test_check_uses_turnout_config_env_var(tmp_path: Path) -> None:
    path = tmp_path / "from-env.yaml"
    path.write_text(VALID, encoding="utf-8")
    env = clean_env(TURNOUT_CONFIG=str(path), CLI_TEST_KEY="k")
    result = check(env=env, cwd=tmp_path)
    assert result.returncode == 0, result
    assert result.stdout.splitlines()[-1].startswith(f"{path}: ok — ")


def test_shipped_config_checks_clean() -> None:
    path = REPO_ROOT / "config.yaml"
    result = check("-c", str(path), cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith(f"{path}: ok — ")


# --- turnout demo -----------------------------------------------------------------------

READY = "turnout demo ready: "
SIM_LINE = re.compile(r"^ {4}(sim-[abc]): (http://127\.0\.0\.1:\d+)/v1$")
START_TIMEOUT_S = 15.0


@dataclass
class Demo:
    proc: subprocess.Popen[str]
    api: str  # http://127.0.0.1:PORT/v1
    sims: dict[str, str]  # name -> http://127.0.0.1:PORT (control API root)
    banner: list[str]


def _pump(stream: object, lines: queue.Queue[str | None]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.put(line.rstrip("\n"))
    lines.put(None)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    stderr = (tmp_path / "demo.stderr").open("w")
    pump: threading.Thread | None = None
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        text=True,
        env=clean_env(),
        cwd=tmp_path,
    )
    try:
        lines: queue.Queue[str | None] = queue.Queue()
        pump = threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True)
        pump.start()
        banner: list[str] = []
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = lines.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                pytest.fail(f"no ready line within {START_TIMEOUT_S} s; got {banner}")
            if line is None:
                pytest.fail(f"demo exited early ({proc.poll()}): {banner}")
            banner.append(line)
            if line.startswith(READY):
                break
        api = line.removeprefix(READY)
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", api), line
        sims = {m[1]: m[2] for m in map(SIM_LINE.match, banner) if m}
        assert set(sims) == {"sim-a", "sim-b", "sim-c"}, banner
        yield Demo(proc, api, sims, banner)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if pump is not None:
            pump.join(timeout=5)  # reads to EOF now that the process is gone
        if proc.stdout is not None:
            proc.stdout.close()
        stderr.close()


def ask(client: openai.OpenAI) -> tuple[str, str, str]:
    """(answer text, x-turnout-target, x-turnout-attempts) of one chat completion."""
    raw = client.chat.completions.with_raw_response.create(
        model="demo", messages=[{"role": "user", "content": "Hello"}]
    )
    reply = raw.parse()
    text = reply.choices[0].message.content or ""
    return text, raw.headers["x-turnout-target"], raw.headers["x-turnout-attempts"]


def put_fault(sim_root: str, fault: dict[str, object]) -> dict[str, object]:
    # sent the way the banner's curl example sends it (no JSON content type)
    request = urllib.request.Request(
        sim_root + "/_sim/fault",
        data=json.dumps(fault).encode(),
        method="PUT",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status == 200
        return json.loads(resp.read())  # type: ignore[no-any-return]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_demo_serves_fails_over_and_stops_cleanly(
    demo: Demo, sig: signal.Signals, tmp_path: Path
) -> None:
    with openai.OpenAI(base_url=demo.api, api_key="unused", max_retries=0, timeout=10) as client:
        text, target, attempts = ask(client)
        assert text.strip()
        assert text.startswith("[sim-a]")
        assert (target, attempts) == ("small@sim-a", "1")

        # streaming through the SDK works too
        chunks = list(
            client.chat.completions.create(
                model="demo", messages=[{"role": "user", "content": "Hello"}], stream=True
            )
        )
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert streamed == text

        # `smart` (cost_quality): the cheap model for chat, the strong one for code, and the
        # banner's debug header says why
        for prompt, want in (
            ("Hello", "small@sim-a"),
            ("Write a Python function that merges two lists", "large@sim-c"),
        ):
            raw = client.chat.completions.with_raw_response.create(
                model="smart",
                messages=[{"role": "user", "content": prompt}],
                extra_headers={"x-turnout-debug": "route"},
            )
            assert raw.headers["x-turnout-target"] == want
            assert raw.headers["x-turnout-route"].startswith("policy=cost_quality task=")

        # the banner's Responses API and Anthropic SDK lines: the same answer, other formats
        assert client.responses.create(model="demo", input="Hello").output_text == text
        claude = anthropic.Anthropic(base_url=demo.api.removesuffix("/v1"), api_key="unused")
        with claude:
            message = claude.messages.create(
                model="demo", max_tokens=100, messages=[{"role": "user", "content": "Hello"}]
            )
        assert "".join(b.text for b in message.content if b.type == "text") == text

        assert put_fault(demo.sims["sim-a"], {"mode": "status", "status": 503})["mode"] == "status"
        text, target, attempts = ask(client)
        assert text.strip()
        assert text.startswith("[sim-b]")
        # sim-a's 503 was retried once on sim-a (a one-off is common), then sim-b answered
        assert (target, attempts) == ("small@sim-b", "3")

    started = time.monotonic()
    demo.proc.send_signal(sig)
    assert demo.proc.wait(timeout=5) == 0
    assert time.monotonic() - started < 5
    assert "turnout demo stopping" in (tmp_path / "demo.stderr").read_text()
