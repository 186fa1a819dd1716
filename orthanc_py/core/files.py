"""The DICOM files of instances: which files lie under a resource, and their bytes (the files
under the matches of a find: core.query).

One reading for every interface (REST, DICOMweb, C-MOVE/C-GET, the change feed): the index is
read first, in one transaction that returns `InstanceFile` records; the files are read after it,
outside the transaction (a slow disk never holds the index), by the functions below.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ErrorCode, OrthancError
from ..index.base import Attachment, Transaction
from ..model.enums import FileContentType, MetadataType, ResourceType
from ..model.ids import is_public_id
from ..storage.accessor import NONE as NO_COMPRESSION
from .context import ServerContext
from .resources import inline_connection, lookup_in, unknown

if TYPE_CHECKING:
    import pydicom

_META = (MetadataType.TRANSFER_SYNTAX, MetadataType.SOP_CLASS_UID, MetadataType.PIXEL_DATA_OFFSET)


@dataclass(frozen=True, slots=True)
class InstanceFile:
    """The DICOM file of one instance, with what the index knows of it (metadata fields are
    empty unless asked for with `meta=True`)."""

    id: int
    public_id: str
    uuid: str
    size: int
    """Uncompressed size in bytes."""
    transfer_syntax: str = ""
    sop_class: str = ""
    pixel_offset: int | None = None
    """Where the pixel data element starts in the file, when the index knows it."""


def files_in(txn: Transaction, ids: Sequence[int], meta: bool = False) -> list[InstanceFile]:
    """Inside a transaction: the DICOM file of each instance of `ids`, in their order."""
    rows = {r.id: r.public_id for r in txn.resources(ids)}
    atts = txn.attachments(ids)
    values = txn.metadata(ids, _META) if meta else {}
    out = []
    for i in ids:
        m = values.get(i, {})
        offset = m.get(MetadataType.PIXEL_DATA_OFFSET)
        for a in atts.get(i, ()):
            if a.content_type == FileContentType.DICOM:
                out.append(
                    InstanceFile(
                        i,
                        rows.get(i, ""),
                        a.uuid,
                        a.uncompressed_size,
                        m.get(MetadataType.TRANSFER_SYNTAX, ""),
                        m.get(MetadataType.SOP_CLASS_UID, ""),
                        int(offset) if offset and offset.isdigit() else None,
                    )
                )
    return out


def instances_under(txn: Transaction, rid: int, level: ResourceType) -> list[int]:
    """The instances of a resource (itself for an instance), in index order."""
    return [rid] if level is ResourceType.INSTANCE else txn.descendants(rid, ResourceType.INSTANCE)


async def instance_files(
    ctx: ServerContext, public_id: str, level: ResourceType | None, first_only: bool = False, meta: bool = False
) -> list[InstanceFile]:
    """The files of every instance under a resource (UNKNOWN_RESOURCE when there is none)."""

    def run(txn: Transaction) -> list[InstanceFile]:
        rid, lv = lookup_in(txn, public_id, level)
        ids = instances_under(txn, rid, lv)
        return files_in(txn, ids[:1] if first_only else ids, meta)

    return await ctx.index.read(run)


async def files_by_public_id(ctx: ServerContext, public_ids: Sequence[str]) -> dict[str, InstanceFile]:
    """The file of each instance that still exists among `public_ids`."""

    def run(txn: Transaction) -> dict[str, InstanceFile]:
        found: dict[str, InstanceFile] = {}
        for pid in public_ids:
            hit = txn.lookup(pid)
            if hit is not None:
                for f in files_in(txn, [hit[0]]):
                    found[pid] = f
        return found

    return await ctx.index.read(run)


def read(ctx: ServerContext, f: InstanceFile) -> bytes:
    """Worker thread: the bytes of a file (inflated when stored compressed)."""
    return ctx.storage.read(f.uuid, FileContentType.DICOM)


def read_head(ctx: ServerContext, f: InstanceFile, end: int) -> bytes:
    """Worker thread: the first `end` bytes of a file."""
    return ctx.storage.read_range(f.uuid, FileContentType.DICOM, 0, end)


def path(ctx: ServerContext, f: InstanceFile) -> str | None:
    """A path to read the file from directly (None: compressed, or not on a filesystem)."""
    return ctx.storage.path(f.uuid, FileContentType.DICOM)


def dataset(ctx: ServerContext, f: InstanceFile, with_pixels: bool = True) -> pydicom.Dataset:
    """Worker thread: the file parsed (header only unless `with_pixels`)."""
    import pydicom

    return pydicom.dcmread(io.BytesIO(read(ctx, f)), stop_before_pixels=not with_pixels, force=True)


def _dicom_attachment_in(txn: Transaction, public_id: str) -> Attachment:
    hit = txn.attachment_of(public_id, FileContentType.DICOM) if is_public_id(public_id) else None
    if hit is None or hit[1] is not ResourceType.INSTANCE:
        raise unknown(public_id)
    if hit[2] is None:
        raise OrthancError(ErrorCode.INEXISTENT_FILE, "No DICOM attachment")
    return hit[2]


async def dicom_attachment(ctx: ServerContext, public_id: str) -> Attachment:
    """The DICOM file of an instance."""
    return await ctx.index.read(lambda txn: _dicom_attachment_in(txn, public_id))


def dicom_file_blocking(
    ctx: ServerContext, public_id: str, max_size: int | None = None
) -> tuple[Attachment, bytes | None]:
    """Look up and read an instance's DICOM file in the calling worker thread (one hop for the
    hot GET /file path); the bytes are None when the file is larger than `max_size`."""
    att = ctx.index.read_blocking(lambda txn: _dicom_attachment_in(txn, public_id))
    if max_size is not None and att.uncompressed_size > max_size:
        return att, None
    return att, _read_dicom_attachment(ctx, att)


def attachment_path(ctx: ServerContext, att: Attachment) -> str | None:
    """A path to send an attachment from as it is (None: compressed, or not on a filesystem)."""
    return ctx.storage.path(att.uuid, att.content_type)


def read_attachment_blocking(ctx: ServerContext, att: Attachment) -> bytes:
    """Worker thread: an attachment's content."""
    return ctx.storage.read(att.uuid, att.content_type)


