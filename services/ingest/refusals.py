"""Refusals, and the dialect that words each one.

A route, a dependency or a middleware that will not take a request raises (or builds) a
`Refusal`: a status, what was wrong in words, and, for input that failed validation, each
field's problem. It never chooses an error shape: every dialect declares once the paths it
answers under and how it words a refusal, and `Dialects` picks by the request's path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import ceil

from starlette.responses import Response

# Seconds a caller refused for overload or an unavailable pipeline is asked to wait.
RETRY_AFTER = "1"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where (a dotted path, `[i]` for items) and what."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class Refusal(Exception):  # noqa: N818 - an answer, not a failure of ours
    """A request the ingest will not take: its status and why (`message`); `problems`,
    field by field, when its input failed validation."""

    def __init__(
        self,
        status: int,
        message: str,
        problems: Sequence[Problem] = (),
        *,
        retry_after: float | None = None,
    ) -> None:
        """`retry_after`: the seconds a 429 or 503 asks the caller to wait (default
        RETRY_AFTER)."""
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = list(problems)
        self.retry_after = retry_after


class Invalid(Refusal):
    """400: the input is not acceptable; `problems` says why, in request order."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(400, "; ".join(str(p) for p in problems), problems)


# A dialect's answer to a refusal of a request to `path`.
Shape = Callable[[str, Refusal], Response]


@dataclass(frozen=True)
class Dialect:
    """The paths a dialect answers under, by prefix, and its error shape."""

    prefixes: tuple[str, ...]
    shape: Shape


class Dialects:
    """The dialects the ingest speaks; a path none of them has is answered in `otherwise`."""

    def __init__(self, dialects: Sequence[Dialect], otherwise: Shape) -> None:
        self._shapes = [(d.prefixes, d.shape) for d in dialects]
        self._otherwise = otherwise

    def answer(self, path: str, refusal: Refusal) -> Response:
        """The refusal of a request to `path`, in the shape of the dialect it belongs to."""
        shape = next((s for prefixes, s in self._shapes if path.startswith(prefixes)), None)
        response = (shape or self._otherwise)(path, refusal)
        if refusal.status in (429, 503):
            # Whole seconds (RFC 9110), never 0: a caller told 0 would knock again at once.
            wait = refusal.retry_after
            response.headers["Retry-After"] = RETRY_AFTER if wait is None else str(ceil(wait))
        return response
