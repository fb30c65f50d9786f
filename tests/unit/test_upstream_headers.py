"""What the gateway sends a provider: the client's allowed headers and its own, one value
per header whatever the case, the provider's own winning."""

from __future__ import annotations

from multidict import CIMultiDict, CIMultiDictProxy

from gateway.config import load_data
from gateway.config.model import ProviderConfig
from gateway.edge.headers import upstream_headers


def provider(headers: dict[str, str], fmt: str = "openai") -> ProviderConfig:
    config = load_data(
        {
            "providers": {
                "p": {
                    "base_url": "http://127.0.0.1:9/v1",
                    "api_key": "sk-provider",
                    "format": fmt,
                    "headers": headers,
                }
            },
            "routes": [{"alias": "r", "candidates": ["m@p"]}],
        },
        env={},
    )
    return config.providers["p"]


def client(**headers: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict({k.replace("_", "-"): v for k, v in headers.items()}))


def one_each(sent: dict[str, str]) -> dict[str, str]:
    lower = [k.lower() for k in sent]
    assert len(lower) == len(set(lower)), sent  # aiohttp would send both lines
    return {k.lower(): v for k, v in sent.items()}


def test_a_header_the_provider_sets_is_sent_once_with_its_value() -> None:
    p = provider({"User-Agent": "gw/1", "OpenAI-Beta": "assistants=v2"})
    sent = one_each(
        upstream_headers(
            client(User_Agent="openai-python/1", OpenAI_Beta="x", traceparent="00-ab-cd-01"),
            p,
            "rid",
        )
    )
    assert sent["user-agent"] == "gw/1" and sent["openai-beta"] == "assistants=v2"
    assert sent["traceparent"] == "00-ab-cd-01"  # not set by the provider: forwarded


def test_the_clients_allowed_headers_are_forwarded_and_its_credentials_never() -> None:
    sent = one_each(
        upstream_headers(
            client(User_Agent="my-app/1", Authorization="Bearer client-key", baggage="u=1"),
            provider({}),
            "rid",
        )
    )
    assert sent["user-agent"] == "my-app/1"
    assert sent["authorization"] == "Bearer sk-provider"  # the provider's key, not the client's
    assert "baggage" not in sent and sent["x-request-id"] == "rid"


def test_anthropic_beta_goes_to_anthropic_providers_only() -> None:
    beta = client(anthropic_beta="prompt-caching-2024-07-31", baggage="user=u-1")
    to_anthropic = one_each(upstream_headers(beta, provider({}, "anthropic"), "rid"))
    assert to_anthropic["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert "baggage" not in to_anthropic
    for fmt in ("openai", "gemini"):
        assert "anthropic-beta" not in one_each(upstream_headers(beta, provider({}, fmt), "rid"))
    own = provider({"anthropic-beta": "output-128k-2025-02-19"}, "anthropic")
    assert (
        one_each(upstream_headers(beta, own, "rid"))["anthropic-beta"] == "output-128k-2025-02-19"
    )
