"""DICOM storage commitment, Push Model (Orthanc Book, "DICOM storage commitment"), both ways.

SCP: an incoming N-ACTION becomes a "StorageCommitmentScp" job that looks each (SOP class, SOP
instance) up in the index, re-reads the file to check both UIDs, and sends the result as an
N-EVENT-REPORT on a new association to the requesting modality (its configured AET, host and
port, called with the AET the request called us with).

SCU: `request` sends an N-ACTION and records a Pending report; the N-EVENT-REPORT received later
on our SCP completes it (`receive_report`). Reports live in memory only (lost on restart), at most
StorageCommitmentReportsSize of them, the least recently used dropped first, as in Orthanc.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from ..errors import ErrorCode, OrthancError
from ..index.base import Transaction
from ..model import maintags as mt
from ..model.enums import FileContentType, ResourceType
from ..model.lookup import MatchKind, TagConstraint, normalize
from ..model.modality import Modality, parse_modality
from ..remote import storagecommitment as wire
from .commitment_reports import FailureReason, Report, new_transaction_uid
from .context import ServerContext
from .files import files_in, instances_under
from .jobs import Job
from .resources import delete, lookup_in

log = logging.getLogger("orthanc_py.storagecommitment")

JOB_TYPE = "StorageCommitmentScp"
SOP_CLASS = wire.SOP_CLASS
"""Storage Commitment Push Model SOP Class (the DICOM server accepts it)."""
SOP_INSTANCE = wire.SOP_INSTANCE


def _unknown_transaction(transaction_uid: str) -> OrthancError:
    return OrthancError(ErrorCode.INEXISTENT_ITEM, f"No storage commitment transaction with UID: {transaction_uid}")


def report_json(ctx: ServerContext, transaction_uid: str) -> dict[str, Any]:
    """GET /storage-commitment/{id}."""
    report = ctx.storage_commitment.get(transaction_uid)
    if report is None:
        raise _unknown_transaction(transaction_uid)
    return report.to_json()


# ------------------------------------------------------------------------------------- SCU


def check_pairs(pairs: Sequence[tuple[str, str]]) -> None:
    """Orthanc refuses an empty SOP class or instance UID before anything goes out."""
    for sop_class, sop_instance in pairs:
        if not sop_class or not sop_instance:
            raise OrthancError(
                ErrorCode.PARAMETER_OUT_OF_RANGE,
                f'The SOP class/instance UIDs cannot be empty, found: "{sop_class}" / "{sop_instance}"',
            )


async def request(
    ctx: ServerContext,
    modality: Modality,
    local_aet: str,
    pairs: Sequence[tuple[str, str]],
    association_timeout: float | None = None,
    transaction_uid: str | None = None,
) -> str:
    """Ask `modality` to commit to the instances (N-ACTION); returns the transaction UID. The
    Pending report is recorded before the request goes out: the peer's report may come first."""
    check_pairs(pairs)
    uid = transaction_uid or new_transaction_uid()
    if not pairs:
        log.warning("Issuing an outgoing storage commitment request that is empty: %s", uid)
    ctx.storage_commitment.store(uid, Report(modality.aet))
    await ctx.run(wire.request_commitment, ctx.scu, modality, local_aet, association_timeout, uid, list(pairs))
    return uid


def receive_report(
    ctx: ServerContext,
    transaction_uid: str,
    success: Sequence[tuple[str, str]],
    failures: Sequence[tuple[str, str, int]],
    remote_aet: str,
) -> None:
    """An N-EVENT-REPORT arrived (any thread): the transaction's report is complete. As in Orthanc
    it is recorded even when we never asked for that transaction."""
    log.info(
        "storage commitment report from %s for %s: %d successes, %d failures",
        remote_aet,
        transaction_uid,
        len(success),
        len(failures),
    )
    ctx.storage_commitment.store(transaction_uid, Report(remote_aet, True, list(success), list(failures)))


