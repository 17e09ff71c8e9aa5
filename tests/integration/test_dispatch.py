"""The sender's dispatch policy against the real store: outcomes, retries, dead letters,
acks, and no second send. The provider is scripted (the provider boundary)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from prometheus_client import REGISTRY
from pymongo.asynchronous.database import AsyncDatabase

from services.core import topics
from services.core.events import DeliveryOutcome, PushJob, utc_now
from services.core.kafka import encode
from services.core.providers.base import Provider, Result
from services.core.providers.classify import ErrorClass
from services.core.store.client import Document
from services.core.tokens import hash_token
from services.core.topics import device_key
from services.sender.delivery import RetryPolicy
from services.sender.dispatch import CALL_SIZE
from tests.integration.dispatching import Harness
from tests.integration.kafka_io import eventually

pytestmark = pytest.mark.integration


class ScriptedProvider(Provider):
    """Answers each token with the next result scripted for it."""

    name = "fcm"

    def __init__(self, script: dict[str, list[Result]]) -> None:
        self.script = script
        self.calls: list[list[str]] = []

    async def send(self, jobs: Sequence[PushJob]) -> list[Result]:
        self.calls.append([job.token for job in jobs])
        return [self.script[job.token].pop(0) for job in jobs]


class SlowProvider(ScriptedProvider):
    """Answers after a moment, so that other batches run meanwhile."""

    def __init__(self, script: dict[str, list[Result]]) -> None:
        super().__init__(script)
        self.calling = asyncio.Event()

    async def send(self, jobs: Sequence[PushJob]) -> list[Result]:
        self.calling.set()
        await asyncio.sleep(0.05)
        return await super().send(jobs)


def job(token: str, notification: str = "n1") -> PushJob:
    return PushJob(
        notification_id=notification,
        account_id="acc",
        app_id="app",
        provider="fcm",
        platform="android",
        token=token,
        token_hash=hash_token(token),
    )


def failure(error_class: ErrorClass, reason: str, status: int) -> Result:
    return Result.failure("fcm", error_class, reason=reason, status=status, retry_after=0.0)


def unanswered(reason: str, *, maybe_delivered: bool) -> Result:
    return Result.failure(
        "fcm", ErrorClass.RETRYABLE, reason=reason, retry_after=0.0, maybe_delivered=maybe_delivered
    )


async def test_each_job_gets_its_outcome_and_is_acked(db: AsyncDatabase[Document]) -> None:
    provider = ScriptedProvider(
        {
            "ok": [Result.success("m1")],
            "gone": [failure(ErrorClass.INVALID_TOKEN, "UNREGISTERED", 404)],
            "bad": [failure(ErrorClass.MESSAGE_INVALID, "INVALID_ARGUMENT", 400)],
        }
    )
    harness = Harness(db, provider)
    await harness.run(job("ok"), job("gone"), job("bad"))
    outcomes = {o.token_hash: (o.outcome, o.reason) for o in harness.outcomes()}
    assert outcomes == {
        hash_token("ok"): ("success", None),
        hash_token("gone"): ("invalid_token", "UNREGISTERED"),
        hash_token("bad"): ("failed", "INVALID_ARGUMENT"),
    }
    assert sorted(harness.acked) == ["bad", "gone", "ok"]
    assert harness.letters() == []
    assert provider.calls == [["ok", "gone", "bad"]]


async def test_temporary_failures_are_retried_then_delivered(db: AsyncDatabase[Document]) -> None:
    provider = ScriptedProvider(
        {
            "slow": [
                failure(ErrorClass.QUOTA, "QUOTA_EXCEEDED", 429),
                failure(ErrorClass.RETRYABLE, "UNAVAILABLE", 503),
                Result.success("m2"),
            ],
            "ok": [Result.success("m1")],
        }
    )
    harness = Harness(db, provider)
    await harness.run(job("slow"), job("ok"))
    assert provider.calls == [["slow", "ok"], ["slow"], ["slow"]]
    assert [o.outcome for o in harness.outcomes() if o.token_hash == hash_token("slow")] == [
        "retry",
        "retry",
        "success",
    ]
    assert sorted(harness.acked) == ["ok", "slow"]


async def test_a_provider_that_always_fails_dead_letters_the_job(
    db: AsyncDatabase[Document],
) -> None:
    provider = ScriptedProvider(
        {"down": [failure(ErrorClass.RETRYABLE, "UNAVAILABLE", 503) for _ in range(3)]}
    )
    harness = Harness(db, provider)
    await harness.run(job("down"))
    assert [o.outcome for o in harness.outcomes()] == ["retry", "retry", "failed"]
    (letter,) = harness.letters()
    assert (letter.topic, letter.attempts, letter.reason, letter.replayable) == (
        "push.jobs.fcm",
        3,
        "UNAVAILABLE",
        True,
    )
    assert letter.error.count("UNAVAILABLE (503)") == 3
    replay = PushJob.model_validate_json(letter.value)
    assert (replay.token, replay.attempt) == ("down", 0)
    assert harness.acked == ["down"]


async def test_bad_credentials_fail_without_invalidating_and_are_replayable(
    db: AsyncDatabase[Document],
) -> None:
    harness = Harness(db, None)
    await harness.run(job("t1"), job("t2"))
    assert {o.outcome for o in harness.outcomes()} == {"failed"}
    assert len(harness.letters()) == 2
    assert all(letter.replayable for letter in harness.letters())


async def test_a_send_that_reached_or_lost_its_device_is_not_made_again(
    db: AsyncDatabase[Document],
) -> None:
    provider = ScriptedProvider(
        {
            "ok": [Result.success("m")],
            "gone": [failure(ErrorClass.INVALID_TOKEN, "UNREGISTERED", 404)],
            "bad": [failure(ErrorClass.RETRYABLE, "UNAVAILABLE", 503)] * 3 + [Result.success("m")],
        }
    )
    first = Harness(db, provider)
    await first.run(job("ok"), job("gone"), job("bad"))
    # Kept: the ended sends' outcomes; the failed one's note is gone (it may be made again).
    kept = {mark["_id"] async for mark in db.marks.find({"outcome": {"$exists": True}})}
    assert kept == {f"n1:{hash_token('ok')}", f"n1:{hash_token('gone')}"}
    assert await db.marks.count_documents({}) == 2
    # Redelivered to a restarted sender (only the store remembers), or the failed one
    # replayed from the dead letters.
    again = Harness(db, provider)
    await again.run(job("ok"), job("gone"), job("bad"))
    assert provider.calls[-1] == ["bad"]
    assert sorted(again.acked) == ["bad", "gone", "ok"]
    # Their outcomes are published again as they were (feedback may not have them yet),
    # with the new send's in one message; a lost device's alone, keyed by the device, so
    # that feedback changes the device in order with its registration events.
    (batch,) = again.batches()
    assert [o.outcome for o in batch.outcomes] == ["success", "success"]
    assert batch.outcomes[0] == first.outcomes()[0]
    [(key, gone)] = [
        (key, message)
        for key, (_, message) in zip(again.keys, again.published, strict=True)
        if isinstance(message, DeliveryOutcome)
    ]
    assert gone == next(o for o in first.outcomes() if o.outcome == "invalid_token")
    assert key == device_key("app", hash_token("gone"))
    # A failed send reached nothing: sending it again is no duplicate.
    assert not any(o.repeated for o in again.outcomes())


async def test_a_send_left_on_the_wire_by_a_dead_sender_is_made_again_as_repeated(
    db: AsyncDatabase[Document],
) -> None:
    provider = ScriptedProvider(
        {
            "cut": [Result.success("m2")],
            "new": [Result.success("m1")],
            "later": [failure(ErrorClass.RETRYABLE, "UNAVAILABLE", 503), Result.success("m3")],
            "refused": [unanswered("ConnectError", maybe_delivered=False), Result.success("m4")],
            "timeout": [unanswered("Timeout", maybe_delivered=True), Result.success("m5")],
            "cut-twice": [failure(ErrorClass.RETRYABLE, "UNAVAILABLE", 503), Result.success("m6")],
        }
    )
    # What a sender killed during its provider call leaves: the send noted, no outcome.
    await db.marks.insert_many([{"_id": f"n1:{hash_token(t)}"} for t in ("cut", "cut-twice")])
    harness = Harness(db, provider)
    tokens = ["cut", "new", "later", "refused", "timeout", "cut-twice"]
    await harness.run(*(job(token) for token in tokens))
    assert sorted(provider.calls[0]) == sorted(tokens)
    repeated = {o.token_hash: o.repeated for o in harness.outcomes() if o.outcome == "success"}
    # A retry after an answer, or after a connection that never opened, reached nothing
    # before it; one after a request that went unanswered may have, and so may one of a
    # send that was already repeated.
    assert repeated == {
        hash_token("cut"): True,
        hash_token("new"): False,
        hash_token("later"): False,
        hash_token("refused"): False,
        hash_token("timeout"): True,
        hash_token("cut-twice"): True,
    }


async def test_a_call_whose_letter_meets_an_outage_is_made_again_with_one_retry_chain(
    db: AsyncDatabase[Document],
) -> None:
    provider = ScriptedProvider(
        {
            "later": [failure(ErrorClass.RETRYABLE, "UNAVAILABLE", 503)] * 2
            + [Result.success("m")],
            "last": [failure(ErrorClass.RETRYABLE, "UNAVAILABLE", 503)] * 2,
        }
    )
    harness = Harness(db, provider)
    harness.failing.add(topics.DLQ.name)
    await harness.run(job("later"), job("last").model_copy(update={"attempt": 2}))
    # The batch is taken again whole: neither send ended, so both are made again, and
    # only the second call's retry runs: one started before the outage would run beside
    # the batch taken again, and its job would be acknowledged twice.
    assert provider.calls == [["later", "last"], ["later", "last"], ["later"]]
    assert sorted(harness.acked) == ["last", "later"]
    (letter,) = harness.letters()
    assert (letter.attempts, letter.reason) == (3, "UNAVAILABLE")


async def test_the_outcomes_of_one_call_are_one_message_its_jobs_acked_once_on_kafka(
    db: AsyncDatabase[Document],
) -> None:
    tokens = [f"t{i}" for i in range(CALL_SIZE + 3)]
    script = {token: [Result.success(token)] for token in tokens}
    provider = ScriptedProvider({**script, "v": [Result.success(None)]})
    harness = Harness(db, provider)
    harness.kafka.clear()
    verify = job("v").model_copy(update={"kind": "verify", "notification_id": None})
    await harness.start(*(job(token) for token in tokens), verify)

    async def all_published() -> bool:
        return len(harness.published) == 3

    await eventually(all_published, within=10)
    # Published, not yet on Kafka: nothing is acknowledged.
    assert harness.acked == []
    harness.kafka.set()
    await harness.dispatcher.drain()
    assert sorted(harness.acked) == sorted([*tokens, "v"])
    first, second = harness.batches()
    assert [o.token_hash for o in first.outcomes] == [hash_token(t) for t in tokens[:CALL_SIZE]]
    assert [o.token_hash for o in second.outcomes] == [hash_token(t) for t in tokens[CALL_SIZE:]]
    # One answer time per call; a verification's outcome goes alone.
    assert len({o.answered_at for o in first.outcomes}) == 1
    (alone,) = [m for _, m in harness.published if isinstance(m, DeliveryOutcome)]
    assert alone.kind == "verify"
    # Each send is marked with its outcome, in the one collection of marks.
    assert await db.marks.count_documents({"outcome": {"$exists": True}}) == len(tokens)


async def test_marks_left_by_a_sender_before_the_marks_collection_are_honoured(
    db: AsyncDatabase[Document],
) -> None:
    provider = ScriptedProvider({"cut": [Result.success("m2")], "new": [Result.success("m1")]})
    kept = DeliveryOutcome(
        notification_id="n1",
        app_id="app",
        provider="fcm",
        platform="android",
        token_hash=hash_token("done"),
        outcome="success",
        accepted_at=utc_now(),
    )
    # What such a sender left: each send it made noted in `sending`, the outcomes of the
    # ended ones kept in `sends`.
    await db.sending.insert_many([{"_id": f"n1:{hash_token(t)}"} for t in ("done", "cut")])
    await db.sends.insert_one({"_id": f"n1:{hash_token('done')}", "outcome": encode(kept).decode()})
    harness = Harness(db, provider)
    await harness.run(job("done"), job("cut"), job("new"))
    assert provider.calls == [["cut", "new"]]
    outcomes = {o.token_hash: o for o in harness.outcomes()}
    assert outcomes[hash_token("done")] == kept
    assert (outcomes[hash_token("cut")].repeated, outcomes[hash_token("new")].repeated) == (
        True,
        False,
    )
    assert sorted(harness.acked) == ["cut", "done", "new"]


async def test_unreadable_jobs_are_dead_lettered_and_acked(db: AsyncDatabase[Document]) -> None:
    harness = Harness(db, ScriptedProvider({}))
    acked: list[bool] = []

    async def ack() -> None:
        acked.append(True)

    await harness.dispatcher.dispatch([(b"k", b"{not json", ack)])
    (letter,) = harness.letters()
    assert (letter.replayable, acked) == (False, [True])


@pytest.mark.parametrize(
    ("attempt", "retry_after", "low", "high"),
    [
        # Base 1 s doubled per attempt, with +-50% jitter: the ranges do not overlap.
        (0, None, 0.5, 1.5),
        (3, None, 4.0, 12.0),
        # A longer Retry-After wins; a shorter one leaves the backoff as it is.
        (0, 30.0, 30.0, 30.0),
        (3, 1.0, 4.0, 12.0),
    ],
)
def test_backoff_grows_and_honours_retry_after(
    attempt: int, retry_after: float | None, low: float, high: float
) -> None:
    policy = RetryPolicy(base=1.0, cap=300.0)
    delays = [policy.delay(attempt, retry_after) for _ in range(200)]
    assert low <= min(delays)
    assert max(delays) <= high


async def test_copies_of_a_job_are_sent_once(db: AsyncDatabase[Document]) -> None:
    # Only one answer each: a second send would find none and fail the batch.
    provider = SlowProvider({"dup": [Result.success("m1")], "other": [Result.success("m2")]})
    harness = Harness(db, provider)
    # A fan-out done twice: a copy in the same batch, and one in a batch sent meanwhile.
    await harness.start(job("dup"), job("other"), job("dup"))
    await harness.start(job("dup"))
    await harness.dispatcher.drain()
    assert sorted(token for call in provider.calls for token in call) == ["dup", "other"]
    assert sorted(harness.acked) == ["dup", "dup", "dup", "other"]
    outcomes = [o for o in harness.outcomes() if o.token_hash == hash_token("dup")]
    assert len(outcomes) == 3
    assert all(o == outcomes[0] and not o.repeated for o in outcomes)


async def test_revoked_partitions_get_no_new_calls_and_their_calls_on_the_wire_end_marked(
    db: AsyncDatabase[Document],
) -> None:
    tokens = [f"t{i}" for i in range(CALL_SIZE * 2 + 5)]
    provider = SlowProvider({token: [Result.success(token)] for token in tokens})
    harness = Harness(db, provider)
    await harness.start(*(job(token) for token in tokens), generation=1)
    await provider.calling.wait()
    await harness.dispatcher.revoke(1)
    # The call on the wire was marked before the revocation went on; no other call began.
    assert await db.marks.count_documents({"outcome": {"$exists": True}}) == CALL_SIZE
    await harness.dispatcher.drain()
    assert provider.calls == [tokens[:CALL_SIZE]]
    assert sorted(harness.acked) == sorted(tokens[:CALL_SIZE])
    # The next owner (here, this process again in the next generation) sends the rest.
    await harness.start(*(job(token) for token in tokens), generation=2)
    await harness.dispatcher.drain()
    assert [token for call in provider.calls for token in call] == tokens
    assert sorted(harness.acked) == sorted(tokens[:CALL_SIZE] + tokens)


async def test_a_send_whose_request_went_unanswered_stays_noted_until_its_retry(
    db: AsyncDatabase[Document],
) -> None:
    timed_out = Result.failure(
        "fcm", ErrorClass.RETRYABLE, reason="Timeout", retry_after=5.0, maybe_delivered=True
    )
    first = Harness(db, ScriptedProvider({"slow": [timed_out, Result.success("m1")]}))
    retried = (
        REGISTRY.get_sample_value("pushline_sends_total", {"provider": "fcm", "outcome": "retry"})
        or 0.0
    )

    async def waits_for_its_retry() -> bool:
        now = REGISTRY.get_sample_value(
            "pushline_sends_total", {"provider": "fcm", "outcome": "retry"}
        )
        return (now or 0.0) > retried

    await first.start(job("slow"))
    await eventually(waits_for_its_retry)
    # Its sender dies while it waits: the job comes back to another sender, which must
    # not take the device for one that never got it.
    second = Harness(db, ScriptedProvider({"slow": [Result.success("m2")]}))
    await second.run(job("slow"))
    [outcome] = second.outcomes()
    assert (outcome.outcome, outcome.repeated) == ("success", True)
    await first.dispatcher.drain()
