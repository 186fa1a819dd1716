"""ZIP archives and DICOMDIR media of resources (Orthanc's ArchiveJob): which files go in, under
which names, and the ZIP written as a stream.

What goes in (Orthanc 1.10.1's ArchiveIndex): the resources asked for are merged into one
patient > study > series > instance tree (a resource asked for whole swallows the parts of it
asked for apart); patients, studies and series are visited in the order of their public IDs,
the instances of a series in the index's order.

Names (ArchiveIndexVisitor + HierarchicalZipWriter): a folder "PatientID PatientName", then
"AccessionNumber StudyDescription", then "Modality SeriesDescription", each reduced to ASCII
and to letters, digits, ".", "_" and single spaces ("^" is a space), "Unknown Patient" (Study,
Series) when empty, "-2", "-3"... appended to a name already used in its folder; instances are
named from the first two letters of the modality and their InstanceNumber, as Orthanc 1.12.6
("MR000003.dcm"; a counter per series for an instance without one; 7 digits after a
one-letter modality, 8 without). A media archive puts every file in "IMAGES" as
"IM0", "IM1", ... and adds a DICOMDIR (core.dicomdir) last.

The ZIP is written by the standard library's zipfile (ZIP64 where sizes or offsets need it,
data descriptors on a non-seekable output) into a sink that hands ~1 MiB chunks to the HTTP
answer through a bounded queue, or into a temporary file for an asynchronous job: memory stays
bounded whatever the archive's size. The deflate stream of each member comes from ISA-L (the
`isal` package) at its level 1 when installed: on this machine 275-300 MB/s where zlib's level 1
gives 16-25 MB/s and its default level 6 (Orthanc's) less, for the same ratio as zlib's level 1
(0.39 on real CT/MR files, 0.86 on random 12-bit pixels). zipfile offers no hook for another
compressor, so the member's compressor object is swapped right after zipfile opens the member
(`_fast_deflate`); without isal, zlib at level 1. A streaming-ZIP package was considered:
stream-zip takes a compressor, but its automatic ZIP32/ZIP64 choice ignores it and it pulls in
pycryptodome; zipfile already does ZIP64 and non-seekable output.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from ..errors import ErrorCode, OrthancError
from ..index.base import Transaction
from ..model import maintags as mt
from ..model.enums import TRANSFER_SYNTAXES, FileContentType, ResourceType
from ..model.ids import is_public_id
from .context import ServerContext
from .files import InstanceFile, files_in

if TYPE_CHECKING:
    from .dicomdir import DicomDirWriter

log = logging.getLogger("orthanc_py")

MEDIA_FOLDER = "IMAGES"
COMPRESS_LEVEL = 1
"""zlib's level when isal is not installed."""
ISAL_LEVEL = 1
CHUNK = 1 << 20
"""Bytes handed to the HTTP answer at a time."""
QUEUE_CHUNKS = 4
"""Chunks that may wait for the client: the memory an archive in flight holds, with the files
being read ahead."""
READ_PIECE = 4 << 20
"""A file larger than this is read from its path in pieces rather than whole."""
ZIP_COMMENT = b"Created by Orthanc"

_MODALITY = 0x00080060
_SERIES_DESCRIPTION = 0x0008103E
_STUDY_DESCRIPTION = 0x00081030
_LEVELS = (ResourceType.PATIENT, ResourceType.STUDY, ResourceType.SERIES, ResourceType.INSTANCE)


# -- names -------------------------------------------------------------------------------------


def to_ascii(text: str) -> str:
    """Orthanc's Toolbox::ConvertToAscii: characters outside printable ASCII are dropped."""
    return "".join(c for c in text if 32 <= ord(c) < 127)


def keep_alphanumeric(text: str) -> str:
    """HierarchicalZipWriter's file and folder names: "^" and blanks become one space; letters,
    digits, "." and "_" stay; anything else is dropped; no leading or trailing space."""
    out: list[str] = []
    last_space = False
    for c in text.replace("^", " "):
        if ord(c) > 127:
            continue
        if c.isspace():
            if not last_space:
                out.append(" ")
                last_space = True
        elif c.isalnum() or c in "._":
            out.append(c)
            last_space = False
    return "".join(out).strip()


