"""The one ingest path: REST uploads and STOW-RS call `store`, C-STORE `store_blocking`.

parse header -> public IDs -> write the file (temp, fsync, rename; off the loop) -> one index
transaction (resources, main tags, attachment, metadata, changes), shared with the uploads of the
same moment (group commit) -> result. If the index step fails the file is removed: at worst an
orphan file, never a row without a file.
"""

from __future__ import annotations

import asyncio
import datetime
import enum
import functools
import io
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import ErrorCode, OrthancError, read_only_refused
from ..imaging import transcode
from ..index.base import Attachment, Deletion, Transaction
from ..model import maintags as mt
from ..model.dicomfile import ParsedInstance, as_int
from ..model.enums import ChangeType, FileContentType, MetadataType, ResourceType
from ..model.fastparse import parse_fast
from ..model.ids import PublicIds
from .context import ServerContext, now_iso
from .extquery import values_for_ingest
from .recycling import NO_LIMITS, Limits, recycle, storage_limits
from .resources import forget_deleted, series_status

log = logging.getLogger("orthanc_py.ingest")


class StoreStatus(enum.Enum):
    SUCCESS = "Success"
    ALREADY_STORED = "AlreadyStored"
    FILTERED_OUT = "FilteredOut"


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an instance came from (recorded as Orthanc's instance metadata)."""

    kind: str = "RestApi"  # RestApi | DicomProtocol | Lua | Plugins
    remote_ip: str = ""
    remote_aet: str = ""
    called_aet: str = ""
    http_username: str = ""
    modified_from: str = ""
    """The instance this one is a modified copy of (metadata ModifiedFrom)."""
    metadata: tuple[tuple[ResourceType, int, str], ...] = ()
    """More metadata to write with the instance, on it or on its series, study or patient
    (level, type, value): AnonymizedFrom/ModifiedFrom of a modification job."""
    skip_ingest_transcoding: bool = False
    """The file is in the syntax its maker chose (modify's `Transcode`): IngestTranscoding
    leaves it as it is, as Orthanc does."""


@dataclass(frozen=True, slots=True)
class StoreResult:
    status: StoreStatus
    ids: PublicIds
    parsed: ParsedInstance

    def to_json(self) -> dict[str, Any]:
        """Orthanc's answer for one stored instance (POST /instances, create-dicom)."""
        ids = self.ids
        return {
            "ID": ids.instance,
            "ParentPatient": ids.patient,
            "ParentSeries": ids.series,
            "ParentStudy": ids.study,
            "Path": f"/instances/{ids.instance}",
            "Status": self.status.value,
        }


SIGNATURES = mt.SIGNATURES


Check = Callable[[ParsedInstance], None]
"""Run on the parsed file before anything is written; raises to refuse the file (the rules
of an interface, such as STOW-RS's required UIDs or the study of its URL)."""


class FilteredOut(Exception):
    """Raised by a check when a Lua filter refuses the file: nothing is stored, and the answer
    is Orthanc's "FilteredOut" (`status`: the C-STORE status)."""

    def __init__(self, parsed: ParsedInstance, status: int = 0) -> None:
        super().__init__("filtered out")
        self.parsed = parsed
        self.status = status


def _parse(data: bytes, default_encoding: str) -> ParsedInstance:
    """`parsing.parse`: its fast path first, so that pydicom is imported (~100 ms, once) only
    for a file that path leaves to pydicom."""
    fast = parse_fast(data, default_encoding) if len(data) >= 8 else None
    if fast is not None:
        return fast
    from ..model.parsing import parse

    return parse(data, default_encoding)


def _prepare(ctx: ServerContext, data: bytes, check: Check | None = None) -> tuple[ParsedInstance, Attachment]:
    """Worker-thread half: parse, then write the file durably.

    The MD5 is not computed here (it would cost as much CPU as the rest of ingest): the
    attachment routes compute it when a client asks for it.
    """
    try:
        parsed = _parse(data, ctx.default_encoding)
    except RecursionError as exc:  # sequences nested hundreds of levels deep: bad input, not a crash
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "DICOM sequences are nested too deeply") from exc
    if data[128:132] != b"DICM":  # Orthanc finds the pixel data offset only after a preamble
        parsed.pixel_data_offset = None
        parsed.pixel_data_vr = None
    if check is not None:
        check(parsed)
    storage = ctx.storage
    try:
        if storage.compression:  # StorageCompression: the accessor compresses (off by default)
            f = storage.write(data, FileContentType.DICOM)
            return parsed, Attachment(
                int(FileContentType.DICOM), f.uuid, f.compressed_size, f.uncompressed_size, f.compression
            )
        uuid = storage.new_uuid()
        storage.create(uuid, data, FileContentType.DICOM)
    except OSError as exc:  # a full or failing disk: Orthanc's filesystem storage error
        log.warning("cannot write a received file to the storage: %s", exc)  # with the path
        raise OrthancError(
            ErrorCode.FILE_STORAGE_CANNOT_WRITE, f"Cannot store the file: {exc.strerror or exc}"
        ) from exc
    size = len(data)
    return parsed, Attachment(int(FileContentType.DICOM), uuid, size, size, 1, "", "", 0)


