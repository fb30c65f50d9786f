"""Who is calling (`gateway.edge.clients.authenticate`): the digest of a key that named a client
is remembered (one SHA-256 per request was a measurable share of it), which changes nothing a
caller can see — a key a reload removed is refused, and unknown keys are never kept."""

from __future__ import annotations

import pytest

from gateway.config import load_data
from gateway.config.clients import digest
from gateway.config.model import Config
from gateway.edge import clients as edge_clients
from gateway.edge.clients import authenticate
from gateway.edge.errors import Unauthorized

KEY = "tk-auth-0123456789abcdefghijklmnop"


def config(*keys: str) -> Config:
    return load_data(
        {
            "providers": {"p": {"base_url": "http://127.0.0.1:9/v1"}},
            "routes": [{"alias": "chat", "candidates": ["m@p"]}],
            "clients": {f"c{i}": {"key_sha256": digest(k)} for i, k in enumerate(keys)},
        },
        env={},
    )


def test_a_remembered_key_is_still_refused_once_a_reload_removed_it() -> None:
    with_key, without = config(KEY), config("tk-other-0123456789abcdefghijk")
    auth = {"Authorization": f"Bearer {KEY}"}
    first = authenticate(with_key, auth)
    assert first is not None and first.name == "c0"
    assert authenticate(with_key, {"x-api-key": KEY}) is first  # remembered: the same answer
    with pytest.raises(Unauthorized):
        authenticate(without, auth)


def test_unknown_keys_are_never_remembered() -> None:
    cfg = config(KEY)
    before = len(edge_clients._KNOWN)
    for i in range(50):
        with pytest.raises(Unauthorized):
            authenticate(cfg, {"Authorization": f"Bearer tk-guess-{i:04d}-0123456789abcdef"})
    assert len(edge_clients._KNOWN) == before
