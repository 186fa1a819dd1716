"""The files and folders the WebDAV tree answers with, and its `uploads/` folder (Orthanc 1.10.1's
WebDavStorage, and the upload worker of OrthancWebDav.cpp): what clients write there is kept in
memory until it is stored as instances (a ZIP archive: each DICOM file it holds), then removed;
folders may be created there, and empty ones go after 30 s without upload.
"""

from __future__ import annotations

import datetime
import io
import logging
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import ErrorCode, OrthancError
from . import ingest
from .context import ServerContext

log = logging.getLogger("orthanc_py.webdav")

MIME_BINARY = "application/octet-stream"
MIME_DICOM = "application/dicom"
MIME_JSON = "application/json"

_EMPTY_FOLDERS_DELAY = 30.0
"""Seconds without upload after which empty folders of `uploads/` go (as Orthanc's worker)."""

_EXTENSION_MIME = {
    ".txt": "text/plain",
    ".html": "text/html",
    ".xml": "application/xml",
    ".css": "text/css",
    ".js": "application/javascript",
    ".json": MIME_JSON,
    ".nmf": MIME_JSON,
    ".pdf": "application/pdf",
    ".wasm": "application/wasm",
    ".nexe": "application/x-nacl",
    ".pexe": "application/x-pnacl",
    ".dcm": MIME_DICOM,
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".png": "image/png",
    ".pam": "image/x-portable-arbitrarymap",
    ".svg": "image/svg+xml",
    ".woff": "application/x-font-woff",
    ".woff2": "font/woff2",
    ".ico": "image/x-icon",
    ".gz": "application/gzip",
    ".zip": "application/zip",
}
"""Orthanc's MIME types by file extension (the type a file of `uploads/` is served with)."""

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_ZIP_MEMBER_MIN_LIMIT = 64 << 20
_ZIP_MEMBER_MAX_LIMIT = 2 << 30
_ZIP_MEMBER_RATIO = 200
"""A member of an uploaded ZIP is read only up to max(64 MiB, 200 x its compressed size), never
past 2 GiB: a ZIP bomb cannot make the server hold more than that at once."""


def iso_time(epoch: float) -> str:
    """`YYYY-MM-DDTHH:MM:SS` in UTC (boost's extended ISO format, to the second)."""
    return datetime.datetime.fromtimestamp(int(epoch), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def mime_of(name: str) -> str:
    """Orthanc's `AutodetectMimeType`: by the extension, lowercased."""
    dot = name.rfind(".")
    return _EXTENSION_MIME.get(name[dot:].lower(), MIME_BINARY) if dot >= 0 else MIME_BINARY


@dataclass(frozen=True, slots=True)
class Entry:
    """One item of a folder listing. Times are `iso_time` strings; None stands for "now"."""

    name: str
    folder: bool
    created: str | None = None
    modified: str | None = None
    """None: the same as `created`."""
    size: int = 0
    mime: str = MIME_BINARY


@dataclass(slots=True)
class FileContent:
    """A file of the tree. `data` is None when only its size was asked for, or when the file is
    large and to be sent from `path`."""

    mime: str
    size: int
    modified: str | None
    """None: Orthanc 1.10.1 has no time for this file (its JSON files)."""
    data: bytes | None = None
    path: str | None = None


# ---------------------------------------------------------------- the uploads folder


@dataclass(slots=True)
class _UploadFile:
    data: bytes
    mime: str
    time: float


@dataclass(slots=True)
class _UploadFolder:
    time: float = field(default_factory=time.time)
    files: dict[str, _UploadFile] = field(default_factory=dict)
    folders: dict[str, _UploadFolder] = field(default_factory=dict)

    def touch(self) -> None:
        self.time = time.time()

    def lookup(self, path: Sequence[str]) -> _UploadFolder | None:
        folder: _UploadFolder | None = self
        for name in path:
            folder = folder.folders.get(name) if folder is not None else None
        return folder

    def remove_empty(self, before: float) -> None:
        for name, sub in list(self.folders.items()):
            sub.remove_empty(before)
            if not sub.files and not sub.folders and sub.time < before:
                del self.folders[name]


def _check_name(name: str) -> None:
    if not name or "/" in name or "\\" in name or "\0" in name:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, "Bad resource name for WebDAV: " + name)


