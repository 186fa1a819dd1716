"""`SqlTransaction`: the `Transaction` protocol in SQL, over one DB-API connection.

Statements are written once for every engine (see index.dialect): what differs comes from
`self.d`. The find compiler is index.findsql; the writer's batching transaction is index.batch.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from ..model.enums import MetadataType, ResourceType
from ..model.lookup import TEXT_VRS, TagConstraint, normalize, vr_of
from ..model.maintags import SERIES_INSTANCE_UID, SOP_INSTANCE_UID, STUDY_INSTANCE_UID
from .base import (
    Attachment,
    Change,
    Deletion,
    ExportedResource,
    ExtTagRow,
    Ids,
    OrderBy,
    ResourceRow,
    ResourceSummary,
    WholeLevel,
)
from .dialect import SQLITE, Dialect
from .findsql import compile_find
from .inserts import insert_rows, inserts
from .recycling import RecyclingRows
from .rules import delete_cascade, feed_state

_CHUNK = 500


_LEVELS = {int(lv): lv for lv in ResourceType}

SIGNATURE = int(MetadataType.MAIN_DICOM_TAGS_SIGNATURE)
"""Metadata stored by number: its rows hold the id of its text in `signatures` (migration 6)."""


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for i in range(0, len(ids), _CHUNK):
        yield ids[i : i + _CHUNK]


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _lookup_rows(conn: sqlite3.Connection, public_ids: Sequence[str]) -> dict[str, tuple[int, ResourceType]]:
    sql = f"SELECT public_id, id, level FROM resources WHERE public_id IN ({_marks(len(public_ids))})"
    return {pub: (rid, _LEVELS[lv]) for pub, rid, lv in conn.execute(sql, tuple(public_ids))}


def _norm_of(tag: int, value: str) -> str | None:
    """The folded form kept beside a text value for case-insensitive finds, only when it differs
    from the value (most DICOM text is upper-case ASCII already); a query compares both columns."""
    if tag < 0 or vr_of(tag) not in TEXT_VRS:  # negative: a private extended query tag
        return None
    folded = normalize(value)
    return None if folded == value else folded


def _tag_rows(rid: int, main_tags: dict[int, str]) -> list[tuple[int, int, str, str | None]]:
    return [(rid, t, v, _norm_of(t, v)) for t, v in main_tags.items()]


def _feed_row(
    action: str, study: str, series: str, sop: str, instance_id: str, timestamp: str, resource_id: int | None
) -> tuple[Any, ...]:
    """A new change-feed entry: current, or already "deleted" for a deletion. The creation of
    an instance that is stored names it by internal id (`resource_id`): its UIDs and public id
    are read from its rows (migration 6), copied into the entry when it is deleted."""
    state = feed_state(action)[0]
    if resource_id is not None and action == "create":
        return (action, state, resource_id, None, None, None, None, timestamp)
    return (action, state, None, study, series, sop, instance_id, timestamp)


def _feed_uids(ref: str) -> tuple[str, str, str, str]:
    """SQL of (study UID, series UID, SOP instance UID, public id) of the instance `ref` (the
    SQL of an internal id) as its rows give them: a UID it lacks is '' (as ingest logs it)."""
    study = (
        "COALESCE((SELECT t.value FROM resources i JOIN resources s ON s.id = i.parent_id "
        f"JOIN tags t ON t.resource_id = s.parent_id AND t.tag = {STUDY_INSTANCE_UID} WHERE i.id = {ref}), '')"
    )
    series = (
        "COALESCE((SELECT t.value FROM resources i JOIN tags t ON t.resource_id = i.parent_id "
        f"AND t.tag = {SERIES_INSTANCE_UID} WHERE i.id = {ref}), '')"
    )
    sop = f"COALESCE((SELECT t.value FROM tags t WHERE t.resource_id = {ref} AND t.tag = {SOP_INSTANCE_UID}), '')"
    public_id = f"(SELECT i.public_id FROM resources i WHERE i.id = {ref})"
    return study, series, sop, public_id


_FEED_SELECT = (
    "SELECT f.seq, f.action, f.state, "
    "CASE WHEN f.resource_id IS NULL THEN f.study_uid ELSE COALESCE(ts.value, '') END, "
    "CASE WHEN f.resource_id IS NULL THEN f.series_uid ELSE COALESCE(te.value, '') END, "
    "CASE WHEN f.resource_id IS NULL THEN f.sop_uid ELSE COALESCE(tp.value, '') END, "
    "CASE WHEN f.resource_id IS NULL THEN f.instance_id ELSE i.public_id END, "
    "f.timestamp FROM changefeed f "
    "LEFT JOIN resources i ON i.id = f.resource_id LEFT JOIN resources s ON s.id = i.parent_id "
    f"LEFT JOIN tags ts ON ts.resource_id = s.parent_id AND ts.tag = {STUDY_INSTANCE_UID} "
    f"LEFT JOIN tags te ON te.resource_id = i.parent_id AND te.tag = {SERIES_INSTANCE_UID} "
    f"LEFT JOIN tags tp ON tp.resource_id = i.id AND tp.tag = {SOP_INSTANCE_UID} "
)
"""The change feed's columns (seq, action, state, study, series, SOP, instance id, time)."""


