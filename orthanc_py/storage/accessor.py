"""Compression and MD5 over any storage area (Orthanc's StorageAccessor).

A compressed blob is Orthanc's "zlib with size" format: the uncompressed size as 8 bytes
little endian, then one zlib stream (level 6, as Orthanc's compressor); an empty file stays
empty. Files written either way by Orthanc or by us read back the same, whoever reads them.

The index records how each attachment was stored; callers that hold the attachment ask for
exactly that (`read_file`, `read_file_range`). Code that only knows a DICOM file's UUID goes
through the `StorageArea` methods: they pass straight through to the area while no compressed
file can exist (StorageCompression off and none in the index: the default, with no extra cost),
else `read` recognises a compressed DICOM file by its format and inflates it, and `path`
answers None so that nobody sends the compressed bytes as they are.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass

from ..errors import read_only_refused
from .base import StorageArea

NONE = 1
"""Orthanc's CompressionType_None."""
ZLIB_WITH_SIZE = 2
"""Orthanc's CompressionType_ZlibWithSize."""

_LEVEL = 6
_MAX_SIZE = 1 << 40
_DICOM_FILES = (1, 3)  # dicom, dicom-until-pixel-data: never themselves Orthanc-compressed blobs


def compress(data: bytes) -> bytes:
    """Orthanc's zlib-with-size encoding of `data`."""
    if not data:
        return b""
    return len(data).to_bytes(8, "little") + zlib.compress(data, _LEVEL)


def uncompress(blob: bytes) -> bytes:
    """Inverse of `compress`; ValueError on a blob that is not in that format."""
    if not blob:
        return b""
    if len(blob) < 8:
        raise ValueError("The compressed buffer is ill-formed")
    size = int.from_bytes(blob[:8], "little")
    try:
        out = zlib.decompress(blob[8:])
    except zlib.error as exc:
        raise ValueError(f"Corrupted compressed file: {exc}") from exc
    if len(out) != size:
        raise ValueError("Corrupted compressed file: size mismatch")
    return out


def _looks_compressed(blob: bytes) -> bool:
    """A zlib header after a plausible 8-byte size (RFC 1950: CMF 0x78, header % 31 == 0)."""
    return (
        len(blob) >= 10
        and blob[8] == 0x78
        and ((blob[8] << 8) | blob[9]) % 31 == 0
        and 0 < int.from_bytes(blob[:8], "little") < _MAX_SIZE
    )


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredFile:
    """What was written: the fields of an attachment row but its content type and revision."""

    uuid: str
    compressed_size: int
    uncompressed_size: int
    compression: int
    uncompressed_md5: str
    compressed_md5: str


class StorageAccessor:
    """Wraps a `StorageArea`; is one itself (see the module docstring for the UUID-only path)."""

    def __init__(
        self, area: StorageArea, compression: bool = False, store_md5: bool = True, read_only: bool = False
    ) -> None:
        self.area = area
        self.compression = compression
        self.store_md5 = store_md5
        self.read_only = read_only
        """"ReadOnly": every file is served, none is written or removed."""
        self.maybe_compressed = compression
        """True once a compressed file may exist (set at start-up from the index, and by /compress)."""

    # --- the StorageArea protocol (UUID only)
    def new_uuid(self) -> str:
        return self.area.new_uuid()

    def create(self, uuid: str, data: bytes, content_type: int) -> None:
        if self.read_only:
            raise read_only_refused()
        self.area.create(uuid, data, content_type)

    def read(self, uuid: str, content_type: int) -> bytes:
        data = self.area.read(uuid, content_type)
        if self.maybe_compressed and content_type in _DICOM_FILES and _looks_compressed(data):
            try:
                return uncompress(data)
            except ValueError:
                return data
        return data

    def read_range(self, uuid: str, content_type: int, start: int, end: int) -> bytes:
        if self.maybe_compressed:
            return self.read(uuid, content_type)[start:end]
        return self.area.read_range(uuid, content_type, start, end)

    def remove(self, uuid: str, content_type: int) -> None:
        if self.read_only:
            raise read_only_refused()
        self.area.remove(uuid, content_type)

    def path(self, uuid: str, content_type: int) -> str | None:
        return None if self.maybe_compressed else self.area.path(uuid, content_type)

    # --- attachment-aware operations
    def write(self, data: bytes, content_type: int, compressed: bool | None = None, md5: bool = False) -> StoredFile:
        """Store `data` (compressed when `compressed`, by default as StorageCompression says);
        MD5s are computed when `md5` (ingest leaves them to be computed on demand)."""
        if self.read_only:
            raise read_only_refused()
        if compressed is None:
            compressed = self.compression
        blob = compress(data) if compressed else data
        if compressed:
            self.maybe_compressed = True
        uuid = self.area.new_uuid()
        self.area.create(uuid, blob, content_type)
        digest = md5_hex(data) if md5 else ""
        blob_digest = (md5_hex(blob) if compressed else digest) if md5 else ""
        return StoredFile(uuid, len(blob), len(data), ZLIB_WITH_SIZE if compressed else NONE, digest, blob_digest)

    def read_raw(self, uuid: str, content_type: int) -> bytes:
        """The bytes as stored (compressed or not)."""
        return self.area.read(uuid, content_type)

    def read_file(self, uuid: str, content_type: int, compression: int) -> bytes:
        """The content of an attachment stored with `compression`."""
        blob = self.area.read(uuid, content_type)
        if compression == NONE:
            return blob
        return uncompress(blob)

    def read_file_range(self, uuid: str, content_type: int, compression: int, start: int, end: int) -> bytes:
        """Bytes [start, end) of an attachment's content (a compressed one is inflated first)."""
        if compression == NONE:
            return self.area.read_range(uuid, content_type, start, end)
        return uncompress(self.area.read(uuid, content_type))[start:end]

    def read_file_cached(self, uuid: str, content_type: int, compression: int, size: int) -> bytes | None:
        """An uncompressed attachment's content when the area can give it without waiting for
        a disk (`read_cached`, an optional capability: the filesystem has it); None otherwise."""
        if compression != NONE:
            return None
        read_cached = getattr(self.area, "read_cached", None)
        return None if read_cached is None else read_cached(uuid, content_type, size)

    def plain_root(self) -> tuple[str, int] | None:
        """The folder of a filesystem area holding uncompressed attachments as `ab/cd/uuid`, and
        the largest file to read on the event loop (FilesystemStorage.plain_root, an optional
        capability), else None."""
        plain_root = getattr(self.area, "plain_root", None)
        return None if plain_root is None else plain_root()

    def file_path(self, uuid: str, content_type: int, compression: int) -> str | None:
        """A path to send as it is, for an uncompressed attachment on a filesystem."""
        return self.area.path(uuid, content_type) if compression == NONE else None
