"""The soak's outages: a thread that breaks the primary sim (503) for a while, again and again,
and counts the breaker transitions the gateway reports meanwhile."""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
from collections import Counter
from typing import Any

from ops.bench.net import LOOPBACK, http_get, send_json


def set_fault(port: int, fault: dict[str, Any]) -> None:
    """PUT a fault on a `turnout sim` (its /_sim/fault endpoint)."""
    send_json(f"http://{LOOPBACK}:{port}/_sim/fault", json.dumps(fault), "PUT", timeout=5)


class Flapper(threading.Thread):
    """Breaks the primary sim (503) for `down_s` every `period_s`, and meanwhile polls the
    gateway's /admin/targets to count breaker transitions (every 0.5 s, so a very quick
    open → half_open → open may be seen as one)."""

    def __init__(self, sim_port: int, gw_port: int, period_s: float, down_s: float) -> None:
        super().__init__(name="flapper", daemon=True)
        self.sim_port, self.gw_port = sim_port, gw_port
        self.period_s, self.down_s = period_s, down_s
        self.stop = threading.Event()
        self.outages = 0
        self.transitions: Counter[tuple[str, str]] = Counter()  # (target, to-state)
        self._seen: dict[str, Any] = {}
        self.problems: list[str] = []

    def run(self) -> None:
        start = time.monotonic()
        k = 0
        try:
            while not self.stop.is_set():
                # the outage k starts at (k + 0.5) * period and lasts down_s
                down_at = start + (k + 0.5) * self.period_s
                if not self._idle_until(down_at):
                    break
                set_fault(self.sim_port, {"mode": "status", "status": 503})
                self.outages += 1
                self._idle_until(down_at + self.down_s)
                set_fault(self.sim_port, {"mode": "ok"})
                k += 1
        except Exception as exc:  # report, never hang the run
            self.problems.append(f"flapper: {type(exc).__name__}: {exc}")
        finally:
            with contextlib.suppress(Exception):
                set_fault(self.sim_port, {"mode": "ok"})

    def _idle_until(self, when: float) -> bool:
        """Poll breaker states until `when`; False if asked to stop."""
        while True:
            self._poll()
            left = when - time.monotonic()
            if left <= 0:
                return True
            if self.stop.wait(min(0.5, left)):
                return False

    def _poll(self) -> None:
        with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
            status, body = http_get(self.gw_port, "/admin/targets", timeout=2.0)
            if status != 200:
                return
            for t in json.loads(body)["data"]:
                last = t.get("last_transition")
                if last and self._seen.get(t["id"]) != last:
                    self._seen[t["id"]] = last
                    self.transitions[(t["id"], last["to"])] += 1
