"""Storage commitment reports and failure reasons (Orthanc's StorageCommitmentReports): what
GET /storage-commitment/{id} shows, kept in memory only (lost on restart), at most
StorageCommitmentReportsSize of them, the least recently used dropped first. The exchanges
themselves are in core/storagecommitment.py."""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class FailureReason(IntEnum):
    """Failure Reason (0008,1197) values, PS3.3 C.14.1.1 (Orthanc's StorageCommitmentFailureReason)."""

    SUCCESS = 0
    PROCESSING_FAILURE = 0x0110
    NO_SUCH_OBJECT_INSTANCE = 0x0112
    RESOURCE_LIMITATION = 0x0213
    REFERENCED_SOP_CLASS_NOT_SUPPORTED = 0x0122
    CLASS_INSTANCE_CONFLICT = 0x0119
    DUPLICATE_TRANSACTION_UID = 0x0131


_DESCRIPTIONS = {
    FailureReason.SUCCESS: "Success",
    FailureReason.PROCESSING_FAILURE: "A general failure in processing the operation was encountered",
    FailureReason.NO_SUCH_OBJECT_INSTANCE: (
        "One or more of the elements in the Referenced SOP Instance Sequence was not available"
    ),
    FailureReason.RESOURCE_LIMITATION: (
        "The SCP does not currently have enough resources to store the requested SOP Instance(s)"
    ),
    FailureReason.REFERENCED_SOP_CLASS_NOT_SUPPORTED: (
        "Storage Commitment has been requested for a SOP Instance with a SOP Class that is not supported by the SCP"
    ),
    FailureReason.CLASS_INSTANCE_CONFLICT: (
        "The SOP Class of an element in the Referenced SOP Instance Sequence did not correspond "
        "to the SOP class registered for this SOP Instance at the SCP"
    ),
    FailureReason.DUPLICATE_TRANSACTION_UID: "The Transaction UID of the Storage Commitment Request is already in use",
}


def describe(reason: int) -> str:
    """Orthanc's description of a failure reason ("Unknown failure reason" for other codes)."""
    try:
        return _DESCRIPTIONS[FailureReason(reason)]
    except ValueError:
        return "Unknown failure reason"


def new_transaction_uid() -> str:
    """A UUID-derived UID (PS3.5 B.2), as Orthanc makes its transaction UIDs: "2.25." + decimal."""
    return f"2.25.{uuid.uuid4().int}"


@dataclass
class Report:
    """What GET /storage-commitment/{id} shows: Pending until the peer's report arrives."""

    remote_aet: str
    complete: bool = False
    success: list[tuple[str, str]] = field(default_factory=list)
    failures: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def status(self) -> str:
        if not self.complete:
            return "Pending"
        return "Failure" if self.failures else "Success"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"RemoteAET": self.remote_aet, "Status": self.status}
        if self.complete:
            out["Success"] = [{"SOPClassUID": c, "SOPInstanceUID": i} for c, i in self.success]
            out["Failures"] = [
                {"Description": describe(r), "FailureReason": r, "SOPClassUID": c, "SOPInstanceUID": i}
                for c, i, r in self.failures
            ]
        return out


class StorageCommitmentReports:
    """The reports by transaction UID, least recently used first (read from the event loop,
    completed from DIMSE threads: a lock guards them). `max_size` 0: unlimited."""

    def __init__(self, max_size: int = 100) -> None:
        self.max_size = max(0, max_size)
        self._items: OrderedDict[str, Report] = OrderedDict()
        self._lock = threading.Lock()

    def store(self, transaction_uid: str, report: Report) -> None:
        """Add or replace a report; the least recently used one goes when full."""
        with self._lock:
            self._items.pop(transaction_uid, None)
            if self.max_size and len(self._items) >= self.max_size:
                self._items.popitem(last=False)
            self._items[transaction_uid] = report

    def __contains__(self, transaction_uid: object) -> bool:
        with self._lock:
            return transaction_uid in self._items

    def get(self, transaction_uid: str) -> Report | None:
        """The report (made the most recently used), or None."""
        with self._lock:
            report = self._items.get(transaction_uid)
            if report is not None:
                self._items.move_to_end(transaction_uid)
            return report
