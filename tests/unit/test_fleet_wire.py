"""What replicas exchange through Redis, byte for byte: the `FleetEvent` wire format (round
trips, millisecond durations, garbage and wrongly typed fields rejected) and the key names
(one hash tag per target, prefixes that never collide).

Pure: no sockets, no Redis.
"""

from __future__ import annotations

import pytest

from health.fleet_event import EventKind, FleetEvent, Keys
from tests.unit.fleet import TID

# -- the wire format -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        FleetEvent(EventKind.TRIP, TID, 10.5, 3, "5 consecutive failures", "r-1"),
        FleetEvent(EventKind.CLOSE, TID, reason="probes succeeded", replica="r-2"),
        FleetEvent(EventKind.THROTTLE, "claude@anthropic", 0.25, replica="r-3"),
        FleetEvent(EventKind.HEARTBEAT, replica="r-4"),
        FleetEvent(EventKind.TRIP, "m:ü/ß@p", 0.001, 0, "état «critique»", ""),
    ],
)
def test_event_round_trips(event: FleetEvent) -> None:
    data = event.encode()
    assert isinstance(data, bytes)
    assert FleetEvent.decode(data) == event
    assert FleetEvent.decode(data.decode()) == event  # str payloads too


def test_encode_rounds_the_duration_to_the_millisecond() -> None:
    event = FleetEvent.decode(FleetEvent(EventKind.TRIP, TID, 1.23456).encode())
    assert event is not None
    assert event.duration_s == 1.235


def test_decode_defaults_and_rejects_out_of_range() -> None:
    assert FleetEvent.decode(b'{"k":"close","t":"x"}') == FleetEvent(EventKind.CLOSE, "x")
    assert FleetEvent.decode(b'{"k":"heartbeat"}') == FleetEvent(EventKind.HEARTBEAT)
    assert FleetEvent.decode(b'{"k":"close"}') is None  # no target: no phantom target
    assert FleetEvent.decode(b'{"k":"trip","t":"x","d":-5}') is None
    assert FleetEvent.decode(b'{"k":"trip","t":"x","d":1e308}') is None  # "open forever"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00",
        b'{"k":"trip"',  # truncated
        b"null",
        b"42",
        b'"trip"',
        b'["trip", "x", 10]',
        b"{}",  # no kind
        b'{"t":"x","d":10}',  # no kind
        b'{"k":"explode","t":"x"}',  # unknown kind
        b'{"k":"TRIP","t":"x"}',  # kinds are lower case
        b'{"k":null,"t":"x"}',
        b'{"k":1,"t":"x"}',
        b'{"k":["trip"],"t":"x"}',
        b'{"k":{"v":"trip"},"t":"x"}',
        b'{"k":"trip","t":"x","d":"ten"}',
        b'{"k":"trip","t":"x","d":[10]}',
        b'{"k":"trip","t":"x","d":{"s":10}}',
        b'{"k":"trip","t":"x","d":null}',
        b'{"k":"trip","t":"x","n":"three"}',
        b'{"k":"trip","t":"x","n":[3]}',
        b'{"k":"trip","t":"x","n":null}',
        b'{"k":"trip","t":"x","d":1e999}',  # out of range
    ],
)
def test_decode_returns_none_for_garbage(data: bytes) -> None:
    assert FleetEvent.decode(data) is None


@pytest.mark.parametrize(
    "data",
    [
        b'{"k":"trip","t":null,"d":10}',
        b'{"k":"trip","t":7,"d":10}',
        b'{"k":"trip","t":["x"],"d":10}',
        b'{"k":"trip","t":"x","d":"inf"}',
        b'{"k":"trip","t":"x","d":"10"}',
        b'{"k":"trip","t":"x","d":true}',
    ],
)
def test_decode_rejects_wrongly_typed_fields(data: bytes) -> None:
    assert FleetEvent.decode(data) is None


# -- key names ---------------------------------------------------------------------------------------


def hash_tag(key: str) -> str:
    """The part of a key Redis Cluster hashes: the first non-empty `{...}`, else the key."""
    start = key.find("{")
    if start != -1:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def fleet_keys(keys: Keys) -> list[str]:
    return [keys.state, keys.changes, keys.meta, keys.window(1_700_000_000), keys.window(1)]


def all_keys(keys: Keys, target_id: str) -> list[str]:
    return [*fleet_keys(keys), keys.probe(target_id)]


TARGETS = ["gpt-4o@openai", "claude-3.5:sonnet@anthropic", "m@p", "llama_3-70b@local.vllm"]
PREFIXES = ["turnout", "turnout2", "sy", "sy:a", "sy:a:b", "prod-eu"]


@pytest.mark.parametrize("prefix", ["turnout", "sy:a"])
def test_the_fleets_keys_share_one_hash_slot_under_the_prefix(prefix: str) -> None:
    """The tick's script reads the state and the window together: on a Cluster they must
    be in one slot."""
    names = fleet_keys(Keys(prefix))
    assert len(set(names)) == len(names)
    for name in names:
        assert name.startswith(f"{prefix}:{{fleet}}:")
        assert hash_tag(name) == "fleet"


@pytest.mark.parametrize("target_id", TARGETS)
def test_a_probe_lock_is_in_its_targets_slot(target_id: str) -> None:
    assert hash_tag(Keys("sy:a").probe(target_id)) == target_id


def test_default_prefix_and_channel() -> None:
    assert Keys().prefix == "turnout"
    assert Keys().channel == "turnout:events"
    assert Keys().state == "turnout:{fleet}:state"
    assert Keys().probe(TID) == "turnout:{gpt-4o@openai}:probe"


def test_targets_never_share_probe_locks() -> None:
    keys = Keys()
    assert len({keys.probe(t) for t in TARGETS}) == len(TARGETS)


def test_two_prefixes_never_collide() -> None:
    seen: dict[str, str] = {}
    for prefix in PREFIXES:
        keys = Keys(prefix)
        for name in [keys.channel] + [k for t in TARGETS for k in all_keys(keys, t)]:
            assert seen.setdefault(name, prefix) == prefix, (
                f"{name} under {prefix} and {seen[name]}"
            )
    channels = {Keys(p).channel for p in PREFIXES}
    assert len(channels) == len(PREFIXES)
