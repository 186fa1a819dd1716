"""The shared index: PostgreSQL through psycopg 3, so that several servers can share one index.

Enabled by Orthanc's PostgreSQL plugin section (`"PostgreSQL": {"EnableIndex": true, ...}`,
index.registry); psycopg is the optional extra `orthanc_py[postgresql]`, imported only here.
What differs from SQLite, and why:

- One write connection runs the group commits of index.writer, as SQLite's does; other servers
  write to the same database meanwhile, so a commit can collide with theirs (the same patient
  created by both: its unique public id; a study deleted by one while the other stores into it:
  the deferred foreign key of migration 1; a deadlock). The functions that collided run again
  in a new transaction, where they see the other server's rows. Resource ids come from the
  table's sequence (Dialect.new_id), never from max + 1.
- Reads run in reader threads on pooled connections (a round trip to the database server on the
  event loop would stall it), each in a REPEATABLE READ READ ONLY transaction: one snapshot.
- The schema is index/migrations/postgresql/, applied under an advisory lock (schema.py).
- "Lock": true (Orthanc's default) holds an advisory lock for the life of the server: a second
  server on the same database refuses to start. Servers sharing a database set it to false.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq
from psycopg import sql as pg_sql

from ..model.maintags import SIGNATURES
from . import schema
from .base import Transaction
from .batch import BatchTransaction
from .dialect import POSTGRESQL
from .transaction import SqlTransaction, ensure_signatures
from .writer import GroupCommitWriter, WrittenThroughWriter

log = logging.getLogger("orthanc_py.index")
T = TypeVar("T")

SERVER_LOCK = 0x6F7274686E6370
"""The advisory lock a server holds on its database with "Lock": true (any fixed number)."""

_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"
_IDLE_READERS = 8
"""Reader connections kept open when idle (at most IndexConnectionsCount)."""

_COLLISIONS = (
    pg_errors.SerializationFailure,
    pg_errors.DeadlockDetected,
    pg_errors.UniqueViolation,
    pg_errors.ForeignKeyViolation,
)
"""Errors of a write that collided with another writer's (run again, see the docstring)."""


@dataclass(frozen=True, slots=True)
class PostgresSettings:
    """The keys of Orthanc's "PostgreSQL" section that the index reads (EnableStorage is not
    supported: files stay in the storage area)."""

    host: str = "localhost"
    port: int = 5432
    database: str = ""
    username: str = ""
    password: str = ""
    connection_uri: str = ""
    enable_ssl: bool = False
    lock: bool = True
    maximum_connection_retries: int = 10
    connection_retry_interval: float = 5.0
    index_connections_count: int = 50
    transaction_mode: str = "ReadCommitted"
    schema: str = "public"
    application_name: str = ""

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> PostgresSettings:
        """Read the section as Orthanc's plugin does (missing keys take its defaults)."""
        d = cls()

        def get(key: str, default: Any, kind: type) -> Any:
            value = section.get(key, default)
            if kind is bool and not isinstance(value, bool):
                raise ValueError(f'configuration: "PostgreSQL.{key}" must be true or false')
            if kind in (int, float) and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ValueError(f'configuration: "PostgreSQL.{key}" must be a number')
            if kind is str and not isinstance(value, str):
                raise ValueError(f'configuration: "PostgreSQL.{key}" must be a string')
            return kind(value)

        mode = get("TransactionMode", d.transaction_mode, str)
        if mode not in ("ReadCommitted", "Serializable"):
            raise ValueError('configuration: "PostgreSQL.TransactionMode" must be "ReadCommitted" or "Serializable"')
        count = get("IndexConnectionsCount", d.index_connections_count, int)
        if count < 1:
            raise ValueError('configuration: "PostgreSQL.IndexConnectionsCount" must be at least 1')
        return cls(
            host=get("Host", d.host, str),
            port=get("Port", d.port, int),
            database=get("Database", d.database, str),
            username=get("Username", d.username, str),
            password=get("Password", d.password, str),
            connection_uri=get("ConnectionUri", d.connection_uri, str),
            enable_ssl=get("EnableSsl", d.enable_ssl, bool),
            lock=get("Lock", d.lock, bool),
            maximum_connection_retries=get("MaximumConnectionRetries", d.maximum_connection_retries, int),
            connection_retry_interval=get("ConnectionRetryInterval", d.connection_retry_interval, float),
            index_connections_count=count,
            transaction_mode=mode,
            schema=get("Schema", d.schema, str),
            application_name=get("ApplicationName", d.application_name, str),
        )

    def connect_args(self) -> tuple[str, dict[str, Any]]:
        """(conninfo, keyword arguments) for psycopg.connect: the URI when given, else the keys."""
        extra: dict[str, Any] = {"application_name": self.application_name or "orthanc_py"}
        if self.enable_ssl:
            extra["sslmode"] = "require"
        if self.connection_uri:
            return self.connection_uri, extra
        keys = {"host": self.host, "port": self.port, "dbname": self.database, "user": self.username}
        if self.password:
            keys["password"] = self.password
        return "", {**{k: v for k, v in keys.items() if v not in ("", None)}, **extra}


