"""The embedded index: SQLite in WAL mode, one write path, pooled reader connections.

Why not one statement per thread hop (aiosqlite): an ingest is ~20 statements, and a hop costs
the event loop a wake-up each. Here a whole transaction function runs in one thread, and queued
writes share one commit (index.writer: group commits; ingests write their rows together at the
end of the batch, and one failure never undoes its neighbours). Readers use their own
connections (WAL snapshots never block the writer). This module holds only what is SQLite's:
connections, pragmas, checkpoints; the SQL is in index.transaction / index.findsql.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..model.enums import ResourceType
from ..model.maintags import SIGNATURES
from . import schema
from .base import Transaction
from .batch import BatchTransaction
from .dialect import SQLITE
from .nowcache import NowCache
from .transaction import SqlTransaction, _norm_of, _summary_sql, ensure_signatures
from .writer import GroupCommitWriter, WrittenThroughWriter

log = logging.getLogger("orthanc_py.index")
T = TypeVar("T")

MIGRATIONS: tuple[str, ...] = schema.migrations("sqlite")
"""The schema's migration scripts, first to last (index/migrations/sqlite/NNNN_*.sql)."""

SQL_FUNCTIONS: dict[str, tuple[int, Callable[..., Any]]] = {"orthanc_fold": (2, _norm_of)}
"""Python functions the migrations call (the folded form of a text value)."""

WAL_SIZE_LIMIT = 4 << 20
"""Bytes the WAL file keeps when it starts over (journal_size_limit): a burst of writes grows
it, and it shrinks back at the next restart instead of holding its peak size on disk."""

_IDLE_READERS = 16
"""Reader connections kept open when idle (each has its own page cache): more than the threads
that read at once (the server's worker pool and the index's readers), so none is reopened."""


def _connect(path: str, readonly: bool, busy_ms: int = 30000) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, cached_statements=256)
    conn.execute(f"PRAGMA busy_timeout={busy_ms}")
    # Bounded page caches keep the memory flat whatever the size of the archive.
    conn.execute(f"PRAGMA cache_size={-8192 if readonly else -16384}")
    conn.execute("PRAGMA temp_store=MEMORY")
    # The size totals' triggers (migration 8) must also see the rows an INSERT OR REPLACE
    # deletes: SQLite fires delete triggers for those only with recursive triggers on.
    conn.execute("PRAGMA recursive_triggers=ON")
    if readonly:
        conn.execute("PRAGMA query_only=ON")
    return conn