async def dicom_file(
    ctx: ServerContext, public_id: str, max_size: int | None = None
) -> tuple[Attachment, bytes | None]:
    """An instance's DICOM file: the lookup is a short index read (on the event loop), and a
    small file already in the page cache is read there too (`read_cached`); otherwise the file
    is read in one worker-thread hop. The bytes are None when the file is larger than
    `max_size` (the caller sends it from its path)."""
    att = await ctx.index.read(lambda txn: _dicom_attachment_in(txn, public_id), short=True)
    data = _read_cached(ctx, att)
    if data is not None:
        return att, data
    if max_size is not None and att.uncompressed_size > max_size:
        return att, None
    return att, await ctx.run(_read_dicom_attachment, ctx, att)


def dicom_file_now(ctx: ServerContext, public_id: str) -> tuple[Attachment, bytes | None]:
    """`dicom_file` done on the event loop at once (HTTP fast lane): the bytes only when the
    file is small and in the page cache (None otherwise); BlockingIOError when the index cannot
    answer without waiting."""
    att = ctx.index.read_now_cached(
        (_dicom_attachment_in, public_id),
        lambda txn: _dicom_attachment_in(txn, public_id),
        _attachment_size,
        single=True,  # Transaction.attachment_of
    )
    return att, _read_cached(ctx, att)


@dataclass(frozen=True)
class LaneFileSource:
    """What a reader in C of the event loop's thread needs to answer `dicom_file_now` itself
    (web/_lane.c)."""

    connection: object
    """The index's own SQLite connection of this thread (a sqlite3.Connection)."""
    database: str
    """The database file's real path (checked against the connection's handle)."""
    root: str
    """The storage folder holding uncompressed files as `ab/cd/uuid`."""
    max_size: int
    """The largest file to read on the event loop."""
    content_type: int = FileContentType.DICOM
    level: int = ResourceType.INSTANCE
    plain_compression: int = NO_COMPRESSION


def lane_file_source(ctx: ServerContext, on_close: Callable[[], None]) -> LaneFileSource | None:
    """The LaneFileSource of this server, or None when the index or the storage area has no
    such thing (PostgreSQL, memory storage, no RWF_NOWAIT). `on_close` runs before the
    connection closes (its statements finalized first)."""
    plain = ctx.storage.plain_root()
    found = None if plain is None else inline_connection(ctx, on_close)
    if plain is None or found is None:
        return None
    return LaneFileSource(found[0], found[1], plain[0], plain[1])


def _attachment_size(att: Attachment) -> int:
    return 400  # the Attachment, its strings, the key and the entry


def _read_cached(ctx: ServerContext, att: Attachment) -> bytes | None:
    return ctx.storage.read_file_cached(att.uuid, att.content_type, att.compression, att.uncompressed_size)


def _read_dicom_attachment(ctx: ServerContext, att: Attachment) -> bytes:
    try:
        return ctx.storage.read_file(att.uuid, att.content_type, att.compression)
    except FileNotFoundError as exc:
        raise OrthancError(ErrorCode.INEXISTENT_FILE, "The DICOM file is missing from the storage area") from exc


async def read_dicom(ctx: ServerContext, public_id: str) -> bytes:
    """The bytes of an instance's DICOM file (`dicom_file`)."""
    _att, data = await dicom_file(ctx, public_id)
    assert data is not None
    return data
