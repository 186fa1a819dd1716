"""Metadata, attachments, labels and protection of resources, at every level (Orthanc's semantics).

Names: system metadata and attachments have Orthanc's names; user ones are named by the
`UserMetadata` / `UserContentType` configuration, or given by number (1024-65535).

Revisions (Orthanc 1.9.2+): every metadata and attachment has a revision, 0 when created and
one more at each change. A client names what it last saw as an ETag, `"<revision>-<md5 of the
value>"`: GET answers 304 to a matching `If-None-Match`; PUT and DELETE with `If-Match` fail
with 409 (ErrorCode.REVISION) unless it names the current revision. With `CheckRevisions`, a
PUT over an existing value and a DELETE without `If-Match` are 409 too.

Files are written before the index transaction and removed after it (never inside it); a
replaced or deleted attachment's file goes once the transaction has committed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ErrorCode, OrthancError
from ..index.base import Attachment, Deletion, Transaction
from ..model.enums import (
    ATTACHMENT_NAMES,
    METADATA_BY_NAME,
    METADATA_NAMES,
    USER_METADATA_MIN,
    ChangeType,
    FileContentType,
    ResourceType,
)
from ..storage.accessor import NONE, ZLIB_WITH_SIZE, md5_hex, uncompress
from .context import ServerContext, now_iso
from .recycling import recycle, storage_limits
from .resources import lookup_in, settle_deletions

USER_CONTENT_MIN = 1024
_MAX_INDEX = 65535


# ---------------------------------------------------------------- names
def metadata_type(ctx: ServerContext, name: str) -> int:
    """A metadata name or number -> its number (Orthanc: any number; unknown names are
    INEXISTENT_ITEM)."""
    if name in METADATA_BY_NAME:
        return METADATA_BY_NAME[name]
    user = ctx.settings.user_metadata.get(name)
    if user is not None:
        return user
    if name.isdigit() and int(name) <= _MAX_INDEX:
        return int(name)
    raise OrthancError(ErrorCode.INEXISTENT_ITEM)  # Orthanc gives no details


def metadata_name(ctx: ServerContext, mtype: int) -> str:
    """The name Orthanc shows for a metadata number (its number when it has none)."""
    name = METADATA_NAMES.get(mtype)
    if name is not None:
        return name
    for user, index in ctx.settings.user_metadata.items():
        if index == mtype:
            return user
    return str(mtype)


def content_type(ctx: ServerContext, name: str) -> int:
    """An attachment name or number -> its content type."""
    for number, text in ATTACHMENT_NAMES.items():
        if text == name:
            return int(number)
    user = ctx.settings.user_content_types.get(name)
    if user is not None:
        return user[0]
    if name.isdigit() and int(name) <= _MAX_INDEX:
        return int(name)
    raise OrthancError(ErrorCode.INEXISTENT_ITEM)


def content_name(ctx: ServerContext, ctype: int) -> str:
    name = ATTACHMENT_NAMES.get(ctype)
    if name is not None:
        return name
    for user, (index, _mime) in ctx.settings.user_content_types.items():
        if index == ctype:
            return user
    return str(ctype)


def content_mime(ctx: ServerContext, ctype: int) -> str:
    """The MIME type of an attachment's data (Orthanc's GetFileContentMime)."""
    for index, mime in ctx.settings.user_content_types.values():
        if index == ctype:
            return mime
    if ctype == FileContentType.DICOM:
        return "application/dicom"
    if ctype == FileContentType.DICOM_AS_JSON:
        return "application/json; charset=utf-8"
    return "application/octet-stream"


# ---------------------------------------------------------------- revisions
@dataclass(frozen=True, slots=True)
class Revision:
    """A revision named by a client: `"<revision>-<md5>"` (quotes optional)."""

    number: int
    md5: str

    @classmethod
    def parse(cls, header: str | None, name: str) -> Revision | None:
        """None when the header is absent; PARAMETER_OUT_OF_RANGE (400) when malformed (the
        details name the header as Orthanc does: "If-None-Match", but "if-match")."""
        if header is None:
            return None
        value = header.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        number, dash, md5 = value.partition("-")
        if dash and number.strip().lstrip("-").isdigit():
            return cls(int(number), md5)
        raise OrthancError(
            ErrorCode.PARAMETER_OUT_OF_RANGE,
            f'The "{name}" HTTP header should contain the ETag (revision followed by MD5 hash), but found: {value}',
        )

    def matches(self, number: int, md5: str) -> bool:
        return self.number == number and self.md5 == md5


def etag(revision: int, md5: str) -> str:
    return f'"{revision}-{md5}"'


def body_etag(revision: int, data: bytes | str) -> str:
    """The ETag of a value: its revision and the MD5 of its bytes."""
    return etag(revision, md5_hex(data.encode("utf-8") if isinstance(data, str) else data))


def _check(expected: Revision | None, number: int, md5: str) -> None:
    if expected is not None and not expected.matches(number, md5):
        raise OrthancError(ErrorCode.REVISION)


def _missing_revision(ctx: ServerContext) -> Revision | None:
    """What a PUT/DELETE without If-Match checks: nothing, or (CheckRevisions) an impossible
    revision that only a value not existing yet passes."""
    return Revision(-1, "") if ctx.settings.check_revisions else None


# ---------------------------------------------------------------- metadata
async def list_metadata(ctx: ServerContext, public_id: str, level: ResourceType) -> dict[int, str]:
    def run(txn: Transaction) -> dict[int, str]:
        rid, _ = lookup_in(txn, public_id, level)
        return txn.metadata([rid])[rid]

    return await ctx.index.read(run, short=True)


async def get_metadata(ctx: ServerContext, public_id: str, level: ResourceType, mtype: int) -> tuple[str, int] | None:
    """(value, revision), or None when the resource has no such metadata."""

    def run(txn: Transaction) -> tuple[str, int] | None:
        rid, _ = lookup_in(txn, public_id, level)
        return txn.metadata_entry(rid, mtype)

    return await ctx.index.read(run, short=True)


def _writable_metadata(mtype: int) -> bool:
    return mtype >= USER_METADATA_MIN


async def set_metadata(
    ctx: ServerContext, public_id: str, level: ResourceType, mtype: int, value: str, expected: Revision | None
) -> int:
    """Set a user metadata; the new revision. FORBIDDEN_ACCESS for a system metadata."""
    if not _writable_metadata(mtype):
        raise OrthancError(ErrorCode.FORBIDDEN_ACCESS, "Cannot modify a system metadata")
    if expected is None:
        expected = _missing_revision(ctx)
    date = now_iso()

    def run(txn: Transaction) -> int:
        rid, _ = lookup_in(txn, public_id, level)
        old = txn.metadata_entry(rid, mtype)
        revision = 0
        if old is not None:
            _check(expected, old[1], md5_hex(old[0].encode("utf-8")))
            revision = old[1] + 1
        txn.set_metadata(rid, mtype, value, revision)
        txn.log_change(int(ChangeType.UPDATED_METADATA), level, public_id, date)
        return revision

    revision = await ctx.index.write(run)
    _updated(ctx, level, public_id)
    return revision


def _updated(ctx: ServerContext, level: ResourceType, public_id: str) -> None:
    """A metadata or an attachment changed: Lua's OnUpdated{Patient,Study,Series,Instance}."""
    if ctx.lua is not None:
        ctx.lua.updated(level, public_id)