class UploadsFolder:
    """Files and folders written under `uploads/`, in memory until they are ingested (Orthanc's
    WebDavStorage). Every method runs on the event loop."""

    def __init__(self) -> None:
        self.root = _UploadFolder()
        self.last_upload = time.time()

    def _parent(self, path: Sequence[str]) -> _UploadFolder | None:
        if not path:
            raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE)
        return self.root.lookup(path[:-1])

    def clean(self) -> None:
        """Empty folders go once no file was uploaded for 30 s (Orthanc's worker removes them
        after 30 s without upload; a folder is also left alone for 30 s after it changed)."""
        now = time.time()
        if now - self.last_upload >= _EMPTY_FOLDERS_DELAY:
            self.root.remove_empty(now - _EMPTY_FOLDERS_DELAY)

    def is_folder(self, path: Sequence[str]) -> bool:
        self.clean()
        return self.root.lookup(path) is not None

    def list(self, path: Sequence[str]) -> list[Entry] | None:
        self.clean()
        folder = self.root.lookup(path)
        if folder is None:
            return None
        # Orthanc lists no MIME type for these files (its listing leaves the default)
        files = [Entry(n, False, iso_time(f.time), size=len(f.data)) for n, f in sorted(folder.files.items())]
        subs = [Entry(n, True, None, iso_time(f.time)) for n, f in sorted(folder.folders.items())]
        return files + subs

    def get(self, path: Sequence[str]) -> FileContent | None:
        parent = self._parent(path)
        f = parent.files.get(path[-1]) if parent is not None else None
        if f is None:
            return None
        return FileContent(f.mime, len(f.data), iso_time(f.time), f.data)

    def store(self, path: Sequence[str], data: bytes) -> _UploadFile | None:
        parent = self._parent(path)
        if parent is None:
            log.warning("WebDAV: no such folder for an upload")
            return None
        name = path[-1]
        _check_name(name)
        if name in parent.folders:
            return None
        f = parent.files[name] = _UploadFile(data, mime_of(name), time.time())
        parent.touch()
        return f

    def create_folder(self, path: Sequence[str]) -> bool:
        parent = self._parent(path)
        if parent is None:
            return False
        name = path[-1]
        _check_name(name)
        if name in parent.files or name in parent.folders:
            return False
        parent.folders[name] = _UploadFolder()
        parent.touch()
        return True

    def delete(self, path: Sequence[str], only: _UploadFile | None = None) -> bool:
        """Remove a file or a folder (`only`: that file, if it is still there)."""
        if not path:
            return False
        parent = self.root.lookup(path[:-1])
        if parent is None:
            return False
        name = path[-1]
        if name in parent.files and (only is None or parent.files[name] is only):
            del parent.files[name]
        elif name in parent.folders and only is None:
            del parent.folders[name]
        else:
            return False
        for i in range(len(path) - 1):  # the folders on the way changed
            folder = self.root.lookup(path[: i + 1])
            if folder is not None:
                folder.touch()
        parent.touch()
        return True


def _open_zip(data: bytes) -> zipfile.ZipFile | None:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return None


def _zip_read(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes | None:
    """One member, read up to its bound (None: past it, or unreadable)."""
    limit = min(_ZIP_MEMBER_MAX_LIMIT, max(_ZIP_MEMBER_MIN_LIMIT, _ZIP_MEMBER_RATIO * info.compress_size))
    if info.file_size > limit:
        return None
    try:
        with zf.open(info) as member:
            out = member.read(limit + 1)
    except Exception:  # BadZipFile, zlib.error, unsupported compression...: a member we cannot read
        return None
    return out if len(out) <= limit else None


async def ingest_upload(ctx: ServerContext, data: bytes) -> None:
    """Store an uploaded file: one DICOM instance, or each DICOM file of a ZIP archive
    (Orthanc 1.8.2+); files that are not DICOM are left out, with a warning."""
    origin = ingest.Origin(kind="WebDav")
    if data[:4] in _ZIP_MAGIC:
        zf = await ctx.run(_open_zip, data)
        if zf is None:
            log.warning("WebDAV: an uploaded ZIP archive cannot be read")
            return
        skipped = refused = 0
        try:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                member = await ctx.run(_zip_read, zf, info)
                if member is None:
                    skipped += 1
                elif member and not await _store_one(ctx, member, origin, quiet=True):
                    refused += 1
        finally:
            zf.close()
        if skipped or refused:
            log.warning(
                "WebDAV: of an uploaded ZIP archive, %d files were not stored (not DICOM) and %d left"
                " out (unreadable, or far larger than compressed)",
                refused,
                skipped,
            )
        return
    await _store_one(ctx, data, origin)


async def _store_one(ctx: ServerContext, data: bytes, origin: ingest.Origin, quiet: bool = False) -> bool:
    try:
        await ingest.store(ctx, data, origin)
    except OrthancError as err:
        if not quiet:
            log.warning("WebDAV: an uploaded file was not stored (%s)", err.code.message)
        return False
    return True
