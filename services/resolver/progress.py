"""How far a `to.all` or `to.filters` fan-out has come: the jobs counted so far and the last device
produced, saved in the store now and then so that a resolver that dies mid-fan-out is
followed by one that resumes there instead of producing every job again.

A checkpoint is saved only once Kafka has every job up to it, and carries the counts of
exactly those jobs. The resuming resolver produces again the jobs after it that its
predecessor had already produced: the sender sends each (notification, device) once and
feedback counts it once, and the totals stay exact because counting resumes from the
checkpoint's counts, each device counted once.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from services.core.events import PushJob
from services.core.fields import Platform
from services.core.store.client import Document
from services.resolver.fanout import position

log = logging.getLogger(__name__)

# Jobs between checkpoints: what a resumed fan-out produces again at most (plus the jobs
# handed to the producer but not yet acknowledged), for one store write per this many.
CHECKPOINT_EVERY = 1000


@dataclass
class Progress:
    """The jobs of one fan-out counted by platform and provider, and where it stands."""

    by_platform: Counter[Platform] = field(default_factory=Counter)
    by_provider: Counter[str] = field(default_factory=Counter)
    after: str | None = None
    # False once the devices came out of `_id` order: no position is then safe to resume
    # from, and no more checkpoints are saved (a resumed fan-out starts from the last one).
    ordered: bool = True
    since_checkpoint: int = 0

    @classmethod
    def resumed(cls, checkpoint: Document | None) -> Progress:
        """The progress a saved checkpoint describes (a fresh one without)."""
        if checkpoint is None:
            return cls()
        return cls(
            by_platform=Counter(checkpoint.get("by_platform") or {}),
            by_provider=Counter(checkpoint.get("by_provider") or {}),
            after=checkpoint.get("after"),
        )

    @property
    def jobs(self) -> int:
        return sum(self.by_provider.values())

    def count(self, job: PushJob, *, positioned: bool) -> None:
        """Count a produced job; `positioned` for a `to.all` or `to.filters` fan-out, whose
        devices come in `_id` order."""
        self.by_platform[job.platform] += 1
        self.by_provider[job.provider] += 1
        self.since_checkpoint += 1
        if not positioned or not self.ordered:
            return
        at = position(job)
        if self.after is not None and at <= self.after:
            self.ordered = False
            log.warning(
                "devices out of _id order: the fan-out saves no more checkpoints",
                extra={"notification_id": job.notification_id},
            )
            return
        self.after = at

    def due(self) -> bool:
        """Whether a checkpoint is due (once the jobs counted are on Kafka)."""
        return self.ordered and self.after is not None and self.since_checkpoint >= CHECKPOINT_EVERY

    def checkpoint(self) -> Document:
        """The checkpoint to save: the position and the counts up to it."""
        self.since_checkpoint = 0
        return {
            "after": self.after,
            "by_platform": dict(self.by_platform),
            "by_provider": dict(self.by_provider),
        }