async def delete_metadata(
    ctx: ServerContext, public_id: str, level: ResourceType, mtype: int, expected: Revision | None
) -> bool:
    """Delete a user metadata; False when it was absent."""
    if not _writable_metadata(mtype):
        raise OrthancError(ErrorCode.FORBIDDEN_ACCESS, "Cannot delete a system metadata")
    if expected is None and ctx.settings.check_revisions:
        raise OrthancError(ErrorCode.REVISION, 'HTTP header "If-Match" is missing, as "CheckRevisions" is "true"')
    date = now_iso()

    def run(txn: Transaction) -> bool:
        rid, _ = lookup_in(txn, public_id, level)
        old = txn.metadata_entry(rid, mtype)
        if old is None:
            return False
        _check(expected, old[1], md5_hex(old[0].encode("utf-8")))
        txn.delete_metadata(rid, mtype)
        txn.log_change(int(ChangeType.UPDATED_METADATA), level, public_id, date)
        return True

    deleted = await ctx.index.write(run)
    if deleted:
        _updated(ctx, level, public_id)
    return deleted


# ---------------------------------------------------------------- attachments
async def list_attachments(ctx: ServerContext, public_id: str, level: ResourceType) -> list[int]:
    def run(txn: Transaction) -> list[int]:
        rid, _ = lookup_in(txn, public_id, level)
        return [a.content_type for a in txn.attachments([rid])[rid]]

    return await ctx.index.read(run, short=True)


