"""Splitting and merging studies (POST /studies/{id}/split and /merge), as Orthanc's
SplitStudyJob and MergeStudyJob do it.

Both are jobs that rewrite instances one at a time: each source instance is read, given new
series and instance UIDs (split: a new StudyInstanceUID too; merge: the patient and study module
tags of the target study), stored as a new instance, and, unless "KeepSource", the sources are
deleted once all are stored (Orthanc's trailing step). One instance in memory at a time.

Everything a job needs is in its spec (JSON: resource IDs, the UIDs chosen at submission, the
tags to replace or remove), so the job can be rebuilt by the jobs engine (`register_jobs`).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..errors import ErrorCode, OrthancError
from ..index.base import Transaction
from ..model import maintags as mt
from ..model.enums import ResourceType
from ..model.ids import is_public_id
from ..model.lookup import parse_tag, vr_of
from ..model.modules import MODULE_TAGS
from . import ingest
from . import resources as core_res
from .context import ServerContext
from .files import read_dicom
from .jobs import Job, request_priority, request_synchronous

if TYPE_CHECKING:
    from pydicom.dataelem import DataElement

SPLIT_JOB = "SplitStudy"
MERGE_JOB = "MergeStudy"
_STUDY_ROOT = "1.2.276.0.7230010.3.1.2."
_SERIES_ROOT = "1.2.276.0.7230010.3.1.3."
_INSTANCE_ROOT = "1.2.276.0.7230010.3.1.4."
_MODULES = MODULE_TAGS[ResourceType.PATIENT] | MODULE_TAGS[ResourceType.STUDY]
_SPLIT_ALLOWED = _MODULES - {mt.STUDY_INSTANCE_UID, mt.SERIES_INSTANCE_UID}
_MAX_SUMMARY_LENGTH = 256  # Orthanc's DefaultExtractDicomSummary drops longer values
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "SQ", "AT"})
PARALLEL = 4
"""Instances copied at the same time (reads, rewrites and stores overlap; memory stays flat)."""


def _format(tag: int) -> str:
    return mt.format_tag(tag).lower()


def _bad_format(details: str | None = None) -> OrthancError:
    return OrthancError(ErrorCode.BAD_FILE_FORMAT, details)


# -- request fields, read as Orthanc's SerializationToolbox does ------------------------------


def read_bool(body: dict[str, Any], key: str, default: bool) -> bool:
    """An optional Boolean field (BadFileFormat when it is of another type)."""
    if key not in body:
        return default
    value = body[key]
    if not isinstance(value, bool):
        raise _bad_format(f"Boolean value expected in field: {key}")
    return value


def _read_strings(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad_format(f"List of strings expected in field: {key}")
    return value


def _tag(ctx: ServerContext, name: str) -> int:
    from ..model.orthancjson import parse_tag as dictionary_tag

    try:
        return dictionary_tag(name, ctx.dictionary)
    except ValueError as exc:
        raise OrthancError(ErrorCode.UNKNOWN_DICOM_TAG, f"Unknown DICOM tag: {name}", http_status=400) from exc


def _tag_label(ctx: ServerContext, tag: int) -> str:
    name = ctx.dictionary.name(tag)
    return f"{name} ({mt.format_tag(tag).lower()})"


# -- submission: resolve the resources and choose the UIDs now, as Orthanc's constructors ------


def _parents(txn: Transaction, rid: int) -> tuple[str, str]:
    """(series, study) public IDs of an instance."""
    rows = txn.resources([rid])
    series_pid = rows[0].parent_public_id if rows else None
    series = txn.lookup(series_pid) if series_pid else None
    study_pid = txn.resources([series[0]])[0].parent_public_id if series else None
    return series_pid or "", study_pid or ""


def _instances_of_series(txn: Transaction, rid: int) -> list[str]:
    return [r.public_id for r in txn.resources(txn.descendants(rid, ResourceType.INSTANCE))]


async def split_spec(ctx: ServerContext, study: str, body: Any) -> dict[str, Any]:
    """Validate a split request and fix what the job will do (Orthanc's SplitStudyJob setup)."""
    from pydicom.uid import generate_uid

    if not isinstance(body, dict):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
    series_ids = _read_strings(body, "Series") if "Series" in body else []
    instance_ids = _read_strings(body, "Instances") if "Instances" in body else []

    def run(txn: Transaction) -> tuple[dict[str, str], list[list[str]]]:
        hit = txn.lookup(study) if is_public_id(study) else None
        if hit is None or hit[1] is not ResourceType.STUDY:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"Cannot split unknown study {study}")
        uid_map: dict[str, str] = {}
        instances: list[list[str]] = []
        for sid in series_ids:
            found = txn.lookup(sid) if is_public_id(sid) else None
            rows = txn.resources([found[0]]) if found is not None and found[1] is ResourceType.SERIES else []
            if not rows or rows[0].parent_public_id != study:
                raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
            uid_map.setdefault(sid, generate_uid(prefix=_SERIES_ROOT))
            instances += [[i, sid] for i in _instances_of_series(txn, found[0])]  # type: ignore[index]
        for iid in instance_ids:
            found = txn.lookup(iid) if is_public_id(iid) else None
            if found is None or found[1] is not ResourceType.INSTANCE:
                raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
            sid, parent_study = _parents(txn, found[0])
            if parent_study != study:
                raise OrthancError(
                    ErrorCode.UNKNOWN_RESOURCE, f"This instance does not belong to the study to be split: {iid}"
                )
            uid_map.setdefault(sid, generate_uid(prefix=_SERIES_ROOT))
            instances.append([iid, sid])
        return uid_map, instances

    uid_map, instances = await ctx.index.read(run)
    if not series_ids and not instance_ids:
        raise OrthancError(ErrorCode.BAD_REQUEST, 'Both the "Series" and the "Instances" fields are missing')
    keep_source = read_bool(body, "KeepSource", False)
    removals: list[str] = []
    if "Remove" in body:
        remove = body["Remove"]
        if not isinstance(remove, list) or not all(isinstance(v, str) for v in remove):
            raise _bad_format()
        for name in remove:
            tag = _tag(ctx, name)
            _check_split_tag(ctx, tag)
            removals.append(_format(tag))
    replacements: dict[str, str] = {}
    if "Replace" in body:
        replace = body["Replace"]
        if not isinstance(replace, dict):
            raise _bad_format()
        for name, value in replace.items():
            tag = _tag(ctx, name)
            if not isinstance(value, str):
                raise _bad_format()
            _check_split_tag(ctx, tag)
            replacements[_format(tag)] = value
    return {
        "SourceStudy": study,
        "TargetStudyUID": generate_uid(prefix=_STUDY_ROOT),
        "SeriesUIDMap": uid_map,
        "Instances": instances,
        "Replacements": replacements,
        "Removals": removals,
        "KeepSource": keep_source,
        "Permissive": read_bool(body, "Permissive", False),
    }