class SqliteIndex(WrittenThroughWriter):
    """`Index` backed by one SQLite file in WAL mode.

    `durable` (SyncStorageArea) selects synchronous=FULL: a commit is on disk before its writers
    are answered, so even a power loss keeps acknowledged instances. NORMAL survives process kills.
    """

    def __init__(self, path: Path, readers: int = 3, durable: bool = True) -> None:
        self.path = str(path)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._writer_conn = _connect(self.path, readonly=False)
        self._writer_conn.execute("PRAGMA journal_mode=WAL")
        self._writer_conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        # Checkpoints run in their own thread: the writer never waits for one (ingest latency).
        self._writer_conn.execute("PRAGMA wal_autocheckpoint=0")
        self._writer_conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        schema.migrate_sqlite(self._writer_conn, SQL_FUNCTIONS)
        ensure_signatures(self._writer_conn, SIGNATURES.values())
        self._stop_checkpoints = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="index-checkpoint", daemon=True)
        self._checkpointer.start()
        self._writer = GroupCommitWriter(
            self._writer_conn,
            SqlTransaction(self._writer_conn, SQLITE),
            BatchTransaction(self._writer_conn, SQLITE),
            SQLITE.begin_write,
        )
        self._idle: queue.SimpleQueue[SqlTransaction] = queue.SimpleQueue()
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="index-reader")
        self._reader_conns: list[sqlite3.Connection] = []
        self._inline = InlineReads(self.path)
        self._lock = threading.Lock()
        self._closed = False

    def _checkpoint_loop(self) -> None:
        """Copy the WAL into the database every half second (PASSIVE: never blocks the writer);
        restart the WAL from its beginning when readers allow, so it does not grow forever, and
        empty the file once writes pause (a WAL fully copied is only disk space).

        RESTART and TRUNCATE wait for readers through the busy handler, holding off writers
        meanwhile: with no busy timeout here they are attempts that give up at once."""
        conn = _connect(self.path, readonly=False)
        conn.execute("PRAGMA busy_timeout=0")
        conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        previous = -1
        try:
            while not self._stop_checkpoints.wait(0.5):
                try:
                    _busy, log_pages, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if log_pages > 0 and done == log_pages and log_pages == previous:  # nothing written since
                        _busy, log_pages, done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                    elif log_pages > 20000 and done == log_pages:
                        conn.execute("PRAGMA wal_checkpoint(RESTART)")
                    previous = log_pages
                except sqlite3.Error:
                    log.debug("checkpoint skipped", exc_info=True)
        finally:
            conn.close()

    # writes: WrittenThroughWriter (index.writer)

    # ------------------------------------------------------------------ reads
    def _run_read(self, fn: Callable[[Transaction], T]) -> T:
        """Run `fn` on a snapshot, in the calling thread, with an idle reader connection (a new
        one when none is idle: no thread waits for another's read)."""
        try:
            txn = self._idle.get_nowait()
        except queue.Empty:
            conn = _connect(self.path, readonly=True)
            with self._lock:
                self._reader_conns.append(conn)
            txn = SqlTransaction(conn, SQLITE)
        txn.c.execute("BEGIN")
        try:
            return fn(txn)
        finally:
            txn.c.execute("COMMIT")
            if self._idle.qsize() < _IDLE_READERS:
                self._idle.put(txn)
            else:
                with self._lock:
                    self._reader_conns.remove(txn.c)
                txn.c.close()

    async def read(self, fn: Callable[[Transaction], T], short: bool = False) -> T:
        if short:
            try:
                return self.read_now(fn)
            except BlockingIOError:
                log.debug("inline read busy: retried in a reader thread", exc_info=True)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._run_read, fn)

    def read_now(self, fn: Callable[[Transaction], T], *, single: bool = False) -> T:
        """A short read on the event loop's own connection (InlineReads), or BlockingIOError
        when it cannot be done without waiting (index closed, database locked): the caller then
        reads another way."""
        if self._closed:
            raise BlockingIOError("the index is closed")
        return self._inline.read_now(fn, single=single)

    def read_now_cached(
        self, key: Hashable, fn: Callable[[Transaction], T], size: Callable[[T], int], *, single: bool = False
    ) -> T:
        """`read_now`, or its value kept from an earlier call with the same `key` when nothing
        has been committed to the database since (InlineReads.read_now_cached)."""
        if self._closed:
            raise BlockingIOError("the index is closed")
        return self._inline.read_now_cached(key, fn, size, single=single)

    def inline_connection(self, on_close: Callable[[], None]) -> tuple[sqlite3.Connection, str]:
        """The event loop's own read-only connection (InlineReads.connection_now)."""
        if self._closed:
            raise BlockingIOError("the index is closed")
        return self._inline.connection_now(on_close)

    def summary_statement(self, metadata_types: tuple[int, ...], level: ResourceType) -> str:
        return summary_statement(metadata_types, level)

    def read_blocking(self, fn: Callable[[Transaction], T]) -> T:
        """`read` for code already running in a worker thread: runs there, on a pooled
        connection (a short-lived thread, one per DICOM association, opens no cold one)."""
        return self._run_read(fn)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop_checkpoints.set()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._writer.close)
        await loop.run_in_executor(None, self._checkpointer.join)
        self._readers.shutdown(wait=True)
        self._inline.close()
        with self._lock:
            for conn in self._reader_conns:
                conn.close()
        # a worker thread may still be committing a batch: the last checkpoint waits for it
        await loop.run_in_executor(None, self._writer._write_lock.acquire)
        try:
            self._writer_conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._writer_conn.close()
        finally:
            self._writer._write_lock.release()


def summary_statement(metadata_types: tuple[int, ...], level: ResourceType) -> str:
    """The statement of Transaction.summary at `level` on SQLite, for a reader in C of the event
    loop's own connection (web/_lane.c): one definition of it."""
    return _summary_sql(SQLITE, metadata_types, level)


