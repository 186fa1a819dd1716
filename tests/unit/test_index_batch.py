"""Group commits of `write_blocking`: a batch runs without savepoints first, and a failing
function is retried alone, so its failure never takes the others' writes with it. Every backend
sharing index.writer runs these (SQLite, and PostgreSQL on the session's throwaway cluster)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from orthanc_py.index.sqlite import SqliteIndex
from orthanc_py.model.enums import ResourceType

_CHANGED = "SELECT r.public_id FROM changes c JOIN resources r ON r.id = c.resource_id ORDER BY c.seq"
"""The public ids of the changes (the log names resources by internal id)."""


def _public_ids(index) -> list[str]:
    return sorted(r[0] for r in _table(index, _CHANGED))


def _run_as_one_batch(index, fns) -> list[object]:
    """Queue every function, in order, while the write lock is held; then run them as the
    holder of the lock does when it is done with its own work (one batch)."""
    outcomes: list[object] = [None] * len(fns)

    def call(i: int) -> None:
        try:
            outcomes[i] = index.write_blocking(fns[i])
        except Exception as exc:  # the outcome under test
            outcomes[i] = exc

    index._writer._write_lock.acquire()
    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(fns))]
    for n, t in enumerate(threads, start=1):
        t.start()
        deadline = time.monotonic() + 5
        while len(index._writer._pending) < n and time.monotonic() < deadline:  # queued in list order
            time.sleep(0.001)
        assert len(index._writer._pending) == n
    index._writer._lead(None)  # what a lock holder does when done: run the queue, then release
    for t in threads:
        t.join(5)
    return outcomes


def _log(name: str, fail: bool = False):
    def fn(txn):
        txn.create_resource(name, ResourceType.PATIENT, None, {})
        txn.log_changes([(1, ResourceType.INSTANCE, name, "20261123T000000")])
        if fail:
            raise ValueError(f"{name} failed")
        return name

    return fn


@pytest.fixture(params=["sqlite", "postgresql"])
def index(request, tmp_path):
    if request.param == "sqlite":
        idx = SqliteIndex(tmp_path / "index.sqlite")
    else:
        from orthanc_py.index.postgres import PostgresIndex, PostgresSettings

        idx = PostgresIndex(PostgresSettings.from_section(request.getfixturevalue("postgresql").section()))
    yield idx
    asyncio.run(idx.close())


@pytest.fixture
def sqlite_index(tmp_path):
    idx = SqliteIndex(tmp_path / "index.sqlite")
    yield idx
    asyncio.run(idx.close())


def test_a_batch_commits_every_write_together(index):
    outcomes = _run_as_one_batch(index, [_log("a"), _log("b"), _log("c")])
    assert outcomes == ["a", "b", "c"]
    assert _public_ids(index) == ["a", "b", "c"]


def test_a_failing_write_is_rolled_back_alone(index):
    outcomes = _run_as_one_batch(index, [_log("a"), _log("bad", fail=True), _log("c")])
    assert outcomes[0] == "a" and outcomes[2] == "c"
    assert isinstance(outcomes[1], ValueError)
    assert _public_ids(index) == ["a", "c"]  # the failed function's own row is gone


def test_a_single_failing_write_leaves_nothing(index):
    with pytest.raises(ValueError):
        index.write_blocking(_log("bad", fail=True))
    assert index.write_blocking(_log("ok")) == "ok"
    assert _public_ids(index) == ["ok"]


# --------------------------------------------------------------- rows written at the end of a batch
def _create(public_id: str, level: ResourceType, parent: str | None = None, **seen: object):
    """Create a resource under `parent` (looked up in the same transaction), recording ids."""

    def fn(txn):
        parent_id = None
        if parent is not None:
            parent_id = txn.lookup_many([parent])[parent][0]
        rid = txn.create_resource(public_id, level, parent_id, {0x00100010: "DOE^JOHN"})
        txn.set_metadata_many([(rid, 1, public_id)])
        txn.log_changes([(2, level, public_id, "20261123T000000")])
        seen[public_id] = rid
        return rid

    return fn


def _table(index, sql: str) -> list[tuple]:
    """What a new read transaction finds (committed rows only)."""
    return index.read_blocking(lambda txn: [tuple(r) for r in txn.c.execute(sql)])


def test_a_batch_sees_the_resources_it_created_before_they_are_written(index):
    ids = _run_as_one_batch(
        index,
        [_create("patient", ResourceType.PATIENT), _create("study", ResourceType.STUDY, parent="patient")],
    )
    patient, study = ids
    assert study == patient + 1  # handed out in order, as SQLite's rowids would be
    rows = _table(index, "SELECT id, level, public_id, parent_id FROM resources ORDER BY id")
    assert rows == [
        (patient, int(ResourceType.PATIENT), "patient", None),
        (study, int(ResourceType.STUDY), "study", patient),
    ]
    assert _table(index, "SELECT resource_id, value FROM metadata ORDER BY resource_id") == [
        (patient, "patient"),
        (study, "study"),
    ]
    tags = _table(index, "SELECT resource_id, tag, value, norm FROM tags ORDER BY resource_id")
    # `norm` only where folding changes the value (a case-insensitive find compares both columns)
    assert tags == [(patient, 0x00100010, "DOE^JOHN", None), (study, 0x00100010, "DOE^JOHN", None)]
    # changes keep the order of the calls
    assert _table(index, _CHANGED) == [("patient",), ("study",)]


def test_reads_in_a_batch_see_the_rows_kept_for_the_end(index):
    def read_back(txn):
        found = txn.lookup("patient")
        assert found is not None
        rows = txn.resources([found[0]])  # a plain query: the kept rows are written first
        return rows[0].public_id, txn.metadata([found[0]])[found[0]]

    outcomes = _run_as_one_batch(index, [_create("patient", ResourceType.PATIENT), read_back])
    assert outcomes[1] == ("patient", {1: "patient"})


def test_ids_continue_after_the_existing_rows(index):
    first = index.write_blocking(_create("p1", ResourceType.PATIENT))
    second = index.write_blocking(_create("p2", ResourceType.PATIENT))
    assert second == first + 1
    assert [r[0] for r in _table(index, "SELECT id FROM resources ORDER BY id")] == [first, second]


def test_a_conflict_found_only_when_rows_are_written_fails_alone(index):
    """Two functions create the same public id without looking it up: the batch's INSERT fails,
    and the retry with savepoints gives the error to the second function only."""
    outcomes = _run_as_one_batch(
        index,
        [_create("same", ResourceType.PATIENT), _create("same", ResourceType.PATIENT), _log("other")],
    )
    assert isinstance(outcomes[0], int) and outcomes[2] == "other"
    assert "IntegrityError" in {c.__name__ for c in type(outcomes[1]).__mro__}  # (DB-API's, any driver)
    assert _table(index, "SELECT public_id FROM resources ORDER BY id") == [("same",), ("other",)]
    assert _public_ids(index) == ["other", "same"]


def test_a_failed_batch_leaves_no_kept_rows_behind(index):
    def create_then_fail(txn):
        _create("ghost", ResourceType.PATIENT)(txn)
        raise ValueError("after the create")

    with pytest.raises(ValueError):
        index.write_blocking(create_then_fail)
    assert index.write_blocking(lambda txn: txn.lookup("ghost")) is None
    assert _table(index, "SELECT count(*) FROM resources") == [(0,)]
    assert _table(index, "SELECT count(*) FROM tags") == [(0,)]


# --------------------------------------------------------------- writes that do not wait (write_soon)
def test_write_soon_settles_futures_after_the_commit(index):
    """`after` runs once the rows are committed (another connection sees them), in the thread
    that committed; what it returns or raises settles the future."""

    def after(result, error):
        assert error is None
        committed = _table(index, _CHANGED)
        return result, committed

    def failing_after(result, error):
        assert isinstance(error, ValueError)
        raise KeyError("cleaned up")

    async def main():
        loop = asyncio.get_running_loop()
        ok, bad, plain = loop.create_future(), loop.create_future(), loop.create_future()
        await asyncio.to_thread(index.write_soon, _log("a"), ok, after)
        await asyncio.to_thread(index.write_soon, _log("b", fail=True), bad, failing_after)
        await asyncio.to_thread(index.write_soon, _log("c"), plain)
        return await ok, await asyncio.gather(bad, return_exceptions=True), await plain

    (result, committed), (error,), plain = asyncio.run(main())
    assert result == "a" and committed == [("a",)]
    assert isinstance(error, KeyError)
    assert plain == "c"
    assert _public_ids(index) == ["a", "c"]


def test_a_leader_hands_what_is_left_to_the_writer_thread(index):
    """A worker thread leads until its own write and one more batch are done; writes still
    queued after that are committed by the index's writer thread, not left behind."""
    threads: dict[str, str] = {}

    def tracked(name: str, queue_next=None):
        def fn(txn):
            threads[name] = threading.current_thread().name
            if queue_next is not None:  # queued while this batch runs: the next round's batch
                queue_next()
            txn.create_resource(name, ResourceType.PATIENT, None, {})
            txn.log_changes([(1, ResourceType.INSTANCE, name, "20261123T000000")])
            return name

        return fn

    async def main():
        loop = asyncio.get_running_loop()
        futs = {name: loop.create_future() for name in ("own", "second", "third")}

        def lead() -> None:
            queue_third = lambda: index.write_soon(tracked("third"), futs["third"])  # noqa: E731
            queue_second = lambda: index.write_soon(tracked("second", queue_third), futs["second"])  # noqa: E731
            index.write_soon(tracked("own", queue_second), futs["own"])

        await asyncio.to_thread(lead)
        return {name: await asyncio.wait_for(f, 5) for name, f in futs.items()}

    assert asyncio.run(main()) == {"own": "own", "second": "second", "third": "third"}
    assert threads["own"] == threads["second"] != "index-writer"
    assert threads["third"] == "index-writer"
    assert _public_ids(index) == ["own", "second", "third"]


