"""The schema: numbered migrations, one `.sql` file each, applied in order on opening.

A database records the last migration it has (SQLite: `PRAGMA user_version`); opening runs the
ones after it, each in its own transaction, so a database of any earlier version keeps working.
Files live in index/migrations/<dialect>/NNNN_what.sql (package data, see setup.cfg); a
migration is never edited once released, a change is a new file.
"""

from __future__ import annotations

import functools
import logging
import re
import sqlite3
from collections.abc import Callable
from importlib import resources
from typing import Any

log = logging.getLogger("orthanc_py.index")

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_TRIGGER = re.compile(r"CREATE\s+(TEMP\s+|TEMPORARY\s+)?TRIGGER\b", re.IGNORECASE)
_TRIGGER_END = re.compile(r"\bEND$", re.IGNORECASE)
_BODY = re.compile(r"\bBEGIN\b", re.IGNORECASE)


@functools.cache
def migrations(dialect: str) -> tuple[str, ...]:
    """The migration scripts of a dialect, first to last (their numbers run 1, 2, 3... without
    gaps: a missing or misnamed file fails here, not half-way through a database upgrade)."""
    folder = resources.files(__package__).joinpath("migrations", dialect)
    found: dict[int, str] = {}
    for entry in folder.iterdir():
        m = _NAME.match(entry.name)
        if m:
            found[int(m.group(1))] = entry.read_text(encoding="utf-8")
    numbers = sorted(found)
    if numbers != list(range(1, len(numbers) + 1)):
        raise RuntimeError(f"index migrations of {dialect}: numbers {numbers} are not 1..n")
    return tuple(found[n] for n in numbers)


def statements(script: str) -> list[str]:
    """The statements of a migration script (`--` comment lines dropped; `;` ends a statement,
    except inside the `BEGIN ... END` body of a CREATE TRIGGER, which ends at its `END;`, and
    inside a `$$ ... $$` function body)."""
    text = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("--"))
    out: list[str] = []
    pending = ""
    for piece in text.split(";"):
        pending = f"{pending};{piece}" if pending else piece
        stmt = pending.strip()
        if _TRIGGER.match(stmt) and _BODY.search(stmt) and not _TRIGGER_END.search(stmt):
            continue  # inside a trigger's body (SQLite)
        if stmt.count("$$") % 2:
            continue  # inside a dollar-quoted function body (PostgreSQL)
        if stmt:
            out.append(stmt)
        pending = ""
    if pending.strip():
        raise ValueError(f"migration script ends inside a statement: {pending.strip()[:60]!r}")
    return out


def migrate_sqlite(conn: sqlite3.Connection, functions: dict[str, tuple[int, Callable[..., Any]]]) -> int:
    """Bring a SQLite index to the last version; `functions` are the SQL functions migrations
    may call (registered on `conn` first). Returns the version reached."""
    for name, (nargs, fn) in functions.items():
        conn.create_function(name, nargs, fn, deterministic=True)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    return _apply(conn, migrations("sqlite"), version, "BEGIN IMMEDIATE", lambda n: (f"PRAGMA user_version={n}", ()))


def _apply(
    conn: Any, scripts: tuple[str, ...], version: int, begin: str, record: Callable[[int], tuple[str, tuple[Any, ...]]]
) -> int:
    """Run the scripts after `version`, each in its own transaction opened by `begin`, with the
    statement `record(number)` gives noting it done; returns the version reached."""
    if version > len(scripts):
        log.warning("index: schema version %d is newer than this program's (%d)", version, len(scripts))
    for number, script in enumerate(scripts, start=1):
        if number <= version:
            continue
        log.info("index: applying migration %d", number)
        conn.execute(begin)
        try:
            for stmt in statements(script):
                conn.execute(stmt)
            conn.execute(*record(number))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return len(scripts)


MIGRATION_LOCK = 0x6F7274686E6D67
"""The advisory lock held while a PostgreSQL index migrates (any fixed number)."""


def migrate_postgresql(conn: Any) -> int:
    """Bring a PostgreSQL index to the last version. Its version is the highest row of
    `orthanc_py_schema`; servers starting together take turns on an advisory lock, so only the
    first migrates and the others find the schema done. `conn` takes the index's `?` SQL
    (index.postgres.PgConnection), in autocommit mode. Returns the version reached."""
    conn.execute("SELECT pg_advisory_lock(?)", (MIGRATION_LOCK,))
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS orthanc_py_schema (version INTEGER PRIMARY KEY)")
        version = conn.execute("SELECT COALESCE(MAX(version), 0) FROM orthanc_py_schema").fetchone()[0]
        return _apply(
            conn,
            migrations("postgresql"),
            version,
            "BEGIN",
            lambda n: ("INSERT INTO orthanc_py_schema(version) VALUES (?)", (n,)),
        )
    finally:
        conn.execute("SELECT pg_advisory_unlock(?)", (MIGRATION_LOCK,))
