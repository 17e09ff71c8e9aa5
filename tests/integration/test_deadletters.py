"""`pushline dlq list|replay` against the real broker."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import timedelta

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core import topics
from services.core.deadletters import LetterFilter, read_letters, replay
from services.core.events import DeadLetter, PushJob, utc_now
from services.core.kafka import encode
from services.core.settings import Settings
from services.core.store.client import Document
from services.core.store.replays import CLAIM_SECONDS, Replays
from services.core.tokens import hash_token
from tests.integration import processes
from tests.integration.kafka_io import publish, read, read_many
from tests.stack import ROOT

pytestmark = pytest.mark.integration


def letter(
    token: str, *, app: str, reason: str, replayable: bool = True, age: int = 0
) -> DeadLetter:
    job = PushJob(
        notification_id="n1",
        account_id="acc",
        app_id=app,
        provider="fcm",
        platform="android",
        token=token,
        token_hash=hash_token(token),
    )
    return DeadLetter(
        topic=topics.JOB_TOPICS["fcm"].name,
        key=f"{app}:{job.token_hash}",
        value=encode(job).decode(),
        error=f"{reason} (503)",
        attempts=5,
        app_id=app,
        reason=reason,
        replayable=replayable,
        failed_at=utc_now() - timedelta(hours=age),
    )


@pytest.mark.usefixtures("created_topics")
async def test_letters_are_listed_by_filter_and_replayed_to_their_topic(
    settings: Settings, child_env: dict[str, str], db: AsyncDatabase[Document]
) -> None:
    await publish(
        settings,
        topics.DLQ,
        b"k",
        letter("t-a", app="app-a", reason="UNAVAILABLE"),
        letter("t-b", app="app-b", reason="UNAVAILABLE"),
        letter("t-old", app="app-a", reason="UNAVAILABLE", age=48),
        letter("t-auth", app="app-a", reason="THIRD_PARTY_AUTH_ERROR"),
        letter("t-bad", app="app-a", reason="UNAVAILABLE", replayable=False),
    )
    everything = [x async for x in read_letters(settings, LetterFilter())]
    assert len(everything) == 5

    recent_a = LetterFilter(
        app_id="app-a", reason="UNAVAILABLE", since=utc_now() - timedelta(hours=1)
    )
    listed = [x async for x in read_letters(settings, recent_a)]
    tokens = sorted(PushJob.model_validate_json(x.letter.value).token for x in listed)
    assert tokens == ["t-a", "t-bad"]

    cli = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.cli", "dlq", "list", "--app", "app-b"],
        cwd=ROOT,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    (line,) = cli.stdout.splitlines()
    assert json.loads(line)["app_id"] == "app-b"

    assert await replay(settings, recent_a, Replays(db)) == 1
    job = await read(
        settings, topics.JOB_TOPICS["fcm"], lambda m: isinstance(m, PushJob) and m.token == "t-a"
    )
    assert isinstance(job, PushJob)
    assert job.attempt == 0


async def test_an_empty_or_missing_dead_letter_topic_lists_nothing(settings: Settings) -> None:
    assert [x async for x in read_letters(settings, LetterFilter())] == []


async def dlq(env: dict[str, str], *args: str) -> str:
    """`pushline dlq ARGS` as an operator runs it; its stdout."""
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.cli", "dlq", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.usefixtures("created_topics")
async def test_a_second_replay_sends_nothing_and_the_list_says_what_was_replayed(
    settings: Settings, child_env: dict[str, str]
) -> None:
    await publish(
        settings,
        topics.DLQ,
        b"k",
        letter("t-secret-1", app="app-a", reason="UNAVAILABLE"),
        letter("t-secret-2", app="app-b", reason="UNAVAILABLE"),
        letter("t-secret-3", app="app-a", reason="BAD_CREDENTIALS", replayable=False),
    )
    assert await dlq(child_env, "replay", "--app", "app-a") == "replayed: 1\n"
    assert await dlq(child_env, "replay", "--app", "app-a") == "replayed: 0\n"
    # A restart changes nothing: the record is in the store, not in the process.
    assert await dlq(child_env, "replay") == "replayed: 1\n"
    assert await dlq(child_env, "replay") == "replayed: 0\n"
    replayed_jobs = await read_many(
        settings, [topics.JOB_TOPICS["fcm"]], lambda m: isinstance(m, PushJob), 2
    )
    assert sorted(job.token for job in replayed_jobs if isinstance(job, PushJob)) == [
        "t-secret-1",
        "t-secret-2",
    ]

    out = await dlq(child_env, "list")
    assert "t-secret" not in out
    shown = {row["token_hash"]: row for row in map(json.loads, out.splitlines())}
    assert set(shown) == {hash_token(f"t-secret-{n}") for n in (1, 2, 3)}
    first = shown[hash_token("t-secret-1")]
    assert {k: first[k] for k in ("notification_id", "app_id", "provider", "reason")} == {
        "notification_id": "n1",
        "app_id": "app-a",
        "provider": "fcm",
        "reason": "UNAVAILABLE",
    }
    assert first["replayed"] is not None
    assert first["letter"].startswith(settings.scoped(topics.DLQ.name) + "/")
    assert shown[hash_token("t-secret-3")]["replayed"] is None


@pytest.mark.usefixtures("created_topics")
async def test_operators_replaying_at_once_put_each_letter_back_once(
    settings: Settings, db: AsyncDatabase[Document]
) -> None:
    await publish(
        settings,
        topics.DLQ,
        b"k",
        *(letter(f"t-{n}", app="app-a", reason="UNAVAILABLE") for n in range(20)),
    )
    counts = await asyncio.gather(
        *(replay(settings, LetterFilter(), Replays(db)) for _ in range(3))
    )
    assert sum(counts) == 20


async def test_a_lapsed_claim_is_taken_over_and_an_old_record_hides_no_new_letter(
    db: AsyncDatabase[Document],
) -> None:
    replays = Replays(db)
    assert await replays.claim("dlq/0/7", "2026-01-01T00:00:00+00:00")
    # Another operator's replay is sending it now.
    assert not await replays.claim("dlq/0/7", "2026-01-01T00:00:00+00:00")
    # That replay died between claiming and sending: after the lapse, it is free again.
    await db["replays"].update_one(
        {"_id": "dlq/0/7"},
        {"$set": {"claimed": utc_now() - timedelta(seconds=CLAIM_SECONDS + 1)}},
    )
    assert await replays.claim("dlq/0/7", "2026-01-01T00:00:00+00:00")
    await replays.done("dlq/0/7")
    assert not await replays.claim("dlq/0/7", "2026-01-01T00:00:00+00:00")
    assert set(await replays.replayed({"dlq/0/7": "2026-01-01T00:00:00+00:00"})) == {"dlq/0/7"}
    # The topic was deleted and created again: offset 7 is another letter now.
    assert await replays.replayed({"dlq/0/7": "2026-02-01T00:00:00+00:00"}) == {}
    assert await replays.claim("dlq/0/7", "2026-02-01T00:00:00+00:00")


@pytest.mark.usefixtures("created_topics")
async def test_a_replay_with_the_store_down_says_so_in_one_line_and_sends_nothing(
    settings: Settings, child_env: dict[str, str]
) -> None:
    await publish(settings, topics.DLQ, b"k", letter("t-a", app="app-a", reason="UNAVAILABLE"))
    nobody = f"mongodb://127.0.0.1:{processes.free_port()}/pushline"
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.cli", "dlq", "replay"],
        cwd=ROOT,
        env={**child_env, "PUSHLINE_MONGODB_URI": nobody},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"pushline: the store at PUSHLINE_MONGODB_URI ({nobody}) does not answer\n"
    )
    assert await dlq(child_env, "replay") == "replayed: 1\n"
