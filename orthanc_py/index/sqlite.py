"""The embedded index: SQLite in WAL mode, one writer thread, a few reader threads.

Why not one statement per thread hop (aiosqlite): an ingest is ~20 statements, and a hop costs
the event loop a wake-up each. Here a whole transaction function runs in the writer thread, and
queued writes share one commit (group commit; ingests write their rows together at the end of the
batch, and one failure never undoes its neighbours). Readers use their own connections (WAL
snapshots never block the writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

import orjson

from ..model.enums import ResourceType
from ..model.lookup import TEXT_VRS, MatchKind, TagConstraint, normalize, vr_of
from ..model.maintags import LEVEL_OF_TAG
from .base import (
    Attachment,
    Change,
    Deletion,
    ExportedResource,
    ExtTagRow,
    Ids,
    OrderBy,
    ResourceRow,
    Transaction,
    WholeLevel,
)

log = logging.getLogger("orthanc_py.index")
T = TypeVar("T")

MIGRATIONS: tuple[str, ...] = (
    # 1: initial schema
    """
    CREATE TABLE resources (
        id INTEGER PRIMARY KEY,
        level INTEGER NOT NULL,
        public_id TEXT NOT NULL UNIQUE,
        parent_id INTEGER,
        main_tags BLOB NOT NULL
    );
    CREATE INDEX resources_parent ON resources(parent_id);
    CREATE INDEX resources_level ON resources(level);
    CREATE TABLE tags (
        resource_id INTEGER NOT NULL,
        tag INTEGER NOT NULL,
        value TEXT NOT NULL,
        norm TEXT
    );
    CREATE INDEX tags_value ON tags(tag, value);
    CREATE INDEX tags_norm ON tags(tag, norm) WHERE norm IS NOT NULL;
    CREATE INDEX tags_resource ON tags(resource_id);
    CREATE TABLE metadata (
        resource_id INTEGER NOT NULL,
        type INTEGER NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (resource_id, type)
    ) WITHOUT ROWID;
    CREATE TABLE attachments (
        resource_id INTEGER NOT NULL,
        content_type INTEGER NOT NULL,
        uuid TEXT NOT NULL,
        compressed_size INTEGER NOT NULL,
        uncompressed_size INTEGER NOT NULL,
        compression INTEGER NOT NULL,
        uncompressed_md5 TEXT NOT NULL,
        compressed_md5 TEXT NOT NULL,
        revision INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (resource_id, content_type)
    ) WITHOUT ROWID;
    CREATE TABLE labels (
        resource_id INTEGER NOT NULL,
        label TEXT NOT NULL,
        PRIMARY KEY (resource_id, label)
    ) WITHOUT ROWID;
    CREATE INDEX labels_label ON labels(label);
    CREATE TABLE changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        change_type INTEGER NOT NULL,
        level INTEGER NOT NULL,
        public_id TEXT NOT NULL,
        date TEXT NOT NULL
    );
    CREATE INDEX changes_public_id ON changes(public_id);
    CREATE TABLE exports (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        level INTEGER NOT NULL,
        public_id TEXT NOT NULL,
        remote_modality TEXT NOT NULL,
        patient_id TEXT NOT NULL,
        study_uid TEXT NOT NULL,
        series_uid TEXT NOT NULL,
        sop_uid TEXT NOT NULL,
        date TEXT NOT NULL
    );
    CREATE TABLE properties (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE protected (resource_id INTEGER PRIMARY KEY);
    """,
    # 2: the DICOMweb change feed (instance creations and deletions, kept after deletes)
    """
    CREATE TABLE changefeed (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        action TEXT NOT NULL,
        state TEXT NOT NULL,
        study_uid TEXT NOT NULL,
        series_uid TEXT NOT NULL,
        sop_uid TEXT NOT NULL,
        instance_id TEXT NOT NULL,
        timestamp TEXT NOT NULL
    );
    CREATE INDEX changefeed_instance ON changefeed(instance_id);
    """,
    # 3: extended query tags (Azure DICOM); their values live in `tags` like main tags
    """
    CREATE TABLE ext_tags (
        key INTEGER PRIMARY KEY AUTOINCREMENT,
        tag INTEGER NOT NULL,
        private_creator TEXT NOT NULL DEFAULT '',
        vr TEXT NOT NULL,
        level INTEGER NOT NULL,
        status TEXT NOT NULL,
        query_status TEXT NOT NULL,
        operation TEXT,
        error_count INTEGER NOT NULL DEFAULT 0,
        UNIQUE (tag, private_creator)
    );
    CREATE TABLE ext_errors (
        key INTEGER NOT NULL,
        instance_id TEXT NOT NULL,
        study_uid TEXT NOT NULL,
        series_uid TEXT NOT NULL,
        sop_uid TEXT NOT NULL,
        created TEXT NOT NULL,
        message TEXT NOT NULL,
        PRIMARY KEY (key, instance_id)
    ) WITHOUT ROWID;
    """,
    # 4: revisions of metadata (ETag / If-Match, as Orthanc 1.9.2+); compressed attachments are
    # found at once (a partial index: rows of uncompressed files, the default, never enter it)
    """
    ALTER TABLE metadata ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX attachments_compressed ON attachments(compression) WHERE compression <> 1;
    """,
    # 5: case-insensitive /tools/find on every text VR (not only PN): the folded value of text
    # main tags, where it differs from the value (orthanc_fold is registered by _migrate)
    """
    UPDATE tags SET norm = orthanc_fold(tag, value) WHERE norm IS NULL AND orthanc_fold(tag, value) IS NOT NULL;
    """,
)

_CHUNK = 500


def _feed_time() -> str:
    """ISO 8601 UTC with microseconds, as the Azure change feed reports its Timestamp."""
    import datetime

    return datetime.datetime.now(datetime.UTC).isoformat()


_POOLED_THREADS = ("io", "index-reader")
_LEVELS = {int(lv): lv for lv in ResourceType}


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for i in range(0, len(ids), _CHUNK):
        yield ids[i : i + _CHUNK]


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _glob(pattern: str) -> str:
    """DICOM wildcard -> SQLite GLOB (only '[' is special to GLOB and not to DICOM)."""
    return pattern.replace("[", "[[]")


def _lookup_rows(conn: sqlite3.Connection, public_ids: Sequence[str]) -> dict[str, tuple[int, ResourceType]]:
    sql = f"SELECT public_id, id, level FROM resources WHERE public_id IN ({_marks(len(public_ids))})"
    return {pub: (rid, _LEVELS[lv]) for pub, rid, lv in conn.execute(sql, tuple(public_ids))}


@functools.lru_cache(maxsize=512)
def _values_sql(prefix: str, width: int, count: int) -> str:
    row = "(" + ",".join("?" * width) + ")"
    return prefix + " VALUES " + ",".join([row] * count)


def _insert_rows(conn: sqlite3.Connection, prefix: str, width: int, rows: Sequence[Sequence[Any]]) -> None:
    """One INSERT of many rows. executemany steps SQLite once per row, and each step
    releases and retakes the GIL: under concurrent ingest that meant a thread switch per
    row while the index's write lock was held. Rows per statement stay within SQLite's
    limit on bound values (999 before SQLite 3.32)."""
    per = max(1, min(200, _max_variables() // width))
    for start in range(0, len(rows), per):
        chunk = rows[start : start + per]
        conn.execute(_values_sql(prefix, width, len(chunk)), [v for r in chunk for v in r])


@functools.cache
def _max_variables() -> int:
    """Bound values SQLite allows in one statement (a build setting: the same for every
    connection of the process)."""
    conn = sqlite3.connect(":memory:")
    try:
        return int(conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    finally:
        conn.close()


_RESOURCES = "INSERT INTO resources(id, level, public_id, parent_id, main_tags)"
_TAGS = "INSERT INTO tags(resource_id, tag, value, norm)"
_METADATA = "INSERT OR REPLACE INTO metadata(resource_id, type, value)"
_ATTACHMENTS = "INSERT OR REPLACE INTO attachments"
_CHANGES = "INSERT INTO changes(change_type, level, public_id, date)"
_FEED = "INSERT INTO changefeed(action, state, study_uid, series_uid, sop_uid, instance_id, timestamp)"


def _norm_of(tag: int, value: str) -> str | None:
    """The folded form kept beside a text value for case-insensitive finds, only when it differs
    from the value (most DICOM text is upper-case ASCII already); a query compares both columns."""
    if tag < 0 or vr_of(tag) not in TEXT_VRS:  # negative: a private extended query tag
        return None
    folded = normalize(value)
    return None if folded == value else folded


def _tag_rows(rid: int, main_tags: dict[int, str]) -> list[tuple[int, int, str, str | None]]:
    return [(rid, t, v, _norm_of(t, v)) for t, v in main_tags.items()]


def _feed_row(action: str, study: str, series: str, sop: str, instance_id: str, timestamp: str) -> tuple[str, ...]:
    """A new change-feed entry: current, or already "deleted" for a deletion."""
    state = "deleted" if action == "delete" else "current"
    return (action, state, study, series, sop, instance_id, timestamp)


def _attachment_row(resource_id: int, a: Attachment) -> tuple[Any, ...]:
    return (
        resource_id,
        a.content_type,
        a.uuid,
        a.compressed_size,
        a.uncompressed_size,
        a.compression,
        a.uncompressed_md5,
        a.compressed_md5,
        a.revision,
    )


class SqlTransaction:
    """`Transaction` over one sqlite3 connection (see index.base for the contract)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @property
    def c(self) -> sqlite3.Connection:
        """The connection every statement goes through."""
        return self._conn

    def _insert(self, prefix: str, width: int, rows: Sequence[Sequence[Any]]) -> None:
        _insert_rows(self.c, prefix, width, rows)

    # ------------------------------------------------------------------ queries
    def lookup(self, public_id: str) -> tuple[int, ResourceType] | None:
        row = self.c.execute("SELECT id, level FROM resources WHERE public_id=?", (public_id,)).fetchone()
        return (row[0], ResourceType(row[1])) if row else None

    def _filters(self, ids: Ids, column: str, level_column: str | None = None) -> Iterable[tuple[str, tuple[Any, ...]]]:
        """SQL conditions (and arguments) selecting `ids`: one for a whole level, else chunks.
        `level_column` names a level column of the same row (no subquery needed then)."""
        if isinstance(ids, WholeLevel):
            if level_column is not None:
                yield f"{level_column} = ?", (int(ids.level),)
            else:
                yield f"{column} IN (SELECT id FROM resources WHERE level = ?)", (int(ids.level),)
            return
        for chunk in _chunks(ids):
            yield f"{column} IN ({_marks(len(chunk))})", tuple(chunk)

    def _keys(self, ids: Ids) -> list[int]:
        if isinstance(ids, WholeLevel):
            return [
                r[0] for r in self.c.execute("SELECT id FROM resources WHERE level=? ORDER BY id", (int(ids.level),))
            ]
        return list(ids)

    def lookup_many(self, public_ids: Sequence[str]) -> dict[str, tuple[int, ResourceType]]:
        return _lookup_rows(self.c, public_ids)

    def resources(self, ids: Ids) -> list[ResourceRow]:
        out: dict[int, ResourceRow] = {}
        levels = _LEVELS
        loads = orjson.loads
        for cond, args in self._filters(ids, "r.id", "r.level"):
            sql = (
                "SELECT r.id, r.level, r.public_id, r.parent_id, p.public_id, r.main_tags FROM resources r "
                f"LEFT JOIN resources p ON p.id = r.parent_id WHERE {cond}"
            )
            for rid, level, pub, parent, ppub, tags in self.c.execute(sql, args):
                out[rid] = ResourceRow(rid, levels[level], pub, parent, ppub, dict(loads(tags)))
        if isinstance(ids, WholeLevel):
            return [out[k] for k in sorted(out)]
        return [out[i] for i in ids if i in out]

    def list_ids(self, level: ResourceType, since: int = 0, limit: int = 0) -> list[int]:
        sql = "SELECT id FROM resources WHERE level=? ORDER BY id"
        args: tuple[Any, ...] = (int(level),)
        if limit > 0 or since > 0:
            sql += " LIMIT ? OFFSET ?"
            args += (limit if limit > 0 else -1, since)
        return [r[0] for r in self.c.execute(sql, args)]

    def children(self, ids: Ids) -> dict[int, list[tuple[int, str]]]:
        out: dict[int, list[tuple[int, str]]] = {i: [] for i in self._keys(ids)}
        if isinstance(ids, WholeLevel):  # every resource of the level below has its parent there
            if ids.level is ResourceType.INSTANCE:
                return out
            sql = "SELECT parent_id, id, public_id FROM resources WHERE level = ? ORDER BY parent_id, id"
            for parent, rid, pub in self.c.execute(sql, (int(ids.level) + 1,)):
                out[parent].append((rid, pub))
            return out
        for cond, args in self._filters(ids, "parent_id"):
            # (parent_id, id) is the order of the parent_id index: no sort step
            sql = f"SELECT parent_id, id, public_id FROM resources WHERE {cond} ORDER BY parent_id, id"
            for parent, rid, pub in self.c.execute(sql, args):
                out[parent].append((rid, pub))
        return out

    def descendants(self, resource_id: int, level: ResourceType) -> list[int]:
        row = self.c.execute("SELECT level FROM resources WHERE id=?", (resource_id,)).fetchone()
        if row is None:
            return []
        current = [resource_id]
        for _ in range(int(level) - row[0]):
            kids = self.children(current)
            # Orthanc walks the tree splicing each parent's children in front of the previous
            # ones: parents come out in reverse order, children in index order.
            nxt: list[int] = []
            for parent in reversed(current):
                nxt.extend(rid for rid, _pub in kids[parent])
            current = nxt
        return current

    def ancestor(self, resource_id: int, level: ResourceType) -> int | None:
        rid: int | None = resource_id
        while rid is not None:
            row = self.c.execute("SELECT level, parent_id FROM resources WHERE id=?", (rid,)).fetchone()
            if row is None:
                return None
            if row[0] == level:
                return rid
            if row[0] < level:
                return None
            rid = row[1]
        return None

    def metadata(self, ids: Ids, types: Iterable[int] | None = None) -> dict[int, dict[int, str]]:
        out: dict[int, dict[int, str]] = {i: {} for i in self._keys(ids)}
        type_list = tuple(types) if types is not None else None
        for cond, args in self._filters(ids, "resource_id"):
            sql = f"SELECT resource_id, type, value FROM metadata WHERE {cond}"
            if type_list is not None:
                sql += f" AND type IN ({_marks(len(type_list))})"
                args += type_list
            for rid, t, v in self.c.execute(sql, args):
                out[rid][t] = v
        return out

    def metadata_entry(self, resource_id: int, metadata_type: int) -> tuple[str, int] | None:
        row = self.c.execute(
            "SELECT value, revision FROM metadata WHERE resource_id=? AND type=?", (resource_id, metadata_type)
        ).fetchone()
        return (row[0], int(row[1])) if row else None

    def any_compressed(self) -> bool:
        return self.c.execute("SELECT 1 FROM attachments WHERE compression <> 1 LIMIT 1").fetchone() is not None

    def labels(self, ids: Ids) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {i: [] for i in self._keys(ids)}
        for cond, args in self._filters(ids, "resource_id"):
            for rid, label in self.c.execute(
                f"SELECT resource_id, label FROM labels WHERE {cond} ORDER BY label", args
            ):
                out[rid].append(label)
        return out

    def level_summary(
        self, level: ResourceType, metadata_type: int
    ) -> list[tuple[int, str, str | None, dict[int, str], list[str], str | None]]:
        """Every resource of `level`: (id, public id, parent's public id, main tags, children's
        public ids in index order, one metadata value), in one query (GET /studies?expand)."""
        sql = (
            "SELECT r.id, r.public_id, p.public_id, r.main_tags, "
            "(SELECT group_concat(c.public_id) FROM resources c WHERE c.parent_id = r.id), "
            "(SELECT value FROM metadata m WHERE m.resource_id = r.id AND m.type = ?) "
            "FROM resources r LEFT JOIN resources p ON p.id = r.parent_id WHERE r.level = ? ORDER BY r.id"
        )
        loads = orjson.loads
        return [
            (rid, pub, ppub, dict(loads(tags)), kids.split(",") if kids else [], value)
            for rid, pub, ppub, tags, kids, value in self.c.execute(sql, (metadata_type, int(level)))
        ]

    def all_labels(self) -> list[str]:
        return [r[0] for r in self.c.execute("SELECT DISTINCT label FROM labels ORDER BY label")]

    def attachments(self, ids: Ids) -> dict[int, list[Attachment]]:
        out: dict[int, list[Attachment]] = {i: [] for i in self._keys(ids)}
        for cond, args in self._filters(ids, "resource_id"):
            sql = (
                "SELECT resource_id, content_type, uuid, compressed_size, uncompressed_size, compression, "
                f"uncompressed_md5, compressed_md5, revision FROM attachments WHERE {cond} ORDER BY content_type"
            )
            for row in self.c.execute(sql, args):
                out[row[0]].append(Attachment(*row[1:]))
        return out

    @staticmethod
    def _tag_condition(c: TagConstraint, args: list[Any], col: str = "value") -> str:
        """SQL on one column (`value`, or `norm` for folded values) for one constraint, its
        values taken as they are."""

        def single(v: str) -> str:
            if "*" in v or "?" in v:
                args.append(_glob(v))
                return f"{col} GLOB ?"
            args.append(v)
            return f"{col} = ?"

        if c.kind is MatchKind.RANGE:
            low, high = c.values
            parts = []
            if low:
                parts.append(f"{col} >= ?")
                args.append(low)
            if high:
                parts.append(f"{col} <= ?")
                args.append(high)
            return " AND ".join(parts) or "1"
        if c.kind is MatchKind.LIST:
            return "(" + " OR ".join(single(v) for v in c.values) + ")"
        return single(c.values[0])

    def _tag_subquery(self, c: TagConstraint, args: list[Any]) -> str:
        """Ids of the resources whose `tags` rows match one constraint. A case-insensitive one
        compares the folded query with both columns (`norm` holds the folded value only where it
        differs from `value`), as two indexed searches rather than one OR that SQLite may scan."""
        if c.case_sensitive or c.kind is MatchKind.RANGE:
            args.append(c.tag)
            return f"SELECT resource_id FROM tags WHERE tag = ? AND {self._tag_condition(c, args)}"
        folded = TagConstraint(c.tag, c.level, c.kind, tuple(normalize(v) for v in c.values), True)
        args.append(c.tag)
        first = f"SELECT resource_id FROM tags WHERE tag = ? AND {self._tag_condition(folded, args)}"
        args.append(c.tag)
        second = f"SELECT resource_id FROM tags WHERE tag = ? AND {self._tag_condition(folded, args, 'norm')}"
        return f"{first} UNION ALL {second}"

    def find(
        self,
        level: ResourceType,
        constraints: Sequence[TagConstraint],
        *,
        parent: int | None = None,
        labels: Sequence[str] = (),
        labels_mode: str = "All",
        metadata_constraints: Sequence[tuple[int, TagConstraint]] = (),
        order_by: Sequence[OrderBy] = (),
        since: int = 0,
        limit: int = 0,
    ) -> list[int]:
        """Compile constraints to one SELECT; tags of upper levels join up the parent chain,
        tags of lower levels become EXISTS over descendants."""
        joins: list[str] = []
        where: list[str] = ["r.level = ?"]
        args: list[Any] = [int(level)]
        joined: dict[int, str] = {int(level): "r"}

        def alias_for(target: int) -> str:
            cur = int(level)
            alias = "r"
            while cur > target:
                cur -= 1
                if cur not in joined:
                    name = f"a{cur}"
                    joins.append(f"JOIN resources {name} ON {name}.id = {alias}.parent_id")
                    joined[cur] = name
                alias = joined[cur]
            return alias

        for c in constraints:
            tag_level = self._stored_level(c.level, level)
            sub_args: list[Any] = []
            subquery = self._tag_subquery(c, sub_args)
            if tag_level <= int(level):
                where.append(f"{alias_for(tag_level)}.id IN ({subquery})")
                args.extend(sub_args)
            else:
                # Descendant-level tag: some descendant at that level must match.
                chain = ["d1.parent_id = r.id"]
                frm = ["resources d1"]
                for depth in range(2, tag_level - int(level) + 1):
                    frm.append(f"JOIN resources d{depth} ON d{depth}.parent_id = d{depth - 1}.id")
                last = f"d{tag_level - int(level)}"
                where.append(f"EXISTS (SELECT 1 FROM {' '.join(frm)} WHERE {chain[0]} AND {last}.id IN ({subquery}))")
                args.extend(sub_args)
        if parent is not None:
            row = self.c.execute("SELECT level FROM resources WHERE id=?", (parent,)).fetchone()
            if row is None:
                return []
            where.append(f"{alias_for(row[0])}.id = ?")
            args.append(parent)
        for mtype, c in metadata_constraints:
            sub_args = [mtype]
            cond = self._tag_condition(c, sub_args)
            where.append(f"r.id IN (SELECT resource_id FROM metadata WHERE type = ? AND {cond})")
            args.extend(sub_args)
        if labels:  # "None" with no label matches everything (Orthanc 1.12.5; 1.12.11 changed it)
            marks = _marks(len(labels))
            if labels_mode == "All":
                for label in labels:
                    where.append("r.id IN (SELECT resource_id FROM labels WHERE label = ?)")
                    args.append(label)
            elif labels_mode == "Any":
                where.append(f"r.id IN (SELECT resource_id FROM labels WHERE label IN ({marks}))")
                args.extend(labels)
            else:
                where.append(f"r.id NOT IN (SELECT resource_id FROM labels WHERE label IN ({marks}))")
                args.extend(labels)
        order_sql = []
        for i, o in enumerate(order_by):
            direction = "ASC" if o.ascending else "DESC"
            if o.tag is not None:
                tl = self._stored_level(LEVEL_OF_TAG.get(o.tag, level), level)
                target = alias_for(tl) if tl <= int(level) else "r"
                joins.append(f"LEFT JOIN tags o{i} ON o{i}.resource_id = {target}.id AND o{i}.tag = ?")
                key = o.tag
            elif o.metadata is not None:
                joins.append(f"LEFT JOIN metadata o{i} ON o{i}.resource_id = r.id AND o{i}.type = ?")
                key = o.metadata
            else:
                continue
            value = {"int": f"CAST(o{i}.value AS INTEGER)", "float": f"CAST(o{i}.value AS REAL)"}.get(
                o.cast, f"o{i}.value"
            )
            # Resources without the key come last whatever the direction (as Orthanc's SQL does).
            order_sql.append((f"o{i}.value IS NULL, {value} {direction}", key))
        join_args = [v for _, v in order_sql]
        sql = "SELECT r.id FROM resources r " + " ".join(joins) + " WHERE " + " AND ".join(where)
        sql += " ORDER BY " + ", ".join([s for s, _ in order_sql] + ["r.public_id"])
        if limit > 0 or since > 0:
            sql += " LIMIT ? OFFSET ?"
            args += [limit if limit > 0 else -1, since]
        # Join arguments come before WHERE arguments in the SQL text.
        ordered_args = self._order_args(joins, join_args, args)
        return [r[0] for r in self.c.execute(sql, ordered_args)]

    @staticmethod
    def _stored_level(tag_level: ResourceType | None, level: ResourceType) -> int:
        """The level whose rows hold a main tag for a find at `level`: each study keeps its own
        copy of the patient tags, so below the patient level they are matched on the study (two
        studies of one PatientID may name the patient differently)."""
        if tag_level is None:
            return int(level)
        if tag_level is ResourceType.PATIENT and level is not ResourceType.PATIENT:
            return int(ResourceType.STUDY)
        return int(tag_level)

    @staticmethod
    def _order_args(joins: list[str], join_args: list[Any], args: list[Any]) -> list[Any]:
        return [*join_args, *args] if join_args else args

    def count(self, level: ResourceType) -> int:
        return int(self.c.execute("SELECT COUNT(*) FROM resources WHERE level=?", (int(level),)).fetchone()[0])

    def total_sizes(self) -> tuple[int, int]:
        row = self.c.execute(
            "SELECT COALESCE(SUM(compressed_size),0), COALESCE(SUM(uncompressed_size),0) FROM attachments"
        ).fetchone()
        return int(row[0]), int(row[1])

    def resource_statistics(self, resource_id: int, level: ResourceType) -> dict[str, int]:
        """Counts of descendants; sizes of the attachments of the resource and of every
        resource under it (user attachments of a patient or study count, as in Orthanc)."""
        counts: dict[str, int] = {}
        current = [resource_id]
        subtree = [resource_id]
        for lv in range(int(level) + 1, int(ResourceType.INSTANCE) + 1):
            nxt: list[int] = []
            for chunk in _chunks(current):
                sql = f"SELECT id FROM resources WHERE parent_id IN ({_marks(len(chunk))})"
                nxt.extend(r[0] for r in self.c.execute(sql, tuple(chunk)))
            current = nxt
            subtree.extend(nxt)
            counts[ResourceType(lv).label] = len(current)
        disk = unc = dicom_disk = dicom_unc = 0
        for chunk in _chunks(subtree):
            sql = (
                "SELECT content_type, SUM(compressed_size), SUM(uncompressed_size) FROM attachments "
                f"WHERE resource_id IN ({_marks(len(chunk))}) GROUP BY content_type"
            )
            for ctype, cs, us in self.c.execute(sql, tuple(chunk)):
                disk += cs
                unc += us
                if ctype == 1:
                    dicom_disk += cs
                    dicom_unc += us
        counts.update(disk=disk, uncompressed=unc, dicom_disk=dicom_disk, dicom_uncompressed=dicom_unc)
        return counts

    def changes(self, since: int, limit: int) -> list[Change]:
        rows = self.c.execute(
            "SELECT seq, change_type, level, public_id, date FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
            (since, limit),
        )
        return [Change(s, t, ResourceType(lv), p, d) for s, t, lv, p, d in rows]

    def changes_before(self, before: int, limit: int) -> list[Change]:
        rows = self.c.execute(
            "SELECT seq, change_type, level, public_id, date FROM changes WHERE seq < ? ORDER BY seq DESC LIMIT ?",
            (before, limit),
        )
        return [Change(s, t, ResourceType(lv), p, d) for s, t, lv, p, d in reversed(rows.fetchall())]

    def last_change(self) -> int:
        """The last sequence number handed out (Orthanc's GetLastChangeIndex): changes of
        deleted resources are gone, their numbers are not reused."""
        row = self.c.execute("SELECT seq FROM sqlite_sequence WHERE name='changes'").fetchone()
        return int(row[0]) if row else 0

    def exports(self, since: int, limit: int) -> list[ExportedResource]:
        rows = self.c.execute(
            "SELECT seq, level, public_id, remote_modality, patient_id, study_uid, series_uid, sop_uid, date "
            "FROM exports WHERE seq > ? ORDER BY seq LIMIT ?",
            (since, limit),
        )
        return [ExportedResource(r[0], ResourceType(r[1]), *r[2:]) for r in rows]

    def last_export(self) -> int:
        row = self.c.execute("SELECT MAX(seq) FROM exports").fetchone()
        return int(row[0] or 0)

    def property(self, key: str) -> str | None:
        row = self.c.execute("SELECT value FROM properties WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def protected_among(self, patient_ids: Sequence[int]) -> set[int]:
        out: set[int] = set()
        for chunk in _chunks(patient_ids):
            sql = f"SELECT resource_id FROM protected WHERE resource_id IN ({_marks(len(chunk))})"
            out.update(r[0] for r in self.c.execute(sql, tuple(chunk)))
        return out

    def is_protected(self, patient_id: int) -> bool:
        return self.c.execute("SELECT 1 FROM protected WHERE resource_id=?", (patient_id,)).fetchone() is not None

    # ------------------------------------------------------------------ writes
    def create_resource(
        self, public_id: str, level: ResourceType, parent_id: int | None, main_tags: dict[int, str]
    ) -> int:
        cur = self.c.execute(
            "INSERT INTO resources(level, public_id, parent_id, main_tags) VALUES (?,?,?,?)",
            (int(level), public_id, parent_id, orjson.dumps(list(main_tags.items()))),
        )
        rid = cur.lastrowid
        assert rid is not None
        if main_tags:
            self._insert(_TAGS, 4, _tag_rows(rid, main_tags))
        return rid

    def set_main_tags(self, resource_id: int, main_tags: dict[int, str]) -> None:
        row = self.c.execute("SELECT main_tags FROM resources WHERE id=?", (resource_id,)).fetchone()
        if row is None:
            return
        old = [int(tag) for tag, _ in orjson.loads(row[0])]
        self.c.executemany("DELETE FROM tags WHERE resource_id=? AND tag=?", [(resource_id, t) for t in old])
        self.c.execute(
            "UPDATE resources SET main_tags=? WHERE id=?", (orjson.dumps(list(main_tags.items())), resource_id)
        )
        if main_tags:
            self._insert(_TAGS, 4, _tag_rows(resource_id, main_tags))

    def set_metadata(self, resource_id: int, metadata_type: int, value: str, revision: int = 0) -> None:
        self.c.execute(
            "INSERT OR REPLACE INTO metadata(resource_id, type, value, revision) VALUES (?,?,?,?)",
            (resource_id, metadata_type, value, revision),
        )

    def set_metadata_many(self, rows: Sequence[tuple[int, int, str]]) -> None:
        if rows:
            self._insert(_METADATA, 3, rows)

    def delete_metadata(self, resource_id: int, metadata_type: int) -> bool:
        cur = self.c.execute("DELETE FROM metadata WHERE resource_id=? AND type=?", (resource_id, metadata_type))
        return cur.rowcount > 0

    def add_attachment(self, resource_id: int, a: Attachment) -> None:
        self._insert(_ATTACHMENTS, 9, [_attachment_row(resource_id, a)])

    def set_attachment_md5(self, resource_id: int, content_type: int, uuid: str, md5: str, compressed_md5: str) -> None:
        self.c.execute(
            "UPDATE attachments SET uncompressed_md5=?, compressed_md5=? "
            "WHERE resource_id=? AND content_type=? AND uuid=?",
            (md5, compressed_md5, resource_id, content_type, uuid),
        )

    def delete_attachment(self, resource_id: int, content_type: int) -> Attachment | None:
        found = self.attachments([resource_id])[resource_id]
        for a in found:
            if a.content_type == content_type:
                self.c.execute(
                    "DELETE FROM attachments WHERE resource_id=? AND content_type=?",
                    (resource_id, content_type),
                )
                return a
        return None

    def log_change(self, change_type: int, level: ResourceType, public_id: str, date: str) -> None:
        self.c.execute(
            "INSERT INTO changes(change_type, level, public_id, date) VALUES (?,?,?,?)",
            (change_type, int(level), public_id, date),
        )

    def log_changes(self, rows: Sequence[tuple[int, ResourceType, str, str]]) -> None:
        if rows:
            self._insert(_CHANGES, 4, [(t, int(lv), pub, d) for t, lv, pub, d in rows])

    def log_export(self, e: ExportedResource) -> None:
        self.c.execute(
            "INSERT INTO exports(level, public_id, remote_modality, patient_id, study_uid, series_uid, sop_uid, "
            "date) VALUES (?,?,?,?,?,?,?,?)",
            (
                int(e.level),
                e.public_id,
                e.remote_modality,
                e.patient_id,
                e.study_uid,
                e.series_uid,
                e.sop_uid,
                e.date,
            ),
        )

    def delete_resource(self, resource_id: int) -> Deletion:
        """Delete a resource, its descendants, and the ancestors it leaves empty."""
        row = self.c.execute("SELECT level, public_id, parent_id FROM resources WHERE id=?", (resource_id,)).fetchone()
        if row is None:
            return Deletion([], [], None)
        level, _pub, parent = row
        doomed = [resource_id]
        layer = [resource_id]
        for _ in range(int(ResourceType.INSTANCE) - level):
            nxt: list[int] = []
            for chunk in _chunks(layer):
                sql = f"SELECT id FROM resources WHERE parent_id IN ({_marks(len(chunk))})"
                nxt.extend(r[0] for r in self.c.execute(sql, tuple(chunk)))
            doomed.extend(nxt)
            layer = nxt
        # Walk up: an ancestor left without children goes too.
        remaining: tuple[ResourceType, str] | None = None
        child = resource_id
        while parent is not None:
            siblings = self.c.execute(
                "SELECT COUNT(*) FROM resources WHERE parent_id=? AND id<>?", (parent, child)
            ).fetchone()[0]
            prow = self.c.execute("SELECT level, public_id, parent_id FROM resources WHERE id=?", (parent,)).fetchone()
            if siblings > 0:
                remaining = (ResourceType(prow[0]), prow[1])
                break
            doomed.append(parent)
            child = parent
            parent = prow[2]
        attachments: list[Attachment] = []
        deleted: list[tuple[ResourceType, str]] = []
        for chunk in _chunks(doomed):
            marks = _marks(len(chunk))
            args = tuple(chunk)
            for row2 in self.c.execute(
                "SELECT content_type, uuid, compressed_size, uncompressed_size, compression, uncompressed_md5, "
                f"compressed_md5, revision FROM attachments WHERE resource_id IN ({marks})",
                args,
            ):
                attachments.append(Attachment(*row2))
            for lv, pub in self.c.execute(f"SELECT level, public_id FROM resources WHERE id IN ({marks})", args):
                deleted.append((ResourceType(lv), pub))
            for table in ("attachments", "metadata", "tags", "labels", "protected"):
                self.c.execute(f"DELETE FROM {table} WHERE resource_id IN ({marks})", args)
            self.c.execute(f"DELETE FROM resources WHERE id IN ({marks})", args)
        # The DICOMweb change feed keeps a "delete" entry for every deleted instance.
        now = _feed_time()
        for lv, pub in deleted:
            if lv is ResourceType.INSTANCE:
                row = self.c.execute(
                    "SELECT study_uid, series_uid, sop_uid FROM changefeed WHERE instance_id=? "
                    "ORDER BY seq DESC LIMIT 1",
                    (pub,),
                ).fetchone()
                if row is not None:
                    self.log_feed("delete", row[0], row[1], row[2], pub, now)
        # Orthanc's change log rows cascade with their resource: they disappear too.
        pubs = [pub for _lv, pub in deleted]
        for i in range(0, len(pubs), _CHUNK):
            part = pubs[i : i + _CHUNK]
            self.c.execute(f"DELETE FROM changes WHERE public_id IN ({_marks(len(part))})", tuple(part))
        return Deletion(attachments, deleted, remaining)

    def log_feed(
        self,
        action: str,
        study: str,
        series: str,
        sop: str,
        instance_id: str,
        timestamp: str,
        replaces: bool = True,
    ) -> None:
        """A change-feed entry; earlier entries of the instance become "replaced" or "deleted"
        (`replaces=False`: the caller knows there is no current one)."""
        if replaces:
            self.c.execute(
                "UPDATE changefeed SET state=? WHERE instance_id=? AND state='current'",
                ("deleted" if action == "delete" else "replaced", instance_id),
            )
        self._insert(_FEED, 7, [_feed_row(action, study, series, sop, instance_id, timestamp)])

    def feed(self, offset: int, limit: int) -> list[tuple[Any, ...]]:
        return self.c.execute(
            "SELECT seq, action, state, study_uid, series_uid, sop_uid, instance_id, timestamp FROM changefeed "
            "WHERE seq > ? ORDER BY seq LIMIT ?",
            (offset, limit),
        ).fetchall()

    def feed_latest(self) -> tuple[Any, ...] | None:
        row = self.c.execute(
            "SELECT seq, action, state, study_uid, series_uid, sop_uid, instance_id, timestamp FROM changefeed "
            "ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return tuple(row) if row else None

    def clear_changes(self) -> None:
        self.c.execute("DELETE FROM changes")

    # --- extended query tags
    _EXT_COLUMNS = "key, tag, private_creator, vr, level, status, query_status, operation, error_count"

    def ext_tags(self) -> list[ExtTagRow]:
        return [ExtTagRow(*row) for row in self.c.execute(f"SELECT {self._EXT_COLUMNS} FROM ext_tags ORDER BY key")]

    def add_ext_tag(self, tag: int, private_creator: str, vr: str, level: int, operation: str) -> int:
        cur = self.c.execute(
            "INSERT INTO ext_tags(tag, private_creator, vr, level, status, query_status, operation) "
            "VALUES (?,?,?,?,'Adding','Enabled',?)",
            (tag, private_creator, vr, level, operation),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def update_ext_tag(self, key: int, **fields: Any) -> None:
        allowed = {"status", "query_status", "operation"}
        assert set(fields) <= allowed
        assignments = ", ".join(f"{name}=?" for name in fields)
        self.c.execute(f"UPDATE ext_tags SET {assignments} WHERE key=?", (*fields.values(), key))

    def delete_ext_tag(self, key: int, storage_tag: int | None) -> None:
        """The tag, its indexed values (unless `storage_tag` is None) and its errors."""
        if storage_tag is not None:
            self.c.execute("DELETE FROM tags WHERE tag=?", (storage_tag,))
        self.c.execute("DELETE FROM ext_errors WHERE key=?", (key,))
        self.c.execute("DELETE FROM ext_tags WHERE key=?", (key,))

    def add_tag_values(self, rows: Sequence[tuple[int, int, str, str | None]]) -> None:
        """Searchable values (resource, tag, value, normalized) unless the resource has the tag already."""
        self.c.executemany(
            "INSERT INTO tags(resource_id, tag, value, norm) SELECT ?1, ?2, ?3, ?4 "
            "WHERE NOT EXISTS (SELECT 1 FROM tags WHERE resource_id=?1 AND tag=?2)",
            rows,
        )

    def add_ext_errors(self, key: int, rows: Sequence[tuple[str, str, str, str, str, str]]) -> None:
        """Errors (instance, study, series, sop, created, message) of a re-index; the tag's count follows."""
        self.c.executemany(
            "INSERT OR REPLACE INTO ext_errors(key, instance_id, study_uid, series_uid, sop_uid, created, message) "
            "VALUES (?,?,?,?,?,?,?)",
            [(key, *r) for r in rows],
        )
        self.c.execute(
            "UPDATE ext_tags SET error_count=(SELECT COUNT(*) FROM ext_errors WHERE key=?1) WHERE key=?1", (key,)
        )

    def ext_errors(self, key: int, offset: int, limit: int) -> list[tuple[str, str, str, str, str]]:
        return [
            tuple(r)
            for r in self.c.execute(
                "SELECT study_uid, series_uid, sop_uid, created, message FROM ext_errors WHERE key=? "
                "ORDER BY created, instance_id LIMIT ? OFFSET ?",
                (key, limit, offset),
            )
        ]

    def clear_exports(self) -> None:
        self.c.execute("DELETE FROM exports")

    def add_label(self, resource_id: int, label: str) -> None:
        self.c.execute("INSERT OR IGNORE INTO labels(resource_id, label) VALUES (?,?)", (resource_id, label))

    def remove_label(self, resource_id: int, label: str) -> None:
        self.c.execute("DELETE FROM labels WHERE resource_id=? AND label=?", (resource_id, label))

    def set_property(self, key: str, value: str) -> None:
        self.c.execute("INSERT OR REPLACE INTO properties(key, value) VALUES (?,?)", (key, value))

    def set_protected(self, patient_id: int, protected: bool) -> None:
        if protected:
            self.c.execute("INSERT OR IGNORE INTO protected(resource_id) VALUES (?)", (patient_id,))
        else:
            self.c.execute("DELETE FROM protected WHERE resource_id=?", (patient_id,))


class BatchTransaction(SqlTransaction):
    """The writer's transaction for a group commit of ingests.

    The rows an ingest adds (resources, tags, attachment, metadata, changes, feed entry) are
    kept in memory and written for the whole batch by a few multi-row INSERTs just before the
    commit, instead of about seven statements per instance: each statement releases and retakes
    the GIL several times, and under concurrent ingest every retake waits for another thread.
    Resource ids are handed out here (max + 1, as SQLite would), so callers get them at once.
    Every other statement goes through `c`, which writes the kept rows first: reads and
    updates inside the transaction always see what was written before them.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(conn)
        self._next_id = 0
        self._created: dict[str, tuple[int, ResourceType]] = {}
        self._rows: dict[str, list[Sequence[Any]]] = {}
        self.reset()

    def reset(self) -> None:
        """Forget the kept rows (the transaction was rolled back) and the id counter."""
        self._next_id = 0
        self._created = {}
        self._rows = {_RESOURCES: [], _TAGS: [], _ATTACHMENTS: [], _METADATA: [], _CHANGES: [], _FEED: []}

    @property
    def c(self) -> sqlite3.Connection:
        if any(self._rows.values()):
            self.flush()
        return self._conn

    def flush(self) -> None:
        """Write the kept rows, table by table in a fixed order (each table keeps the order of
        its rows, so change and feed sequence numbers follow the order of the calls)."""
        for prefix, rows in self._rows.items():
            if rows:
                _insert_rows(self._conn, prefix, len(rows[0]), rows)
                rows.clear()
        self._created.clear()  # in the table now: looked up there

    def lookup(self, public_id: str) -> tuple[int, ResourceType] | None:
        return self.lookup_many((public_id,)).get(public_id)

    def lookup_many(self, public_ids: Sequence[str]) -> dict[str, tuple[int, ResourceType]]:
        """Resources created in this batch and not written yet are answered from memory; the
        table is read for the others (kept rows are only new resources: no flush needed)."""
        created = self._created
        found = {pub: created[pub] for pub in public_ids if pub in created}
        rest = [pub for pub in public_ids if pub not in found]
        if rest:
            found.update(_lookup_rows(self._conn, rest))
        return found

    def create_resource(
        self, public_id: str, level: ResourceType, parent_id: int | None, main_tags: dict[int, str]
    ) -> int:
        if not self._next_id:
            self._next_id = self._conn.execute("SELECT coalesce(max(id), 0) FROM resources").fetchone()[0]
        self._next_id += 1
        rid = self._next_id
        self._rows[_RESOURCES].append((rid, int(level), public_id, parent_id, orjson.dumps(list(main_tags.items()))))
        self._rows[_TAGS].extend(_tag_rows(rid, main_tags))
        self._created[public_id] = (rid, level)
        return rid

    def set_metadata_many(self, rows: Sequence[tuple[int, int, str]]) -> None:
        self._rows[_METADATA].extend(rows)

    def add_attachment(self, resource_id: int, a: Attachment) -> None:
        self._rows[_ATTACHMENTS].append(_attachment_row(resource_id, a))

    def log_changes(self, rows: Sequence[tuple[int, ResourceType, str, str]]) -> None:
        self._rows[_CHANGES].extend((t, int(lv), pub, d) for t, lv, pub, d in rows)

    def log_feed(
        self,
        action: str,
        study: str,
        series: str,
        sop: str,
        instance_id: str,
        timestamp: str,
        replaces: bool = True,
    ) -> None:
        if replaces:  # an update of earlier entries: through `c`, after the kept rows
            super().log_feed(action, study, series, sop, instance_id, timestamp, replaces)
            return
        self._rows[_FEED].append(_feed_row(action, study, series, sop, instance_id, timestamp))


def _connect(path: str, readonly: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, cached_statements=256)
    conn.execute("PRAGMA busy_timeout=30000")
    # Bounded page caches keep the memory flat whatever the size of the archive.
    conn.execute(f"PRAGMA cache_size={-8192 if readonly else -16384}")
    conn.execute("PRAGMA temp_store=MEMORY")
    if readonly:
        conn.execute("PRAGMA query_only=ON")
    return conn


class SqliteIndex:
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
        self._migrate()
        self._stop_checkpoints = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="index-checkpoint", daemon=True)
        self._checkpointer.start()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._write_lock = threading.Lock()
        self._writer_waiting = False
        self._pending_lock = threading.Lock()
        self._pending: list[_Pending] = []
        self._writer_txn = SqlTransaction(self._writer_conn)
        self._batch_txn = BatchTransaction(self._writer_conn)
        self._thread = threading.Thread(target=self._writer_loop, name="index-writer", daemon=True)
        self._thread.start()
        self._local = threading.local()
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="index-reader")
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _migrate(self) -> None:
        conn = self._writer_conn
        conn.create_function("orthanc_fold", 2, _norm_of, deterministic=True)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS, start=1):
            if number <= version:
                continue
            log.info("index: applying migration %d", number)
            conn.execute("BEGIN IMMEDIATE")
            try:
                for stmt in script.split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                conn.execute(f"PRAGMA user_version={number}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _checkpoint_loop(self) -> None:
        """Copy the WAL into the database every half second (PASSIVE: never blocks the writer);
        restart the WAL from its beginning when readers allow, so it does not grow forever."""
        conn = _connect(self.path, readonly=False)
        try:
            while not self._stop_checkpoints.wait(0.5):
                try:
                    _busy, log_pages, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if log_pages > 20000 and done == log_pages:
                        conn.execute("PRAGMA wal_checkpoint(RESTART)")
                except sqlite3.Error:
                    log.debug("checkpoint skipped", exc_info=True)
        finally:
            conn.close()

    # ------------------------------------------------------------------ writer
    def _writer_loop(self) -> None:
        """`write` calls from event loops: queued, run by this thread in group commits. It also
        takes over queued worker-thread writes that a leader left behind (`_lead`)."""
        while True:
            first = self._queue.get()
            if first is None:  # closing: commit what worker threads queued, then stop
                self._acquire_for_writer()
                self._lead(None)
                return
            batch = [] if first is _DRAIN else [first]
            while len(batch) < 64:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                if item is not _DRAIN:
                    batch.append(item)
            pending = [_Pending(fn, fut=fut) for fn, fut in batch]
            self._acquire_for_writer()
            try:
                if pending:
                    self._run_batch(pending)  # errors are kept per item
                    self._settle(pending)
            finally:
                self._lead(None)  # releases the lock

    def _acquire_for_writer(self) -> None:
        """Take the write lock for the writer thread. Worker threads see `_writer_waiting` and
        leave the lock to it (a stream of their non-blocking attempts could otherwise win the
        lock every time); what they queue meanwhile, the writer thread commits."""
        self._writer_waiting = True
        self._write_lock.acquire()
        self._writer_waiting = False

    def write_blocking(self, fn: Callable[[Transaction], T]) -> T:
        """Run `fn` in a write transaction from the calling worker thread (never the event loop).

        Group commit by flat combining: each caller queues its function; whoever holds the write
        lock runs every queued function in one transaction and one commit (`_lead`); the others
        wait for their result. `fn` must only act on the transaction: the batch first runs as
        one `BatchTransaction` without savepoints (each statement costs GIL hand-offs under
        load); if one function fails, it is rolled back and run again with a SAVEPOINT per
        function, so a failure stays its own.
        """
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

    def _enqueue(self, item: _Pending) -> None:
        """Queue a worker-thread write; lead the commit when the lock is free (and the writer
        thread is not waiting for it), else its holder commits it."""
        if self._closed:
            raise RuntimeError("index closed")
        with self._pending_lock:
            self._pending.append(item)
        if not self._writer_waiting and self._write_lock.acquire(blocking=False):
            self._lead(item)

    def _lead(self, own: _Pending | None) -> None:
        """Called with the write lock held; releases it. Commit what is queued, batch after batch.

        A thread that found the lock taken relies on its holder: after releasing, the holder
        looks at the queue again, so nothing queued is left behind. A worker thread (`own`)
        leads until its own write and one more batch are done, then hands what is left to the
        writer thread: a DICOM association waiting for its answer never leads forever. The
        writer thread, in turn, lets the `write` calls queued for it go first after each batch
        (it comes back here once they are committed): neither kind of write starves the other.
        """
        held = True
        try:
            rounds_after_own = 0
            while True:
                with self._pending_lock:
                    batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
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
                    if own is None and not self._closed and not self._queue.empty():
                        held = False
                        self._write_lock.release()
                        return
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

    def _commit(self, batch: list[_Pending]) -> None:
        """One group commit of worker-thread writes, then their waiters and futures are told."""
        try:
            if not self._run_batch(batch, savepoints=False):
                self._run_batch(batch)
        except BaseException as exc:  # not expected: _run_batch keeps errors per item
            log.exception("index: group commit failed")
            for it in batch:
                if not it.done:
                    it.error, it.result, it.done = exc, None, True
        try:
            self._settle(batch)
        except BaseException:  # not expected: _settle keeps errors per item
            log.exception("index: cannot settle a group commit")

    @staticmethod
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

    def _run_batch(self, batch: list[_Pending], savepoints: bool = True) -> bool:
        """Run `batch` in one transaction and one commit. With `savepoints` each function's
        failure is rolled back alone. Without (two statements less per function, and the rows
        of the whole batch written together by a `BatchTransaction`), a failure fails the
        attempt: everything is rolled back, nothing is marked done, and False tells the caller
        to run the batch again with savepoints (a lone function just gets its error, as a
        savepoint would give it)."""
        conn = self._writer_conn
        txn: SqlTransaction = self._writer_txn if savepoints else self._batch_txn
        try:
            conn.execute("BEGIN IMMEDIATE")
            if not savepoints:
                self._batch_txn.reset()
                try:
                    for item in batch:
                        item.result = item.fn(txn)
                    self._batch_txn.flush()
                except BaseException as exc:
                    if conn.in_transaction:  # SQLite may have rolled back already (full disk, I/O error)
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
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            for item in batch:
                item.error, item.result = exc, None
        for item in batch:
            item.done = True
        return True

    async def write(self, fn: Callable[[Transaction], T]) -> T:
        if self._closed:
            raise RuntimeError("index closed")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put((fn, fut))
        return await fut

    # ------------------------------------------------------------------ readers
    def _reader_txn(self) -> SqlTransaction:
        txn = getattr(self._local, "txn", None)
        if txn is None:
            conn = _connect(self.path, readonly=True)
            with self._lock:
                self._reader_conns.append(conn)
            txn = SqlTransaction(conn)
            self._local.txn = txn
        return txn

    def _run_read(self, fn: Callable[[Transaction], T]) -> T:
        txn = self._reader_txn()
        txn.c.execute("BEGIN")
        try:
            return fn(txn)
        finally:
            txn.c.execute("COMMIT")

    async def read(self, fn: Callable[[Transaction], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._run_read, fn)

    def read_blocking(self, fn: Callable[[Transaction], T]) -> T:
        """`read` for code already running in a worker thread. Long-lived worker threads (the
        server's pools) keep a connection of their own; short-lived ones (one per DICOM
        association) borrow a pooled reader instead of opening a cold connection each time."""
        if threading.current_thread().name.startswith(_POOLED_THREADS):
            return self._run_read(fn)
        return self._readers.submit(self._run_read, fn).result()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._stop_checkpoints.set()
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        await asyncio.get_running_loop().run_in_executor(None, self._checkpointer.join)
        self._readers.shutdown(wait=True)
        for conn in self._reader_conns:
            conn.close()
        # a worker thread may still be committing a batch: the last checkpoint waits for it
        await asyncio.get_running_loop().run_in_executor(None, self._write_lock.acquire)
        try:
            self._writer_conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._writer_conn.close()
        finally:
            self._write_lock.release()


class _Pending:
    """A queued write of `write_blocking` (waited for with `ready`) or `write_soon` (`fut`)."""

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


_MAX_BATCH = 256
"""Worker-thread writes per group commit (a commit's latency stays bounded under any load)."""

_DRAIN = object()
"""Queued to the writer thread: run the worker-thread writes a leader left behind."""


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