def folder_name(level: ResourceType, tags: dict[int, str]) -> str:
    """The raw name of a patient, study or series folder (before keep_alphanumeric)."""
    if level is ResourceType.PATIENT:
        raw = f"{tags.get(mt.PATIENT_ID, '')} {tags.get(mt.PATIENT_NAME, '')}"
    elif level is ResourceType.STUDY:
        raw = f"{tags.get(mt.ACCESSION_NUMBER, '')} {tags.get(_STUDY_DESCRIPTION, '')}"
    else:
        raw = f"{tags.get(_MODALITY, '')} {tags.get(_SERIES_DESCRIPTION, '')}"
    name = to_ascii(raw).strip()
    return name or f"Unknown {level.name.capitalize()}"


def instance_format(modality: str) -> Callable[[int], str]:
    """Instance file names in a series: the first two letters of the modality, upper case, then
    the InstanceNumber (Orthanc 1.12.6; a counter when it has none) on 6 digits (7 after one
    letter, 8 without modality)."""
    prefix = "".join(c.upper() for c in modality[:2])
    width = 8 - len(prefix)
    return lambda n: f"{prefix}{n:0{width}d}.dcm"


class _Folders:
    """Names already used in each open folder (HierarchicalZipWriter's EnsureUniqueFilename)."""

    def __init__(self) -> None:
        self._stack: list[tuple[str, dict[str, int]]] = [("", {})]

    def _unique(self, raw: str) -> str:
        name = keep_alphanumeric(raw)
        used = self._stack[-1][1]
        count = used.get(name, 0) + 1
        used[name] = count
        return name if count == 1 else f"{name}-{count}"

    def open(self, raw: str) -> None:
        self._stack.append((self._unique(raw), {}))

    def close(self) -> None:
        self._stack.pop()

    def file(self, raw: str) -> str:
        path = "".join(f"{name}/" for name, _ in self._stack[1:])
        return path + self._unique(raw)


# -- what goes in ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Member:
    """One file of the archive."""

    name: str
    """Its path inside the ZIP."""
    file: InstanceFile
    dicomdir_path: str | None = None
    """For a media archive, its path as the DICOMDIR references it ("IMAGES\\IM0")."""


@dataclass
class ArchivePlan:
    members: list[Member]
    media: bool

    @property
    def instances_count(self) -> int:
        return len(self.members)

    @property
    def uncompressed_size(self) -> int:
        return sum(m.file.size for m in self.members)


@dataclass
class _Node:
    """ArchiveIndex: the children of one resource (or of the root), keyed by public ID; None
    marks a resource asked for whole, expanded later. At instance level, instances in order."""

    level: ResourceType
    resources: dict[str, _Node | None] = field(default_factory=dict)
    instances: list[int] = field(default_factory=list)

    def add(self, chain: dict[ResourceType, tuple[int, str]], level: ResourceType) -> None:
        if self.level is ResourceType.INSTANCE:
            self.instances.append(chain[ResourceType.INSTANCE][0])
            return
        pid = chain[self.level][1]
        if level is self.level:
            self.resources[pid] = None
        elif pid not in self.resources:
            child = _Node(_LEVELS[_LEVELS.index(self.level) + 1])
            child.add(chain, level)
            self.resources[pid] = child
        else:
            node = self.resources[pid]
            if node is not None:
                node.add(chain, level)


def _chain(txn: Transaction, public_id: str) -> tuple[dict[ResourceType, tuple[int, str]], ResourceType]:
    hit = txn.lookup(public_id) if is_public_id(public_id) else None
    if hit is None:
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
    rid, level = hit
    chain: dict[ResourceType, tuple[int, str]] = {level: (rid, public_id)}
    current: int | None = rid
    for lv in reversed(_LEVELS[: _LEVELS.index(level)]):
        rows = txn.resources([current]) if current is not None else []
        if not rows or rows[0].parent_id is None or rows[0].parent_public_id is None:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
        current = rows[0].parent_id
        chain[lv] = (current, rows[0].parent_public_id)
    return chain, level