@dataclass(slots=True)
class _TxnResult:
    status: StoreStatus
    replaced: list[Attachment]
    new_levels: list[ResourceType]
    recycled: list[Deletion]
    """Patients deleted to make room (MaximumStorageSize, MaximumPatientCount)."""


@functools.lru_cache(maxsize=4)
def _utc_second(second: int) -> str:
    return datetime.datetime.fromtimestamp(second, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _feed_now() -> str:
    """`datetime.now(UTC).isoformat()` (the change feed's timestamp, microseconds included),
    with the date and time of day formatted once per second."""
    second, micro = divmod(time.time_ns() // 1000, 1_000_000)
    text = _utc_second(second)
    return f"{text}.{micro:06d}+00:00" if micro else f"{text}+00:00"


_EXPECTED = int(MetadataType.EXPECTED_NUMBER_OF_INSTANCES)
_INDEX = int(MetadataType.INDEX_IN_SERIES)
_NEW_CHANGE = {
    ResourceType.SERIES: int(ChangeType.NEW_SERIES),
    ResourceType.STUDY: int(ChangeType.NEW_STUDY),
    ResourceType.PATIENT: int(ChangeType.NEW_PATIENT),
}


def _completes(txn: Transaction, series: int) -> bool:
    """Whether the series is Complete now (Orthanc logs CompletedSeries after each instance that
    leaves its series complete). Only asked for instances that carry an expected number of
    instances and an index in their series: other series can never be complete."""
    expected = as_int(txn.metadata([series], (_EXPECTED,)).get(series, {}).get(_EXPECTED))
    if expected is None:
        return False
    children = [cid for cid, _ in txn.children([series]).get(series, ())]
    if len(children) != expected:
        return False
    indexes = txn.metadata(children, (_INDEX,))
    return series_status(expected, [as_int(indexes.get(c, {}).get(_INDEX)) for c in children]) == "Complete"


def _store_txn(
    txn: Transaction,
    p: ParsedInstance,
    att: Attachment,
    origin: Origin,
    overwrite: bool,
    date: str,
    ext_values: list[tuple[int, ResourceType, str, str | None]],
    sequences: Mapping[ResourceType, str] | None = None,
    limits: Limits = NO_LIMITS,
    signatures: Mapping[ResourceType, str] = SIGNATURES,
) -> _TxnResult:
    """The index half of ingest. Statements are batched (one look-up for the four IDs, one
    metadata insert, one change insert): each statement is a GIL hand-off under load.
    `sequences`: the MainDicomSequences metadata of the levels that have some; `signatures`:
    the MainDicomTagsSignature of each level (`ExtraMainDicomTags` changes them)."""
    ids = p.ids
    replaced: list[Attachment] = []
    known = txn.lookup_many((ids.instance, ids.patient, ids.study, ids.series))
    found = known.get(ids.instance)
    if found is not None:
        if not overwrite:
            return _TxnResult(StoreStatus.ALREADY_STORED, [], [], [])
        deletion = txn.delete_resource(found[0])
        replaced = deletion.attachments
        known = txn.lookup_many((ids.patient, ids.study, ids.series))
    created: list[tuple[ResourceType, str]] = []
    parent: int | None = None
    chain: list[int] = []
    meta: list[tuple[int, int, str]] = []
    for level, pid in (
        (ResourceType.PATIENT, ids.patient),
        (ResourceType.STUDY, ids.study),
        (ResourceType.SERIES, ids.series),
    ):
        hit = known.get(pid)
        if hit is None:
            tags = p.main_tags[level]
            if level is ResourceType.STUDY:  # Orthanc keeps a copy of the patient tags per study
                tags = {**p.main_tags[ResourceType.PATIENT], **tags}
            rid = txn.create_resource(pid, level, parent, tags)
            created.append((level, pid))
            meta.append((rid, int(MetadataType.MAIN_DICOM_TAGS_SIGNATURE), signatures[level]))
            if sequences and level in sequences:
                meta.append((rid, int(MetadataType.MAIN_DICOM_SEQUENCES), sequences[level]))
            if level is ResourceType.SERIES:
                meta.append((rid, int(MetadataType.REMOTE_AET), origin.remote_aet))
                if p.expected_instances is not None:
                    meta.append((rid, int(MetadataType.EXPECTED_NUMBER_OF_INSTANCES), str(p.expected_instances)))
        else:
            rid = hit[0]
        chain.append(rid)
        parent = rid
    iid = txn.create_resource(ids.instance, ResourceType.INSTANCE, parent, p.main_tags[ResourceType.INSTANCE])
    txn.tag_recent_patient(chain[0])
    recycled = recycle(txn, limits, att.compressed_size, chain[0]) if limits.active else []
    txn.add_attachment(iid, att)
    if ext_values:  # extended query tags (chain: patient, study, series)
        at = {ResourceType.STUDY: chain[1], ResourceType.SERIES: chain[2], ResourceType.INSTANCE: iid}
        txn.add_tag_values([(at[level], tag, value, norm) for tag, level, value, norm in ext_values])
    meta += [
        (iid, int(MetadataType.RECEPTION_DATE), date),
        (iid, int(MetadataType.REMOTE_AET), origin.remote_aet),
        (iid, int(MetadataType.ORIGIN), origin.kind),
        (iid, int(MetadataType.TRANSFER_SYNTAX), p.transfer_syntax),
        (iid, int(MetadataType.SOP_CLASS_UID), p.sop_class_uid),
        (iid, int(MetadataType.MAIN_DICOM_TAGS_SIGNATURE), signatures[ResourceType.INSTANCE]),
    ]
    if sequences and ResourceType.INSTANCE in sequences:
        meta.append((iid, int(MetadataType.MAIN_DICOM_SEQUENCES), sequences[ResourceType.INSTANCE]))
    if p.index_in_series is not None:
        meta.append((iid, int(MetadataType.INDEX_IN_SERIES), p.index_in_series))
    if origin.remote_ip:
        meta.append((iid, int(MetadataType.REMOTE_IP), origin.remote_ip))
    if origin.kind == "DicomProtocol":
        meta.append((iid, int(MetadataType.CALLED_AET), origin.called_aet))
    if origin.kind == "RestApi":
        meta.append((iid, int(MetadataType.HTTP_USERNAME), origin.http_username))
    if origin.modified_from:
        meta.append((iid, int(MetadataType.MODIFIED_FROM), origin.modified_from))
    for level, mtype, value in origin.metadata:  # chain: patient, study, series
        meta.append((iid if level is ResourceType.INSTANCE else chain[level - 1], mtype, value))
    if p.pixel_data_offset is not None:
        meta.append((iid, int(MetadataType.PIXEL_DATA_OFFSET), str(p.pixel_data_offset)))
    if p.pixel_data_vr is not None:
        meta.append((iid, int(MetadataType.PIXEL_DATA_VR), p.pixel_data_vr))
    # Orthanc keeps LastUpdate on patients, studies and series only
    meta += [(rid, int(MetadataType.LAST_UPDATE), date) for rid in chain]
    txn.set_metadata_many(meta)
    changes = [(int(ChangeType.NEW_INSTANCE), ResourceType.INSTANCE, ids.instance, date)]
    changes += [(_NEW_CHANGE[level], level, pid, date) for level, pid in reversed(created)]
    if p.expected_instances is not None and p.index_in_series is not None and _completes(txn, chain[2]):
        changes.append((int(ChangeType.COMPLETED_SERIES), ResourceType.SERIES, ids.series, date))
    txn.log_changes(changes)
    txn.log_feed(
        "create",
        p.main_tags[ResourceType.STUDY].get(mt.STUDY_INSTANCE_UID, ""),
        p.main_tags[ResourceType.SERIES].get(mt.SERIES_INSTANCE_UID, ""),
        p.main_tags[ResourceType.INSTANCE].get(mt.SOP_INSTANCE_UID, ""),
        ids.instance,
        _feed_now(),
        replaces=found is not None,  # a new instance has no current entry to mark
    )
    return _TxnResult(StoreStatus.SUCCESS, replaced, [lv for lv, _ in created], recycled)


_REQUEST_ATTRIBUTES = b"\x40\x00\x75\x02"  # (0040,0275) RequestAttributesSequence, little endian


def main_sequences(data: bytes, pixel_offset: int | None) -> str | None:
    """The series' MainDicomSequences metadata: Orthanc 1.12.5 keeps RequestAttributesSequence
    as a main DICOM tag of series, its value in this metadata (`{"Version": 1, "Sequences":
    {tag: full JSON}}`). Files without the sequence (nearly all) cost one byte search."""
    if data.find(_REQUEST_ATTRIBUTES, 0, pixel_offset or len(data)) < 0:
        return None
    import pydicom

    from ..model.orthancjson import orthanc_tags

    try:
        ds = pydicom.dcmread(
            io.BytesIO(data), stop_before_pixels=True, force=True, specific_tags=[0x00400275, 0x00080005]
        )
        tags = orthanc_tags(ds, "full")
    except Exception:  # an unusual file: Orthanc would store it without the metadata too
        return None
    seq = tags.get("0040,0275")
    if seq is None:
        return None
    return orjson.dumps({"Sequences": {"0040,0275": seq}, "Version": 1}).decode()


def _before_commit(
    ctx: ServerContext, data: bytes, check: Check | None
) -> tuple[
    ParsedInstance, Attachment, str, list[tuple[int, ResourceType, str, str | None]], dict[ResourceType, str] | None
]:
    parsed, att = _prepare(ctx, data, check)
    ext_values = values_for_ingest(ctx, data, parsed.dataset) if ctx.ext_tags.rows else []
    return parsed, att, now_iso(), ext_values, main_sequences_of(ctx, data, parsed)


def main_sequences_of(ctx: ServerContext, data: bytes, parsed: ParsedInstance) -> dict[ResourceType, str] | None:
    """The MainDicomSequences metadata of each level; with `ExtraMainDicomTags`, the extra
    tags' values are added to `parsed.main_tags` too (core.extramain: one more read of the
    header, only when extra tags are configured)."""
    if ctx.main_tags.has_extras:
        from .extramain import extract

        return extract(ctx, data, parsed)
    series = main_sequences(data, parsed.pixel_data_offset)
    return None if series is None else {ResourceType.SERIES: series}


def _after_commit(
    ctx: ServerContext, parsed: ParsedInstance, att: Attachment, result: _TxnResult | None, error: BaseException | None
) -> tuple[ParsedInstance, _TxnResult]:
    """Once the index transaction is over: a file nothing refers to is removed (the commit
    failed, or the instance was stored already), and so are the files of a replaced instance."""
    if error is not None or result is None:
        ctx.storage.remove(att.uuid, att.content_type)
        raise error if error is not None else RuntimeError("no result")
    if result.status is StoreStatus.ALREADY_STORED:
        ctx.storage.remove(att.uuid, att.content_type)
    else:
        ctx.series_cache.invalidate(parsed.ids.series)
    for old in result.replaced:
        ctx.storage.remove(old.uuid, old.content_type)
    if result.recycled:
        ctx.series_cache.clear()
        for deletion in result.recycled:
            for a in deletion.attachments:
                ctx.storage.remove(a.uuid, a.content_type)
    return parsed, result


def _store_in_thread(
    ctx: ServerContext, data: bytes, origin: Origin, overwrite: bool, check: Check | None = None
) -> tuple[ParsedInstance, _TxnResult]:
    """The whole ingest in the calling thread, which waits for the commit."""
    parsed, att, date, ext_values, sequences = _before_commit(ctx, data, check)
    try:
        limits = storage_limits(ctx)
        signatures = ctx.main_tags.signatures
        result = ctx.index.write_blocking(
            lambda txn: _store_txn(txn, parsed, att, origin, overwrite, date, ext_values, sequences, limits, signatures)
        )
    except BaseException as exc:
        return _after_commit(ctx, parsed, att, None, exc)
    return _after_commit(ctx, parsed, att, result, None)


def _store_soon(
    ctx: ServerContext,
    data: bytes,
    origin: Origin,
    overwrite: bool,
    check: Check | None,
    fut: asyncio.Future[tuple[ParsedInstance, _TxnResult]],
) -> None:
    """Worker-thread half of `store`: parse and write the file, then queue the index transaction
    and return; the thread that commits it settles `fut` (`Index.write_soon`)."""
    loop = fut.get_loop()
    try:
        parsed, att, date, ext_values, sequences = _before_commit(ctx, data, check)
    except BaseException as exc:
        loop.call_soon_threadsafe(_fail, fut, exc)
        return
    limits = storage_limits(ctx)
    signatures = ctx.main_tags.signatures
    try:
        ctx.index.write_soon(
            lambda txn: _store_txn(
                txn, parsed, att, origin, overwrite, date, ext_values, sequences, limits, signatures
            ),
            fut,
            lambda result, error: _after_commit(ctx, parsed, att, result, error),
        )
    except BaseException as exc:  # the index is closing
        ctx.storage.remove(att.uuid, att.content_type)
        loop.call_soon_threadsafe(_fail, fut, exc)


def _fail(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


def _touch(ctx: ServerContext, ids: PublicIds, recycled: list[Deletion]) -> None:
    """Event-loop half: the series, study and patient are not stable any more; recycled
    patients are gone (Lua hears of them as of any deletion)."""
    ctx.stable.touch(ResourceType.SERIES, ids.series)
    ctx.stable.touch(ResourceType.STUDY, ids.study)
    ctx.stable.touch(ResourceType.PATIENT, ids.patient)
    for deletion in recycled:
        forget_deleted(ctx, deletion)


def _ingest_transcoded(ctx: ServerContext, data: bytes) -> bytes:
    """IngestTranscoding: the file in the configured syntax when Orthanc would transcode it
    (IngestTranscodingOfUncompressed/OfCompressed; never video), else as received; a file that
    cannot be transcoded is stored as received, as Orthanc does."""
    settings = ctx.settings
    target = settings.ingest_transcoding
    if target is None:
        return data
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        source = transcode.stored_syntax(ds)
        if source == target or source in transcode.VIDEO:
            return data
        uncompressed = source in (transcode.IMPLICIT_LE, transcode.EXPLICIT_LE, transcode.EXPLICIT_BE)
        wanted = (
            settings.ingest_transcoding_of_uncompressed if uncompressed else settings.ingest_transcoding_of_compressed
        )
        if not wanted:
            return data
        return transcode.transcode_dataset(ds, target, data, quality=settings.lossy_quality)
    except Exception as exc:  # a file pydicom cannot read or transcode: stored as received
        log.warning("Cannot transcode the received instance to %s: %s", target, exc)
        return data


async def store(ctx: ServerContext, data: bytes, origin: Origin, check: Check | None = None) -> StoreResult:
    """Store one DICOM file; raise OrthancError(BAD_FILE_FORMAT) on bad input (nothing kept), or
    what `check` raises when it refuses the parsed file (nothing kept either)."""
    if ctx.settings.read_only:
        raise read_only_refused()
    if ctx.settings.ingest_transcoding is not None and not origin.skip_ingest_transcoding:
        data = await ctx.run(_ingest_transcoded, ctx, data)
    lua = ctx.lua
    if lua is not None and lua.filters.defined:
        check = lua.instance_check(data, origin, check)
    fut: asyncio.Future[tuple[ParsedInstance, _TxnResult]] = asyncio.get_running_loop().create_future()
    ctx.io.submit(_store_soon, ctx, data, origin, ctx.settings.overwrite_instances, check, fut)
    try:
        parsed, result = await fut
    except FilteredOut as out:
        return StoreResult(StoreStatus.FILTERED_OUT, out.parsed.ids, out.parsed)
    if result.status is StoreStatus.SUCCESS:
        _touch(ctx, parsed.ids, result.recycled)
    if lua is not None and "OnStoredInstance" in lua.events.defined:
        lua.stored_instance(data, parsed, origin)
    return StoreResult(result.status, parsed.ids, parsed)


def store_blocking(ctx: ServerContext, data: bytes, origin: Origin, loop: asyncio.AbstractEventLoop) -> StoreResult:
    """`store` for a thread that is not the event loop's (a DICOM association): the ingest runs
    right here, and only the stability bookkeeping is handed to the loop."""
    if ctx.settings.read_only:
        raise read_only_refused()
    if ctx.settings.ingest_transcoding is not None and not origin.skip_ingest_transcoding:
        data = _ingest_transcoded(ctx, data)
    lua = ctx.lua
    check = lua.instance_check(data, origin, None) if lua is not None and lua.filters.defined else None
    try:
        parsed, result = _store_in_thread(ctx, data, origin, ctx.settings.overwrite_instances, check)
    except FilteredOut as out:
        return StoreResult(StoreStatus.FILTERED_OUT, out.parsed.ids, out.parsed)
    if result.status is StoreStatus.SUCCESS:
        loop.call_soon_threadsafe(_touch, ctx, parsed.ids, result.recycled)
    if lua is not None and "OnStoredInstance" in lua.events.defined:
        lua.stored_instance(data, parsed, origin)
    return StoreResult(result.status, parsed.ids, parsed)
