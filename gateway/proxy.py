"""The proxied endpoints: accept -> resolve -> rank -> attempt loop -> relay.

One retry loop, here. Each attempt goes to the next ranked candidate that the health store
admits; an attempt that fails before anything reached the client moves on to the next one.
Caller errors are passed through untouched and never retried.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from gateway.accept import parse_payload, read_body
from gateway.attempt import AttemptResult, AttemptSpec, Reply, run_attempt
from gateway.context import REQUEST_ID, RUNTIME
from gateway.errors import AllCandidatesFailed, NoCandidateAvailable, UnknownModel
from gateway.headers import client_headers, upstream_headers
from gateway.relay import relay_stream
from gateway.runtime import Runtime
from health.outcome import FailureReason, Outcome, OutcomeKind
from policies.features import extract
from policies.types import Ranked

log = logging.getLogger("switchyard.proxy")

CLIENT_GONE = Outcome(OutcomeKind.NEUTRAL, FailureReason.CLIENT_GONE)

# path on the gateway -> (operation, path under the provider's base URL)
OPERATIONS = {
    "/v1/chat/completions": ("chat", "/chat/completions"),
    "/v1/completions": ("completions", "/completions"),
    "/v1/embeddings": ("embeddings", "/embeddings"),
}


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    target_id: str
    outcome: Outcome


async def handle(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    config = rt.config  # one config for the whole request, even across a reload
    operation, upstream_path = OPERATIONS[request.path]
    body = await read_body(request, config.server.max_body_bytes)
    payload = parse_payload(body, operation)
    alias = payload["model"]
    route = config.route(alias)
    if route is None:
        raise UnknownModel(alias, config.aliases)
    features = extract(operation, payload, len(body))
    candidates = [config.targets[t].profile for t in route.candidates]
    ranked = rt.policies[alias].rank(features, candidates, rt.store.snapshot(route.candidates))
    return await _attempt_loop(request, rt, ranked, payload, upstream_path, route.max_attempts)


async def _attempt_loop(
    request: web.Request,
    rt: Runtime,
    ranked: list[Ranked],
    payload: dict[str, Any],
    upstream_path: str,
    max_attempts: int,
) -> web.StreamResponse:
    config = rt.config
    stream = payload.get("stream") is True
    request_id = request[REQUEST_ID]
    attempts: list[AttemptRecord] = []
    for choice in ranked:
        if len(attempts) >= max_attempts:
            break
        target = config.targets[choice.candidate.target_id]
        provider = config.providers[target.provider]
        permit = rt.store.acquire(target.id)
        if permit is None:
            continue
        payload["model"] = target.model
        spec = AttemptSpec(
            target=target,
            provider=provider,
            path=upstream_path,
            body=orjson.dumps(payload),
            headers=upstream_headers(request.headers, provider, request_id),
            stream=stream,
        )
        result: AttemptResult | None = None
        try:
            result = await run_attempt(spec, rt.pool.session(provider))
        finally:
            if result is None:  # cancelled: the client went away
                rt.store.release(permit, CLIENT_GONE)
        attempts.append(AttemptRecord(target.id, result.outcome))
        headers = _our_headers(target.id, len(attempts), request_id)
        if result.stream is not None:
            final = CLIENT_GONE
            response = web.StreamResponse(
                status=result.stream.response.status,
                headers={
                    **client_headers(result.stream.headers),
                    **headers,
                    "Content-Type": "text/event-stream; charset=utf-8",
                    "Cache-Control": "no-cache",
                    "X-Accel-Buffering": "no",
                },
            )
            loop = asyncio.get_running_loop()
            try:
                await response.prepare(request)
                final = await relay_stream(
                    result.stream,
                    response,
                    idle_s=provider.timeouts.idle_s,
                    deadline=result.stream.started_s + provider.timeouts.total_s,
                )
                if final.kind is not OutcomeKind.NEUTRAL:
                    await response.write_eof()
            except ConnectionError:
                final = CLIENT_GONE
            finally:
                result.stream.close()
                rt.store.release(permit, final)
                if final.kind is OutcomeKind.PROVIDER_FAILURE:
                    log.warning(
                        "stream from %s failed after first byte: %s (request %s, %.0f ms)",
                        target.id,
                        final.summary,
                        request_id,
                        (loop.time() - result.stream.started_s) * 1000,
                    )
            return response
        rt.store.release(permit, result.outcome)
        if result.reply is not None:
            return _reply(result.reply, headers)
        log.info(
            "attempt %d on %s failed: %s (request %s)%s",
            len(attempts),
            target.id,
            result.outcome.summary,
            request_id,
            "" if len(attempts) >= max_attempts else "; failing over",
        )
    if not attempts:
        snapshot = rt.store.snapshot(c.candidate.target_id for c in ranked)
        waits = [max(h.open_for_s, h.throttled_for_s) for h in snapshot.values()]
        raise NoCandidateAvailable(
            "No candidate target is available right now (all are open or throttled); retry later.",
            retry_after_s=min(waits, default=1.0),
        )
    summary = "; ".join(f"{a.target_id}: {a.outcome.summary}" for a in attempts)
    raise AllCandidatesFailed(
        f"All {len(attempts)} upstream attempts failed: {summary}.",
        headers={"x-switchyard-attempts": str(len(attempts))},
    )


def _our_headers(target_id: str, attempts: int, request_id: str) -> dict[str, str]:
    return {
        "x-switchyard-target": target_id,
        "x-switchyard-attempts": str(attempts),
        "x-request-id": request_id,
    }


def _reply(reply: Reply, headers: dict[str, str]) -> web.Response:
    out = client_headers(reply.headers)
    out.update(headers)
    out["Content-Type"] = reply.content_type
    return web.Response(status=reply.status, body=reply.body, headers=out)