@functools.lru_cache(maxsize=4096)
def adapt(sql: str) -> str:
    """The index's shared SQL (`?` parameters, sqlite3 style) in psycopg's style: `?` becomes
    `%s` and `%` becomes `%%`, outside quoted literals and identifiers. Cached per statement
    text, so each text is scanned once per process."""
    if "?" not in sql and "%" not in sql:
        return sql
    out: list[str] = []
    quote = ""
    for ch in sql:
        if quote:
            if ch == quote:
                quote = ""  # (a doubled quote closes and reopens: same result)
            out.append("%%" if ch == "%" else ch)
            continue
        if ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


class PgConnection:
    """A psycopg connection (autocommit: transactions are the explicit BEGIN/COMMIT the index
    sends) that takes the index's shared SQL, with the sqlite3 calls the index uses."""

    __slots__ = ("raw",)

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, args: Sequence[Any] | None = None) -> psycopg.Cursor[Any]:
        return self.raw.execute(adapt(sql), () if args is None else args)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> psycopg.Cursor[Any]:
        cur = self.raw.cursor()
        cur.executemany(adapt(sql), list(rows))
        return cur

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status not in (pq.TransactionStatus.IDLE, pq.TransactionStatus.UNKNOWN)

    @property
    def usable(self) -> bool:
        return not self.raw.closed and not self.raw.broken

    def close(self) -> None:
        self.raw.close()


def connect(s: PostgresSettings, retries: int | None = None) -> PgConnection:
    """A new connection; at start-up the database may not be up yet: retried
    MaximumConnectionRetries times, ConnectionRetryInterval seconds apart."""
    conninfo, kwargs = s.connect_args()
    attempts = s.maximum_connection_retries if retries is None else retries
    for attempt in range(attempts + 1):
        try:
            raw = psycopg.connect(conninfo, autocommit=True, **kwargs)
            break
        except psycopg.OperationalError as exc:
            if attempt >= attempts:
                raise
            log.warning("index: cannot connect to PostgreSQL (%s), retrying", str(exc).strip().splitlines()[0])
            time.sleep(s.connection_retry_interval)
    if s.schema != "public":
        raw.execute(pg_sql.SQL("SET search_path TO {}").format(pg_sql.Identifier(s.schema)))
    return PgConnection(raw)


def collided(exc: BaseException) -> bool:
    """Whether a write failed by colliding with another writer (then it runs again)."""
    return isinstance(exc, _COLLISIONS)