def test_no_write_is_lost_when_many_threads_write_at_once(index):
    async def main():
        loop = asyncio.get_running_loop()
        futs = [loop.create_future() for _ in range(400)]

        def soon(start: int) -> None:
            for i in range(start, 400, 8):
                if i % 4 == 0:  # some callers wait for their commit, as DICOM associations do
                    futs[i].get_loop().call_soon_threadsafe(futs[i].set_result, index.write_blocking(_log(f"w{i:03}")))
                else:
                    index.write_soon(_log(f"w{i:03}"), futs[i])

        await asyncio.gather(*(asyncio.to_thread(soon, s) for s in range(8)))
        return await asyncio.wait_for(asyncio.gather(*futs), 20)

    assert asyncio.run(main()) == [f"w{i:03}" for i in range(400)]
    assert _public_ids(index) == [f"w{i:03}" for i in range(400)]


def test_event_loop_writes_are_not_starved_by_worker_writes(index):
    """Worker threads queuing writes back to back never keep an event-loop `write` waiting:
    the writer thread lets it go first after each batch it commits for them."""

    async def main():
        loop = asyncio.get_running_loop()
        stop = threading.Event()

        def flood(t: int) -> None:
            i = 0
            while not stop.is_set():
                time.sleep(0.0002)  # an upload's parse and file write, a fraction of it
                index.write_soon(_log(f"flood{t}-{i}"), loop.create_future())
                i += 1

        floods = [asyncio.to_thread(flood, t) for t in range(4)]
        tasks = [asyncio.ensure_future(f) for f in floods]
        await asyncio.sleep(0.2)
        worst = 0.0
        try:
            for n in range(20):
                started = time.monotonic()
                assert await asyncio.wait_for(index.write(_log(f"loop{n}")), 5) == f"loop{n}"
                worst = max(worst, time.monotonic() - started)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
        return worst

    assert asyncio.run(main()) < 1.0


