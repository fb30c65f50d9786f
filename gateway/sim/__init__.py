"""Simulated OpenAI-compatible (or, with ``format="anthropic"``, Anthropic Messages API; with
``format="gemini"``, Gemini's Generative Language API) provider with injectable faults.

Start one in-process with ``await SimServer("sim-a").start()`` and point a client at its
``base_url`` (the ``anthropic`` and ``google-genai`` SDKs at its ``url``); change its behaviour with ``sim.state.set_fault(Fault.parse_spec("status:503"))``
or over HTTP with ``PUT /_sim/fault``.
"""

from gateway.sim.answers import answer_text, answer_words
from gateway.sim.faults import MODES, Fault, FaultMode
from gateway.sim.server import SimServer, build_sim_app
from gateway.sim.state import Attempt, SimSettings, SimState

__all__ = [
    "MODES",
    "Attempt",
    "Fault",
    "FaultMode",
    "SimServer",
    "SimSettings",
    "SimState",
    "answer_text",
    "answer_words",
    "build_sim_app",
]