def _expand(txn: Transaction, node: _Node, ids: dict[str, int]) -> None:
    """Fill the resources asked for whole with all their children, recursively."""
    whole = [pid for pid, child in node.resources.items() if child is None]
    if whole:
        kids = txn.children([ids[pid] for pid in whole])
        for pid in whole:
            child = _Node(_LEVELS[_LEVELS.index(node.level) + 1])
            for cid, cpid in kids.get(ids[pid], ()):
                ids[cpid] = cid
                if child.level is ResourceType.INSTANCE:
                    child.instances.append(cid)
                else:
                    child.resources[cpid] = None
            node.resources[pid] = child
    for sub in node.resources.values():
        if sub is not None and sub.level is not ResourceType.INSTANCE:
            _expand(txn, sub, ids)


def _plan_in(txn: Transaction, public_ids: list[str], media: bool) -> ArchivePlan:
    root = _Node(ResourceType.PATIENT)
    ids: dict[str, int] = {}
    for pid in public_ids:
        chain, level = _chain(txn, pid)
        for rid, cpid in chain.values():
            ids[cpid] = rid
        root.add(chain, level)
    _expand(txn, root, ids)

    # every folder's main tags and every instance's file, in a few bulk reads
    folders: list[int] = []
    instances: list[int] = []

    def collect(node: _Node) -> None:
        if node.level is ResourceType.INSTANCE:
            instances.extend(node.instances)
            return
        for pid in node.resources:
            folders.append(ids[pid])
            child = node.resources[pid]
            assert child is not None
            collect(child)

    collect(root)
    tags = {r.id: r.main_tags for r in txn.resources(folders)} if folders and not media else {}
    files = {f.id: f for f in files_in(txn, list(dict.fromkeys(instances)))}
    numbers: dict[int, int] = {}  # InstanceNumber of each instance that has one (file names, 1.12.6)
    if not media:
        for r in txn.resources(list(files)):
            text = r.main_tags.get(mt.INSTANCE_NUMBER, "").strip()
            if text.isdigit():
                numbers[r.id] = int(text)

    members: list[Member] = []
    names = _Folders()
    fmt = instance_format("")
    counter = 0

    def visit(node: _Node) -> None:
        nonlocal fmt, counter
        if node.level is ResourceType.INSTANCE:
            for iid in node.instances:
                f = files.get(iid)
                if f is None:  # no DICOM attachment: Orthanc leaves the instance out
                    continue
                if media:
                    name = f"IM{len(members)}"
                    members.append(Member(f"{MEDIA_FOLDER}/{name}", f, f"{MEDIA_FOLDER}\\{name}"))
                else:
                    members.append(Member(names.file(fmt(numbers.get(iid, counter))), f))
                    counter += 1
            return
        for pid in sorted(node.resources):
            child = node.resources[pid]
            assert child is not None
            if not media:
                t = tags.get(ids[pid], {})
                names.open(folder_name(node.level, t))
                if node.level is ResourceType.SERIES:
                    fmt, counter = instance_format(t.get(_MODALITY, "")), 0
            visit(child)
            if not media:
                names.close()

    visit(root)
    return ArchivePlan(members, media)


async def plan(ctx: ServerContext, public_ids: list[str], media: bool) -> ArchivePlan:
    """The files of an archive of `public_ids` (any levels), read in one index transaction;
    UnknownResource (404) when one of them does not exist."""
    return await ctx.index.read(lambda txn: _plan_in(txn, public_ids, media))


# -- options -----------------------------------------------------------------------------------


def check_transfer_syntax(uid: str) -> str:
    """The `Transcode` target: a transfer syntax Orthanc knows, else ParameterOutOfRange."""
    if uid not in TRANSFER_SYNTAXES:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Unknown transfer syntax: {uid}")
    return uid


