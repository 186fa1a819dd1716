"""The rows of recycling and protection (the rule is core.recycling).

Orthanc keeps its patients in a recycling order: a patient goes to the end each time one of its
instances is stored; a protected patient is out of the order, and goes back at the end when it
is unprotected. The total size of the attachments, which every store with MaximumStorageSize
checks, is kept by migration 8's triggers instead of being summed.
"""

from __future__ import annotations

from typing import Any


class RecyclingRows:
    """The row operations of recycling and protection, mixed into SqlTransaction."""

    c: Any
    _insert: Any

    def disk_size(self) -> int:
        """Total compressed size of every attachment (kept by migration 8's triggers)."""
        row = self.c.execute("SELECT compressed FROM totals WHERE id = 0").fetchone()
        return int(row[0]) if row else 0

    def total_sizes(self) -> tuple[int, int]:
        row = self.c.execute("SELECT compressed, uncompressed FROM totals WHERE id = 0").fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def tag_recent_patient(self, patient_id: int) -> None:
        """A patient received an instance: it goes to the end of the recycling order (unless
        it is protected)."""
        self.tag_recent_patients([patient_id])

    def tag_recent_patients(self, patient_ids: list[int]) -> None:
        """`tag_recent_patient` for each, in this order (the last one ends up most recent)."""
        top = self.c.execute("SELECT COALESCE(MAX(seq), 0) FROM recycling").fetchone()[0]
        rows = [(pid, top + n, pid) for n, pid in enumerate(patient_ids, start=1)]
        self.c.executemany("UPDATE recycling SET seq = ? WHERE resource_id = ?", [(seq, pid) for pid, seq, _ in rows])
        self.c.executemany(
            "INSERT INTO recycling(resource_id, seq) SELECT ?, ? WHERE NOT EXISTS "
            "(SELECT 1 FROM protected WHERE resource_id = ?) AND NOT EXISTS "
            "(SELECT 1 FROM recycling WHERE resource_id = ?)",
            [(pid, seq, pid, pid) for pid, seq, _ in rows],
        )

    def patient_to_recycle(self, avoid: int | None) -> int | None:
        """The first patient of the recycling order, other than `avoid`."""
        row = self.c.execute(
            "SELECT resource_id FROM recycling WHERE resource_id <> ? ORDER BY seq LIMIT 1",
            (-1 if avoid is None else avoid,),
        ).fetchone()
        return None if row is None else int(row[0])

    def set_protected(self, patient_id: int, protected: bool) -> None:
        if protected:
            self._insert("protected", 1, [(patient_id,)])
            self.c.execute("DELETE FROM recycling WHERE resource_id = ?", (patient_id,))
        elif self.c.execute("DELETE FROM protected WHERE resource_id = ?", (patient_id,)).rowcount:
            self.tag_recent_patient(patient_id)
