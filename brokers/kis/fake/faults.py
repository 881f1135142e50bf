"""Misbehaviour on command: each fault answers the next ``count`` matching
requests (optionally only those to ``path``) its way, then is used up."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from brokers.kis import protocol

# kind -> the requests it can hit when no path is given
TR = "tr"  # /uapi/... TR calls (not hashkey)
ANY = "any"  # every KIS request (REST)
KINDS: dict[str, str] = {
    "slow": ANY,  # seconds=: answer late (then normally)
    "http_500": ANY,  # HTTP 500, nothing done
    "token_expired": TR,  # HTTP 500 rt_cd "1" EGW00123, nothing done
    "rate_limit": TR,  # HTTP 500 rt_cd "1" EGW00201, nothing done
    "token_too_soon": protocol.TOKEN_PATH,  # HTTP 403 EGW00133 on tokenP
    "lose_response": ANY,  # done (an order is booked), then the connection closes unanswered
    "malformed": ANY,  # done, then HTTP 200 with a body that is not JSON
    "ws_drop": "ws",  # the WebSocket side closes its sessions abruptly
}
MAX_FAULTS = 100


@dataclass
class Fault:
    kind: str
    count: int
    path: str = ""
    params: dict[str, Any] = field(default_factory=dict)


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[Fault] = []

    def add(self, kind: str, count: int = 1, path: str = "", **params: Any) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(KINDS)}")
        if not 1 <= int(count) <= 10_000:
            raise ValueError("count is 1..10000")
        if kind == "slow" and not 0 <= float(params.get("seconds", 1.0)) <= 120:
            raise ValueError("seconds is 0..120")
        with self._lock:
            if len(self._pending) >= MAX_FAULTS:
                raise ValueError("too many pending faults")
            self._pending.append(Fault(kind, int(count), path, params))

    def take(self, path: str, *, ws: bool = False) -> Fault | None:
        """The first pending fault that applies to this request, used once."""
        with self._lock:
            for fault in self._pending:
                scope = KINDS[fault.kind]
                if ws != (scope == "ws"):
                    continue
                if not self._applies(fault, scope, path):
                    continue
                fault.count -= 1
                if fault.count <= 0:
                    self._pending.remove(fault)
                return fault
            return None

    @staticmethod
    def _applies(fault: Fault, scope: str, path: str) -> bool:
        if fault.path:
            return fault.path == path
        if scope == TR:
            return path.startswith("/uapi/") and path != protocol.HASHKEY_PATH
        return scope in (ANY, "ws") or scope == path

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"kind": f.kind, "count": f.count, "path": f.path, **f.params} for f in self._pending]