def _sop_rows(txn: Transaction, public_ids: Sequence[str]) -> list[tuple[str, str, str]]:
    """(SOP class from the metadata, SOP Instance UID, file uuid) of every instance under the
    resources, in order."""
    rows: list[tuple[str, str, str]] = []
    for pid in public_ids:
        rid, level = lookup_in(txn, pid, None)
        ids = instances_under(txn, rid, level)
        uids = {r.id: r.main_tags.get(mt.SOP_INSTANCE_UID, "") for r in txn.resources(ids)}
        rows += [(f.sop_class, uids.get(f.id, ""), f.uuid) for f in files_in(txn, ids, meta=True)]
    return rows


def _file_uids(data: bytes) -> tuple[str, str]:
    """SOP Class UID and SOP Instance UID read from a DICOM file."""
    import pydicom

    ds = pydicom.dcmread(
        io.BytesIO(data), stop_before_pixels=True, force=True, specific_tags=["SOPClassUID", "SOPInstanceUID"]
    )
    return str(ds.get("SOPClassUID", "") or "").strip(), str(ds.get("SOPInstanceUID", "") or "").strip()


async def instances_of(ctx: ServerContext, public_ids: Sequence[str]) -> list[tuple[str, str]]:
    """The (SOP class, SOP instance) pairs of every instance under the resources, in order
    (UNKNOWN_RESOURCE for an unknown one). A SOP class the index lacks is read from the file."""
    rows = await ctx.index.read(lambda txn: _sop_rows(txn, public_ids))
    pairs = []
    for sop_class, sop_instance, file_uuid in rows:
        if not sop_class:
            data = await ctx.run(ctx.storage.read, file_uuid, FileContentType.DICOM)
            sop_class = (await ctx.run(_file_uids, data))[0]
        if not sop_class or not sop_instance:
            raise OrthancError(ErrorCode.INTERNAL_ERROR, "Cannot retrieve SOP Class/Instance UID of an instance")
        pairs.append((sop_class, sop_instance))
    return pairs


# ------------------------------------------------------------------------------------- SCP


def _find_instances(txn: Transaction, sop_instance_uid: str) -> list[tuple[int, str]]:
    """(internal id, public id) of the instances with this SOP Instance UID."""
    c = TagConstraint(
        mt.SOP_INSTANCE_UID, ResourceType.INSTANCE, MatchKind.EQUAL, (normalize(sop_instance_uid),), False
    )
    ids = list(txn.find(ResourceType.INSTANCE, [c]))
    return [(r.id, r.public_id) for r in txn.resources(ids)] if ids else []


async def lookup(ctx: ServerContext, sop_class: str, sop_instance: str) -> FailureReason:
    """Orthanc's default storage commitment check of one instance: exactly one instance with
    that SOP Instance UID, whose file can be read again and holds the same SOP Instance UID;
    then the SOP classes must agree (else Class-Instance conflict). No such instance: 0x0112."""

    def files(txn: Transaction) -> list[Any]:
        found = _find_instances(txn, sop_instance)
        return files_in(txn, [found[0][0]]) if len(found) == 1 else []

    try:
        found = await ctx.index.read(files)
        if len(found) != 1:
            return FailureReason.NO_SUCH_OBJECT_INSTANCE
        data = await ctx.run(ctx.storage.read, found[0].uuid, FileContentType.DICOM)
        stored_class, stored_instance = await ctx.run(_file_uids, data)
    except Exception as exc:  # an unreadable file: not committed to
        log.info("storage commitment: cannot check %s: %s", sop_instance, exc)
        return FailureReason.NO_SUCH_OBJECT_INSTANCE
    if stored_instance != sop_instance:
        return FailureReason.NO_SUCH_OBJECT_INSTANCE
    if stored_class != sop_class:
        return FailureReason.CLASS_INSTANCE_CONFLICT
    return FailureReason.SUCCESS