@dataclass(frozen=True, slots=True)
class Found:
    """An attachment with the resource it belongs to."""

    resource_id: int
    attachment: Attachment


async def find_attachment(ctx: ServerContext, public_id: str, level: ResourceType, ctype: int) -> Found:
    """The attachment, with its MD5s filled in when `StoreMD5ForAttachments` asks for them
    (ingest leaves them to the first client that needs them; they are kept then)."""

    def run(txn: Transaction) -> Found:
        rid, _ = lookup_in(txn, public_id, level)
        for a in txn.attachments([rid])[rid]:
            if a.content_type == ctype:
                return Found(rid, a)
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)

    found = await ctx.index.read(run, short=True)
    a = found.attachment
    if a.uncompressed_md5 or not ctx.storage.store_md5:
        return found
    md5, cmd5 = await ctx.run(_digests, ctx, a)
    await ctx.index.write(lambda txn: txn.set_attachment_md5(found.resource_id, ctype, a.uuid, md5, cmd5))
    return Found(
        found.resource_id,
        Attachment(
            a.content_type,
            a.uuid,
            a.compressed_size,
            a.uncompressed_size,
            a.compression,
            md5,
            cmd5,
            a.revision,
        ),
    )


def _read_raw(ctx: ServerContext, a: Attachment) -> bytes:
    try:
        return ctx.storage.read_raw(a.uuid, a.content_type)
    except FileNotFoundError as exc:
        raise OrthancError(ErrorCode.INEXISTENT_FILE, "The file is missing from the storage area") from exc


def _digests(ctx: ServerContext, a: Attachment) -> tuple[str, str]:
    blob = _read_raw(ctx, a)
    cmd5 = md5_hex(blob)
    if a.compression == NONE:
        return cmd5, cmd5
    return md5_hex(_inflate(blob)), cmd5


def _inflate(blob: bytes) -> bytes:
    try:
        return uncompress(blob)
    except ValueError as exc:
        raise OrthancError(ErrorCode.CORRUPTED_FILE, str(exc)) from exc


def read_attachment(ctx: ServerContext, a: Attachment) -> bytes:
    """Worker thread: the content of an attachment (inflated when stored compressed)."""
    blob = _read_raw(ctx, a)
    return blob if a.compression == NONE else _inflate(blob)


def read_attachment_cached(ctx: ServerContext, a: Attachment) -> bytes | None:
    """On the event loop: the content of a small uncompressed attachment already in the page
    cache (never waits for a disk; None otherwise: read it in a worker thread)."""
    return ctx.storage.read_file_cached(a.uuid, a.content_type, a.compression, a.uncompressed_size)


def read_attachment_raw(ctx: ServerContext, a: Attachment) -> bytes:
    """Worker thread: the bytes as stored (`compressed-data`)."""
    return _read_raw(ctx, a)


