"""The `turnout` command line (also `python -m gateway`): serve, check, schema, sim, demo."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.config import Config, ConfigError, load_file
from gateway.config.checks import config_warnings
from gateway.edge.errors import counted

DEFAULT_CONFIG = "config.yaml"


def _config_path(arg: str | None) -> str:
    return arg or os.environ.get("TURNOUT_CONFIG") or DEFAULT_CONFIG


def _load_or_exit(path: str) -> Config:
    try:
        return load_file(path)
    except ConfigError as err:
        print(
            f"{path}: invalid configuration ({counted(len(err.issues), 'problem')})",
            file=sys.stderr,
        )
        for issue in err.issues:
            print(f"  {issue}", file=sys.stderr)
        raise SystemExit(1) from None


def cmd_check(args: argparse.Namespace) -> int:
    path = _config_path(args.config)
    config = _load_or_exit(path)
    for warning in config_warnings(config):
        print(f"warning: {warning}")
    from gateway.edge.exposure import bind_problems, describe_admin, exposure_problems

    server = config.server
    for problem in exposure_problems(config, server.host) + bind_problems(config, server.port, 1):
        print(f"warning: serve would stop: {problem}")
    admin = describe_admin(config, server.port)
    if admin is not None:
        print(admin)
    print(
        f"{path}: ok — {len(config.providers)} providers, {len(config.targets)} targets, "
        f"{len(config.routes)} routes ({', '.join(config.aliases)})"
    )
    return 0


def cmd_key(args: argparse.Namespace) -> int:
    """`turnout key new`: a fresh client key, and the line that goes in the config instead."""
    from gateway.config.clients import digest, new_key

    key = new_key()
    print(f"key (give it to the client, keep it secret): {key}")
    print("config (the key itself is never written there):")
    print("  clients:")
    print(f"    {args.name}:")
    print(f"      key_sha256: {digest(key)}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    import json

    from gateway.config.schema import config_schema

    text = json.dumps(config_schema(), indent=2, ensure_ascii=False) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"{args.output}: JSON Schema of the config file written")
        return 0
    try:
        sys.stdout.flush()
        sys.stdout.buffer.write(text.encode("utf-8"))  # JSON is UTF-8, whatever the locale
        sys.stdout.flush()
    except BrokenPipeError:  # `turnout schema | head`: no traceback at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.edge.app import build_app
    from gateway.edge.server import Server, run, wait_for_signal
    from gateway.runtime import heap

    path = _config_path(args.config)
    config = _load_or_exit(path)
    if os.environ.get("TURNOUT_LOG_FORMAT", config.telemetry.log_format) == "json":
        from gateway.telemetry.logs import use_json_logs

        use_json_logs()
    host = args.host or os.environ.get("TURNOUT_HOST") or config.server.host
    env_port = os.environ.get("TURNOUT_PORT")
    port = args.port if args.port is not None else int(env_port) if env_port else config.server.port
    from gateway.edge.exposure import bind_problems, exposure_problems

    problems = exposure_problems(config, host) + bind_problems(config, port, args.workers)
    if problems:
        for problem in problems:
            print(f"{Path(path).name}: {problem}", file=sys.stderr)
        return 2
    if args.workers > 1:
        from gateway.edge.workers import supervise

        if port == 0:
            print("--workers needs a fixed --port (workers share it)", file=sys.stderr)
            return 2
        worker = ["serve", "-c", path, "--host", host, "--port", str(port), "--reuse-port"]
        return supervise(
            ["--log-level", args.log_level, *worker], args.workers, config.server.grace_s
        )

    async def main() -> None:
        app = build_app(config)
        server = Server(app, host, port, grace_s=config.server.grace_s, reuse_port=args.reuse_port)
        await server.start()
        heap.settle()  # what start-up made lives as long as the process
        _reload_on_sighup(app)
        admin = "" if server.admin_url == server.url else f"; admin plane on {server.admin_url}"
        print(f"turnout serving {Path(path).name} on {server.url}/v1{admin}", flush=True)
        try:
            await wait_for_signal()
        finally:
            await server.stop()

    run(main())
    return 0


def _reload_on_sighup(app: Any) -> None:
    import asyncio
    import signal

    from gateway.edge.context import RUNTIME
    from gateway.runtime.reload import reload

    loop = asyncio.get_running_loop()
    rt = app[RUNTIME]
    tasks: set[asyncio.Task[Any]] = set()

    def on_hup() -> None:
        task = loop.create_task(reload(rt))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)


def cmd_sim(args: argparse.Namespace) -> int:
    from gateway.edge.server import run
    from gateway.sim.cli import run_sim

    run(run_sim(args))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo
    from gateway.edge.server import run

    run(run_demo(args.port, chaos=args.chaos, chaos_period_s=args.chaos_period))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from gateway.sim.cli import add_sim_arguments

    parser = argparse.ArgumentParser(
        prog="turnout", description="An OpenAI-compatible, failover LLM gateway."
    )
    parser.add_argument("--log-level", default=os.environ.get("TURNOUT_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument(
        "-c", "--config", help=f"config file (default ${{TURNOUT_CONFIG}} or {DEFAULT_CONFIG})"
    )
    serve.add_argument("--host", help="address to bind (default $TURNOUT_HOST, else server.host)")
    serve.add_argument(
        "--port", type=int, help="port to bind (default $TURNOUT_PORT, else server.port)"
    )
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check", help="validate a config file; print every error")
    check.add_argument("-c", "--config", help=f"config file (default {DEFAULT_CONFIG})")
    check.set_defaults(func=cmd_check)

    schema = sub.add_parser(
        "schema", help="print the config file's JSON Schema (for editors' completion)"
    )
    schema.add_argument("-o", "--output", help="write it to this file instead of stdout")
    schema.set_defaults(func=cmd_schema)

    key = sub.add_parser("key", help="client keys: `turnout key new` makes one")
    key.add_argument("action", choices=["new"], help="new: print a fresh key and its config line")
    key.add_argument("--name", default="my-client", help="the client's name in the config line")
    key.set_defaults(func=cmd_key)

    sim = sub.add_parser("sim", help="run a simulated OpenAI-compatible provider")
    add_sim_arguments(sim)
    sim.set_defaults(func=cmd_sim)

    demo = sub.add_parser("demo", help="gateway + three simulated providers, no Redis, no keys")
    demo.add_argument("--port", type=int, default=8080, help="gateway port (default 8080)")
    demo.add_argument("--chaos", action="store_true", help="break and heal sim-a every few seconds")
    demo.add_argument("--chaos-period", type=float, default=5.0, help=argparse.SUPPRESS)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
