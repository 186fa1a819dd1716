"""Remote modalities: the registry (DicomModalities, changed at run time by PUT/DELETE as Orthanc
does, in memory or in the index), C-ECHO, and C-STORE of resources with /exports logging."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ..errors import ErrorCode, OrthancError
from ..index.base import ExportedResource, Index, Transaction
from ..model import maintags as mt
from ..model.enums import FileContentType, ResourceType
from ..model.modality import BadField, Modality, OutOfRange, parse_modality
from ..remote.dicomnet import DirectSender as DirectSender  # for the DIMSE SCP (dimse/ sees remote/ through core)
from ..remote.dicomnet import hold_reactor as hold_reactor
from ..remote.dicomnet import read_ahead as read_ahead
from ..remote.modalities import DicomScu, StoreItem
from . import storagecommitment
from .context import ServerContext, now_iso
from .files import files_in, instances_under
from .jobs import Job
from .properties import load_registry, save_registry
from .resources import identifiers_in, lookup_in

log = logging.getLogger("orthanc_py.modalities")

PROPERTY = "DicomModalities"
"""The index property that holds the modalities when DicomModalitiesInDatabase is true."""


class ModalityRegistry:
    """Known modalities by symbolic name: DicomModalities, changed at run time by PUT/DELETE;
    with DicomModalitiesInDatabase, those the index holds (as Orthanc, the configuration's
    are then ignored) and every change is written there."""

    def __init__(self, configured: dict[str, Any], index: Index | None = None, strict_aet: bool = False) -> None:
        self._items: dict[str, Modality] = {}
        self._index = index
        self.strict_aet = strict_aet
        if index is not None:
            configured = load_registry(index, PROPERTY, "modalities")
        for name, value in configured.items():
            try:
                self._items[name] = parse_modality(value)
            except ValueError as exc:
                log.error("DicomModalities: ignoring %r: %s", name, exc)

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str) -> Modality:
        try:
            return self._items[name]
        except KeyError:
            raise OrthancError(
                ErrorCode.INEXISTENT_ITEM, f"Unknown DICOM modality with symbolic name: {name}"
            ) from None

    async def put(self, name: str, value: Any) -> Modality:
        try:
            modality = parse_modality(value)
        except OutOfRange as exc:
            raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, str(exc)) from exc
        except BadField as exc:
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, str(exc)) from exc
        except ValueError as exc:  # Orthanc gives no details for the other malformed entries
            log.info("PUT /modalities/%s: %s", name, exc)
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT) from exc
        self._items[name] = modality
        await self._save()
        return modality

    async def delete(self, name: str) -> None:
        if name not in self._items:
            raise OrthancError(ErrorCode.INEXISTENT_ITEM, f"Unknown DICOM modality with symbolic name: {name}")
        del self._items[name]
        await self._save()

    async def _save(self) -> None:
        if self._index is not None:
            await save_registry(self._index, PROPERTY, {n: m.to_json() for n, m in self._items.items()})

    def by_aet(self, aet: str) -> list[tuple[str, Modality]]:
        """The modalities of an AET: compared case-insensitively unless StrictAetComparison."""
        if self.strict_aet:
            return [(n, m) for n, m in sorted(self._items.items()) if m.aet == aet]
        wanted = aet.upper()
        return [(n, m) for n, m in sorted(self._items.items()) if m.aet.upper() == wanted]

    def is_allowed(self, settings: Any, permission: str, calling_aet: str, remote_ip: str) -> bool:
        """Orthanc's access rule for an incoming request: always allowed when DicomAlwaysAllow<X>,
        else the caller must be a known modality (by AET, and by host with DicomCheckModalityHost)
        whose Allow<X> is true."""
        always = {
            "AllowEcho": settings.dicom_always_allow_echo,
            "AllowStore": settings.dicom_always_allow_store,
            "AllowFind": settings.dicom_always_allow_find,
            "AllowMove": settings.dicom_always_allow_move,
            "AllowGet": settings.dicom_always_allow_get,
            "AllowFindWorklist": settings.dicom_always_allow_find_worklist,
        }.get(permission, False)
        if always:
            return True
        for _name, m in self.by_aet(calling_aet):
            if settings.dicom_check_modality_host and m.host != remote_ip:
                continue
            if m.allows(permission):
                return True
        return False


@dataclass(frozen=True)
class StoreReport:
    instances: int
    failed: int
    parents: list[str]
    remote_aet: str
    local_aet: str
    resources: list[dict[str, str]] = field(default_factory=list)
    """Each resource asked for, with its level ("Resources" of the job, Orthanc 1.12.10)."""


def _instances_to_send(
    txn: Transaction, public_ids: Sequence[str]
) -> tuple[list[tuple[str, str, str, str, str, str]], list[tuple[ResourceType, str, dict[int, str]]]]:
    """(instance public id, SOP class, transfer syntax, uuid, ...) per instance, and the resources."""
    out = []
    resources = []
    for pid in public_ids:
        rid, level = lookup_in(txn, pid, None)
        for f in files_in(txn, instances_under(txn, rid, level), meta=True):
            out.append((f.public_id, f.sop_class, f.transfer_syntax, f.uuid, pid, ""))
        resources.append((level, pid, identifiers_in(txn, rid)))
    return out, resources


async def store(
    ctx: ServerContext,
    scu: DicomScu,
    modality_name: str,
    modality: Modality,
    public_ids: Sequence[str],
    move_originator_aet: str = "",
    move_originator_id: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    permissive: bool = False,
    job: Job | None = None,
) -> StoreReport:
    """C-STORE every instance under the given resources to the modality. Fails (OrthancError,
    as Orthanc's job) at the first instance the peer does not store, unless `permissive`.
    `on_progress(done, total)` is called once before the first instance, then after each.
    Run as a `job`, the instances go in batches with a checkpoint between two (where the job
    is paused or cancelled, as Orthanc's between two instances)."""
    plan, resources = await ctx.index.read(lambda txn: _instances_to_send(txn, public_ids))
    storage = ctx.storage
    items = [
        StoreItem(
            sop, ts, storage.path(uuid, FileContentType.DICOM), partial(storage.read, uuid, FileContentType.DICOM)
        )
        for _pid, sop, ts, uuid, _parent, _ in plan
    ]
    total = len(items)
    progress = (lambda done: on_progress(done, total)) if on_progress is not None else None
    if on_progress is not None:
        on_progress(0, total)
    asked = [{"ID": pid, "Type": level.label} for level, pid, _tags in resources]
    if not items:
        return StoreReport(
            0, 0, sorted(set(public_ids)), modality.aet, modality.local_aet or ctx.settings.dicom_aet, asked
        )
    if job is None:
        _sent, failed = await ctx.run(
            scu.store, modality, items, move_originator_aet, move_originator_id, progress, permissive
        )
    else:
        failed = await _store_in_batches(
            ctx, scu, modality, items, move_originator_aet, move_originator_id, on_progress, permissive, job
        )
    if ctx.settings.log_exported_resources:
        date = now_iso()

        def log_exports(txn: Transaction) -> None:
            for level, pid, tags in resources:
                txn.log_export(
                    ExportedResource(
                        0,
                        level,
                        pid,
                        modality_name,
                        tags.get(mt.PATIENT_ID, ""),
                        tags.get(mt.STUDY_INSTANCE_UID, ""),
                        tags.get(mt.SERIES_INSTANCE_UID, ""),
                        tags.get(mt.SOP_INSTANCE_UID, ""),
                        date,
                    )
                )

        await ctx.index.write(log_exports)
    return StoreReport(
        len(items), failed, sorted(set(public_ids)), modality.aet, modality.local_aet or ctx.settings.dicom_aet, asked
    )


BATCH_SECONDS = 0.2
"""About how long a batch of C-STOREs of a job lasts: a pause or cancel waits no longer."""


async def _store_in_batches(
    ctx: ServerContext,
    scu: DicomScu,
    modality: Modality,
    items: list[StoreItem],
    originator_aet: str,
    originator_id: int | None,
    on_progress: Callable[[int, int], None] | None,
    permissive: bool,
    job: Job,
) -> int:
    """`scu.store` batch by batch (the association stays in the pool between two), with a
    checkpoint of `job` before each; batches grow while they take less than BATCH_SECONDS.
    The number of instances the peer did not store (permissive)."""
    total = len(items)
    done = failed = 0
    batch = 1
    while done < total:
        await job.checkpoint(done * 100 / total)
        part = items[done : done + batch]
        progress = partial(_shifted, on_progress, done, total) if on_progress is not None else None
        started = time.monotonic()
        _sent, bad = await ctx.run(scu.store, modality, part, originator_aet, originator_id, progress, permissive)
        failed += bad
        done += len(part)
        elapsed = time.monotonic() - started
        if elapsed < BATCH_SECONDS / 2:
            batch = min(batch * 2, 512)
        elif elapsed > BATCH_SECONDS * 2 and batch > 1:
            batch //= 2
    return failed


def _shifted(on_progress: Callable[[int, int], None], offset: int, total: int, done: int) -> None:
    on_progress(offset + done, total)


STORE_JOB = "DicomModalityStore"


def store_job(ctx: ServerContext, spec: dict[str, Any]) -> Callable[..., Awaitable[dict[str, Any]]]:
    """The DicomModalityStore job of `spec` (what SaveJobs keeps): {"Modality": name, "Target":
    the modality's configuration, "Resources", "MoveOriginatorAet", "MoveOriginatorID",
    "Permissive", "Content": what the job shows from its start}."""
    modality = parse_modality(spec["Target"])
    resources = [str(r) for r in spec.get("Resources", [])]
    try:
        originator_id: int | None = int(spec["MoveOriginatorID"])
    except (KeyError, TypeError, ValueError):
        originator_id = None

    async def run(job: Job | None = None) -> dict[str, Any]:
        content: dict[str, Any] = job.content if job is not None else {}
        for key, value in spec.get("Content", {}).items():
            content.setdefault(key, value)
        if content.get("StorageCommitmentTransactionUID") in ctx.storage_commitment:
            # run again (resubmitted): a transaction UID is never reused (PS3.4 J.3.3), as
            # Orthanc's job makes a new one when it is reset
            content["StorageCommitmentTransactionUID"] = storagecommitment.new_transaction_uid()

        def progress(done: int, total: int) -> None:
            content["InstancesCount"] = total
            if job is not None and total:
                job.progress = min(99, done * 100 // total)

        report = await store(
            ctx,
            ctx.scu,
            str(spec.get("Modality", "")),
            modality,
            resources,
            str(spec.get("MoveOriginatorAet", "")),
            originator_id,
            progress,
            spec.get("Permissive") is True,
            job,
        )
        content.update(
            FailedInstancesCount=report.failed,
            InstancesCount=report.instances,
            LocalAet=report.local_aet,
            RemoteAet=report.remote_aet,
        )
        transaction = content.get("StorageCommitmentTransactionUID")
        if spec.get("StorageCommitment") is True and transaction and report.instances and not report.failed:
            # Orthanc 1.6.0: once every instance went, an N-ACTION asks the peer to commit to them
            # (none when one failed, as Orthanc's job never reaches its last instance then)
            pairs = await storagecommitment.instances_of(ctx, resources)
            await ctx.run(ctx.scu.close_association, modality)
            await storagecommitment.request(ctx, modality, report.local_aet, pairs, None, str(transaction))
        if "ParentResources" in content:  # Orthanc leaves it out when nothing was asked for
            content["ParentResources"] = report.parents
            content["Resources"] = report.resources
        return content

    return run


async def submit_move_job(
    ctx: ServerContext,
    scu: DicomScu,
    modality_name: str,
    modality: Modality,
    public_ids: Sequence[str],
    originator_aet: str,
    originator_id: int,
) -> str:
    """An incoming C-MOVE, as Orthanc runs it when SynchronousCMove is off: a DicomModalityStore
    job that sends the resources on an association of its own; returns the job's id."""
    local_aet = modality.local_aet or ctx.settings.dicom_aet
    content: dict[str, Any] = {
        "Description": "C-MOVE",
        "FailedInstancesCount": 0,
        "InstancesCount": 0,
        "LocalAet": local_aet,
        "MoveOriginatorAET": originator_aet,
        "MoveOriginatorID": originator_id,
        "RemoteAet": modality.aet,
    }

    spec = {
        "Modality": modality_name,
        "Target": modality.to_json(),
        "Resources": list(public_ids),
        "MoveOriginatorAet": originator_aet,
        "MoveOriginatorID": originator_id,
        "Content": content,
    }
    job = ctx.jobs.submit(STORE_JOB, store_job(ctx, spec), spec=spec)
    job.content.update(content)
    return job.id


async def store_straight(ctx: ServerContext, scu: DicomScu, modality: Modality, data: bytes) -> dict[str, str]:
    """POST /modalities/{id}/store-straight: C-STORE a DICOM file given in the body, without
    storing it here; Orthanc answers the SOP class and instance of what was sent."""
    from ..model.parsing import parse

    parsed = await ctx.run(parse, data)
    sop_instance = parsed.main_tags[ResourceType.INSTANCE].get(mt.SOP_INSTANCE_UID, "")
    item = StoreItem(parsed.sop_class_uid, parsed.transfer_syntax, None, lambda: data)
    await ctx.run(scu.store, modality, [item])
    return {"SOPClassUID": parsed.sop_class_uid, "SOPInstanceUID": sop_instance}
