"""`pushline dlq list|replay` against the real broker."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import timedelta

import pytest

from services.core import topics
from services.core.deadletters import LetterFilter, read_letters, replay
from services.core.events import DeadLetter, PushJob, utc_now
from services.core.kafka import encode
from services.core.settings import Settings
from services.core.tokens import hash_token
from tests.integration.kafka_io import publish, read
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
        topic=topics.JOBS_FCM.name,
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
    settings: Settings, child_env: dict[str, str]
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
    assert sorted(PushJob.model_validate_json(x.value).token for x in listed) == ["t-a", "t-bad"]

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

    assert await replay(settings, recent_a) == 1
    job = await read(
        settings, topics.JOBS_FCM, lambda m: isinstance(m, PushJob) and m.token == "t-a"
    )
    assert isinstance(job, PushJob)
    assert job.attempt == 0


async def test_an_empty_or_missing_dead_letter_topic_lists_nothing(settings: Settings) -> None:
    assert [x async for x in read_letters(settings, LetterFilter())] == []
