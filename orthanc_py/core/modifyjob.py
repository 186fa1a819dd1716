"""Modification and anonymization of patients, studies, series and sets of resources, as
Orthanc's ResourceModificationJob: every instance is modified with one `Modification` (so new
UIDs agree across the resource), stored as a new instance with ModifiedFrom/AnonymizedFrom, then
the parents' main tags are rebuilt from one new instance per series (Orthanc 1.11.3+), labels are
carried over when asked ("KeepLabels"), and the sources are deleted unless "KeepSource".

The work runs as a job of `ctx.jobs` ("ResourceModification"); its spec (resources + request)
rebuilds it. Instances flow through a few workers at once: read + modify in a thread (only the
header is parsed and written again, the pixel data is copied), then the ordinary ingest, whose
group commit batches the index writes of instances stored together. At most `_IN_FLIGHT` files
are held at a time, so memory does not grow with the size of the resource.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ErrorCode, OrthancError
from ..imaging.transcode import DEFAULT_QUALITY, requested_quality
from ..index.base import Transaction
from ..model import maintags as mt
from ..model.enums import FileContentType, MetadataType, ResourceType
from ..model.ids import PublicIds, compute
from . import ingest
from .context import ServerContext
from .files import InstanceFile, files_in, instances_under, read_dicom
from .jobs import Job, request_priority, request_synchronous
from .modify import Modification, apply, parse_anonymize, parse_modify, parse_transcode
from .modifyfile import modify_bytes
from .reconstruct import reconstruct
from .resources import delete

JOB_TYPE = "ResourceModification"
_IN_FLIGHT = 8  # files held at once; more overlap of the stores' fsyncs (4: ~20% slower)
_SEQUENCE = "AnonymizationSequence"
_PATIENT_TAGS = tuple(mt.MAIN_TAGS[ResourceType.PATIENT])
_TOP = (ResourceType.PATIENT, ResourceType.STUDY, ResourceType.SERIES)

__all__ = ["Plan", "apply", "prepare", "register", "run_sync_or_submit"]


@dataclass
class _Source:
    file: InstanceFile
    parents: dict[ResourceType, str]
    """The public IDs of the instance's series, study and patient."""


@dataclass
class Plan:
    """A checked request, ready to run: what `prepare` builds before the job is submitted."""

    anonymize: bool
    body: dict[str, Any]
    resources: list[str]
    output_level: ResourceType | None
    """The level of the single resource answered (ID, Path, PatientID, Type); None for bulk."""
    mod: Modification
    keep_source: bool
    transcode: str | None
    permissive: bool
    quality: int = DEFAULT_QUALITY
    """The quality of a lossy "Transcode" ("LossyQuality", Orthanc 1.12.7)."""
    sources: list[_Source] = field(default_factory=list)

    def spec(self) -> dict[str, Any]:
        """What rebuilds the job (SaveJobs, resubmit): JSON only."""
        return {
            "Anonymize": self.anonymize,
            "Body": self.body,
            "Resources": self.resources,
            "OutputLevel": self.output_level.label if self.output_level is not None else None,
            "PatientName": self.mod.replacements.get(mt.PATIENT_NAME) if self.anonymize else None,
            "UidMap": self.mod.export_map(),
        }


def _keep_source(body: dict[str, Any]) -> bool:
    value = body.get("KeepSource", True)
    if not isinstance(value, bool):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, 'The value of "KeepSource" must be a Boolean')
    return value


async def next_patient_name(ctx: ServerContext) -> str:
    """ "Anonymized" + the global AnonymizationSequence, as Orthanc names anonymized patients."""

    def bump(txn: Transaction) -> int:
        value = int(txn.property(_SEQUENCE) or 0) + 1
        txn.set_property(_SEQUENCE, str(value))
        return value

    return f"Anonymized{await ctx.index.write(bump)}"


def _parse(
    ctx: ServerContext, anonymize: bool, body: Any, level: ResourceType | None, bulk: bool
) -> tuple[Modification, bool]:
    """The modification, and whether it still needs its "AnonymizedN" patient name."""
    creator = ctx.settings.default_private_creator
    if anonymize:
        return parse_anonymize(body, ctx.dictionary, creator)
    if bulk:
        text = body.get("Level")
        level = None
        if text is not None:
            try:
                level = ResourceType.parse(text if isinstance(text, str) else "")
            except ValueError:
                raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Unknown resource type: {text}") from None
    return parse_modify(body, level, ctx.dictionary, creator), False