def setting_int(ctx: ServerContext, key: str, default: int) -> int:
    value = ctx.settings.raw.get(key, default)
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return default


# -- writing -----------------------------------------------------------------------------------


class ArchiveCancelled(Exception):
    """The consumer of the archive went away (client disconnected, job cancelled)."""


class QueueSink:
    """A write-only, non-seekable file for zipfile that hands ~1 MiB chunks to the event loop
    through a bounded asyncio queue: the writing thread waits while the client is slow."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes | None]) -> None:
        self._loop = loop
        self._queue = queue
        self._buf = bytearray()
        self.cancelled = threading.Event()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self.cancelled.is_set():
            raise ArchiveCancelled()
        n = len(data)
        self._buf += data
        self.size += n
        if len(self._buf) >= CHUNK:
            self._put(bytes(self._buf))
            self._buf.clear()
        return n

    def _put(self, item: bytes | None) -> None:
        fut = asyncio.run_coroutine_threadsafe(self._queue.put(item), self._loop)
        while True:
            try:
                fut.result(timeout=0.5)
                return
            except concurrent.futures.TimeoutError:
                if self.cancelled.is_set():
                    fut.cancel()
                    raise ArchiveCancelled() from None

    def flush(self) -> None:
        pass

    def finish(self) -> None:
        """The archive is complete: send what is left and the end marker."""
        if self._buf:
            self._put(bytes(self._buf))
            self._buf.clear()
        self._put(None)


@dataclass
class WriteOptions:
    transcode: str | None = None
    extended: bool = False
    loader_threads: int = 0
    """ZipLoaderThreads: files read ahead in parallel (at least one is always read ahead)."""
    quality: int | None = None
    """The quality of a lossy "transcode" (None: the LossyQuality setting's default)."""


def _read_member(ctx: ServerContext, f: InstanceFile) -> bytes | str | None:
    """Worker thread: the bytes of a file, its path when it is large and stored plain (read in
    pieces by the writer), None when it vanished since the plan was made."""
    try:
        if f.size > READ_PIECE:
            path = ctx.storage.path(f.uuid, FileContentType.DICOM)
            if path is not None:
                return path
        return ctx.storage.read(f.uuid, FileContentType.DICOM)
    except (FileNotFoundError, OrthancError):
        return None


@dataclass(slots=True)
class _Loaded:
    """A member as a loader thread prepared it."""

    content: bytes | str | None
    """The bytes to write, a path to copy from, or None when the file vanished."""
    header: Any = None
    """Its header (pydicom), for the DICOMDIR of a media archive."""


def _load(ctx: ServerContext, member: Member, options: WriteOptions, media: bool) -> _Loaded:
    """Loader thread: read the file, transcode it and parse its header as the archive needs
    (the slow steps run here, on ZipLoaderThreads threads, while the writer compresses)."""
    content = _read_member(ctx, member.file)
    if content is None or (options.transcode is None and not media):
        return _Loaded(content)
    data = content if isinstance(content, bytes) else _read_path(content)
    if options.transcode is not None:
        data = _transcoded(data, options.transcode, options.quality)
    return _Loaded(data, _header(data) if media else None)


def _prefetch(
    ctx: ServerContext, members: list[Member], options: WriteOptions, media: bool
) -> Iterator[tuple[Member, _Loaded]]:
    """The members in order, prepared ahead by `options.loader_threads` threads (at least one)
    within a bounded window."""
    threads = max(1, options.loader_threads)
    window = threads * 2
    with concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="zip-loader") as pool:
        pending: list[tuple[Member, concurrent.futures.Future[_Loaded]]] = []
        it = iter(members)
        for m in it:
            pending.append((m, pool.submit(_load, ctx, m, options, media)))
            if len(pending) >= window:
                break
        while pending:
            m, fut = pending.pop(0)
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(_load, ctx, nxt, options, media)))
            try:
                yield m, fut.result()
            except GeneratorExit:
                for _m, other in pending:
                    other.cancel()
                raise


