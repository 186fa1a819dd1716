"""POST /instances with a ZIP archive (Orthanc 1.8.2+): every member stored as one instance,
within bounds, so a hostile archive costs neither memory nor time.

As Orthanc 1.10.1: members that are empty, not DICOM, or a DICOMDIR are skipped, the answer is
the array of what was stored. The bounds, checked before anything is stored (the archive is then
refused whole, 400, within milliseconds): at most MAX_ENTRIES members (read from the end of
central directory record before the directory itself is parsed), no member above MAX_MEMBER
bytes, and the members together at most max(RATIO_FLOOR, MAX_RATIO x the upload): a ZIP bomb
(1 GiB of zeros in 1 MB, overlapping entries) declares what it would inflate to. Members are
inflated one at a time and never past their declared size (zipfile's reader stops there and
checks the CRC), so memory holds the upload plus one member. A member whose deflate stream is
corrupt stops the upload there: 400, naming the member and how many instances were stored
before it. Nested archives are not opened (a ZIP inside is not a DICOM file), and a member whose
first bytes are not DICOM's is skipped without being inflated further.
"""

from __future__ import annotations

import asyncio
import io
import struct
import zipfile
import zlib
from typing import Any

from ..errors import ErrorCode, OrthancError
from .context import ServerContext
from .ingest import Origin, StoreResult, store_blocking

MAX_ENTRIES = 100_000
MAX_MEMBER = 4 << 30
MAX_RATIO = 100
RATIO_FLOOR = 512 << 20
MIN_DICOM = 64
"""A member smaller than this cannot hold the four UIDs of an instance: skipped unread."""

_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"


def is_zip(data: bytes) -> bool:
    return data[:4] == b"PK\x03\x04"


def _bad(details: str) -> OrthancError:
    return OrthancError(ErrorCode.BAD_FILE_FORMAT, details)


def declared_entries(data: bytes) -> int:
    """The number of members the end of central directory record declares (ZIP64's when the
    classic one is saturated); read before zipfile builds one object per member."""
    tail_start = max(0, len(data) - (1 << 16) - 22)
    pos = data.rfind(_EOCD, tail_start)
    if pos < 0 or pos + 22 > len(data):
        raise _bad("Invalid ZIP archive: no end of central directory")
    (entries,) = struct.unpack_from("<H", data, pos + 10)
    if entries == 0xFFFF and pos >= 20 and data[pos - 20 : pos - 16] == _ZIP64_LOCATOR:
        (offset,) = struct.unpack_from("<Q", data, pos - 20 + 8)
        if offset + 56 <= len(data) and data[offset : offset + 4] == _ZIP64_EOCD:
            (entries,) = struct.unpack_from("<Q", data, offset + 32)
    return int(entries)


def check(data: bytes) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
    """Open the archive and check its bounds; the members to store, in order."""
    count = declared_entries(data)
    if count > MAX_ENTRIES:
        raise _bad(f"ZIP archive refused: {count} members (at most {MAX_ENTRIES})")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as exc:
        raise _bad(f"Invalid ZIP archive: {exc}") from exc
    members = [i for i in zf.infolist() if not i.is_dir()]
    if len(members) > MAX_ENTRIES:
        raise _bad(f"ZIP archive refused: {len(members)} members (at most {MAX_ENTRIES})")
    total = 0
    for info in members:
        if info.file_size > MAX_MEMBER:
            raise _bad(f'ZIP archive refused: member "{info.filename}" would inflate to {info.file_size} bytes')
        total += info.file_size
    limit = max(RATIO_FLOOR, MAX_RATIO * len(data))
    if total > limit:
        raise _bad(
            f"ZIP archive refused: its members would inflate to {total} bytes, more than {limit} "
            f"for an upload of {len(data)} bytes (a ZIP bomb?)"
        )
    return zf, members


def looks_like_dicom(head: bytes) -> bool:
    """The first bytes of a DICOM file: "DICM" after the 128-byte preamble, or (a file without
    preamble, which Orthanc also accepts) a first element of group 0002, 0004 or 0008, little
    endian, as every instance has its SOP Class UID (0008,0016) among its first elements."""
    if head[128:132] == b"DICM":
        return True
    return len(head) >= 8 and struct.unpack_from("<H", head)[0] in (0x0002, 0x0004, 0x0008)


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, stored: int) -> bytes | None:
    """The member's bytes (never past its declared size); None when its first bytes are not
    DICOM's (a large non-DICOM member is not inflated)."""
    try:
        with zf.open(info) as f:
            head = f.read(132)
            if not looks_like_dicom(head):
                return None
            data = head + f.read(info.file_size - len(head) + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as exc:
        raise _bad(
            f'ZIP member "{info.filename}" cannot be read ({exc}); '
            f"{stored} instance(s) of the archive were stored before it"
        ) from exc
    if len(data) != info.file_size:
        raise _bad(f'ZIP member "{info.filename}" is not of its declared size; {stored} instance(s) stored before it')
    return data


_SKIPPED = (ErrorCode.BAD_FILE_FORMAT, ErrorCode.INEXISTENT_TAG)


def store_zip_blocking(
    ctx: ServerContext, data: bytes, origin: Origin, loop: asyncio.AbstractEventLoop
) -> list[StoreResult]:
    """Worker thread: store each member of the archive `data` (see the module's docstring)."""
    zf, members = check(data)
    results: list[StoreResult] = []
    with zf:
        for info in members:
            if info.file_size < MIN_DICOM:
                continue
            content = _read(zf, info, len(results))
            if content is None:
                continue
            try:
                results.append(store_blocking(ctx, content, origin, loop))
            except OrthancError as err:
                if err.code not in _SKIPPED:  # not DICOM, or a DICOMDIR (no SOP instance): skipped
                    raise
    return results


async def store_zip(ctx: ServerContext, data: bytes, origin: Origin) -> list[StoreResult]:
    """Store the members of a ZIP upload (one worker thread for the whole archive)."""
    loop: Any = asyncio.get_running_loop()
    return await ctx.run(store_zip_blocking, ctx, data, origin, loop)