def _gather(txn: Transaction, resources: list[str]) -> list[_Source]:
    """The instances under every resource (each once), with their parents' public IDs."""
    seen: dict[int, None] = {}
    for pid in resources:
        hit = txn.lookup(pid)
        if hit is None:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
        for iid in instances_under(txn, hit[0], hit[1]):
            seen[iid] = None
    files = files_in(txn, list(seen), meta=True)
    if not files:
        return []
    parent_of: dict[str, str] = {}
    level_pids = [r.parent_public_id for r in txn.resources([f.id for f in files])]
    instance_parent = dict(zip([f.id for f in files], level_pids, strict=False))
    wanted = {p for p in level_pids if p}
    for _ in range(2):  # series -> study -> patient
        found = txn.lookup_many(sorted(wanted))
        rows = txn.resources([rid for rid, _lv in found.values()])
        wanted = set()
        for r in rows:
            if r.parent_public_id:
                parent_of[r.public_id] = r.parent_public_id
                wanted.add(r.parent_public_id)
    out = []
    for f in files:
        series = instance_parent.get(f.id) or ""
        study = parent_of.get(series, "")
        out.append(
            _Source(
                f,
                {
                    ResourceType.SERIES: series,
                    ResourceType.STUDY: study,
                    ResourceType.PATIENT: parent_of.get(study, ""),
                },
            )
        )
    return out


def _patient_checks(txn: Transaction, plan: Plan, patient_tags: tuple[int, ...] = _PATIENT_TAGS) -> None:
    """Orthanc 1.11.3+ (PerformSanityChecks): a study may change its patient's tags only if it is
    that patient's only study, or if it joins another patient whose tags it repeats exactly
    (`patient_tags`: the patient's main tags, `ExtraMainDicomTags` included)."""
    mod = plan.mod
    if mod.level is not ResourceType.STUDY or not any(mod.is_replaced(t) for t in patient_tags):
        return
    for study in plan.resources:
        if mod.is_replaced(mt.PATIENT_ID):
            target_id = str(mod.replacements[mt.PATIENT_ID])
        else:
            hit = txn.lookup(study)
            if hit is None:
                raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, "Study not found")
            rows = txn.resources([hit[0]])
            target_id = rows[0].main_tags.get(mt.PATIENT_ID, "") if rows else ""
        patient = compute(target_id.strip(), "", "", "").patient
        found = txn.lookup(patient)
        if found is None:
            continue
        children = [pid for _rid, pid in txn.children([found[0]]).get(found[0], ())]
        if not children or children == [study]:
            continue
        tags = txn.resources([found[0]])[0].main_tags
        for tag in patient_tags:
            if tag in tags and (not mod.is_replaced(tag) or str(mod.replacements[tag]) != tags[tag]):
                raise OrthancError(
                    ErrorCode.BAD_REQUEST,
                    "Trying to change patient tags in a study.  The Patient already exists and has other studies.  "
                    "All the 'Replace' tags should match the existing patient main dicom tags and you should "
                    "specify all Patient MainDicomTags in your query.  Try using /patients/../modify instead to "
                    f"modify the patient. Failing tag: {mt.format_tag(tag)}",
                )
            if tag not in tags and mod.is_replaced(tag):
                raise OrthancError(
                    ErrorCode.BAD_REQUEST,
                    "Trying to change patient tags in a study.  The Patient already exists and has other studies.  "
                    "You are trying to replace a tag that is not defined yet in this patient. Try using "
                    f"/patients/../modify instead to modify the patient. Failing tag: {mt.format_tag(tag)}",
                )


