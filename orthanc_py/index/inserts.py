"""The index's multi-row INSERT statements (one statement per batch of rows, within SQLite's
bound on values), shared by the transaction and the ingest batch."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from typing import Any

from .dialect import Dialect


@functools.lru_cache(maxsize=512)
def values_sql(prefix: str, width: int, count: int, suffix: str = "") -> str:
    row = "(" + ",".join("?" * width) + ")"
    return prefix + " VALUES " + ",".join([row] * count) + suffix


Insert = tuple[str, str]
"""(prefix, suffix) of a multi-row INSERT: the rows' VALUES go between them."""


def insert_rows(conn: Any, stmt: Insert, width: int, rows: Sequence[Sequence[Any]]) -> None:
    """One INSERT of many rows. executemany steps SQLite once per row, and each step
    releases and retakes the GIL: under concurrent ingest that meant a thread switch per
    row while the index's write lock was held. Rows per statement stay within SQLite's
    limit on bound values (999 before SQLite 3.32)."""
    per = max(1, min(200, max_variables() // width))
    for start in range(0, len(rows), per):
        chunk = rows[start : start + per]
        conn.execute(values_sql(stmt[0], width, len(chunk), stmt[1]), [v for r in chunk for v in r])


@functools.cache
def max_variables() -> int:
    """Bound values SQLite allows in one statement (a build setting: the same for every
    connection of the process)."""
    conn = sqlite3.connect(":memory:")
    try:
        return int(conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    finally:
        conn.close()


_ATTACHMENT_COLUMNS = (
    "resource_id, content_type, uuid, compressed_size, uncompressed_size, compression, "
    "uncompressed_md5, compressed_md5, revision"
)


@functools.cache
def inserts(d: Dialect) -> dict[str, Insert]:
    """The multi-row INSERTs of the index in dialect `d`, by table."""
    return {
        "resources": ("INSERT INTO resources(id, level, public_id, parent_id, main_tags)", ""),
        "tags": d.upsert("tags", "resource_id, tag, value, norm", "resource_id, tag"),
        "attachments": d.upsert("attachments", _ATTACHMENT_COLUMNS, "resource_id, content_type"),
        "metadata": d.upsert("metadata", "resource_id, type, value", "resource_id, type"),
        "metadata_revision": d.upsert("metadata", "resource_id, type, value, revision", "resource_id, type"),
        "changes": ("INSERT INTO changes(change_type, level, resource_id, date)", ""),
        "changefeed": (
            "INSERT INTO changefeed(action, state, resource_id, study_uid, series_uid, sop_uid, instance_id, "
            "timestamp)",
            "",
        ),
        "ext_errors": d.upsert(
            "ext_errors", "key, instance_id, study_uid, series_uid, sop_uid, created, message", "key, instance_id"
        ),
        "properties": d.upsert("properties", "key, value", "key"),
        "labels": d.insert_ignore("labels", "resource_id, label"),
        "protected": d.insert_ignore("protected", "resource_id"),
    }
