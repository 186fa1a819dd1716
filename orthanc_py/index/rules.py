"""Orthanc's rules on deletion, written once for every backend.

A backend provides plain row operations; what a delete means is decided here: the resource goes
with its descendants, each ancestor left without children goes too (Orthanc's cascade, reported
as the first ancestor left standing), the change-log rows of what was deleted go with it, and
the DICOMweb change feed gets a "delete" entry per deleted instance (earlier entries of the
instance become "deleted"). `SqlTransaction.delete_resource` runs `delete_cascade` on itself.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Protocol

from ..model.enums import ResourceType
from .base import Attachment, Deletion, Ids, ResourceRow


class CascadeRows(Protocol):
    """The row operations `delete_cascade` needs (a backend's transaction)."""

    def resources(self, ids: Ids) -> list[ResourceRow]: ...
    def children(self, ids: Ids) -> dict[int, list[tuple[int, str]]]: ...
    def attachments(self, ids: Ids) -> dict[int, list[Attachment]]: ...
    def remove_resources(self, ids: Sequence[int]) -> None: ...
    def forget_changes(self, ids: Sequence[int]) -> None: ...
    def detach_feed(self, ids: Sequence[int]) -> None: ...
    def last_feed_entry(self, instance_id: str) -> tuple[str, str, str] | None: ...
    def log_feed(
        self, action: str, study: str, series: str, sop: str, instance_id: str, timestamp: str, replaces: bool = True
    ) -> None: ...


def feed_time() -> str:
    """ISO 8601 UTC with microseconds, as the Azure change feed reports its Timestamp."""
    return datetime.datetime.now(datetime.UTC).isoformat()


def feed_state(action: str) -> tuple[str, str]:
    """(state of the new entry, state its earlier entries take) for a change-feed action."""
    return ("deleted", "deleted") if action == "delete" else ("current", "replaced")


def delete_cascade(txn: CascadeRows, resource_id: int) -> Deletion:
    """Delete a resource, its descendants, and the ancestors it leaves empty."""
    found = txn.resources([resource_id])
    if not found:
        return Deletion([], [], None)
    row = found[0]
    doomed = [resource_id]
    layer = [resource_id]
    for _ in range(int(ResourceType.INSTANCE) - int(row.level)):
        kids = txn.children(layer)
        layer = [rid for parent in layer for rid, _pub in kids[parent]]
        doomed.extend(layer)
    # Walk up: an ancestor left without children goes too.
    remaining: tuple[ResourceType, str] | None = None
    child, parent = resource_id, row.parent_id
    while parent is not None:
        siblings = [rid for rid, _pub in txn.children([parent])[parent] if rid != child]
        prow = txn.resources([parent])[0]
        if siblings:
            remaining = (prow.level, prow.public_id)
            break
        doomed.append(parent)
        child, parent = parent, prow.parent_id
    doomed.sort()
    attachments = [a for files in txn.attachments(doomed).values() for a in files]
    rows = txn.resources(doomed)
    deleted = [(r.level, r.public_id) for r in rows]
    txn.detach_feed([r.id for r in rows if r.level is ResourceType.INSTANCE])
    txn.remove_resources(doomed)
    now = feed_time()
    for level, pub in deleted:
        if level is ResourceType.INSTANCE:
            entry = txn.last_feed_entry(pub)
            if entry is not None:
                txn.log_feed("delete", *entry, pub, now)
    # Orthanc's change log rows cascade with their resource: they disappear too.
    txn.forget_changes(doomed)
    return Deletion(attachments, deleted, remaining)
