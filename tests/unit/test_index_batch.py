"""Group commits of `write_blocking`: a batch runs without savepoints first, and a failing
function is retried alone, so its failure never takes the others' writes with it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest

from orthanc_py.index.sqlite import SqliteIndex
from orthanc_py.model.enums import ResourceType


def _public_ids(path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return sorted(r[0] for r in conn.execute("SELECT public_id FROM changes"))
    finally:
        conn.close()


def _run_as_one_batch(index: SqliteIndex, fns) -> list[object]:
    """Queue every function, in order, while the write lock is held: one thread runs them all."""
    outcomes: list[object] = [None] * len(fns)

    def call(i: int) -> None:
        try:
            outcomes[i] = index.write_blocking(fns[i])
        except Exception as exc:  # the outcome under test
            outcomes[i] = exc

    index._write_lock.acquire()
    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(fns))]
    for n, t in enumerate(threads, start=1):
        t.start()
        deadline = time.monotonic() + 5
        while len(index._pending) < n and time.monotonic() < deadline:  # queued in list order
            time.sleep(0.001)
        assert len(index._pending) == n
    index._write_lock.release()
    for t in threads:
        t.join(5)
    return outcomes


def _log(name: str, fail: bool = False):
    def fn(txn):
        txn.log_changes([(1, ResourceType.INSTANCE, name, "20261123T000000")])
        if fail:
            raise ValueError(f"{name} failed")
        return name

    return fn


@pytest.fixture
def index(tmp_path):
    idx = SqliteIndex(tmp_path / "index.sqlite")
    yield idx
    asyncio.run(idx.close())


def test_a_batch_commits_every_write_together(index):
    outcomes = _run_as_one_batch(index, [_log("a"), _log("b"), _log("c")])
    assert outcomes == ["a", "b", "c"]
    assert _public_ids(index.path) == ["a", "b", "c"]


def test_a_failing_write_is_rolled_back_alone(index):
    outcomes = _run_as_one_batch(index, [_log("a"), _log("bad", fail=True), _log("c")])
    assert outcomes[0] == "a" and outcomes[2] == "c"
    assert isinstance(outcomes[1], ValueError)
    assert _public_ids(index.path) == ["a", "c"]  # the failed function's own row is gone


def test_a_single_failing_write_leaves_nothing(index):
    with pytest.raises(ValueError):
        index.write_blocking(_log("bad", fail=True))
    assert index.write_blocking(_log("ok")) == "ok"
    assert _public_ids(index.path) == ["ok"]
