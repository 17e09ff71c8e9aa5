"""The governor's pure parts: a scope's budget and its metrics label, the pauses a call's
429s ask for, and one process's view of the pauses, on a fake clock."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from services.core.buckets import Rate
from services.core.credentials import ProviderCredentials
from services.core.events import PushJob
from services.core.providers.base import Provider, ProviderSettings, Result
from services.core.providers.classify import ErrorClass
from services.sender.governor import (
    PAUSE_READ_SECONDS,
    Pauses,
    budget,
    bulk_share,
    label,
    pauses,
)


class Project(Provider):
    """A provider whose quota is its app's project, the job's `app_id` here."""

    name: ClassVar = "fcm"
    title: ClassVar = "Project"
    credentials_model: ClassVar = ProviderCredentials
    settings_model: ClassVar = ProviderSettings
    token_limit: ClassVar = 100
    payload_limit: ClassVar = 100
    default_quota: ClassVar[float | None] = 10_000.0

    def __init__(self) -> None:
        super().__init__(ProviderCredentials(), ProviderSettings())

    def quota_scope(self, job: PushJob) -> str:
        return job.app_id

    async def send(self, jobs: Sequence[PushJob]) -> list[Result]:
        raise NotImplementedError


class Origins(Project):
    """A provider whose scopes come from the devices, with no quota of its own."""

    name: ClassVar = "webpush"
    default_quota: ClassVar = None
    scopes_from_devices: ClassVar = True


class PerDevice(Project):
    """A provider whose 429s are one device's."""

    pauses_scope_on_429: ClassVar = False


def job(app_id: str = "proj-a") -> PushJob:
    return PushJob(
        account_id="acc",
        app_id=app_id,
        provider="fcm",
        platform="android",
        token="tok",
        token_hash="h",
    )


def throttled(retry_after: float | None) -> Result:
    return Result.failure(
        "fcm", ErrorClass.QUOTA, reason="QUOTA_EXCEEDED", status=429, retry_after=retry_after
    )


def test_a_scopes_budget_is_its_own_then_its_providers_then_the_default() -> None:
    quotas = {"fcm:big": 50_000.0, "fcm:lifted": 0.0}
    assert budget({}, Project, "any") == Rate(10_000.0, 10_000.0)
    assert budget(quotas, Project, "big") == Rate(50_000.0, 50_000.0)
    # 0 lifts the default: no budget, nothing counted.
    assert budget(quotas, Project, "lifted") is None
    assert budget({"fcm": 300.0}, Project, "any") == Rate(300.0, 300.0)
    assert budget({}, Origins, "https://push.example") is None
    # A second's worth at once, at least one send.
    assert budget({"webpush": 0.5}, Origins, "https://push.example") == Rate(0.5, 1.0)


def test_bulk_calls_may_take_nine_tenths_of_a_budget() -> None:
    assert bulk_share(Rate(10_000.0, 10_000.0)) == Rate(9_000.0, 9_000.0)
    # At least one send at once, however small the budget.
    assert bulk_share(Rate(0.5, 1.0)) == Rate(0.45, 1.0)


def test_scopes_from_devices_are_labelled_only_when_the_operator_names_them() -> None:
    named = {"webpush:https://push.example": 100.0}
    assert label(named, Origins, "https://push.example") == "https://push.example"
    assert label(named, Origins, "https://elsewhere.example") == "other"
    assert label({}, Project, "proj-a") == "proj-a"


def test_a_429_with_retry_after_pauses_its_scope_until_then() -> None:
    jobs = [job("proj-a"), job("proj-a"), job("proj-b")]
    results = [throttled(3.0), throttled(7.0), Result.success("m")]
    assert pauses(Project(), jobs, results, 1000.0) == {"fcm:proj-a": 1007.0}
    # Without a Retry-After the provider's result still carries its default wait.
    assert pauses(Project(), [job()], [throttled(None)], 0.0) == {"fcm:proj-a": 10.0}
    assert pauses(Project(), [job()], [throttled(0.0)], 0.0) == {}
    assert pauses(PerDevice(), [job()], [throttled(3.0)], 0.0) == {}
    unavailable = Result.failure("fcm", ErrorClass.RETRYABLE, reason="UNAVAILABLE", status=503)
    assert pauses(Project(), [job()], [unavailable], 0.0) == {}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_pause_is_read_at_most_once_a_second_and_a_noted_one_at_once() -> None:
    clock = Clock()
    stored: dict[str, float] = {}
    reads: list[str] = []

    async def read(key: str) -> float:
        reads.append(key)
        return stored.get(key, 0.0)

    view = Pauses(read, clock, clock)
    assert await view.left("fcm:p") == 0
    # Another sender pauses the scope: seen once this view's reading is a second old.
    stored["fcm:p"] = clock.now + 5
    clock.now += PAUSE_READ_SECONDS / 2
    assert await view.left("fcm:p") == 0
    assert reads == ["fcm:p"]
    clock.now += PAUSE_READ_SECONDS / 2
    assert await view.left("fcm:p") == 4
    assert reads == ["fcm:p", "fcm:p"]
    # This sender's own 429: at once, without a read, and never shortened by the store's.
    view.note("fcm:p", clock.now + 30)
    assert await view.left("fcm:p") == 30
    clock.now += PAUSE_READ_SECONDS
    assert await view.left("fcm:p") == 29
    clock.now += 29
    assert await view.left("fcm:p") == 0