async def prepare(
    ctx: ServerContext,
    anonymize: bool,
    body: Any,
    resources: list[str],
    output_level: ResourceType | None,
    *,
    check: bool = True,
    patient_name: str | None = None,
) -> Plan:
    """Parse and check a request (answers 400 before any job exists, as Orthanc), and list the
    instances it will modify. `output_level` None: a bulk request."""
    bulk = output_level is None
    mod, needs_name = _parse(ctx, anonymize, body, output_level if not anonymize else None, bulk)
    if needs_name:
        mod.replace_tag(mt.PATIENT_NAME, patient_name or await next_patient_name(ctx), safe=True)
    assert isinstance(body, dict)
    permissive = body.get("Permissive", False)
    if not isinstance(permissive, bool):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, 'The value of "Permissive" must be a Boolean')
    plan = Plan(
        anonymize,
        body,
        resources,
        output_level,
        mod,
        _keep_source(body),
        parse_transcode(body, instance=False),
        permissive,
        requested_quality(body.get("LossyQuality"), ctx.settings.lossy_quality),
    )

    tagset = ctx.main_tags
    patient_tags = tuple(t for t in tagset.names[ResourceType.PATIENT] if t not in tagset.sequence_levels())

    def read(txn: Transaction) -> list[_Source]:
        sources = _gather(txn, resources)
        if check:
            _patient_checks(txn, plan, patient_tags)
        return sources

    if check and mod.level <= ResourceType.STUDY and not mod.is_replaced(mt.PATIENT_ID):
        if all(mod.is_kept(t) for t in (mt.STUDY_INSTANCE_UID, mt.SERIES_INSTANCE_UID, mt.SOP_INSTANCE_UID)):
            if not plan.keep_source:
                raise OrthancError(
                    ErrorCode.BAD_REQUEST,
                    "When keeping StudyInstanceUID, SeriesInstanceUID and SOPInstanceUID tag, you must set "
                    "KeepSource to true to avoid deleting the modified files at the end of the process",
                )
            if not ctx.settings.overwrite_instances:
                raise OrthancError(
                    ErrorCode.BAD_REQUEST,
                    "When keeping StudyInstanceUID, SeriesInstanceUID and SOPInstanceUID tag, you must have the "
                    "'OverwriteInstances' Orthanc configuration set to true in order to replace the modified "
                    "resources",
                )
    plan.sources = await ctx.index.read(read)
    return plan


def _ids_of(ds_values: tuple[str, str, str, str]) -> PublicIds:
    return compute(*(v.strip() for v in ds_values))


def _work(ctx: ServerContext, plan: Plan, src: _Source) -> tuple[bytes, PublicIds]:
    """Worker thread: read the file, modify it; the new file and its public IDs."""
    data = ctx.storage.read(src.file.uuid, FileContentType.DICOM)
    seen: list[tuple[str, str, str, str]] = []
    out = modify_bytes(data, plan.mod, src.file.pixel_offset, plan.transcode, seen.append, quality=plan.quality)
    return out, _ids_of(seen[0])


def _origin(plan: Plan, src: _Source, new: PublicIds) -> ingest.Origin:
    """ModifiedFrom/AnonymizedFrom on the new instance, and on each parent that changed."""
    kind = int(MetadataType.ANONYMIZED_FROM if plan.anonymize else MetadataType.MODIFIED_FROM)
    meta: list[tuple[ResourceType, int, str]] = [(ResourceType.INSTANCE, kind, src.file.public_id)]
    for level in _TOP:
        old = src.parents[level]
        if old and old != getattr(new, level.name.lower()):
            meta.append((level, kind, old))
    # a file transcoded on purpose is stored as it is (no IngestTranscoding), as Orthanc
    return ingest.Origin("RestApi", metadata=tuple(meta), skip_ingest_transcoding=plan.transcode is not None)


@dataclass
class _Outcome:
    ids: list[PublicIds] = field(default_factory=list)
    failed: int = 0
    first: PublicIds | None = None
    series_instance: dict[str, str] = field(default_factory=dict)
    """One new instance per new series: the parents' main tags are rebuilt from it."""
    per_source: list[PublicIds | None] = field(default_factory=list)
    """The new identifiers of each source instance (None: it failed, in a permissive job)."""


