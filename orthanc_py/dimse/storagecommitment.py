"""Storage commitment on the SCP (PS3.4 Annex J, Push Model), as Orthanc 1.10.1's
CommandDispatcher answers it: an N-ACTION asks us to commit (a StorageCommitmentScp job answers
later, on its own association), an N-EVENT-REPORT brings the answer to a request we sent.

Each permission is a modality's (AllowNAction, AllowEventReport: no DicomAlwaysAllow* exists
for them); a refused or malformed request ends the association, as Orthanc drops it.
Called by pynetdicom in the association's thread (dimse/server.py registers them).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..core import storagecommitment as core_sc
from .handlers import DicomHandlers, _called_aet

log = logging.getLogger("orthanc_py.dimse")

PROCESSING_FAILURE = 0x0110
SOP_CLASS = core_sc.SOP_CLASS


class _Malformed(ValueError):
    """A request Orthanc does not process (it drops the association)."""


def _pairs(ds: Any, keyword: str, mandatory: bool, with_reason: bool = False) -> list[Any]:
    """The (SOP class, SOP instance[, failure reason]) items of a sequence of the dataset."""
    seq = ds.get(keyword) if ds is not None else None
    if seq is None:
        if mandatory:
            raise _Malformed(f"Missing mandatory sequence in dataset: {keyword}")
        return []
    out: list[Any] = []
    for item in seq:
        sop_class = item.get("ReferencedSOPClassUID")
        sop_instance = item.get("ReferencedSOPInstanceUID")
        if sop_class is None or sop_instance is None:
            raise _Malformed("Missing Referenced SOP Class/Instance UID in storage commitment dataset")
        pair = (str(sop_class).strip(), str(sop_instance).strip())
        if with_reason:
            reason = item.get("FailureReason")
            if reason is None:
                raise _Malformed("Missing Failure Reason (0008,1197) in storage commitment dataset")
            out.append((*pair, int(reason)))
        else:
            out.append(pair)
    return out


def _transaction_uid(ds: Any) -> str:
    uid = ds.get("TransactionUID") if ds is not None else None
    if uid is None:
        raise _Malformed("Missing mandatory tag in dataset: (0008,1195)")
    return str(uid).strip()


def _drop(event: Any, what: str, exc: Exception) -> tuple[int, None]:
    log.error("Incoming storage commitment %s from %s not processed: %s", what, event.assoc.requestor.ae_title, exc)
    event.assoc.abort()
    return PROCESSING_FAILURE, None


def on_n_action(handlers: DicomHandlers, event: Any) -> tuple[int, None]:
    """N-ACTION "Request Storage Commitment": a StorageCommitmentScp job is queued and the
    request answered Success at once (0x0110 when the job cannot be made, e.g. the requestor's
    AET names no modality to report to)."""
    if not handlers.allowed(event, "AllowNAction"):
        return 0x0124, None  # the association is already aborted
    req = event.request
    try:
        if req.ActionTypeID != 1:
            raise _Malformed("Only storage commitment is implemented for DICOM N-ACTION SCP")
        if str(req.RequestedSOPClassUID) != core_sc.SOP_CLASS or str(req.RequestedSOPInstanceUID) != (
            core_sc.SOP_INSTANCE
        ):
            raise _Malformed("Unexpected incoming SOP class or instance UID for storage commitment")
        if req.ActionInformation is None:
            raise _Malformed("Incoming storage commitment request without a dataset")
        ds = event.action_information
        uid = _transaction_uid(ds)
        pairs = _pairs(ds, "ReferencedSOPSequence", True)
    except Exception as exc:
        return _drop(event, "request", exc)
    requestor = event.assoc.requestor
    remote_aet, called = str(requestor.ae_title).strip(), _called_aet(event.assoc)
    log.info("Incoming storage commitment request from %s, with transaction UID: %s", remote_aet, uid)
    loop = handlers.loop

    async def submit() -> str:
        return core_sc.submit_scp_job(handlers.ctx, uid, pairs, remote_aet, called)

    try:
        asyncio.run_coroutine_threadsafe(submit(), loop).result()
    except Exception as exc:
        log.error("Error while processing an incoming storage commitment request: %s", exc)
        return PROCESSING_FAILURE, None
    return 0x0000, None


def on_n_event_report(handlers: DicomHandlers, event: Any) -> tuple[int, None]:
    """N-EVENT-REPORT of a storage commitment result (event type 1: all committed, 2: failures
    exist): the transaction's report becomes Success or Failure."""
    if not handlers.allowed(event, "AllowEventReport"):
        return 0x0124, None
    req = event.request
    try:
        if req.EventTypeID not in (1, 2):
            raise _Malformed("Unknown event for DICOM N-EVENT-REPORT SCP")
        if str(req.AffectedSOPClassUID) != core_sc.SOP_CLASS or str(req.AffectedSOPInstanceUID) != (
            core_sc.SOP_INSTANCE
        ):
            raise _Malformed("Unexpected incoming SOP class or instance UID for storage commitment")
        if req.EventInformation is None:
            raise _Malformed("Incoming storage commitment report without a dataset")
        ds = event.event_information
        uid = _transaction_uid(ds)
        success = _pairs(ds, "ReferencedSOPSequence", req.EventTypeID == 1)
        failures = _pairs(ds, "FailedSOPSequence", True, True) if req.EventTypeID == 2 else []
    except Exception as exc:
        return _drop(event, "report", exc)
    try:
        core_sc.receive_report(handlers.ctx, uid, success, failures, str(event.assoc.requestor.ae_title).strip())
    except Exception as exc:
        log.error("Error while processing an incoming storage commitment report: %s", exc)
        return PROCESSING_FAILURE, None
    return 0x0000, None
