"""`BatchTransaction`: the writer's transaction for a group commit (rows kept, written together)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from ..model.enums import ResourceType
from .base import Attachment
from .dialect import SQLITE, Dialect
from .inserts import insert_rows
from .transaction import SqlTransaction, _attachment_row, _feed_row, _lookup_rows, _tag_rows


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

    def __init__(self, conn: Any, dialect: Dialect = SQLITE) -> None:
        super().__init__(conn, dialect)
        self._next_id = 0
        self._created: dict[str, tuple[int, ResourceType]] = {}
        self._rows: dict[str, list[Sequence[Any]]] = {}
        self._recent: dict[int, None] = {}
        self.reset()

    def reset(self) -> None:
        """Forget the kept rows (the transaction was rolled back) and the id counter."""
        self._next_id = 0
        self._created = {}
        self._recent = {}
        self._rows = {"resources": [], "tags": [], "attachments": [], "metadata": [], "changes": [], "changefeed": []}

    @property
    def c(self) -> Any:
        if self._recent or any(self._rows.values()):
            self.flush()
        return self._conn

    def flush(self) -> None:
        """Write the kept rows, table by table in a fixed order (each table keeps the order of
        its rows, so change and feed sequence numbers follow the order of the calls)."""
        for table, rows in self._rows.items():
            if rows:
                insert_rows(self._conn, self._ins[table], len(rows[0]), rows)
                rows.clear()
        self._created.clear()  # in the table now: looked up there
        if self._recent:
            recent, self._recent = list(self._recent), {}
            super().tag_recent_patients(recent)

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
        self._rows["resources"].append((rid, int(level), public_id, parent_id, orjson.dumps(list(main_tags.items()))))
        self._rows["tags"].extend(_tag_rows(rid, main_tags))
        self._created[public_id] = (rid, level)
        return rid

    def set_metadata_many(self, rows: Sequence[tuple[int, int, str]]) -> None:
        self._rows["metadata"].extend(self._encode_metadata(rows))

    def add_attachment(self, resource_id: int, a: Attachment) -> None:
        self._rows["attachments"].append(_attachment_row(resource_id, a))

    def log_changes(self, rows: Sequence[tuple[int, ResourceType, str, str]]) -> None:
        """Kept with the resource's internal id (created in this batch or read from the table);
        a resource that does not exist logs nothing, as in SqlTransaction.log_change."""
        found = self.lookup_many([pub for _t, _lv, pub, _d in rows])
        self._rows["changes"].extend((t, int(lv), found[pub][0], d) for t, lv, pub, d in rows if pub in found)

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
        found = self.lookup_many((instance_id,)).get(instance_id)
        rid = found[0] if found is not None and found[1] is ResourceType.INSTANCE else None
        self._rows["changefeed"].append(_feed_row(action, study, series, sop, instance_id, timestamp, rid))

    def tag_recent_patient(self, patient_id: int) -> None:
        """Kept (the last call for a patient decides its place) and written with the batch."""
        recent = self._recent
        recent.pop(patient_id, None)
        recent[patient_id] = None

    def disk_size(self) -> int:
        """The table's total plus the kept attachments (read without writing them)."""
        row = self._conn.execute("SELECT compressed FROM totals WHERE id = 0").fetchone()
        return (int(row[0]) if row else 0) + sum(int(r[3]) for r in self._rows["attachments"])

    def count(self, level: ResourceType) -> int:
        """The table's count plus the kept new resources of the level (without writing them)."""
        stored = self._conn.execute("SELECT COUNT(*) FROM resources WHERE level=?", (int(level),)).fetchone()[0]
        return int(stored) + sum(1 for r in self._rows["resources"] if r[1] == int(level))
