"""Which target answered each recent request, so a caller's later verdict on the answer
(`POST /v1/feedback`) reaches the route's learning policy once, and only once - and only
from the client key that made the request (with client keys configured)."""

from __future__ import annotations

from collections import OrderedDict

KEEP = 10_000  # answers remembered, and verdicts remembered (to refuse a second one)


class Answers:
    def __init__(self, keep: int = KEEP) -> None:
        self._keep = keep
        self._served: OrderedDict[str, tuple[str, str]] = OrderedDict()  # id -> route, target
        self._owners: dict[str, str] = {}  # id -> the client that asked ("" without keys)
        self._judged: OrderedDict[str, None] = OrderedDict()

    def remember(self, request_id: str, route_key: str, target_id: str, client: str = "") -> None:
        self._served[request_id] = (route_key, target_id)
        self._owners[request_id] = client
        if len(self._served) > self._keep:
            gone, _ = self._served.popitem(last=False)
            self._owners.pop(gone, None)

    def owner(self, request_id: str) -> str | None:
        """The client whose request `request_id` was, if it is remembered and not judged."""
        return self._owners.get(request_id) if request_id in self._served else None

    def judge(self, request_id: str) -> tuple[str, str] | None:
        """Take the answer `request_id` for its one verdict: (route key, target), or None if
        it is unknown or already judged (replays must not skew what a policy learns)."""
        served = self._served.pop(request_id, None)
        self._owners.pop(request_id, None)
        if served is not None:
            self._judged[request_id] = None
            if len(self._judged) > self._keep:
                self._judged.popitem(last=False)
        return served

    def judged(self, request_id: str) -> bool:
        return request_id in self._judged
