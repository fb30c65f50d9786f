"""A client key's metric attributes: its configured name and labels, so the metrics' label
sets are bounded by the config. Built once per client config (configs are frozen), not per
request."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config.clients import ClientConfig

Key = tuple[tuple[str, str], ...]  # a label set as `Tally.add_key` takes it


@dataclass(frozen=True, slots=True)
class ClientLabels:
    client: Key  # ("client", name), ("client_<label>", value)...
    admitted: Key  # + result=admitted, limit=""
    tokens: Key  # + estimated=false
    estimated: Key  # + estimated=true

    def limited(self, limit: str) -> Key:
        return (*self.client, ("result", "limited"), ("limit", limit))


_CACHE: dict[int, tuple[ClientConfig, ClientLabels]] = {}  # id(client) -> (client, labels)


def labels_of(client: ClientConfig) -> ClientLabels:
    hit = _CACHE.get(id(client))
    if hit is not None and hit[0] is client:
        return hit[1]
    if len(_CACHE) > 10_000:  # the clients of many reloads: start again
        _CACHE.clear()
    base = (("client", client.name), *((f"client_{k}", v) for k, v in client.labels.items()))
    made = ClientLabels(
        base,
        (*base, ("result", "admitted"), ("limit", "")),
        (*base, ("estimated", "false")),
        (*base, ("estimated", "true")),
    )
    _CACHE[id(client)] = (client, made)
    return made
