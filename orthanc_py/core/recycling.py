"""Recycling: MaximumStorageSize, MaximumPatientCount and MaximumStorageMode, as Orthanc applies them.

When a store would take the storage over its limits, the first patients of the recycling order
(index.recycling) are deleted inside the store's own transaction, never the patient being
stored into; if none is left to delete, the store fails with FullStorage (HTTP 507) and the
transaction, deletions included, is rolled back. In "Reject" mode nothing is recycled: the
store fails at once. The same rule runs when an attachment is added, and once at start-up (the
limits may have been lowered since the last run).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..errors import ErrorCode, OrthancError
from ..index.base import Deletion, Transaction
from ..model.enums import ResourceType
from .context import ServerContext
from .resources import settle_deletions

_MB = 1024 * 1024
log = logging.getLogger("orthanc_py.recycling")


@dataclass(frozen=True, slots=True)
class Limits:
    """The configured limits (0: none)."""

    max_size: int = 0
    """Bytes (Orthanc's MaximumStorageSize counts MB of 1024 x 1024 bytes)."""
    max_patients: int = 0
    reject: bool = False
    """MaximumStorageMode "Reject": refuse the store instead of recycling."""

    @classmethod
    def of(cls, max_size_mb: int, max_patients: int, mode: str) -> Limits:
        return cls(max(0, max_size_mb) * _MB, max(0, max_patients), mode == "Reject")

    @property
    def active(self) -> bool:
        return bool(self.max_size or self.max_patients)


NO_LIMITS = Limits()


def storage_limits(ctx: ServerContext) -> Limits:
    """The limits of the configuration."""
    s = ctx.settings
    return Limits.of(s.maximum_storage_size_mb, s.maximum_patient_count, s.maximum_storage_mode)


def _full(details: str) -> OrthancError:
    return OrthancError(ErrorCode.FULL_STORAGE, details, http_status=507)


def _size_over(txn: Transaction, limits: Limits, added: int) -> bool:
    if not limits.max_size:
        return False
    if limits.max_size < added:
        raise _full(f"Cannot store an instance of size {added} bytes in a storage area limited to {limits.max_size}")
    return txn.disk_size() > limits.max_size - added


def _count_over(txn: Transaction, limits: Limits) -> bool:
    return bool(limits.max_patients) and txn.count(ResourceType.PATIENT) > limits.max_patients


def recycle(txn: Transaction, limits: Limits, added: int, avoid: int | None) -> list[Deletion]:
    """Make room for `added` more bytes, the patient `avoid` (being stored into, already
    created) counted: the deletions that got there, oldest patient first."""
    if not limits.active:
        return []
    if limits.reject:
        if _size_over(txn, limits, added):
            raise _full("Maximum storage size reached")
        if _count_over(txn, limits):
            raise _full("Maximum patient count reached")
        return []
    deleted: list[Deletion] = []
    while _size_over(txn, limits, added) or _count_over(txn, limits):
        victim = txn.patient_to_recycle(avoid)
        if victim is None:
            raise _full("Cannot recycle more patients")
        deleted.append(txn.delete_resource(victim))
    return deleted


async def at_start(ctx: ServerContext) -> None:
    """Recycle what the limits allow no more (they may have been lowered since the last run)."""
    limits = storage_limits(ctx)
    if not limits.active or limits.reject:
        return
    try:
        deletions = await ctx.index.write(lambda txn: recycle(txn, limits, 0, None))
    except OrthancError as err:
        log.warning("recycling at start-up: %s", err.details or err.code.message)
        return
    await settle_deletions(ctx, deletions)
    if deletions:
        log.warning("recycling at start-up: %d patient(s) deleted to honour the storage limits", len(deletions))