def scp_job(ctx: ServerContext, spec: dict[str, Any]) -> Callable[..., Awaitable[dict[str, Any]]]:
    """The StorageCommitmentScp job of `spec` ({"TransactionUid", "RemoteModality": the
    modality's configuration, "CalledAet", "SopClassUids", "SopInstanceUids"}): one lookup per
    instance (a checkpoint before each), then the report. Progress counts Orthanc's commands:
    set-up, one lookup per instance, answer."""
    modality = parse_modality(spec["RemoteModality"])
    uid = str(spec["TransactionUid"])
    called = str(spec.get("CalledAet", ""))
    classes = [str(c) for c in spec.get("SopClassUids", [])]
    instances = [str(i) for i in spec.get("SopInstanceUids", [])]
    content = {"CalledAet": called, "Description": "", "RemoteAet": modality.aet, "TransactionUid": uid}

    async def run(job: Job | None = None) -> dict[str, Any]:
        shown: dict[str, Any] = job.content if job is not None else {}
        shown.update(content)
        steps = len(classes) + 2
        success: list[tuple[str, str]] = []
        failures: list[tuple[str, str, int]] = []
        for n, (sop_class, sop_instance) in enumerate(zip(classes, instances, strict=True)):
            if job is not None:
                await job.checkpoint((n + 1) * 100 / steps)
            reason = await lookup(ctx, sop_class, sop_instance)
            log.info("storage commitment SCP: %s for %s / %s", reason.name, sop_class, sop_instance)
            if reason is FailureReason.SUCCESS:
                success.append((sop_class, sop_instance))
            else:
                failures.append((sop_class, sop_instance, int(reason)))
        if job is not None:
            await job.checkpoint((steps - 1) * 100 / steps)
        await ctx.run(wire.report_commitment, ctx.scu, modality, called, None, uid, success, failures)
        return shown

    return run


def submit_scp_job(
    ctx: ServerContext, transaction_uid: str, pairs: Sequence[tuple[str, str]], remote_aet: str, called_aet: str
) -> str:
    """An incoming N-ACTION (on the event loop): the StorageCommitmentScp job that answers it, to
    the first modality (by symbolic name) with the requestor's AET; INEXISTENT_ITEM when there is
    none, which the SCP answers with a processing failure. Returns the job's id."""
    known = ctx.modalities.by_aet(remote_aet)
    if not known:
        raise OrthancError(
            ErrorCode.INEXISTENT_ITEM, f"Unknown remote modality for storage commitment SCP: {remote_aet}"
        )
    _name, modality = known[0]
    spec = {
        "TransactionUid": transaction_uid,
        "RemoteModality": modality.to_json(),
        "CalledAet": called_aet,
        "SopClassUids": [c for c, _i in pairs],
        "SopInstanceUids": [i for _c, i in pairs],
    }
    job = ctx.jobs.submit(JOB_TYPE, scp_job(ctx, spec), 0, spec=spec)
    job.content.update(
        {"CalledAet": called_aet, "Description": "", "RemoteAet": modality.aet, "TransactionUid": transaction_uid}
    )
    return job.id


def register_job_type(ctx: ServerContext) -> None:
    """StorageCommitmentScp jobs can be rebuilt from their spec (SaveJobs, resubmit)."""
    ctx.jobs.register(JOB_TYPE, lambda spec: scp_job(ctx, spec))


# ---------------------------------------------------------------------------------- remove


async def remove_committed(ctx: ServerContext, transaction_uid: str) -> None:
    """POST /storage-commitment/{id}/remove: delete here the instances the peer committed to,
    found by SOP Instance UID; only after a report whose Status is Success."""
    report = ctx.storage_commitment.get(transaction_uid)
    if report is None:
        raise _unknown_transaction(transaction_uid)
    if report.status != "Success":
        raise OrthancError(
            ErrorCode.BAD_SEQUENCE_OF_CALLS,
            f"Cannot remove DICOM instances after failure in storage commitment transaction: {transaction_uid}",
        )
    for _sop_class, sop_instance in report.success:
        found = await ctx.index.read(partial(_find_instances, sop_instance_uid=sop_instance))
        for _rid, public_id in found:
            log.info("storage commitment: removing %s / %s", sop_instance, public_id)
            try:
                await delete(ctx, public_id, ResourceType.INSTANCE)
            except OrthancError as exc:
                if exc.code is not ErrorCode.UNKNOWN_RESOURCE:  # gone meanwhile: nothing to remove
                    raise