async def _modify_all(ctx: ServerContext, job: Job | None, plan: Plan) -> _Outcome:
    outcome = _Outcome()
    total = len(plan.sources)
    todo = iter(enumerate(plan.sources))
    done = 0
    results: list[PublicIds | None] = [None] * total
    save_every = max(1, total // 20)

    async def worker() -> None:
        nonlocal done
        for index, src in todo:
            try:
                data, new = await ctx.run(_work, ctx, plan, src)
                result = await ingest.store(ctx, data, _origin(plan, src, new))
                if result.status is ingest.StoreStatus.FILTERED_OUT:
                    raise OrthancError(
                        ErrorCode.CANNOT_STORE_INSTANCE, f"Error while storing a modified instance {src.file.public_id}"
                    )
                results[index] = result.ids
            except OrthancError:
                if not plan.permissive:
                    raise
                outcome.failed += 1
            done += 1
            if job is not None:
                if job.spec is not None and done % save_every == 0:
                    # a job rebuilt from its spec gives the instances done the same UIDs again
                    job.spec["UidMap"] = plan.mod.export_map()
                await job.checkpoint(done * 100 // (total + 1))

    tasks = [asyncio.ensure_future(worker()) for _ in range(min(_IN_FLIGHT, max(total, 1)))]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    outcome.per_source = results
    for ids in results:
        if ids is None:
            continue
        outcome.ids.append(ids)
        if outcome.first is None:
            outcome.first = ids
        outcome.series_instance.setdefault(ids.series, ids.instance)
    return outcome


async def _labels_before(ctx: ServerContext, plan: Plan) -> dict[tuple[ResourceType, str], list[str]]:
    """Labels of the sources and their parents, read before anything is stored (an in-place
    modification replaces the very resources that carry them)."""
    wanted: dict[tuple[ResourceType, str], None] = {}
    for src in plan.sources:
        wanted[(ResourceType.INSTANCE, src.file.public_id)] = None
        for level in _TOP:
            wanted[(level, src.parents[level])] = None

    def read(txn: Transaction) -> dict[tuple[ResourceType, str], list[str]]:
        keys = list(wanted)
        found = txn.lookup_many([pid for _lv, pid in keys])
        labels = txn.labels([found[pid][0] for _lv, pid in keys if pid in found])
        return {(lv, pid): labels.get(found[pid][0], []) for lv, pid in keys if pid in found}

    return await ctx.index.read(read)


async def _labels_after(
    ctx: ServerContext,
    plan: Plan,
    before: dict[tuple[ResourceType, str], list[str]],
    ids: list[PublicIds | None],
) -> None:
    rows: dict[str, set[str]] = {}
    for src, new in zip(plan.sources, ids, strict=False):
        if new is None:
            continue
        pairs = [(ResourceType.INSTANCE, src.file.public_id, new.instance)]
        pairs += [(lv, src.parents[lv], getattr(new, lv.name.lower())) for lv in _TOP]
        for lv, old, target in pairs:
            rows.setdefault(target, set()).update(before.get((lv, old), ()))

    def write(txn: Transaction) -> None:
        found = txn.lookup_many(list(rows))
        for pid, labels in rows.items():
            if pid in found:
                for label in sorted(labels):
                    txn.add_label(found[pid][0], label)

    if any(rows.values()):
        await ctx.index.write(write)


async def _delete_sources(ctx: ServerContext, plan: Plan, keep: set[str]) -> None:
    for src in plan.sources:
        pid = src.file.public_id
        if pid in keep:
            continue
        try:
            await delete(ctx, pid, ResourceType.INSTANCE)
        except OrthancError as err:
            if err.code is not ErrorCode.UNKNOWN_RESOURCE:
                raise


def _resource_json(level: ResourceType, public_id: str) -> dict[str, str]:
    return {"ID": public_id, "Path": f"/{level.plural}/{public_id}", "Type": level.label}


async def run(ctx: ServerContext, job: Job | None, plan: Plan) -> dict[str, Any]:
    """The job's body: modify, store, rebuild the parents, carry labels, clean up; the
    job's public content (Orthanc's answer in synchronous mode)."""
    content: dict[str, Any] = {
        "Description": "REST API",
        "FailedInstancesCount": 0,
        "InstancesCount": len(plan.sources),
        "IsAnonymization": plan.anonymize,
        "ParentResources": sorted(plan.resources),
    }
    if plan.transcode is not None:
        content["Transcode"] = plan.transcode
    if job is not None:
        job.content.update(content)  # what /jobs/{id} shows while the job runs
    labels = await _labels_before(ctx, plan) if plan.mod.keep_labels else {}
    outcome = await _modify_all(ctx, job, plan)
    for instance in outcome.series_instance.values():
        try:
            await reconstruct(ctx, instance, ResourceType.INSTANCE)
        except OrthancError as err:
            if err.code is not ErrorCode.UNKNOWN_RESOURCE:
                raise
    if plan.mod.keep_labels:
        await _labels_after(ctx, plan, labels, outcome.per_source)
    if not plan.keep_source:
        await _delete_sources(ctx, plan, {ids.instance for ids in outcome.ids})
    content["FailedInstancesCount"] = outcome.failed
    if plan.output_level is not None:
        if outcome.first is not None:
            level = plan.output_level
            content.update(_resource_json(level, getattr(outcome.first, level.name.lower())))
            content["PatientID"] = outcome.first.patient
    else:
        resources: list[dict[str, str]] = []
        for level in (ResourceType.INSTANCE, ResourceType.SERIES, ResourceType.STUDY, ResourceType.PATIENT):
            attr = level.name.lower()
            for pid in sorted({getattr(i, attr) for i in outcome.ids}):
                resources.append(_resource_json(level, pid))
        content["Resources"] = resources
    if job is not None:
        await job.checkpoint(100)
    return content


def _factory(ctx: ServerContext) -> Callable[[dict[str, Any]], Callable[[Job], Awaitable[dict[str, Any]]]]:
    def build(spec: dict[str, Any]) -> Callable[[Job], Awaitable[dict[str, Any]]]:
        async def rebuilt(job: Job) -> dict[str, Any]:
            text = spec.get("OutputLevel")
            level = ResourceType.parse(text) if isinstance(text, str) else None
            plan = await prepare(
                ctx,
                bool(spec["Anonymize"]),
                spec["Body"],
                list(spec["Resources"]),
                level,
                check=False,
                patient_name=spec.get("PatientName"),
            )
            plan.mod.import_map(spec.get("UidMap") or [])
            return await run(ctx, job, plan)

        return rebuilt

    return build


def register(ctx: ServerContext) -> None:
    """Let the jobs engine rebuild modification jobs from their spec (SaveJobs, resubmit)."""
    ctx.jobs.register(JOB_TYPE, _factory(ctx))


async def run_sync_or_submit(ctx: ServerContext, plan: Plan) -> dict[str, Any]:
    """Orthanc's SubmitThreadedInstancesJob: synchronous by default (the answer is the job's
    content, a failure is the job's error), or the job's ID with "Asynchronous"."""
    body = plan.body
    synchronous = request_synchronous(body)
    priority = request_priority(body)

    async def job_run(job: Job) -> dict[str, Any]:
        return await run(ctx, job, plan)

    job = ctx.jobs.submit(JOB_TYPE, job_run, priority, spec=plan.spec(), user_data=body.get("UserData"))
    return await job.answer(synchronous)


async def modify_instance(ctx: ServerContext, public_id: str, body: Any, anonymize: bool = False) -> bytes:
    """POST /instances/{id}/modify|anonymize: the modified copy of the file (nothing stored).
    As Orthanc, the level follows the identifiers replaced, new UIDs are made below it, and
    "Transcode" applies to a modification only."""
    creator = ctx.settings.default_private_creator
    transcode = None
    if anonymize:
        mod, needs_name = parse_anonymize(body, ctx.dictionary, creator)
        if needs_name:
            mod.replace_tag(mt.PATIENT_NAME, await next_patient_name(ctx), safe=True)
    else:
        mod = parse_modify(body, None, ctx.dictionary, creator)
        transcode = parse_transcode(body, instance=True)
    quality = requested_quality(
        body.get("LossyQuality") if isinstance(body, dict) else None, ctx.settings.lossy_quality
    )
    data = await read_dicom(ctx, public_id)
    work = functools.partial(modify_bytes, data, mod, None, transcode, None, True, quality=quality)
    return bytes(await ctx.run(work))
