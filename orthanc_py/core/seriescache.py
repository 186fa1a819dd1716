"""Rendered per-series summaries (e.g. DICOMweb metadata), kept in memory until the series
changes: a viewer asking for a study's metadata again gets it without re-reading every file."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

MAX_BYTES = 256 << 20


class SeriesCache:
    """LRU by series of {variant: bytes}, bounded in total size; thread-safe. `invalidate` is on
    the ingest path, so it is one dictionary removal whatever the size of the cache."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, dict[Any, bytes]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, series: str, variant: Any) -> bytes | None:
        with self._lock:
            variants = self._items.get(series)
            if variants is None:
                return None
            self._items.move_to_end(series)
            return variants.get(variant)

    def put(self, series: str, variant: Any, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        with self._lock:
            variants = self._items.setdefault(series, {})
            old = variants.get(variant)
            if old is not None:
                self._size -= len(old)
            variants[variant] = value
            self._size += len(value)
            self._items.move_to_end(series)
            while self._size > self.max_bytes and self._items:
                _series, dropped = self._items.popitem(last=False)
                self._size -= sum(len(v) for v in dropped.values())

    def invalidate(self, series: str) -> None:
        """The series changed (an instance arrived or left)."""
        if series not in self._items:  # the common case on ingest: nothing cached, no lock
            return
        with self._lock:
            dropped = self._items.pop(series, None)
            if dropped is not None:
                self._size -= sum(len(v) for v in dropped.values())

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._size = 0
