"""Apply delivery outcomes and interactions in batches: exact counters under
redelivery, invalid devices.

A send is identified by (notification id, token hash). Each ended send is recorded once
(services.core.store.deliveries, counted once through services.core.store.records); a
second record of the same send is a redelivery and adds nothing to the notification's
counters. When the provider answered it again (another answer time), the device really
got it twice, and the `duplicate` metric counts it; so it does for a send the sender made
again after an earlier try that may have reached the device (its sender died with it on
the wire, or its request went unanswered: `repeated`): the device may have it twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from pymongo.asynchronous.database import AsyncDatabase

from services.core import metrics
from services.core.events import DeliveryOutcome, Interaction
from services.core.store.client import Document
from services.core.store.deliveries import DeliveriesRepository
from services.core.store.devices import DevicesRepository
from services.core.store.interactions import InteractionsRepository
from services.core.store.notifications import TERMINAL


async def apply_outcomes(
    outcomes: Sequence[DeliveryOutcome], db: AsyncDatabase[Document]
) -> list[DeliveryOutcome]:
    """Count ended sends once per notification and invalidate rejected devices (bulk
    writes: one per provider and reason, one for the reached devices, one for the records).

    `retry` outcomes end nothing and count nowhere but in the sender's metrics. Returns
    the ended sends to report as device events: each one's first answer, again when it is
    redelivered (its events may not have been queued the first time), never a second
    answer of the provider.
    """
    devices = DevicesRepository(db)
    invalid: defaultdict[tuple[str, str], list[tuple[str, str, datetime]]] = defaultdict(list)
    for outcome in outcomes:
        if outcome.outcome == "invalid_token":
            since = outcome.invalid_since or outcome.answered_at
            reason = outcome.reason or "invalid_token"
            invalid[outcome.provider, reason].append((outcome.app_id, outcome.token_hash, since))
    for (provider, reason), rejected in invalid.items():
        if changed := await devices.invalidate(rejected, reason):
            metrics.TOKENS_INVALIDATED.labels(provider, reason).inc(changed)

    await devices.mark_reached(
        [(o.app_id, o.token_hash, o.answered_at) for o in outcomes if o.outcome == "success"]
    )
    ended = [
        o
        for o in outcomes
        if o.kind == "send" and o.notification_id is not None and o.outcome in TERMINAL
    ]
    if not ended:
        return []
    earlier = await DeliveriesRepository(db).record(ended)
    for outcome, found in zip(ended, earlier, strict=True):
        # The same answer again is a redelivered message; another answer, a second send;
        # a first answer to a repeated send, one whose earlier answer died with its sender.
        # A dropped job's outcome again is no send at all.
        if outcome.outcome == "cancelled":
            continue
        if (found is None and outcome.repeated) or found == "other_answer":
            metrics.SENDS.labels(outcome.provider, "duplicate").inc()
    return [o for o, found in zip(ended, earlier, strict=True) if found != "other_answer"]


async def apply_interactions(
    interactions: Sequence[Interaction], db: AsyncDatabase[Document]
) -> None:
    """Count what users did with notifications, each (notification, device, type) once,
    and mark their devices active then."""
    await InteractionsRepository(db).record(interactions)
    await DevicesRepository(db).mark_active([(i.app_id, i.token_hash, i.at) for i in interactions])