def read_attachment_range(ctx: ServerContext, a: Attachment, start: int, end: int, raw: bool) -> bytes:
    """Worker thread: bytes [start, end) of the content (or of the stored bytes when `raw`)."""
    if raw or a.compression == NONE:
        try:
            return ctx.storage.area.read_range(a.uuid, a.content_type, start, end)
        except FileNotFoundError as exc:
            raise OrthancError(ErrorCode.INEXISTENT_FILE, "The file is missing from the storage area") from exc
    return read_attachment(ctx, a)[start:end]


def verify_md5(ctx: ServerContext, a: Attachment) -> bool:
    """Worker thread: the stored bytes and, for a compressed file, its content match their MD5s."""
    blob = _read_raw(ctx, a)
    if md5_hex(blob) != a.compressed_md5:
        return False
    if a.compression == NONE:
        return True
    return md5_hex(_inflate(blob)) == a.uncompressed_md5


def _user_attachment(ctype: int) -> bool:
    return ctype >= USER_CONTENT_MIN


async def put_attachment(
    ctx: ServerContext, public_id: str, level: ResourceType, ctype: int, data: bytes, expected: Revision | None
) -> int:
    """Store a user attachment (replacing the previous one); the new revision."""
    if not _user_attachment(ctype):
        raise OrthancError(ErrorCode.FORBIDDEN_ACCESS, "Cannot modify a system attachment")
    if expected is None:
        expected = _missing_revision(ctx)

    def exists(txn: Transaction) -> None:
        lookup_in(txn, public_id, level)

    await ctx.index.read(exists, short=True)  # an unknown resource stores no file (404, Orthanc 1.12.1+)
    stored = await ctx.run(ctx.storage.write, data, ctype, None, ctx.storage.store_md5)
    date = now_iso()

    limits = storage_limits(ctx)
    recycled: list[Deletion] = []

    def run(txn: Transaction) -> tuple[int, Attachment | None]:
        rid, _ = lookup_in(txn, public_id, level)
        old = next((a for a in txn.attachments([rid])[rid] if a.content_type == ctype), None)
        revision = 0
        if old is not None:
            _check(expected, old.revision, old.uncompressed_md5)
            revision = old.revision + 1
        if limits.active:  # as Orthanc: the old file out, room made, the patient of `rid` kept
            if old is not None:
                txn.delete_attachment(rid, ctype)
            recycled[:] = recycle(txn, limits, stored.compressed_size, _patient_of(txn, rid))
        txn.add_attachment(
            rid,
            Attachment(
                ctype,
                stored.uuid,
                stored.compressed_size,
                stored.uncompressed_size,
                stored.compression,
                stored.uncompressed_md5,
                stored.compressed_md5,
                revision,
            ),
        )
        txn.log_change(int(ChangeType.UPDATED_ATTACHMENT), level, public_id, date)
        return revision, old

    try:
        revision, old = await ctx.index.write(run)
    except BaseException:
        await ctx.run(ctx.storage.remove, stored.uuid, ctype)
        raise
    if old is not None:
        await ctx.run(ctx.storage.remove, old.uuid, old.content_type)
    await settle_deletions(ctx, recycled)
    _updated(ctx, level, public_id)
    return revision


def _patient_of(txn: Transaction, resource_id: int) -> int:
    rid: int | None = resource_id
    while rid is not None:
        row = txn.resources([rid])[0]
        if row.parent_id is None:
            return row.id
        rid = row.parent_id
    return resource_id


async def delete_attachment(
    ctx: ServerContext, public_id: str, level: ResourceType, ctype: int, expected: Revision | None
) -> bool:
    """Delete a user attachment; False when absent."""
    if not _user_attachment(ctype):
        raise OrthancError(ErrorCode.FORBIDDEN_ACCESS, "Cannot delete a system attachment")
    if expected is None and ctx.settings.check_revisions:
        raise OrthancError(ErrorCode.REVISION, 'HTTP header "If-Match" is missing, as "CheckRevisions" is "true"')
    date = now_iso()

    def run(txn: Transaction) -> Attachment | None:
        rid, _ = lookup_in(txn, public_id, level)
        old = next((a for a in txn.attachments([rid])[rid] if a.content_type == ctype), None)
        if old is None:
            return None
        _check(expected, old.revision, old.uncompressed_md5)
        txn.delete_attachment(rid, ctype)
        txn.log_change(int(ChangeType.UPDATED_ATTACHMENT), level, public_id, date)
        return old

    old = await ctx.index.write(run)
    if old is None:
        return False
    await ctx.run(ctx.storage.remove, old.uuid, old.content_type)
    _updated(ctx, level, public_id)
    return True


