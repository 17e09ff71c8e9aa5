"""Provider tokens altered the way a forger would."""

from __future__ import annotations


def tampered(token: str) -> str:
    """The JWT with one character of its signature changed."""
    head, _, signature = token.rpartition(".")
    middle = len(signature) // 2
    swapped = "A" if signature[middle] != "A" else "B"
    return f"{head}.{signature[:middle]}{swapped}{signature[middle + 1 :]}"
