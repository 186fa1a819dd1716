"""The byte structure of a DICOM file, walked without pydicom: where the dataset starts, that
no element runs past the end (Orthanc/DCMTK refuses truncated files with "Bad file format"),
where the pixel data is; and `ParsedInstance`, the facts ingest keeps about a file. Shared by
the two readers, `parsing` (pydicom) and `fastparse` (one pass over the bytes).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import ErrorCode, OrthancError
from . import ids as idmod
from . import maintags as mt
from .enums import ResourceType

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQ_END = 0xFFFEE0DD


@dataclass(slots=True)
class ParsedInstance:
    """The facts ingest needs about one DICOM file."""

    ids: idmod.PublicIds
    main_tags: dict[ResourceType, dict[int, str]]
    sop_class_uid: str
    transfer_syntax: str
    pixel_data_offset: int | None
    index_in_series: str | None
    expected_instances: int | None
    dataset: Dataset | None = field(default=None, repr=False)
    """The pydicom dataset when the slow path parsed it (None from the fast path)."""
    pixel_data_vr: str | None = None
    """Metadata PixelDataVR (Orthanc 1.12.1): the VR of the pixel data, kept only when it is not
    the one PS3.5 prescribes for the file (OB for 8 bits or encapsulated, OW otherwise)."""


def bad_file(details: str) -> OrthancError:
    return OrthancError(ErrorCode.BAD_FILE_FORMAT, details)


def _walk(data: bytes, pos: int, end: int, little: bool, implicit: bool, stop_at_end_marker: bool) -> int:
    """Walk element headers from `pos` to `end`; return where the walk stopped.

    Raises ValueError when an element's value would run past the end of the buffer.
    """
    u16 = "<H" if little else ">H"
    u32 = "<I" if little else ">I"
    n = len(data)
    while pos < end:
        if pos + 8 > n:
            raise ValueError("truncated element header")
        group, elem = struct.unpack_from(u16 + u16[1], data, pos)
        tag = (group << 16) | elem
        if tag in (_ITEM_END, _SEQ_END):
            if stop_at_end_marker:
                return pos + 8
            raise ValueError("unexpected delimiter")
        if implicit or group == 0xFFFE:
            (length,) = struct.unpack_from(u32, data, pos + 4)
            vr = b"SQ" if length == _UNDEFINED else b""
            pos += 8
        else:
            vr = data[pos + 4 : pos + 6]
            if vr in _LONG_VRS:
                if pos + 12 > n:
                    raise ValueError("truncated element header")
                (length,) = struct.unpack_from(u32, data, pos + 8)
                pos += 12
            else:
                (length,) = struct.unpack_from(u16, data, pos + 6)
                pos += 8
        if length == _UNDEFINED:
            # Sequence, encapsulated pixel data or UN of undefined length: walk items.
            pos = _walk_items(data, pos, little, implicit or vr == b"UN")
        else:
            pos += length
            if pos > n:
                raise ValueError("truncated element value")
    return pos


def _walk_items(data: bytes, pos: int, little: bool, implicit: bool) -> int:
    u32 = "<I" if little else ">I"
    u16 = "<H" if little else ">H"
    n = len(data)
    while True:
        if pos + 8 > n:
            raise ValueError("truncated sequence")
        group, elem = struct.unpack_from(u16 + u16[1], data, pos)
        (length,) = struct.unpack_from(u32, data, pos + 4)
        tag = (group << 16) | elem
        pos += 8
        if tag == _SEQ_END:
            return pos
        if tag != _ITEM:
            raise ValueError("bad sequence item")
        if length == _UNDEFINED:
            pos = _walk(data, pos, n, little, implicit, stop_at_end_marker=True)
        else:
            pos += length
            if pos > n:
                raise ValueError("truncated sequence item")


def _dataset_start(data: bytes) -> tuple[int, str | None]:
    """Offset of the dataset after the preamble and file meta, and the meta's transfer syntax.
    A File Meta Information without the preamble and "DICM" (pydicom writes such files) is read
    too, as DCMTK and pydicom do."""
    headerless = not (len(data) >= 132 and data[128:132] == b"DICM")
    if headerless and not (data[:2] == b"\x02\x00" and data[4:6].isalpha() and data[4:6].isupper()):
        return 0, None
    pos = 0 if headerless else 132
    ts: str | None = None
    n = len(data)
    while pos + 8 <= n:
        group, elem = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            break
        vr = data[pos + 4 : pos + 6]
        if headerless and not (vr.isalpha() and vr.isupper()):
            break
        if vr in _LONG_VRS:
            (length,) = struct.unpack_from("<I", data, pos + 8)
            head = 12
        else:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            head = 8
        if elem == 0x0010:
            ts = data[pos + head : pos + head + length].decode("ascii", "replace").rstrip(" \x00")
        pos += head + length
    if pos > n:
        raise ValueError("truncated file meta information")
    return pos, ts


def dataset_offset(data: bytes) -> int:
    """Where the dataset starts in a file ingest accepted (after preamble and File Meta
    Information, whichever are present)."""
    return _dataset_start(data)[0]


def check_structure(data: bytes) -> tuple[int | None, str]:
    """Validate that every element fits in the buffer; return (pixel data offset, transfer syntax).

    The offset is that of the (7FE0,0010) element header at top level, as Orthanc's
    PixelDataOffset metadata records it.
    """
    start, ts = _dataset_start(data)
    if ts is None:
        ts = _guess_syntax(data, start)
    if ts == DEFLATED:
        return None, ts
    little = ts != EXPLICIT_VR_BE
    implicit = ts == IMPLICIT_VR_LE
    pixel_offset = _find_pixel_offset(data, start, little, implicit)
    return pixel_offset, ts


def _guess_syntax(data: bytes, start: int) -> str:
    """Files without meta header: explicit VR if bytes 4-5 look like a VR (DCMTK autodetects too)."""
    vr = data[start + 4 : start + 6]
    if len(vr) == 2 and vr.isalpha() and vr.isupper():
        return "1.2.840.10008.1.2.1"
    return IMPLICIT_VR_LE


BITS_ALLOCATED = mt.tag(0x0028, 0x0100)
_ENCAPSULATED_MARK = 0xFFFFFFFF


def pixel_data_vr(data: bytes, pixel_offset: int | None, ts: str, bits_allocated: str | None) -> str | None:
    """The PixelDataVR metadata of a file, None when not needed: implicit VR files are OW by
    definition, encapsulated pixel data is OB; native pixel data in explicit VR keeps the VR
    written in the file when it differs from PS3.5 A.2 (OB for BitsAllocated <= 8, else OW)."""
    if pixel_offset is None or ts == IMPLICIT_VR_LE or pixel_offset + 12 > len(data):
        return None
    written = data[pixel_offset + 4 : pixel_offset + 6].decode("latin-1")
    if written not in ("OB", "OW"):
        return None
    (length,) = struct.unpack_from("<I" if ts != EXPLICIT_VR_BE else ">I", data, pixel_offset + 8)
    try:
        bits = int(bits_allocated) if bits_allocated else 0
    except ValueError:
        bits = 0
    if length == _ENCAPSULATED_MARK:
        return None  # encapsulated: read as OB whatever the file says
    expected = "OB" if 0 < bits <= 8 else "OW"
    return written if written != expected else None


def _find_pixel_offset(data: bytes, start: int, little: bool, implicit: bool) -> int | None:
    u16 = "<H" if little else ">H"
    pos = start
    n = len(data)
    pixel: int | None = None
    while pos < n:
        if pos + 8 > n:
            raise ValueError("truncated element header")
        group, elem = struct.unpack_from(u16 + u16[1], data, pos)
        if (group << 16) | elem == mt.PIXEL_DATA:
            pixel = pos
        nxt = _walk(data, pos, pos + 1, little, implicit, stop_at_end_marker=False)
        pos = nxt
    return pixel


def as_int(text: str | None) -> int | None:
    """An integer value of a DICOM string (IS, US rendered as text), None when not one."""
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def expected_instances(series_tags: dict[int, str]) -> int | None:
    """Orthanc's ExpectedNumberOfInstances rule: ImagesInAcquisition x NumberOfTemporalPositions,
    else NumberOfSlices x NumberOfTimeSlices, else CardiacNumberOfImages; only when positive."""
    pairs = (
        (mt.tag(0x0020, 0x1002), mt.tag(0x0020, 0x0105)),
        (mt.tag(0x0054, 0x0081), mt.tag(0x0054, 0x0101)),
    )
    for a, b in pairs:
        if a in series_tags and b in series_tags:
            x, y = as_int(series_tags[a]), as_int(series_tags[b])
            if x is None or y is None:
                return None
            return x * y if x * y > 0 else None
    cardiac = series_tags.get(mt.tag(0x0018, 0x1090))
    if cardiac is not None:
        n = as_int(cardiac)
        return n if n is not None and n > 0 else None
    return None
