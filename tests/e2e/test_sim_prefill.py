"""The simulated provider's voice and prefill modes and time-bounded faults, over a real
socket: what the continuation and recovery tests rely on (two sims of one voice answer alike;
`prefill: continue` finishes a prefilled answer; `reject` refuses one with a 400 in OpenAI's
shape; a fault with `for_s` ends by itself)."""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.sim import Fault, SimServer, answer_text
from gateway.sim.answers import answer_words, continuation
from gateway.sim.cli import add_sim_arguments
from tests.builders import SimFactory, chat, set_fault, sse_events
from tests.waiting import eventually

PROMPT = "continue me"


async def ask(http: aiohttp.ClientSession, sim: SimServer, body: dict[str, Any]) -> Any:
    async with http.post(sim.url + "/v1/chat/completions", json=body) as r:
        if body.get("stream"):
            return r.status, await r.read()
        return r.status, await r.json()


def prefilled(text: str, **extra: Any) -> dict[str, Any]:
    body = chat(PROMPT, model="m", **extra)
    body["messages"].append({"role": "assistant", "content": text})
    return body


async def test_sims_of_one_voice_answer_alike_and_the_voice_defaults_to_the_name(
    sim_factory: SimFactory, http: aiohttp.ClientSession
) -> None:
    a = await sim_factory("a", voice="model-x")
    b = await sim_factory("b", voice="model-x")
    c = await sim_factory("c")
    answers = [(await ask(http, s, chat(PROMPT, model="m")))[1] for s in (a, b, c)]
    texts = [body["choices"][0]["message"]["content"] for body in answers]
    assert texts[0] == texts[1] == answer_text("model-x", "m", PROMPT, 12)
    assert texts[2] == answer_text("c", "m", PROMPT, 12)


@pytest.mark.parametrize("cut", [0, 1, 9, 20])
def test_continuation_finishes_any_prefix_of_the_answer(cut: int) -> None:
    words = answer_words("v", "m", PROMPT, 8)
    text = "".join(words)
    assert text[:cut] + "".join(continuation(words, text[:cut])) == text


async def test_prefill_continue_streams_the_rest_of_the_answer(
    sim_factory: SimFactory, http: aiohttp.ClientSession
) -> None:
    sim = await sim_factory("v", prefill="continue")
    full = answer_text("v", "m", PROMPT, 12)
    status, body = await ask(http, sim, prefilled(full[:15], stream=True))
    assert status == 200
    text = "".join(
        c["delta"].get("content") or ""
        for name, d in sse_events(body)
        if name is None and d != "[DONE]"
        for c in orjson.loads(d)["choices"]
    )
    assert full[:15] + text == full
    status, whole = await ask(http, sim, prefilled(full[:15]))
    assert full[:15] + whole["choices"][0]["message"]["content"] == full


async def test_prefill_reject_is_a_400_naming_messages(
    sim_factory: SimFactory, http: aiohttp.ClientSession
) -> None:
    sim = await sim_factory("v", prefill="reject")
    status, body = await ask(http, sim, prefilled("Hello"))
    assert status == 400
    assert body["error"]["param"] == "messages"
    assert "prefill" in body["error"]["message"]
    status, _ = await ask(http, sim, chat(PROMPT, model="m"))  # no prefill: answered
    assert status == 200


async def test_prefill_ignore_answers_from_scratch(
    sim_factory: SimFactory, http: aiohttp.ClientSession
) -> None:
    sim = await sim_factory("v")  # the default, as OpenAI does
    status, body = await ask(http, sim, prefilled("Hello"))
    assert status == 200
    assert body["choices"][0]["message"]["content"] == answer_text("v", "m", PROMPT, 12)


def test_the_cli_takes_voice_and_prefill_and_rejects_an_unknown_mode() -> None:
    parser = argparse.ArgumentParser()
    add_sim_arguments(parser)
    args = parser.parse_args(["--voice", "model-x", "--prefill", "continue"])
    assert (args.voice, args.prefill) == ("model-x", "continue")
    with pytest.raises(SystemExit):
        parser.parse_args(["--prefill", "sometimes"])
    with pytest.raises(ValueError, match="prefill"):
        SimServer("x", prefill="sometimes")


async def test_a_fault_for_some_seconds_ends_by_itself(
    sim_factory: SimFactory, http: aiohttp.ClientSession
) -> None:
    """A flapping provider's outage, as the recovery tests need it: down for `for_s`, then
    healthy again with nobody changing the fault."""
    sim = await sim_factory("v")
    set_fault(sim, {"mode": "status", "status": 503, "for_s": 0.3})
    assert (await ask(http, sim, chat(PROMPT, model="m")))[0] == 503
    async with http.get(sim.url + "/_sim/fault") as r:
        assert (await r.json())["for_s"] == 0.3

    async def recovered() -> None:
        assert (await ask(http, sim, chat(PROMPT, model="m")))[0] == 200

    await eventually(recovered, timeout_s=3.0)
    with pytest.raises(ValueError, match="for_s"):
        Fault.from_json({"mode": "hang", "for_s": -1})