INLINE_CACHE_KB = 32768
"""SQLite's page cache of the event loop's connection, in KiB (other read-only connections: 8 MiB).
It answers the fast lane's reads of random resources: with the index's B-trees in it, a lookup
reads no page from the kernel (a 20,000-instance index is ~29 MB; at 8 MiB, a GET of a random
file cost 1.7 pread calls more). Pages are taken only as they are read, and any commit empties it."""


class InlineReads:
    """Short reads on one read-only connection used by one thread (an event loop: the HTTP fast
    lane of the main process, or of a reader process): a point lookup there takes ~30 us, the
    hop to a reader thread and back ~80 us more. The connection never waits for a lock (WAL
    readers almost never do; when one would, BlockingIOError: the caller reads another way).
    What the reads computed is kept while nothing commits to the database (index.nowcache)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._txn: SqlTransaction | None = None
        self._cache = NowCache()
        self._closed = False
        self._on_close: list[Callable[[], None]] = []

    def _read(self, fn: Callable[[Transaction], T], single: bool) -> T:
        """`single`: `fn` runs one statement, a snapshot by itself (no BEGIN and COMMIT around
        it: ~1.3 us less)."""
        txn = self._txn
        if txn is None:
            conn = _connect(self.path, readonly=True, busy_ms=0)
            conn.execute(f"PRAGMA cache_size={-INLINE_CACHE_KB}")
            txn = self._txn = SqlTransaction(conn, SQLITE)
        if single:
            return fn(txn)
        txn.c.execute("BEGIN")
        try:
            return fn(txn)
        finally:
            txn.c.execute("COMMIT")

    def read_now(self, fn: Callable[[Transaction], T], *, single: bool = False) -> T:
        """`fn` run now, or BlockingIOError (closed, database locked)."""
        if self._closed:
            raise BlockingIOError("the index is closed")
        try:
            return self._read(fn, single)
        except sqlite3.OperationalError as exc:
            raise BlockingIOError(str(exc)) from exc

    def read_now_cached(
        self, key: Hashable, fn: Callable[[Transaction], T], size: Callable[[T], int], *, single: bool = False
    ) -> T:
        """`read_now`, or its value kept from an earlier call with the same `key` when nothing
        has been committed to the database since, by any connection or process (index.nowcache).
        `fn`'s value is shared by the calls that find it: immutable, or never changed. Errors
        are not kept."""
        if self._closed:
            raise BlockingIOError("the index is closed")
        cache = self._cache
        if cache.first_time(key):  # a first read keeps nothing: no version to read
            return self.read_now(fn, single=single)
        try:
            version = self._version()
        except sqlite3.OperationalError as exc:
            raise BlockingIOError(str(exc)) from exc
        hit = cache.get(key, version)
        if hit is not None:
            return hit[0]
        value = self.read_now(fn, single=single)
        cache.put(key, value, size(value), version)
        return value

    def _version(self) -> object:
        """Something that differs after any commit to the database, by any connection of any
        process: `PRAGMA data_version` of this connection (~3 us). Reading SQLite's WAL-index
        header through a mapping of its `-shm` file would cost less, but opening and closing
        that file here releases the POSIX locks SQLite holds on it for this whole process: a
        process opening the database next believes it is alone, and rebuilds (truncates) the
        file under the others (SIGBUS in a mapping, a corrupt WAL index for a writer)."""
        txn = self._txn
        if txn is None:
            self._read(lambda txn: None, False)
            txn = self._txn
        assert txn is not None
        return txn.c.execute("PRAGMA data_version").fetchone()[0]

    def connection_now(self, on_close: Callable[[], None]) -> tuple[sqlite3.Connection, str]:
        """The connection itself and the database file's real path, for a reader in C of this
        same thread (web/_lane.c); `on_close` runs before the connection closes, so that
        its statements are finalized first. BlockingIOError once closed."""
        if self._closed:
            raise BlockingIOError("the index is closed")
        self._read(lambda txn: None, True)
        assert self._txn is not None
        self._on_close.append(on_close)
        return self._txn.c, os.path.realpath(self.path)

    def close(self) -> None:
        self._closed = True
        self._cache.clear()
        for hook in self._on_close:
            hook()
        self._on_close.clear()
        if self._txn is not None:
            self._txn.c.close()
            self._txn = None
