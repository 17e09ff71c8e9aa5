"""Which priority lane a send's jobs take, and the job topic of each lane."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from services.core import topics
from services.core.events import Audience, Options, PriorityLane, PushJob, SendRequest
from services.resolver.fanout import job_for, job_for_raw_token


def request(to: dict[str, Any], lane: PriorityLane | None = None) -> SendRequest:
    return SendRequest(
        notification_id="n1",
        account_id="acc",
        app_id="app",
        to=Audience.model_validate(to),
        options=Options(priority_lane=lane),
    )


@pytest.mark.parametrize(
    "to",
    [
        {"contact_ids": ["ana"]},
        {"cellphones": ["+573001234567"]},
        {"emails": ["ana@example.com"]},
        {"tokens": ["tok"]},
        {"contact_ids": ["ana"], "tokens": ["tok"], "platforms": ["ios"]},
    ],
)
def test_a_send_to_named_devices_is_transactional(to: dict[str, Any]) -> None:
    assert request(to).lane == "transactional"


@pytest.mark.parametrize(
    "to",
    [
        {"all": True},
        {"all": True, "platforms": ["android"]},
        {"filters": {"tag": "plan", "eq": "gold"}},
    ],
)
def test_a_send_to_an_apps_devices_is_bulk(to: dict[str, Any]) -> None:
    assert request(to).lane == "bulk"


def test_the_lane_asked_for_wins_over_the_audiences() -> None:
    assert request({"contact_ids": ["ana"]}, "bulk").lane == "bulk"
    assert request({"all": True}, "transactional").lane == "transactional"


def test_an_unknown_lane_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="priority_lane"):
        Options.model_validate({"priority_lane": "urgent"})


def test_jobs_carry_their_sends_lane_to_its_topic() -> None:
    device = {
        "account_id": "acc",
        "app_id": "app",
        "platform": "ios",
        "provider": "apns",
        "token": "ab" * 32,
        "token_hash": "h1",
    }
    bulk = job_for(request({"all": True}), device)
    assert bulk.lane == "bulk"
    assert topics.topic_of(bulk).name == "push.jobs.apns.bulk"
    raw = job_for_raw_token(request({"tokens": ["tok"]}), "app", "tok")
    assert raw.lane == "transactional"
    assert topics.topic_of(raw).name == "push.jobs.fcm"


def test_a_job_without_a_lane_is_transactional() -> None:
    # Jobs produced before lanes, and verifications, read as transactional.
    job = PushJob.model_validate(
        {
            "account_id": "acc",
            "app_id": "app",
            "provider": "fcm",
            "platform": "android",
            "token": "tok",
            "token_hash": "h",
        }
    )
    assert job.lane == "transactional"
    assert topics.topic_of(job) is topics.JOB_TOPICS["fcm"]


def test_every_provider_has_a_topic_per_lane() -> None:
    names = {t.name for t in topics.all_topics()}
    for provider in topics.JOB_TOPICS:
        assert {f"push.jobs.{provider}", f"push.jobs.{provider}.bulk"} <= names
        assert topics.BULK_JOB_TOPICS[provider].key == topics.JOB_TOPICS[provider].key
