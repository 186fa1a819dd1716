"""The index's one write path: group commits by flat combining, with one batching strategy.

Every write — `write` from an event loop, `write_blocking` and `write_soon` from worker threads —
is queued in one list. Whoever holds the write lock commits what is queued, batch after batch,
in one transaction and one commit per batch: a worker thread that finds the lock free leads at
once (no thread hop on the ingest path); the event loop never runs SQL, so for its writes the
writer thread leads. A batch first runs as one `BatchTransaction` without savepoints (the rows
of its ingests written together by multi-row INSERTs); if a function fails, the batch is rolled
back and run again with a SAVEPOINT per function, so one failure never undoes its neighbours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from .base import Transaction
from .batch import BatchTransaction
from .transaction import SqlTransaction

log = logging.getLogger("orthanc_py.index")
T = TypeVar("T")

MAX_BATCH = 256
"""Writes per group commit (a commit's latency stays bounded under any load)."""


class _Pending:
    """A queued write: waited for with `ready` (`write_blocking`) or settled through `fut`."""

    __slots__ = ("after", "done", "error", "fn", "fut", "ready", "result")

    def __init__(
        self,
        fn: Callable[[Transaction], Any],
        ready: threading.Event | None = None,
        fut: asyncio.Future[Any] | None = None,
        after: Callable[[Any, BaseException | None], Any] | None = None,
    ) -> None:
        self.fn = fn
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.ready = ready
        self.fut = fut
        self.after = after


_DRAIN = object()
"""Queued to the writer thread: lead the queued writes."""


class GroupCommitWriter:
    """Runs write functions on one connection in group commits (see the module docstring).

    `begin` opens a write transaction of the engine (index.dialect); the connection is used
    only by whoever holds the write lock. `retryable` tells the errors of a collision with
    another writer of the same database (PostgreSQL shared by several servers): the functions
    that failed with one run again in a new transaction, up to `retries` times, after a
    random pause (as Orthanc replays a whole transaction, StatelessDatabaseOperations).
    """

    def __init__(
        self,
        conn: Any,
        txn: SqlTransaction,
        batch_txn: BatchTransaction,
        begin: str,
        retryable: Callable[[BaseException], bool] | None = None,
        retries: int = 10,
    ) -> None:
        self._conn = conn
        self._retryable = retryable
        self._retries = retries
        self._txn = txn
        self._batch_txn = batch_txn
        self._begin = begin
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._write_lock = threading.Lock()
        self._writer_waiting = False
        self._pending_lock = threading.Lock()
        self._pending: list[_Pending] = []
        self._closed = False
        self._thread = threading.Thread(target=self._writer_loop, name="index-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ entry points
    async def write(self, fn: Callable[[Transaction], T]) -> T:
        """Queue `fn` for the next group commit; the writer thread leads it (never the loop)."""
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._append(_Pending(fn, fut=fut))
        self._queue.put(_DRAIN)
        return await fut

    def write_blocking(self, fn: Callable[[Transaction], T]) -> T:
        """Run `fn` in the next group commit from a worker thread (never the event loop) and
        wait for it: the caller leads the commit when the lock is free, else its holder does.
        `fn` must only act on the transaction (it may run twice, see the module docstring)."""
        ready = threading.Event()
        item = _Pending(fn, ready=ready)
        self._enqueue(item)
        ready.wait()
        if item.error is not None:
            raise item.error
        return cast(T, item.result)

    def write_soon(
        self,
        fn: Callable[[Transaction], Any],
        fut: asyncio.Future[Any],
        after: Callable[[Any, BaseException | None], Any] | None = None,
    ) -> None:
        """`write_blocking` that does not wait: `fn` joins the next group commit and this returns
        at once, so the worker thread is free for the next request. Whoever runs that commit
        then calls `after(result, error)` in its own thread (clean-up that must follow the
        commit; what it returns or raises settles `fut`), and settles all the futures of the
        commit with one wake-up of their event loop instead of one per write."""
        self._enqueue(_Pending(fn, fut=fut, after=after))

    def close(self) -> None:
        """Commit what is queued and stop the writer thread (blocks: call from a worker thread)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join()

    # ------------------------------------------------------------------ leading
    def _append(self, item: _Pending) -> None:
        if self._closed:
            raise RuntimeError("index closed")
        with self._pending_lock:
            self._pending.append(item)

    def _enqueue(self, item: _Pending) -> None:
        """Queue a worker-thread write; lead the commit when the lock is free (and the writer
        thread is not waiting for it), else its holder commits it."""
        self._append(item)
        if not self._writer_waiting and self._write_lock.acquire(blocking=False):
            self._lead(item)

    def _writer_loop(self) -> None:
        """Leads for the event loop's writes, and takes over what a worker thread left."""
        while True:
            item = self._queue.get()
            self._acquire_for_writer()
            self._lead(None)  # releases the lock
            if item is None:
                return

    def _acquire_for_writer(self) -> None:
        """Take the write lock for the writer thread. Worker threads see `_writer_waiting` and
        leave the lock to it (a stream of their non-blocking attempts could otherwise win the
        lock every time); what they queue meanwhile, the writer thread commits."""
        self._writer_waiting = True
        self._write_lock.acquire()
        self._writer_waiting = False

    def _lead(self, own: _Pending | None) -> None:
        """Called with the write lock held; releases it. Commit what is queued, batch after batch.

        A thread that found the lock taken relies on its holder: after releasing, the holder
        looks at the queue again, so nothing queued is left behind. A worker thread (`own`)
        leads until its own write and one more batch are done, then hands what is left to the
        writer thread: a DICOM association waiting for its answer never leads forever.
        """
        held = True
        try:
            rounds_after_own = 0
            while True:
                with self._pending_lock:
                    batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                if batch:
                    if own is not None and own.done and not self._closed:
                        rounds_after_own += 1
                    if own is not None and (self._writer_waiting or rounds_after_own > 1):
                        with self._pending_lock:
                            self._pending[:0] = batch
                        held = False
                        self._write_lock.release()
                        if not self._writer_waiting:  # (a waiting writer thread takes them anyway)
                            self._queue.put(_DRAIN)
                        return
                    self._commit(batch)
                    continue
                held = False
                self._write_lock.release()
                with self._pending_lock:
                    if not self._pending:
                        return
                if not self._write_lock.acquire(blocking=False):
                    return  # its holder will see the queue after releasing
                held = True
        finally:
            if held:
                self._write_lock.release()

    # ------------------------------------------------------------------ committing
    def _commit(self, batch: list[_Pending]) -> None:
        """One group commit, then its waiters and futures are told."""
        try:
            todo = batch
            for attempt in range(self._retries + 1):
                if not self._run_batch(todo, savepoints=False):
                    self._run_batch(todo)
                retryable = self._retryable
                if retryable is None:
                    break
                todo = [it for it in todo if it.error is not None and retryable(it.error)]
                if not todo or attempt == self._retries:
                    break
                log.info("index: %d write(s) collided with another writer, run again", len(todo))
                for it in todo:
                    it.error, it.result, it.done = None, None, False
                time.sleep(random.uniform(0.001, 0.005 * 2 ** min(attempt, 6)))
        except BaseException as exc:  # not expected: _run_batch keeps errors per item
            log.exception("index: group commit failed")
            for it in batch:
                if not it.done:
                    it.error, it.result, it.done = exc, None, True
        try:
            _settle(batch)
        except BaseException:  # not expected: _settle keeps errors per item
            log.exception("index: cannot settle a group commit")

    def _run_batch(self, batch: list[_Pending], savepoints: bool = True) -> bool:
        """Run `batch` in one transaction and one commit. With `savepoints` each function's
        failure is rolled back alone. Without (two statements less per function, and the rows
        of the whole batch written together by a `BatchTransaction`), a failure fails the
        attempt: everything is rolled back, nothing is marked done, and False tells the caller
        to run the batch again with savepoints (a lone function just gets its error, as a
        savepoint would give it)."""
        conn = self._conn
        txn: SqlTransaction = self._txn if savepoints else self._batch_txn
        try:
            conn.execute(self._begin)
            if not savepoints:
                self._batch_txn.reset()
                try:
                    for item in batch:
                        item.result = item.fn(txn)
                    self._batch_txn.flush()
                except BaseException as exc:
                    if conn.in_transaction:  # the engine may have rolled back already (full disk)
                        conn.execute("ROLLBACK")
                    self._batch_txn.reset()
                    if len(batch) > 1:
                        return False
                    batch[0].error, batch[0].result, batch[0].done = exc, None, True
                    return True
            else:
                for item in batch:
                    conn.execute("SAVEPOINT op")
                    try:
                        item.result = item.fn(txn)
                    except BaseException as exc:
                        conn.execute("ROLLBACK TO op")
                        item.error, item.result = exc, None
                    conn.execute("RELEASE op")
            conn.execute("COMMIT")
        except BaseException as exc:  # the commit failed: nobody's write happened
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")
            for item in batch:
                item.error, item.result = exc, None
        for item in batch:
            item.done = True
        return True


def _settle(batch: list[_Pending]) -> None:
    """Wake the threads waiting for `batch` and settle its futures (one call per loop)."""
    results: list[tuple[asyncio.Future[Any], bool, Any]] = []
    for item in batch:
        if item.ready is not None:
            item.ready.set()
        if item.fut is None:
            continue
        value: Any = item.error if item.error is not None else item.result
        ok = item.error is None
        if item.after is not None:
            try:
                value, ok = item.after(item.result, item.error), True
            except BaseException as exc:  # the caller's outcome
                value, ok = exc, False
        results.append((item.fut, ok, value))
    _settle_futures(results)


def fail_soon(
    fut: asyncio.Future[Any], error: BaseException, after: Callable[[Any, BaseException | None], Any] | None
) -> None:
    """Settle a `write_soon` future with `error` without writing anything (as a failed write:
    `after` sees the error), from any thread."""
    item = _Pending(lambda txn: None, fut=fut, after=after)
    item.error = error
    _settle([item])


def _settle_futures(results: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    """Settle futures from a thread: one `call_soon_threadsafe` per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
    for fut, ok, value in results:
        by_loop.setdefault(fut.get_loop(), []).append((fut, ok, value))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, items)
        except RuntimeError:  # loop closed
            pass


def _resolve(items: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for fut, ok, value in items:
        if fut.done():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


class WrittenThroughWriter:
    """The write half of an `Index` whose writes all go through a GroupCommitWriter (`_writer`),
    mixed into each backend."""

    _writer: GroupCommitWriter
    _closed: bool

    async def write(self, fn: Callable[[Transaction], T]) -> T:
        if self._closed:
            raise RuntimeError("index closed")
        return await self._writer.write(fn)

    def write_blocking(self, fn: Callable[[Transaction], T]) -> T:
        """See GroupCommitWriter.write_blocking."""
        return self._writer.write_blocking(fn)

    def write_soon(
        self,
        fn: Callable[[Transaction], Any],
        fut: asyncio.Future[Any],
        after: Callable[[Any, BaseException | None], Any] | None = None,
    ) -> None:
        """See GroupCommitWriter.write_soon."""
        self._writer.write_soon(fn, fut, after)
