"""``turnout sim``: run one simulated provider until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from gateway.sim.faults import Fault
from gateway.sim.server import SimServer
from gateway.sim.state import DEFAULT_MODELS, FORMATS, TOOL_MODES


def _fault(spec: str) -> Fault:
    try:
        return Fault.parse_spec(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _models(text: str) -> list[str]:
    models = [m.strip() for m in text.split(",") if m.strip()]
    if not models:
        raise argparse.ArgumentTypeError("--models needs at least one model name")
    return models


def add_sim_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the sim's options to ``parser`` (the ``turnout sim`` subcommand)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: a free one)")
    parser.add_argument("--name", default="sim", help="name shown in answers and logs")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="delay before response headers"
    )
    parser.add_argument(
        "--chunk-interval-ms", type=float, default=0.0, help="delay between streamed chunks"
    )
    parser.add_argument("--words", type=int, default=12, help="words per answer (default 12)")
    parser.add_argument(
        "--models",
        type=_models,
        default=list(DEFAULT_MODELS),
        help="comma-separated models listed by /v1/models (any model is accepted)",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="openai",
        help="the wire format served: openai (/v1/chat/completions, /v1/completions, "
        "/v1/embeddings, /v1/models; the default), anthropic (/v1/messages, /v1/models) or "
        "gemini (/v1beta/models/MODEL:generateContent, :streamGenerateContent, /v1beta/models)",
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help="require 'Authorization: Bearer KEY' (openai), 'x-api-key: KEY' (anthropic) or "
        "'x-goog-api-key: KEY' (gemini)",
    )
    parser.add_argument(
        "--voice",
        default="",
        help="the name the answers carry, '[VOICE] ...' (default: --name); sims with one voice "
        "answer alike, like two providers of one model",
    )
    parser.add_argument(
        "--prefill",
        choices=("ignore", "continue", "reject"),
        default="ignore",
        help="a chat request ending with an assistant message: answer from scratch (ignore, "
        "as OpenAI does), continue it, or reject it with a 400",
    )
    parser.add_argument(
        "--tools",
        choices=TOOL_MODES,
        default="ignore",
        help="a request offering tools: answer with text (ignore, the default) or with one "
        'call to the forced (else the first) tool with {"query": PROMPT} (call)',
    )
    parser.add_argument(
        "--fault",
        type=_fault,
        default=Fault(),
        metavar="SPEC",
        help="starting fault: ok, status:503, status:429:2, hang, reset, slow_first_token:20, "
        "cut:5, stall:5, malformed:5, garbled:5 (one bad line after 5 events, then the rest), "
        "garbled:5:4 (four bad lines), no_done, drip:0.3, error_event:5 (an in-band error "
        "after 5 events) (append *N to affect N requests)",
    )


async def run_sim(args: argparse.Namespace) -> None:
    """Start a sim from parsed ``args``, print where it listens, and serve until cancelled or
    sent SIGINT/SIGTERM."""
    sim = SimServer(
        args.name,
        latency_ms=args.latency_ms,
        chunk_interval_ms=args.chunk_interval_ms,
        n_words=args.words,
        models=args.models,
        api_key=args.api_key,
        voice=args.voice,
        prefill=args.prefill,
        format=args.format,
        tools=args.tools,
        fault=args.fault,
    )
    await sim.start(args.host, args.port)
    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    shown = args.name if args.format == "openai" else f"{args.name} ({args.format})"
    api = sim.base_url.removeprefix(sim.url)  # /v1, or Gemini's /v1beta
    print(f"turnout sim {shown} listening on http://{shown_host}:{sim.port}{api}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await sim.close()


def main(argv: list[str] | None = None) -> None:
    """``python -m gateway.sim``: the same as ``turnout sim``."""
    parser = argparse.ArgumentParser(prog="python -m gateway.sim", description=__doc__)
    add_sim_arguments(parser)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_sim(args))