def ensure_signatures(conn: Any, values: Iterable[str], d: Dialect = SQLITE) -> None:
    """Give each MainDicomTagsSignature this program writes its `signatures` row (run when the
    index opens, before any transaction reads the table: rows are only ever added)."""
    prefix, suffix = d.insert_ignore("signatures", "value")
    conn.execute(d.begin_write)
    try:
        conn.executemany(f"{prefix} VALUES (?){suffix}", [(v,) for v in values])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


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


@functools.lru_cache(maxsize=16)
def _summary_sql(d: Dialect, metadata_types: tuple[int, ...], level: ResourceType | None = None) -> str:
    """The statement of SqlTransaction.summary. With the level known, what that level cannot
    have is left out (an instance's children, a study's files, protection below a patient):
    each of those lookups is ~0.5 us of a ~12 us statement."""
    types = ",".join(str(int(t)) for t in metadata_types) or "NULL"
    files = level is None or level is ResourceType.INSTANCE
    children = (
        "NULL"
        if level is ResourceType.INSTANCE
        # children come in the order of the parent_id index: creation order
        else f"(SELECT {d.group_concat('c.public_id', 'c.id')} FROM resources c WHERE c.parent_id = r.id)"
    )
    dicom = "a.uuid, a.uncompressed_size" if files else "NULL, NULL"
    protected = (
        "EXISTS (SELECT 1 FROM protected x WHERE x.resource_id = r.id)"
        if level is None or level is ResourceType.PATIENT
        else "0"
    )
    return (
        "SELECT r.id, r.level, r.public_id, r.parent_id, p.public_id, r.main_tags, "
        f"{children}, "
        f"(SELECT {d.json_object_agg('m.type', 'm.value')} FROM metadata m "
        f"WHERE m.resource_id = r.id AND m.type IN ({types})), "
        f"(SELECT {d.json_array_agg('l.label')} FROM labels l WHERE l.resource_id = r.id), "
        f"{dicom}, {protected} "
        "FROM resources r LEFT JOIN resources p ON p.id = r.parent_id "
        + ("LEFT JOIN attachments a ON a.resource_id = r.id AND a.content_type = 1 " if files else "")
        + "WHERE r.public_id = ?"
    )


