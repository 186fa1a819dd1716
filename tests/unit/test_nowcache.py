"""index.nowcache: a value kept from its key's second computation, bounded, emptied by a new
version; SqliteIndex.read_now_cached sees every commit made by another connection (PRAGMA
data_version), and this process never opens the index's -shm file itself (closing such a
descriptor would release SQLite's locks for the whole process)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import pytest

from orthanc_py.errors import ErrorCode, OrthancError
from orthanc_py.index import sqlite as sqlite_index
from orthanc_py.index.nowcache import NowCache


def test_a_value_is_kept_when_computed_again_and_until_a_new_version() -> None:
    cache = NowCache()
    assert cache.get("a", 1) is None
    cache.put("a", "value", 10, 1)  # the first time: noted only
    assert cache.get("a", 1) is None
    cache.put("a", "value", 10, 1)
    assert cache.get("a", 1) == ("value", 10)
    assert cache.get("a", 2) is None
    assert len(cache) == 0 and cache.nbytes == 0
    cache.put("a", "old", 10, 1)  # computed before the version changed: not kept
    assert cache.get("a", 2) is None
    cache.put("a", "new", 10, 2)  # a key seen before the commit is kept at once after it
    assert cache.get("a", 2) == ("new", 10)


def _put(cache: NowCache, key: object, value: object, size: int) -> None:
    cache.put(key, value, size, 0)
    cache.put(key, value, size, 0)


def test_entries_and_bytes_are_bounded_oldest_first() -> None:
    cache = NowCache(max_entries=3, max_bytes=800)
    cache.get(None, 0)
    for i in range(5):
        _put(cache, i, i, 10)
    assert len(cache) == 3 and cache.get(0, 0) is None and cache.get(4, 0) == (4, 10)
    _put(cache, "big", "x", 101)  # over an eighth of the bytes: never kept
    assert cache.get("big", 0) is None
    for i in range(10):
        _put(cache, ("b", i), i, 100)
    assert cache.nbytes <= 800 and len(cache) == 3
    _put(cache, ("b", 9), 9, 50)  # a key stored again counts once
    assert cache.nbytes == 250
    for i in range(5):  # keys seen once are bounded too
        cache.put(("once", i), i, 10, 0)
    assert len(cache._seen) <= 3


def test_read_now_cached_sees_other_connections_commits(tmp_path: Path) -> None:
    index = sqlite_index.SqliteIndex(tmp_path / "index.sqlite", durable=False)
    calls = []

    def count(txn) -> int:
        calls.append(1)
        return int(txn.c.execute("SELECT COUNT(*) FROM labels").fetchone()[0])

    try:
        for _ in range(3):  # computed, computed and kept, found
            assert index.read_now_cached("n", count, lambda v: 8) == 0
        assert len(calls) == 2
        shm = str(index.path) + "-shm"
        opened = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd") if _link(fd)]
        assert opened.count(shm) <= 1  # only SQLite's own descriptor, if any
        other = sqlite3.connect(index.path, isolation_level=None)
        other.execute("INSERT INTO labels VALUES (1, 'x')")
        assert index.read_now_cached("n", count, lambda v: 8) == 1
        assert index.read_now_cached("n", count, lambda v: 8) == 1
        assert len(calls) == 3

        def fails(txn) -> int:
            calls.append(1)
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)

        for _ in range(2):  # errors are not kept
            with pytest.raises(OrthancError):
                index.read_now_cached("e", fails, lambda v: 8)
        assert len(calls) == 5
        other.close()
    finally:
        asyncio.run(index.close())
    with pytest.raises(BlockingIOError):
        index.read_now_cached("n", count, lambda v: 8)


def _link(fd: str) -> bool:
    try:
        os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return False
    return True
