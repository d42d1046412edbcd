"""One bounded memo for the engine's pure, repeated results.

The engine memoises what depends only on a few facts (staging, GIST risk, classification,
personalisation per group, built output objects) because patients repeat those few facts
far more often than their whole record. Every entry is keyed by a tuple whose first item
names the kind of result, so keys of different kinds never collide; the memo stops growing
at ``limit`` entries (results are then computed again, never wrong), which bounds memory on
a long-running server fed with arbitrary numbers.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class Memo:
    """A dict that stops taking new entries at ``limit`` (except ``fixed`` ones)."""

    __slots__ = ("_data", "limit")

    def __init__(self, limit: int = 200_000) -> None:
        self._data: dict[Hashable, Any] = {}
        self.limit = limit

    def get(self, key: Hashable) -> Any | None:
        """The stored result for ``key``, or None."""
        return self._data.get(key)

    def put(self, key: Hashable, value: T, fixed: bool = False) -> T:
        """Store and return ``value``; ``fixed`` for the few per-knowledge-base entries (always
        kept)."""
        if fixed or len(self._data) < self.limit:
            self._data[key] = value
        return value

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self._data.clear()