def _check_split_tag(ctx: ServerContext, tag: int) -> None:
    if tag not in _SPLIT_ALLOWED:
        raise OrthancError(
            ErrorCode.PARAMETER_OUT_OF_RANGE,
            "Cannot modify the following tag while splitting a study (not in the patient/study modules): "
            + _tag_label(ctx, tag),
        )
    if vr_of(tag) == "SQ":
        raise OrthancError(ErrorCode.BAD_PARAMETER_TYPE, f"Bad Parameter type for tag {_format(tag)}")


def _summary_value(elem: DataElement) -> str | None:
    """The value Orthanc's DICOM summary keeps for a tag: a string, or None (sequence, binary,
    longer than 256 characters)."""
    from pydicom.multival import MultiValue

    if elem.VR in _BINARY_VRS:
        return None
    value = elem.value
    if value is None:
        return ""
    text = "\\".join(str(v) for v in value) if isinstance(value, MultiValue) else str(value)
    return None if len(text) > _MAX_SUMMARY_LENGTH else text


def _module_values(data: bytes) -> dict[str, str]:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    out: dict[str, str] = {}
    for tag in _MODULES:
        if tag in ds:
            value = _summary_value(ds[tag])
            if value is not None:
                out[_format(tag)] = value
    return out


async def merge_spec(ctx: ServerContext, study: str, body: Any) -> dict[str, Any]:
    """Validate a merge request and fix what the job will do (Orthanc's MergeStudyJob setup):
    the patient/study module tags of the target study replace those of the sources, and the
    module tags the target lacks are removed from them."""
    from pydicom.uid import generate_uid

    if not isinstance(body, dict):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT)

    def target(txn: Transaction) -> str:
        hit = txn.lookup(study) if is_public_id(study) else None
        if hit is None or hit[1] is not ResourceType.STUDY:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"Cannot merge into an unknown study: {study}")
        first = txn.descendants(hit[0], ResourceType.INSTANCE)[:1]
        if not first:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
        return txn.resources(first)[0].public_id

    first_instance = await ctx.index.read(target)
    resources = _read_strings(body, "Resources")

    def sources(txn: Transaction) -> tuple[dict[str, str], list[list[str]]]:
        uid_map: dict[str, str] = {}
        instances: list[list[str]] = []

        def add_series(sid: str, rid: int) -> None:
            uid_map.setdefault(sid, generate_uid(prefix=_SERIES_ROOT))
            instances.extend([i, sid] for i in _instances_of_series(txn, rid))

        for pid in resources:
            hit = txn.lookup(pid) if is_public_id(pid) else None
            if hit is None:
                raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"Cannot find this resource: {pid}")
            rid, level = hit
            if level is ResourceType.STUDY:
                if pid == study:
                    raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"Cannot merge a study into the same study: {pid}")
                for row in txn.resources(txn.descendants(rid, ResourceType.SERIES)):
                    add_series(row.public_id, row.id)
            elif level is ResourceType.SERIES:
                if txn.resources([rid])[0].parent_public_id == study:
                    raise OrthancError(
                        ErrorCode.UNKNOWN_RESOURCE, f"Cannot merge series {pid} into its parent study {study}"
                    )
                add_series(pid, rid)
            elif level is ResourceType.INSTANCE:
                sid, parent_study = _parents(txn, rid)
                if parent_study == study:
                    raise OrthancError(
                        ErrorCode.UNKNOWN_RESOURCE, f"Cannot merge instance {pid} into its parent study {study}"
                    )
                uid_map.setdefault(sid, generate_uid(prefix=_SERIES_ROOT))
                instances.append([pid, sid])
            else:
                raise OrthancError(
                    ErrorCode.UNKNOWN_RESOURCE,
                    f"This resource is neither a study, nor a series, nor an instance: {pid} is a {level.label}",
                )
        return uid_map, instances

    uid_map, instances = await ctx.index.read(sources)
    values = await ctx.run(_module_values, await read_dicom(ctx, first_instance))
    return {
        "TargetStudy": study,
        "SeriesUIDMap": uid_map,
        "Instances": instances,
        "Replacements": values,
        "Removals": sorted(_format(t) for t in _MODULES if _format(t) not in values),
        "KeepSource": read_bool(body, "KeepSource", False),
        "Permissive": read_bool(body, "Permissive", False),
    }