def test_close_commits_what_worker_threads_queued(tmp_path):
    """Writes queued while another thread held the write lock are committed when the index
    closes, even if that holder let go without running them (a hand-over to the writer
    thread that raced with close)."""
    index = SqliteIndex(tmp_path / "index.sqlite")

    async def main():
        loop = asyncio.get_running_loop()
        futs = [loop.create_future() for _ in range(3)]
        index._writer._write_lock.acquire()  # a leader is busy
        for i, fut in enumerate(futs):
            await asyncio.to_thread(index.write_soon, _log(f"q{i}"), fut)
        assert len(index._writer._pending) == 3
        closing = asyncio.ensure_future(index.close())
        await asyncio.sleep(0.1)
        index._writer._write_lock.release()  # it lets go without looking at the queue again
        await asyncio.wait_for(closing, 5)
        return await asyncio.wait_for(asyncio.gather(*futs), 5)

    assert asyncio.run(main()) == ["q0", "q1", "q2"]
    assert _public_ids(index) == ["q0", "q1", "q2"]


def test_a_large_batch_stays_within_sqlite_bound_value_limit(index, monkeypatch):
    """Rows per INSERT follow SQLite's limit on bound values (999 in builds before 3.32)."""
    from orthanc_py.index import inserts as sq

    monkeypatch.setattr(sq, "max_variables", lambda: 999)
    executed: list[int] = []
    real = sq.values_sql

    def counting(prefix: str, width: int, count: int, suffix: str = "") -> str:
        executed.append(width * count)
        return real(prefix, width, count, suffix)

    monkeypatch.setattr(sq, "values_sql", counting)
    from orthanc_py.index.base import Attachment

    def attach(txn):  # 150 attachments of 9 values: one batch, written together at its end
        for n in range(150):
            txn.add_attachment(n + 1, Attachment(1, f"uuid-{n}", 10, 10, 1, "", "", 0))

    index.write_blocking(attach)
    assert executed and max(executed) <= 999
    assert _table(index, "SELECT count(*) FROM attachments") == [(150,)]