def _transcoded(data: bytes, target: str, quality: int | None) -> bytes:
    from ..imaging.transcode import DEFAULT_QUALITY, transcode

    try:
        return transcode(data, target, quality=quality or DEFAULT_QUALITY)
    except Exception as exc:  # Orthanc writes the original file when it cannot transcode
        log.info("cannot transcode an instance of an archive to %s: %s", target, exc)
        return data


def write_zip(
    ctx: ServerContext,
    archive: ArchivePlan,
    out: BinaryIO | QueueSink,
    options: WriteOptions,
    progress: Callable[[int], None] | None = None,
    cancelled: threading.Event | None = None,
) -> int:
    """Worker thread: write the archive into `out`; the number of files written."""
    dicomdir: DicomDirWriter | None = None
    if archive.media:  # pydicom writes the DICOMDIR: imported for the first media archive
        from .dicomdir import DicomDirWriter

        dicomdir = DicomDirWriter(options.extended)
    stamp = time.localtime()[:6]
    written = 0
    total = len(archive.members) + 1
    target: Any = out
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, allowZip64=True, compresslevel=COMPRESS_LEVEL) as zf:
        zf.comment = ZIP_COMMENT
        for i, (member, loaded) in enumerate(_prefetch(ctx, archive.members, options, archive.media)):
            if cancelled is not None and cancelled.is_set():
                raise ArchiveCancelled()
            content = loaded.content
            if content is None:
                log.warning("an instance was removed after the archive was planned: %s", member.file.public_id)
                continue
            info = zipfile.ZipInfo(member.name, stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            if isinstance(content, str):
                _write_from_path(zf, info, content, member.file.size)
            else:
                if dicomdir is not None and member.dicomdir_path is not None and loaded.header is not None:
                    _add_to_dicomdir(dicomdir, member.dicomdir_path, loaded.header)
                _write_bytes(zf, info, content)
            written += 1
            if progress is not None:
                progress(int(100 * (i + 1) / total))
        if dicomdir is not None:
            info = zipfile.ZipInfo("DICOMDIR", stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            _write_bytes(zf, info, dicomdir.encode())
    if isinstance(out, QueueSink):
        out.finish()
    return written


def _read_path(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _fast_deflate(handle: Any) -> None:
    """Give a member zipfile just opened for writing ISA-L's deflate instead of zlib's (same
    format, ~10x faster; see the module's docstring). Nothing happens without isal."""
    try:
        from isal import isal_zlib
    except ImportError:
        return
    if getattr(handle, "_compressor", None) is not None:
        handle._compressor = isal_zlib.compressobj(ISAL_LEVEL, isal_zlib.DEFLATED, -15)


def _write_bytes(zf: zipfile.ZipFile, info: zipfile.ZipInfo, data: bytes) -> None:
    info.file_size = len(data)
    with zf.open(info, "w", force_zip64=len(data) > zipfile.ZIP64_LIMIT) as dst:
        _fast_deflate(dst)
        dst.write(data)


def _write_from_path(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str, size: int) -> None:
    """A large stored file, copied into the ZIP in pieces (never whole in memory)."""
    info.file_size = size
    with open(path, "rb") as src, zf.open(info, "w", force_zip64=size > zipfile.ZIP64_LIMIT) as dst:
        _fast_deflate(dst)
        while piece := src.read(READ_PIECE):
            dst.write(piece)


def _header(data: bytes) -> Any:
    """The header of a file for its DICOMDIR record (None when it does not parse)."""
    import io

    import pydicom

    try:
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    except Exception as exc:  # a file the DICOMDIR cannot describe stays in the archive
        log.warning("cannot read the header of a file of a media archive: %s", exc)
        return None


def _add_to_dicomdir(dicomdir: Any, path: str, header: Any) -> None:
    try:
        dicomdir.add(path, header)
    except Exception as exc:  # a file the DICOMDIR cannot describe stays in the archive
        log.warning("cannot add %s to the DICOMDIR: %s", path, exc)
