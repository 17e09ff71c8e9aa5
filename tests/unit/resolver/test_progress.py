from __future__ import annotations

from services.core.events import PushJob
from services.core.fields import Platform, ProviderName
from services.core.tokens import hash_token
from services.resolver.progress import CHECKPOINT_EVERY, Progress


def job(token: str, provider: ProviderName = "fcm", platform: Platform = "android") -> PushJob:
    return PushJob(
        notification_id="n",
        account_id="acc",
        app_id="app",
        provider=provider,
        platform=platform,
        token=token,
        token_hash=hash_token(token),
    )


def in_id_order(count: int) -> list[PushJob]:
    return sorted((job(f"t-{i}") for i in range(count)), key=lambda j: j.token_hash)


def test_a_checkpoint_is_due_every_so_many_jobs_with_the_counts_up_to_it() -> None:
    progress = Progress()
    jobs = in_id_order(CHECKPOINT_EVERY + 1)
    for produced in jobs[:-2]:
        progress.count(produced, positioned=True)
    assert not progress.due()
    progress.count(jobs[-2], positioned=True)
    assert progress.due()
    saved = progress.checkpoint()
    assert saved == {
        "after": f"app:{jobs[-2].token_hash}",
        "by_platform": {"android": CHECKPOINT_EVERY},
        "by_provider": {"fcm": CHECKPOINT_EVERY},
    }
    assert not progress.due()

    # A resumed fan-out counts on from the checkpoint: each device once in the totals.
    resumed = Progress.resumed(saved)
    resumed.count(jobs[-1], positioned=True)
    assert (resumed.after, resumed.jobs) == (f"app:{jobs[-1].token_hash}", CHECKPOINT_EVERY + 1)


def test_devices_out_of_id_order_stop_the_checkpoints() -> None:
    progress = Progress()
    jobs = in_id_order(CHECKPOINT_EVERY + 2)
    for produced in [*jobs[1:], jobs[0]]:
        progress.count(produced, positioned=True)
    # The last one came before an earlier position: no position is safe any more.
    assert not progress.ordered
    assert not progress.due()
    assert progress.jobs == CHECKPOINT_EVERY + 2


def test_a_fan_out_by_selectors_has_no_position() -> None:
    progress = Progress()
    for produced in in_id_order(CHECKPOINT_EVERY):
        progress.count(produced, positioned=False)
    assert (progress.after, progress.due(), progress.jobs) == (None, False, CHECKPOINT_EVERY)
    assert Progress.resumed(None).after is None