async def change_compression(
    ctx: ServerContext, public_id: str, level: ResourceType, ctype: int, compressed: bool
) -> None:
    """POST .../compress and .../uncompress: rewrite the file in the other form (same content,
    next revision, as Orthanc stores it anew); nothing happens when it is already in that form."""
    found = await find_attachment(ctx, public_id, level, ctype)
    a = found.attachment
    target = ZLIB_WITH_SIZE if compressed else NONE
    if a.compression == target:
        return
    data = await ctx.run(read_attachment, ctx, a)
    stored = await ctx.run(ctx.storage.write, data, ctype, compressed, ctx.storage.store_md5)
    date = now_iso()

    def run(txn: Transaction) -> bool:
        current = next((x for x in txn.attachments([found.resource_id])[found.resource_id] if x.uuid == a.uuid), None)
        if current is None:  # changed meanwhile: leave the new version alone
            return False
        txn.add_attachment(
            found.resource_id,
            Attachment(
                ctype,
                stored.uuid,
                stored.compressed_size,
                stored.uncompressed_size,
                stored.compression,
                stored.uncompressed_md5,
                stored.compressed_md5,
                a.revision + 1,
            ),
        )
        if _user_attachment(ctype):
            txn.log_change(int(ChangeType.UPDATED_ATTACHMENT), level, public_id, date)
        return True

    try:
        replaced = await ctx.index.write(run)
    except BaseException:
        await ctx.run(ctx.storage.remove, stored.uuid, ctype)
        raise
    await ctx.run(ctx.storage.remove, *((a.uuid, ctype) if replaced else (stored.uuid, ctype)))


# ---------------------------------------------------------------- labels
def check_label(label: str) -> str:
    """Orthanc's labels: 1-64 characters among letters, digits, `_` and `-` (else 400)."""
    if not label or len(label) > 64 or not all(c.isascii() and (c.isalnum() or c in "_-") for c in label):
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Invalid label: {label}")
    return label


async def list_labels(ctx: ServerContext, public_id: str, level: ResourceType) -> list[str]:
    def run(txn: Transaction) -> list[str]:
        rid, _ = lookup_in(txn, public_id, level)
        return txn.labels([rid])[rid]

    return await ctx.index.read(run, short=True)


async def modify_label(ctx: ServerContext, public_id: str, level: ResourceType, label: str, add: bool) -> None:
    check_label(label)

    def run(txn: Transaction) -> None:
        rid, _ = lookup_in(txn, public_id, level)
        if add:
            txn.add_label(rid, label)
        else:
            txn.remove_label(rid, label)

    await ctx.index.write(run)


async def all_labels(ctx: ServerContext) -> list[str]:
    """Every label in use (GET /tools/labels)."""
    return await ctx.index.read(lambda txn: txn.all_labels())


# ---------------------------------------------------------------- protection
async def is_protected(ctx: ServerContext, patient_id: str) -> bool:
    """Whether a patient is protected from recycling."""

    def run(txn: Transaction) -> bool:
        rid, _ = lookup_in(txn, patient_id, ResourceType.PATIENT)
        return txn.is_protected(rid)

    return await ctx.index.read(run, short=True)


async def set_protected(ctx: ServerContext, patient_id: str, protected: bool) -> None:
    def run(txn: Transaction) -> None:
        rid, _ = lookup_in(txn, patient_id, ResourceType.PATIENT)
        txn.set_protected(rid, protected)

    await ctx.index.write(run)
