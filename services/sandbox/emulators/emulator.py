"""The base of the three emulators and their JSON control API under `/_emulator/`.

    GET    /_emulator/records        {"records": [...]}, oldest first
    DELETE /_emulator/records        forget them
    POST   /_emulator/tokens         {"tokens": [...], "state": "unregistered"|"invalid"|"active",
                                      "timestamp": ms (optional, APNs' Unregistered time)}
    POST   /_emulator/faults         {"status": 429|500|503, "share": 0-1, "count": n,
                                      "retry_after": s}
    DELETE /_emulator/faults         stop failing
    POST   /_emulator/latency        {"seconds": s}
    POST   /_emulator/reset          all of the above back to the start
    GET    /_emulator/config         what a client needs to talk to this emulator

Each emulator may add routes (Web Push: `POST /_emulator/subscriptions`).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from services.sandbox.emulators.state import RECORD_LIMIT, Controls, TokenState

CONTROL_PREFIX = "/_emulator/"

# A control route takes the parsed JSON body (None when empty) and returns (status, JSON).
ControlRoute = Callable[[Any], tuple[int, Any]]


class _Tokens(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tokens: list[str] = Field(min_length=1)
    state: TokenState
    timestamp: int | None = None


class _Fault(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: int
    share: float = 1.0
    count: int | None = None
    retry_after: int | None = None


class _Latency(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(ge=0, le=60)


class Emulator(ABC):
    """A provider emulator: a network server plus `controls`, its Python control API."""

    provider: ClassVar[str]

    def __init__(self, *, record_limit: int = RECORD_LIMIT) -> None:
        self.controls = Controls(record_limit)

    @abstractmethod
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on host:port (0 picks a free port) in the running event loop."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop listening and close open connections."""

    @property
    @abstractmethod
    def url(self) -> str:
        """The base URL the emulator answers on; valid once started."""

    @abstractmethod
    def client_config(self) -> dict[str, Any]:
        """What a client needs to reach and authenticate to this emulator (JSON)."""

    def extra_control_routes(self) -> Mapping[tuple[str, str], ControlRoute]:
        """Provider-specific control routes, keyed by (method, name after the prefix)."""
        return {}

    def control(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        """Answer one control API request: (HTTP status, JSON body)."""
        name = path.removeprefix(CONTROL_PREFIX).strip("/")
        routes: dict[tuple[str, str], ControlRoute] = {
            ("GET", "records"): lambda _: (200, self._records()),
            ("DELETE", "records"): lambda _: (200, {"cleared": self.controls.clear_records()}),
            ("POST", "tokens"): self._mark,
            ("POST", "faults"): self._fail,
            ("DELETE", "faults"): lambda _: self._done(self.controls.heal),
            ("POST", "latency"): self._slow_down,
            ("POST", "reset"): lambda _: self._done(self.controls.reset),
            ("GET", "config"): lambda _: (200, self.client_config()),
            **self.extra_control_routes(),
        }
        route = routes.get((method.upper(), name))
        if route is None:
            return 404, {"error": f"no control route {method} {path}"}
        try:
            document = json.loads(body) if body.strip() else None
            return route(document)
        except ValueError as exc:
            # Bad JSON, a body pydantic refuses (ValidationError is a ValueError) or a value
            # the controls refuse: the caller's mistake either way.
            return 400, {"error": str(exc)}

    def _records(self) -> dict[str, Any]:
        return {"records": [record.to_json() for record in self.controls.records()]}

    def _mark(self, document: Any) -> tuple[int, Any]:
        body = _Tokens.model_validate(document)
        self.controls.mark(body.tokens, body.state, at_ms=body.timestamp)
        return 200, {"marked": len(body.tokens), "state": body.state.value}

    def _fail(self, document: Any) -> tuple[int, Any]:
        body = _Fault.model_validate(document)
        self.controls.fail(
            body.status, share=body.share, count=body.count, retry_after=body.retry_after
        )
        return 200, body.model_dump()

    def _slow_down(self, document: Any) -> tuple[int, Any]:
        body = _Latency.model_validate(document)
        self.controls.slow_down(body.seconds)
        return 200, body.model_dump()

    @staticmethod
    def _done(action: Callable[[], None]) -> tuple[int, Any]:
        action()
        return 200, {"ok": True}