class PostgresIndex(WrittenThroughWriter):
    """`Index` backed by a PostgreSQL database that several servers may share."""

    def __init__(self, settings: PostgresSettings, readers: int = 4) -> None:
        self.settings = settings
        conn = connect(settings)
        self._writer_conn = conn
        try:
            locked = settings.lock and conn.execute("SELECT pg_try_advisory_lock(?)", (SERVER_LOCK,)).fetchone()
            if settings.lock and not (locked and locked[0]):
                raise RuntimeError(
                    'the PostgreSQL index is used by another server (set "Lock": false in the '
                    '"PostgreSQL" section of every server sharing it)'
                )
            schema.migrate_postgresql(conn)
            ensure_signatures(conn, SIGNATURES.values(), POSTGRESQL)
        except BaseException:
            conn.close()
            raise
        begin = POSTGRESQL.begin_write
        if settings.transaction_mode == "Serializable":
            begin = "BEGIN ISOLATION LEVEL SERIALIZABLE"
        self._writer = GroupCommitWriter(
            conn,
            SqlTransaction(conn, POSTGRESQL),
            BatchTransaction(conn, POSTGRESQL),
            begin,
            retryable=self._retry_write,
            retries=settings.maximum_connection_retries,
        )
        self._idle: queue.SimpleQueue[SqlTransaction] = queue.SimpleQueue()
        self._readers = ThreadPoolExecutor(
            max_workers=max(1, min(readers, settings.index_connections_count)), thread_name_prefix="index-reader"
        )
        self._reader_conns: list[PgConnection] = []
        # IndexConnectionsCount: reads at once (each on its own connection), the writer's apart
        self._slots = threading.BoundedSemaphore(settings.index_connections_count)
        self._lock = threading.Lock()
        self._closed = False

    def _retry_write(self, exc: BaseException) -> bool:
        """Whether writes that failed with `exc` run again: a collision with another server, or
        a write connection the database dropped (restarted, idle timeout), reopened here (in
        the writer's thread, with the write lock held). Unknown to the reopened connection: a
        commit whose answer was lost; its writes run again, and find their rows if it was done."""
        if collided(exc):
            return True
        conn = self._writer_conn
        if not isinstance(exc, psycopg.OperationalError) or conn.usable:
            return False
        log.warning("index: the write connection to PostgreSQL was lost, reconnecting")
        try:
            fresh = connect(self.settings, retries=1)
            if self.settings.lock:
                row = fresh.execute("SELECT pg_try_advisory_lock(?)", (SERVER_LOCK,)).fetchone()
                if not (row and row[0]):
                    fresh.close()
                    return False
        except psycopg.Error:
            log.warning("index: cannot reconnect to PostgreSQL", exc_info=True)
            return False
        conn.raw.close()
        conn.raw = fresh.raw  # (the writer and its transactions hold this wrapper)
        return True

    # writes: WrittenThroughWriter (index.writer)

    # ------------------------------------------------------------------ reads
    def _run_read(self, fn: Callable[[Transaction], T]) -> T:
        """Run `fn` on one snapshot in the calling thread, with an idle pooled connection (a new
        one when none is idle). A connection the database dropped is closed, and the read runs
        again once on a new one (idle connections are lost together when the database restarts)."""
        with self._slots:
            try:
                return self._run_read_once(fn)
            except psycopg.OperationalError:
                log.info("index: a read connection to PostgreSQL was lost, read again", exc_info=True)
                return self._run_read_once(fn, fresh=True)

    def _run_read_once(self, fn: Callable[[Transaction], T], fresh: bool = False) -> T:
        try:
            if fresh:
                raise queue.Empty
            txn = self._idle.get_nowait()
        except queue.Empty:
            conn = connect(self.settings, retries=0)
            with self._lock:
                self._reader_conns.append(conn)
            txn = SqlTransaction(conn, POSTGRESQL)
        conn = txn.c
        keep = False
        try:
            conn.execute(_READ)
            result = fn(txn)
            conn.execute("COMMIT")
            keep = True
            return result
        finally:
            if not keep and conn.usable and conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                    keep = True
                except psycopg.Error:
                    keep = False
            elif not keep:
                keep = conn.usable
            if keep and self._idle.qsize() < min(_IDLE_READERS, self.settings.index_connections_count):
                self._idle.put(txn)
            else:
                with self._lock:
                    if conn in self._reader_conns:
                        self._reader_conns.remove(conn)
                conn.close()

    async def read(self, fn: Callable[[Transaction], T], short: bool = False) -> T:
        """Always in a reader thread (`short` or not): see the module docstring."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._run_read, fn)

    def read_now(self, fn: Callable[[Transaction], T], *, single: bool = False) -> T:
        """Never on the event loop (each read is a round trip to the database server): the HTTP
        fast lane leaves every request to the ordinary path."""
        raise BlockingIOError("PostgreSQL reads run in reader threads")

    def read_now_cached(
        self, key: Hashable, fn: Callable[[Transaction], T], size: Callable[[T], int], *, single: bool = False
    ) -> T:
        """As `read_now`: never on the event loop."""
        raise BlockingIOError("PostgreSQL reads run in reader threads")

    def read_blocking(self, fn: Callable[[Transaction], T]) -> T:
        """`read` for code already running in a worker thread: runs there."""
        return self._run_read(fn)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._writer.close)
        self._readers.shutdown(wait=True)
        with self._lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        await loop.run_in_executor(None, self._writer._write_lock.acquire)
        try:
            self._writer_conn.close()  # (releases the server's advisory lock)
        finally:
            self._writer._write_lock.release()