class SqlTransaction(RecyclingRows):
    """`Transaction` over one sqlite3 connection (see index.base for the contract)."""

    def __init__(self, conn: Any, dialect: Dialect = SQLITE) -> None:
        self._conn = conn
        self.d = dialect
        self._ins = inserts(dialect)
        self._signatures: tuple[dict[str, str], dict[str, str]] | None = None

    @property
    def c(self) -> Any:
        """The connection every statement goes through."""
        return self._conn

    def _insert(self, table: str, width: int, rows: Sequence[Sequence[Any]]) -> None:
        insert_rows(self.c, self._ins[table], width, rows)

    def _signature_codes(self) -> tuple[dict[str, str], dict[str, str]]:
        """(number -> text, text -> number) of the signatures, read once per connection (rows
        are added only when the index opens, see ensure_signatures)."""
        if self._signatures is None:
            rows = self._conn.execute("SELECT id, value FROM signatures").fetchall()
            self._signatures = ({str(i): v for i, v in rows}, {v: str(i) for i, v in rows})
        return self._signatures

    def _signature_text(self, stored: str) -> str:
        """A signature row's value as read: its number's text (a text without a number is
        stored as it is)."""
        return self._signature_codes()[0].get(stored, stored)

    def _encode_metadata(self, rows: Sequence[tuple[Any, ...]]) -> Sequence[tuple[Any, ...]]:
        """Metadata rows as stored: a signature by the number of its text."""
        if not any(r[1] == SIGNATURE for r in rows):
            return rows
        codes = self._signature_codes()[1]
        return [(r[0], r[1], codes.get(r[2], r[2]), *r[3:]) if r[1] == SIGNATURE else r for r in rows]

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

    def summary(
        self, public_id: str, metadata_types: Sequence[int], level: ResourceType | None = None
    ) -> ResourceSummary | None:
        """One statement instead of six (each costs ~5 us of the ~60 us of a GET /{level}/{id})."""
        row = self.c.execute(_summary_sql(self.d, tuple(metadata_types), level), (public_id,)).fetchone()
        if row is None:
            return None
        rid, level, pub, parent, ppub, tags, kids, meta, labels, uuid, size, protected = row
        loads = orjson.loads
        return ResourceSummary(
            ResourceRow(rid, _LEVELS[level], pub, parent, ppub, dict(loads(tags))),
            kids.split(",") if kids else [],
            {int(k): v if int(k) != SIGNATURE else self._signature_text(v) for k, v in loads(meta).items()}
            if meta
            else {},
            sorted(loads(labels)) if labels else [],
            (uuid, size) if uuid is not None else None,
            bool(protected),
        )

    def list_ids(self, level: ResourceType, since: int = 0, limit: int = 0) -> list[int]:
        sql = "SELECT id FROM resources WHERE level=? ORDER BY id"
        args: tuple[Any, ...] = (int(level),)
        if limit > 0 or since > 0:
            sql += " LIMIT ? OFFSET ?"
            args += (limit if limit > 0 else self.d.no_limit, since)
        return [r[0] for r in self.c.execute(sql, args)]

    def list_public_ids(self, level: ResourceType, since: int = 0, limit: int = 0) -> list[str]:
        sql = "SELECT public_id FROM resources WHERE level=? ORDER BY id"
        args: tuple[Any, ...] = (int(level),)
        if limit > 0 or since > 0:
            sql += " LIMIT ? OFFSET ?"
            args += (limit if limit > 0 else self.d.no_limit, since)
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
                out[rid][t] = v if t != SIGNATURE else self._signature_text(v)
        return out

    def metadata_entry(self, resource_id: int, metadata_type: int) -> tuple[str, int] | None:
        row = self.c.execute(
            "SELECT value, revision FROM metadata WHERE resource_id=? AND type=?", (resource_id, metadata_type)
        ).fetchone()
        if row is None:
            return None
        return (row[0] if metadata_type != SIGNATURE else self._signature_text(row[0]), int(row[1]))

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
            f"(SELECT {self.d.group_concat('c.public_id', 'c.id')} FROM resources c WHERE c.parent_id = r.id), "
            "(SELECT value FROM metadata m WHERE m.resource_id = r.id AND m.type = ?) "
            "FROM resources r LEFT JOIN resources p ON p.id = r.parent_id WHERE r.level = ? ORDER BY r.id"
        )
        loads = orjson.loads
        rows = [
            (rid, pub, ppub, dict(loads(tags)), kids.split(",") if kids else [], value)
            for rid, pub, ppub, tags, kids, value in self.c.execute(sql, (metadata_type, int(level)))
        ]
        if metadata_type == SIGNATURE:
            rows = [(*r[:5], None if r[5] is None else self._signature_text(r[5])) for r in rows]
        return rows

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

    def attachment_of(self, public_id: str, content_type: int) -> tuple[int, ResourceType, Attachment | None] | None:
        row = self.c.execute(
            "SELECT r.id, r.level, a.uuid, a.compressed_size, a.uncompressed_size, a.compression, "
            "a.uncompressed_md5, a.compressed_md5, a.revision FROM resources r "
            "LEFT JOIN attachments a ON a.resource_id = r.id AND a.content_type = ? WHERE r.public_id = ?",
            (content_type, public_id),
        ).fetchone()
        if row is None:
            return None
        att = Attachment(content_type, *row[2:]) if row[2] is not None else None
        return row[0], _LEVELS[row[1]], att

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
        """One SELECT compiled by index.findsql (the parent's level is read first)."""
        parent_ref: tuple[int, int] | None = None
        if parent is not None:
            row = self.c.execute("SELECT level FROM resources WHERE id=?", (parent,)).fetchone()
            if row is None:
                return []
            parent_ref = (parent, int(row[0]))
        sql, args = compile_find(
            level,
            constraints,
            parent=parent_ref,
            labels=labels,
            labels_mode=labels_mode,
            metadata_constraints=metadata_constraints,
            order_by=order_by,
            since=since,
            limit=limit,
            dialect=self.d,
        )
        return [r[0] for r in self.c.execute(sql, args)]

    def count(self, level: ResourceType) -> int:
        return int(self.c.execute("SELECT COUNT(*) FROM resources WHERE level=?", (int(level),)).fetchone()[0])

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
                cs, us = int(cs), int(us)  # (PostgreSQL sums integers as numeric)
                disk += cs
                unc += us
                if ctype == 1:
                    dicom_disk += cs
                    dicom_unc += us
        counts.update(disk=disk, uncompressed=unc, dicom_disk=dicom_disk, dicom_uncompressed=dicom_unc)
        return counts

    def changes(self, since: int, limit: int) -> list[Change]:
        rows = self.c.execute(
            "SELECT c.seq, c.change_type, c.level, r.public_id, c.date FROM changes c "
            "JOIN resources r ON r.id = c.resource_id WHERE c.seq > ? ORDER BY c.seq LIMIT ?",
            (since, limit),
        )
        levels = _LEVELS  # (a dict look-up: the enum's constructor costs more than the join)
        return [Change(s, t, levels[lv], p, d) for s, t, lv, p, d in rows]

    def changes_before(self, before: int, limit: int) -> list[Change]:
        rows = self.c.execute(
            "SELECT c.seq, c.change_type, c.level, r.public_id, c.date FROM changes c "
            "JOIN resources r ON r.id = c.resource_id WHERE c.seq < ? ORDER BY c.seq DESC LIMIT ?",
            (before, limit),
        )
        levels = _LEVELS
        return [Change(s, t, levels[lv], p, d) for s, t, lv, p, d in reversed(rows.fetchall())]

    def last_change(self) -> int:
        """The last sequence number handed out (Orthanc's GetLastChangeIndex): changes of
        deleted resources are gone, their numbers are not reused."""
        row = self.c.execute(self.d.last_sequence("changes")).fetchone()
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
        rid = int(
            self.c.execute(
                "INSERT INTO resources(level, public_id, parent_id, main_tags) VALUES (?,?,?,?) RETURNING id",
                (int(level), public_id, parent_id, orjson.dumps(list(main_tags.items()))),
            ).fetchone()[0]
        )
        if main_tags:
            self._insert("tags", 4, _tag_rows(rid, main_tags))
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
            self._insert("tags", 4, _tag_rows(resource_id, main_tags))

    def set_metadata(self, resource_id: int, metadata_type: int, value: str, revision: int = 0) -> None:
        self._insert("metadata_revision", 4, self._encode_metadata([(resource_id, metadata_type, value, revision)]))

    def set_metadata_many(self, rows: Sequence[tuple[int, int, str]]) -> None:
        if rows:
            self._insert("metadata", 3, self._encode_metadata(rows))

    def delete_metadata(self, resource_id: int, metadata_type: int) -> bool:
        cur = self.c.execute("DELETE FROM metadata WHERE resource_id=? AND type=?", (resource_id, metadata_type))
        return cur.rowcount > 0

    def add_attachment(self, resource_id: int, a: Attachment) -> None:
        self._insert("attachments", 9, [_attachment_row(resource_id, a)])

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
        """A change of an existing resource (the log names it by internal id: a change of a
        resource deleted meanwhile is not logged, as its rows would be deleted with it)."""
        self.c.execute(
            "INSERT INTO changes(change_type, level, resource_id, date) SELECT ?, ?, id, ? FROM resources "
            "WHERE public_id = ?",
            (change_type, int(level), date, public_id),
        )

    def log_changes(self, rows: Sequence[tuple[int, ResourceType, str, str]]) -> None:
        for t, lv, pub, d in rows:
            self.log_change(t, lv, pub, d)

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
        """Delete a resource, its descendants, and the ancestors it leaves empty (index.rules)."""
        return delete_cascade(self, resource_id)

    def remove_resources(self, ids: Sequence[int]) -> None:
        """Delete the rows of these resources from every table (no cascade: index.rules decides)."""
        for chunk in _chunks(ids):
            marks, args = _marks(len(chunk)), tuple(chunk)
            for table in ("attachments", "metadata", "tags", "labels", "protected", "recycling"):
                self.c.execute(f"DELETE FROM {table} WHERE resource_id IN ({marks})", args)
            self.c.execute(f"DELETE FROM resources WHERE id IN ({marks})", args)

    def forget_changes(self, ids: Sequence[int]) -> None:
        """Remove the change-log rows of these resources (internal ids)."""
        for chunk in _chunks(ids):
            self.c.execute(f"DELETE FROM changes WHERE resource_id IN ({_marks(len(chunk))})", tuple(chunk))

    def last_feed_entry(self, instance_id: str) -> tuple[str, str, str] | None:
        """(study, series, SOP instance UID) of the newest change-feed entry of an instance."""
        row = self.c.execute(
            _FEED_SELECT + "WHERE f.seq = (SELECT MAX(seq) FROM (SELECT seq FROM changefeed WHERE instance_id = ? "
            "UNION ALL SELECT seq FROM changefeed WHERE resource_id IN "
            "(SELECT id FROM resources WHERE public_id = ?)) AS entries)",
            (instance_id, instance_id),
        ).fetchone()
        return (row[3], row[4], row[5]) if row else None

    def detach_feed(self, ids: Sequence[int]) -> None:
        """Copy into their change-feed entries the UIDs and public id of these instances, which
        are about to be deleted (the entries outlive them)."""
        study, series, sop, public_id = _feed_uids("changefeed.resource_id")
        for chunk in _chunks(ids):
            self.c.execute(
                f"UPDATE changefeed SET study_uid = {study}, series_uid = {series}, sop_uid = {sop}, "
                f"instance_id = {public_id}, resource_id = NULL WHERE resource_id IN ({_marks(len(chunk))})",
                tuple(chunk),
            )

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
        found = self.lookup(instance_id)
        if replaces:
            later = feed_state(action)[1]
            self.c.execute(
                "UPDATE changefeed SET state=? WHERE instance_id=? AND state='current'", (later, instance_id)
            )
            if found is not None:
                self.c.execute(
                    "UPDATE changefeed SET state=? WHERE resource_id=? AND state='current'", (later, found[0])
                )
        rid = found[0] if found is not None and found[1] is ResourceType.INSTANCE else None
        self._insert("changefeed", 8, [_feed_row(action, study, series, sop, instance_id, timestamp, rid)])

    def feed(self, offset: int, limit: int) -> list[tuple[Any, ...]]:
        return self.c.execute(_FEED_SELECT + "WHERE f.seq > ? ORDER BY f.seq LIMIT ?", (offset, limit)).fetchall()

    def feed_latest(self) -> tuple[Any, ...] | None:
        row = self.c.execute(_FEED_SELECT + "ORDER BY f.seq DESC LIMIT 1").fetchone()
        return tuple(row) if row else None

    def clear_changes(self) -> None:
        self.c.execute("DELETE FROM changes")

    # --- extended query tags
    _EXT_COLUMNS = "key, tag, private_creator, vr, level, status, query_status, operation, error_count"

    def ext_tags(self) -> list[ExtTagRow]:
        return [ExtTagRow(*row) for row in self.c.execute(f"SELECT {self._EXT_COLUMNS} FROM ext_tags ORDER BY key")]

    def add_ext_tag(self, tag: int, private_creator: str, vr: str, level: int, operation: str) -> int:
        row = self.c.execute(
            "INSERT INTO ext_tags(tag, private_creator, vr, level, status, query_status, operation) "
            "VALUES (?,?,?,?,'Adding','Enabled',?) RETURNING key",
            (tag, private_creator, vr, level, operation),
        ).fetchone()
        return int(row[0])

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
            "INSERT INTO tags(resource_id, tag, value, norm) SELECT ?, ?, ?, ? "
            "WHERE NOT EXISTS (SELECT 1 FROM tags WHERE resource_id=? AND tag=?)",
            [(r, t, v, n, r, t) for r, t, v, n in rows],
        )

    def add_ext_errors(self, key: int, rows: Sequence[tuple[str, str, str, str, str, str]]) -> None:
        """Errors (instance, study, series, sop, created, message) of a re-index; the tag's count follows."""
        if rows:
            self._insert("ext_errors", 7, [(key, *r) for r in rows])
        self.c.execute(
            "UPDATE ext_tags SET error_count=(SELECT COUNT(*) FROM ext_errors WHERE key=?) WHERE key=?", (key, key)
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
        self._insert("labels", 2, [(resource_id, label)])

    def remove_label(self, resource_id: int, label: str) -> None:
        self.c.execute("DELETE FROM labels WHERE resource_id=? AND label=?", (resource_id, label))

    def set_property(self, key: str, value: str) -> None:
        self._insert("properties", 2, [(key, value)])

    def saved_jobs(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.c.execute("SELECT id, data FROM jobs ORDER BY id")]

    def save_jobs(self, rows: Sequence[tuple[str, str]]) -> None:
        prefix, suffix = self.d.upsert("jobs", "id, data", "id")
        self.c.executemany(f"{prefix} VALUES (?, ?){suffix}", rows)

    def delete_jobs(self, ids: Sequence[str]) -> None:
        self.c.executemany("DELETE FROM jobs WHERE id=?", [(i,) for i in ids])
