"""Rendered per-series summaries (e.g. DICOMweb metadata), kept in memory until the series
changes: a viewer asking for a study's metadata again gets it without re-reading every file."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

MAX_BYTES = 256 << 20


class SeriesCache:
    """LRU of (series public id, variant) -> bytes, bounded in total size; thread-safe."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, Any], bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, series: str, variant: Any) -> bytes | None:
        with self._lock:
            value = self._items.get((series, variant))
            if value is not None:
                self._items.move_to_end((series, variant))
            return value

    def put(self, series: str, variant: Any, value: bytes) -> None:
        with self._lock:
            old = self._items.pop((series, variant), None)
            if old is not None:
                self._size -= len(old)
            if len(value) > self.max_bytes:
                return
            self._items[(series, variant)] = value
            self._size += len(value)
            while self._size > self.max_bytes:
                _key, dropped = self._items.popitem(last=False)
                self._size -= len(dropped)

    def invalidate(self, series: str) -> None:
        """The series changed (an instance arrived or left)."""
        with self._lock:
            for key in [k for k in self._items if k[0] == series]:
                self._size -= len(self._items.pop(key))

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._size = 0