# -- the job ---------------------------------------------------------------------------------


def _rewrite(data: bytes, removals: list[int], replacements: dict[int, str], uids: dict[int, str]) -> bytes:
    """Worker thread: one instance with its tags removed/replaced and its new UIDs."""
    import pydicom
    from pydicom.dataelem import DataElement

    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    for tag in removals:
        if tag in ds:
            del ds[tag]
    for tag, value in {**replacements, **uids}.items():
        vr = vr_of(tag).split(" or ")[0]
        ds[tag] = DataElement(tag, vr, value)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        meta.MediaStorageSOPInstanceUID = uids[mt.SOP_INSTANCE_UID]
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def public_content(spec: dict[str, Any], job_type: str) -> dict[str, Any]:
    """What Orthanc shows as the job's Content before it has run."""
    content: dict[str, Any] = {
        "Description": "REST API",
        "FailedInstancesCount": 0,
        "InstancesCount": len(spec["Instances"]),
    }
    if job_type == MERGE_JOB:
        content["TargetStudy"] = spec["TargetStudy"]
    else:
        content["TargetStudyUID"] = spec["TargetStudyUID"]
    return content


def make_runner(ctx: ServerContext, job_type: str, spec: dict[str, Any]) -> Callable[[Job], Awaitable[dict[str, Any]]]:
    """The coroutine that runs a split or merge job from its spec."""
    from pydicom.uid import generate_uid

    removals = [parse_tag(t) for t in spec["Removals"]]
    replacements = {parse_tag(t): v for t, v in spec["Replacements"].items()}
    if job_type == SPLIT_JOB:
        replacements[mt.STUDY_INSTANCE_UID] = spec["TargetStudyUID"]
    origin = ingest.Origin("RestApi", remote_ip=spec.get("RemoteIP", ""), http_username=spec.get("Username", ""))

    async def one(iid: str, series: str) -> ingest.StoreResult | None:
        """Copy one instance; None when it has disappeared since the job was issued."""
        try:
            data = await read_dicom(ctx, iid)
        except OrthancError:
            return None
        uids = {
            mt.SERIES_INSTANCE_UID: spec["SeriesUIDMap"][series],
            # Derived from the job's new series UID and the source: a job run again (resumed
            # after a restart, resubmitted) finds its copies already stored, and makes no duplicate.
            mt.SOP_INSTANCE_UID: generate_uid(prefix=_INSTANCE_ROOT, entropy_srcs=[spec["SeriesUIDMap"][series], iid]),
        }
        modified = await ctx.run(_rewrite, data, removals, replacements, uids)
        return await ingest.store(ctx, modified, origin)

    async def run(job: Job) -> dict[str, Any]:
        content = job.content
        if not content:
            content.update(public_content(spec, job_type))
        instances: list[list[str]] = spec["Instances"]
        steps = len(instances) + 1  # the trailing step deletes the sources
        failed = 0
        for start in range(0, len(instances), PARALLEL):
            await job.checkpoint(start * 100 // steps)
            batch = instances[start : start + PARALLEL]
            results = await asyncio.gather(*(one(i, s) for i, s in batch), return_exceptions=True)
            for (iid, _series), result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    raise result
                if result is None:
                    failed += 1
                    content["FailedInstancesCount"] = failed
                    if not spec.get("Permissive"):
                        raise OrthancError(
                            ErrorCode.UNKNOWN_RESOURCE, f"An instance was removed after the job was issued: {iid}"
                        )
                elif job_type == SPLIT_JOB and "TargetStudy" not in content:
                    content["TargetStudy"] = result.ids.study
        await job.checkpoint(len(instances) * 100 // steps)
        if not spec.get("KeepSource"):
            for iid, _series in instances:
                try:
                    await core_res.delete(ctx, iid, ResourceType.INSTANCE)
                except OrthancError:
                    pass  # already gone
        return content

    return run


def register_jobs(ctx: ServerContext) -> None:
    """Make split and merge jobs rebuildable from their spec (SaveJobs, resubmit)."""

    def factory(job_type: str) -> Callable[[dict[str, Any]], Callable[[Job], Awaitable[dict[str, Any]]]]:
        return lambda spec: make_runner(ctx, job_type, spec)

    for job_type in (SPLIT_JOB, MERGE_JOB):
        ctx.jobs.register(job_type, factory(job_type))


async def submit(ctx: ServerContext, job_type: str, spec: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """Run a split/merge job: synchronously by default (the answer is the job's Content, or the
    job's error), or in the background ({"ID", "Path"})."""
    synchronous, priority = request_synchronous(body), request_priority(body)
    register_jobs(ctx)
    job = ctx.jobs.submit(job_type, make_runner(ctx, job_type, spec), priority, spec={"Type": job_type, **spec})
    job.content.update(public_content(spec, job_type))
    return await job.answer(synchronous)
