"""What the HTTP fast lane's reads computed, kept while the SQLite index is unchanged.

A GET /instances/{id} spends ~20 us in SQLite and Python building its answer, and the same
resources are read again and again (a viewer walks a study, a script polls it). Answers are
kept here, keyed by the caller, and all dropped as soon as anything commits to the database:
the check costs less than one statement, so a miss costs about what it did before.

The commit check is `PRAGMA data_version` of the reading connection (index.sqlite.InlineReads):
it changes with every commit of any other connection, in this process or another, so the
check is correct across the reader processes too; it costs ~3 us, a statement.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

MAX_ENTRIES = 4096
MAX_BYTES = 4 << 20
"""Bounds of one cache: a few thousand answers (~1-2 KB each for resources), a few MB at most;
empty at start-up (idle memory unchanged)."""


class NowCache:
    """Values computed from the index, each under a caller's key, valid while the version read
    by `version` stays the same (a value is computed after the version it is kept under was
    read, so it is at least that recent). Bounded by entries and by the sizes the callers give;
    the oldest entries go first. Used from one thread only (the event loop).

    A value is kept the second time its key is computed (a key computed once is only noted):
    reads that never come back (a script walking the whole archive) keep nothing, so they
    neither pay for keeping values nor push out those read again and again. Keeping every value
    cost such reads ~2 us each (allocations in memory just released instead of memory just
    used)."""

    __slots__ = ("_entries", "_nbytes", "_seen", "_version", "max_bytes", "max_entries")

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        # (a dict emptied from its front scans its dead slots at each eviction: ~2.7 us each)
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._seen: OrderedDict[Hashable, None] = OrderedDict()
        """Keys computed before, the newest MAX_ENTRIES (whatever the version: a key read
        again is read again after a commit too)."""
        self._nbytes = 0
        self._version: object = None

    def first_time(self, key: Hashable) -> bool:
        """Whether `key` was never computed before (it is noted now): its value need not be
        looked for, nor the version read (a statement) to keep it."""
        seen = self._seen
        if key in seen:
            return False
        seen[key] = None
        if len(seen) > self.max_entries:
            seen.popitem(last=False)
        return True

    def get(self, key: Hashable, version: object) -> tuple[Any, int] | None:
        """(value, size) kept under `key` at `version`, or None. A new version empties the cache."""
        if version != self._version:
            self.clear()
            self._version = version
            return None
        return self._entries.get(key)

    def put(self, key: Hashable, value: Any, size: int, version: object) -> None:
        """Keep `value` (about `size` bytes) under `key`, when it was computed at the current
        version and fits the bounds."""
        if version != self._version or size > self.max_bytes // 8:
            return
        if self.first_time(key):  # noted only
            return
        entries = self._entries
        old = entries.pop(key, None)
        if old is not None:
            self._nbytes -= old[1]
        while entries and (len(entries) >= self.max_entries or self._nbytes + size > self.max_bytes):
            self._nbytes -= entries.popitem(last=False)[1][1]
        entries[key] = (value, size)
        self._nbytes += size

    def clear(self) -> None:
        self._entries = OrderedDict()
        self._nbytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        """Sum of the sizes of the values kept."""
        return self._nbytes
