"""Which target answered each recent request, so a caller's later verdict on the answer
(`POST /v1/feedback`) reaches the route's learning policy once, and only once - and only
from the client key that made the request (with client keys configured)."""

from __future__ import annotations

from collections import OrderedDict

KEEP = 10_000  # answers remembered, and verdicts remembered (to refuse a second one)


class Answers:
    """The last `keep` answers in a ring: remembering one is a dict store, a list store and
    the eviction of the answer `keep` places back (every request that got one pays it)."""

    __slots__ = ("_judged", "_keep", "_next", "_ring", "_served")

    def __init__(self, keep: int = KEEP) -> None:
        self._keep = keep
        # id -> (route key, target, the client that asked ("" without keys), its ring slot)
        self._served: dict[str, tuple[str, str, str, int]] = {}
        self._ring: list[str | None] = [None] * keep  # slot -> the id remembered there
        self._next = 0
        self._judged: OrderedDict[str, None] = OrderedDict()

    def remember(self, request_id: str, route_key: str, target_id: str, client: str = "") -> None:
        slot = self._next
        self._next = slot + 1 if slot + 1 < self._keep else 0
        ring = self._ring
        old = ring[slot]
        served = self._served
        if old is not None:  # the answer `keep` places back is forgotten, unless re-remembered
            held = served.get(old)
            if held is not None and held[3] == slot:
                del served[old]
        ring[slot] = request_id
        served[request_id] = (route_key, target_id, client, slot)

    def owner(self, request_id: str) -> str | None:
        """The client whose request `request_id` was, if it is remembered and not judged."""
        held = self._served.get(request_id)
        return None if held is None else held[2]

    def judge(self, request_id: str) -> tuple[str, str] | None:
        """Take the answer `request_id` for its one verdict: (route key, target), or None if
        it is unknown or already judged (replays must not skew what a policy learns)."""
        held = self._served.pop(request_id, None)
        if held is None:
            return None
        self._judged[request_id] = None
        if len(self._judged) > self._keep:
            self._judged.popitem(last=False)
        return held[0], held[1]

    def judged(self, request_id: str) -> bool:
        return request_id in self._judged
