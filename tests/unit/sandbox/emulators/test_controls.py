"""The shared controls and the JSON control API, without a server."""

from __future__ import annotations

import json

import pytest

from services.sandbox.emulators.state import Controls, Record, TokenState
from services.sandbox.emulators.webpush import WebPushEmulator


def _record(target: str) -> Record:
    return Record("fcm", target, 200, None, {}, None, 0.0)


def test_a_share_of_failures_is_deterministic_and_counted() -> None:
    controls = Controls()
    controls.fail(503, share=0.5, count=2)
    drawn = [controls.draw_fault() is not None for _ in range(8)]
    assert drawn == [False, True, False, True, False, False, False, False]


def test_a_third_of_the_requests_fail() -> None:
    controls = Controls()
    controls.fail(429, share=1 / 3, retry_after=2)
    faults = [controls.draw_fault() for _ in range(9)]
    assert [f.status if f else None for f in faults] == [None, None, 429] * 3
    controls.heal()
    assert controls.draw_fault() is None


@pytest.mark.parametrize(
    "arguments",
    [
        {"status": 418},
        {"status": 429, "share": 0},
        {"status": 429, "share": 1.5},
        {"status": 503, "count": 0},
        {"status": 503, "retry_after": -1},
    ],
)
def test_out_of_range_faults_are_refused(arguments: dict[str, int]) -> None:
    status = arguments.pop("status")
    with pytest.raises(ValueError, match="must"):
        Controls().fail(status, **arguments)


def test_the_record_keeps_only_the_newest() -> None:
    controls = Controls(record_limit=3)
    for index in range(5):
        controls.add(_record(str(index)))
    assert [r.target for r in controls.records()] == ["2", "3", "4"]
    assert controls.clear_records() == 3
    assert controls.records() == []


def test_marks_and_reset() -> None:
    controls = Controls()
    controls.mark(["a", "b"], TokenState.UNREGISTERED, at_ms=5)
    controls.mark(["b"], TokenState.ACTIVE)
    assert controls.token_state("a") == (TokenState.UNREGISTERED, 5)
    assert controls.token_state("b") == (TokenState.ACTIVE, 0)
    controls.slow_down(0.5)
    controls.reset()
    assert controls.token_state("a") == (TokenState.ACTIVE, 0)
    assert controls.latency == 0


def test_the_control_api_routes_and_refuses_bad_bodies() -> None:
    emulator = WebPushEmulator()

    def call(method: str, name: str, body: object = None) -> tuple[int, object]:
        raw = b"" if body is None else json.dumps(body).encode()
        return emulator.control(method, f"/_emulator/{name}", raw)

    assert call("POST", "tokens", {"tokens": ["x"], "state": "invalid"}) == (
        200,
        {"marked": 1, "state": "invalid"},
    )
    assert emulator.controls.token_state("x")[0] is TokenState.INVALID
    assert call("POST", "tokens", {"tokens": [], "state": "invalid"})[0] == 400
    assert call("POST", "tokens", {"tokens": ["x"], "state": "lost"})[0] == 400
    assert call("POST", "faults", {"status": 503, "share": 0.25})[0] == 200
    assert call("POST", "faults", {"status": 200})[0] == 400
    assert call("POST", "latency", {"seconds": -1})[0] == 400
    assert call("POST", "latency", {"seconds": 0.1}) == (200, {"seconds": 0.1})
    assert emulator.control("POST", "/_emulator/latency", b"{not json")[0] == 400
    assert call("POST", "reset") == (200, {"ok": True})
    assert emulator.controls.latency == 0
    assert call("GET", "records") == (200, {"records": []})
    assert call("PATCH", "records")[0] == 404
    assert call("POST", "subscriptions", {"application_server_key": "AAAA"})[0] == 400