def test_reads_from_short_lived_threads_reuse_pooled_connections(index):
    """A DICOM association is a thread of its own: its reads borrow an idle connection (no
    cold connection per association, and no dependence on the thread's name)."""
    for n in range(20):
        t = threading.Thread(
            target=index.read_blocking, args=(lambda txn: txn.count(ResourceType.STUDY),), name=f"a{n}"
        )
        t.start()
        t.join(5)
    assert len(index._reader_conns) == 1


def test_the_wal_file_is_emptied_once_writes_pause(sqlite_index):
    """A burst of writes grows the WAL; when nothing is written for a moment, the checkpoint
    thread copies it into the database and truncates it (it is only disk space then)."""
    import os

    index = sqlite_index

    for n in range(20):
        index.write_blocking(
            lambda txn, n=n: [txn.create_resource(f"w{n}-{i}", ResourceType.PATIENT, None, {}) for i in range(50)]
        )
    wal = index.path + "-wal"
    assert os.path.getsize(wal) > 0
    deadline = time.monotonic() + 10
    while os.path.getsize(wal) > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.path.getsize(wal) == 0
    assert _table(index, "SELECT count(*) FROM resources") == [(1000,)]


def test_postgresql_reads_at_once_are_bounded_by_index_connections_count(postgresql):
    """IndexConnectionsCount: with 1, reads from many threads take turns on one connection."""
    from orthanc_py.index.postgres import PostgresIndex, PostgresSettings

    idx = PostgresIndex(PostgresSettings.from_section(postgresql.section(IndexConnectionsCount=1)))
    try:
        threads = [
            threading.Thread(target=idx.read_blocking, args=(lambda txn: txn.c.execute("SELECT pg_sleep(0.02)"),))
            for _ in range(6)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert len(idx._reader_conns) == 1
    finally:
        asyncio.run(idx.close())


def test_postgresql_a_store_into_a_study_another_server_deletes_leaves_no_orphan(postgresql):
    """Two servers on one index: A deletes a series (its last instance) while B stores a new
    instance into it. B's commit fails on the parent's foreign key and B's write runs again,
    now creating the series anew: no instance ever points at a deleted parent."""
    from orthanc_py.index.postgres import PostgresIndex, PostgresSettings

    section = postgresql.section()
    a = PostgresIndex(PostgresSettings.from_section(section))
    b = PostgresIndex(PostgresSettings.from_section(section))
    try:
        a.write_blocking(
            lambda txn: txn.create_resource(
                "old", ResourceType.INSTANCE, txn.create_resource("series", ResourceType.SERIES, None, {}), {}
            )
        )
        deleted = threading.Event()
        runs: list[int | None] = []

        def delete_slowly(txn):
            txn.delete_resource(txn.lookup("old")[0])
            deleted.set()
            time.sleep(0.3)  # B stores meanwhile, into the series deleted but not committed yet

        def store(txn):
            found = txn.lookup("series")
            runs.append(found[0] if found else None)
            parent = found[0] if found else txn.create_resource("series", ResourceType.SERIES, None, {})
            return txn.create_resource("new", ResourceType.INSTANCE, parent, {})

        t = threading.Thread(target=a.write_blocking, args=(delete_slowly,))
        t.start()
        assert deleted.wait(5)
        b.write_blocking(store)
        t.join(5)
        assert runs[0] is not None and runs[-1] is None  # first against the old series, then anew
        rows = _table(a, "SELECT r.public_id, p.public_id FROM resources r LEFT JOIN resources p ON p.id = r.parent_id")
        assert sorted(rows, key=str) == sorted([("new", "series"), ("series", None)], key=str)
    finally:
        asyncio.run(a.close())
        asyncio.run(b.close())
