"""Ingest's fast path: the facts of `parsing.parse` from one pass over the raw bytes.

`parse` costs ~0.5 ms per file, mostly in building a pydicom Dataset; ingest needs ~0.1 ms.
`parse_fast` walks the element headers itself (the same walk as `parsing.check_structure`,
so truncated files fail the same way) and decodes only the main tags, reproducing pydicom's
value conversion plus `parsing.element_text`. Whenever pydicom might read the file
differently (big endian, deflate, code extensions, unusual VRs or values, VR mismatches) it
returns None and the caller takes the pydicom path: it never guesses.
"""

from __future__ import annotations

import re
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ErrorCode, OrthancError
from . import dicomfile as ps
from . import ids as idmod
from . import maintags as mt
from .charsets import codec_of_encoding
from .dicomfile import ParsedInstance, bad_file, expected_instances
from .enums import ResourceType

_LONG_VRS = ps._LONG_VRS
_UNDEFINED = ps._UNDEFINED
_REFUSED_SYNTAXES = frozenset((ps.EXPLICIT_VR_BE, ps.DEFLATED, "1.2.840.10008.1.2.4.95"))  # big endian, deflated
_EXPLICIT_HEAD = struct.Struct("<HH2sH")
_IMPLICIT_HEAD = struct.Struct("<HHI")
_U32 = struct.Struct("<I")
_SIZES = {b"US": 2, b"SS": 2, b"UL": 4, b"SL": 4, b"FL": 4, b"AT": 4, b"FD": 8, b"SV": 8, b"UV": 8}
_VALID_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split()
)
"""The two-letter VRs pydicom converts (`pydicom.values.converters`)."""
_PIXEL_TAGS = frozenset((0x7FE00010, 0x7FE00009, 0x7FE00008))  # pydicom's stop_before_pixels set
_DELIMITERS = frozenset((0xFFFEE00D, 0xFFFEE0DD))
_UID_CHARS = re.compile(r"[0-9.]+")

# pydicom's own tables, written out: ingest runs without importing pydicom (~100 ms and ~30 MB
# with numpy and the pixel plugins), which the files the fast path leaves to it load on first use.
# tests/unit/test_fastparse.py checks each against pydicom.
_WANTED: dict[int, bytes] = {t: vr.encode() for t, vr in mt.DICTIONARY_VR.items()}
"""Tags read at top level (the main tags, SOP Class UID, Specific Character Set, Bits Allocated),
with the VR pydicom's dictionary gives them in implicit VR files."""

_CHARSETS: dict[str, str] = {
    "": "iso8859",
    "ISO_IR 6": "iso8859",
    "ISO_IR 100": "latin_1",
    "ISO_IR 101": "iso8859_2",
    "ISO_IR 109": "iso8859_3",
    "ISO_IR 110": "iso8859_4",
    "ISO_IR 126": "iso_ir_126",
    "ISO_IR 127": "iso_ir_127",
    "ISO_IR 138": "iso_ir_138",
    "ISO_IR 144": "iso_ir_144",
    "ISO_IR 148": "iso_ir_148",
    "ISO_IR 166": "iso_ir_166",
    "ISO_IR 192": "UTF8",
}
"""pydicom's `python_encoding` of the single-byte ISO_IR sets and UTF-8 (and of no character set);
ISO_IR 13 (shift_jis codec) decodes multi-byte, so excluded."""


def _private_syntaxes() -> Sequence[str]:
    """The transfer syntaxes registered with pydicom (none while pydicom is not loaded)."""
    return getattr(sys.modules.get("pydicom.uid"), "PrivateTransferSyntaxes", ())


# How pydicom converts each VR (pydicom.values.converters), for the VRs handled here.
_PLAIN = frozenset((b"AS", b"CS", b"DA", b"DT", b"TM"))  # latin-1, split, strip padding
_TEXT = frozenset((b"SH", b"LO", b"UC"))  # character set, split
_SINGLE = frozenset((b"ST", b"LT", b"UT"))  # character set, no split
_INTS = {b"US": "<H", b"SS": "<h", b"UL": "<L", b"SL": "<l"}
_HANDLED = _PLAIN | _TEXT | _SINGLE | _INTS.keys() | {b"PN", b"IS", b"DS", b"AE", b"UI"}
_IS_PART = re.compile(r" *(?:[+-]?[0-9]{1,15})? *")  # longer: pydicom may store a float
_DS_PART = re.compile(r" *(?:[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)? *")


class Fallback(Exception):
    """The file needs the pydicom path."""


def _meta(data: bytes) -> tuple[int, str | None]:
    """`parsing._dataset_start`, refusing meta elements pydicom would read with another VR."""
    if len(data) < 132 or data[128:132] != b"DICM":
        return 0, None
    pos, n, ts = 132, len(data), None
    while pos + 8 <= n:
        group, elem, vr, length = _EXPLICIT_HEAD.unpack_from(data, pos)
        if group != 0x0002:
            break
        if vr not in _VALID_VRS or length % _SIZES.get(vr, 1):
            raise Fallback  # pydicom converts some meta values, and fails on these
        head = 8
        if vr in _LONG_VRS:
            if pos + 12 > n:
                raise ValueError("truncated file meta information")
            (length,) = _U32.unpack_from(data, pos + 8)
            head = 12
        if elem == 0x0010:
            if vr != b"UI":
                raise Fallback
            ts = data[pos + head : pos + head + length].decode("latin-1").rstrip(" \x00")
        pos += head + length
    if pos > n:
        raise ValueError("truncated file meta information")
    return pos, ts


def dataset_syntax(data: bytes) -> tuple[int, str, bool]:
    """(dataset offset, transfer syntax, implicit VR), when pydicom would agree on the encoding."""
    start, ts = _meta(data)
    n = len(data)
    if ts is None:
        if start == 0 and data[:2] == b"\x02\x00":
            raise Fallback  # pydicom reads a header-less file meta; check_structure does not
        ts = ps._guess_syntax(data, start)
        if start + 6 <= n:  # pydicom's own guess must match
            group = data[start] | data[start + 1] << 8
            pydicom_explicit = data[start + 4 : start + 6] in _VALID_VRS
            if pydicom_explicit != (ts != ps.IMPLICIT_VR_LE) or (pydicom_explicit and group >= 1024):
                raise Fallback
    elif not _UID_CHARS.fullmatch(ts) or ts in _REFUSED_SYNTAXES or ts in _private_syntaxes():
        raise Fallback
    implicit = ts == ps.IMPLICIT_VR_LE
    if start + 6 <= n:  # pydicom switches VR mode (with a warning) when the first element disagrees
        b0, b1 = data[start + 4], data[start + 5]
        if (not (0x40 < b0 < 0x5B and 0x40 < b1 < 0x5B)) != implicit:
            raise Fallback
    return start, ts, implicit


def _header(data: bytes, pos: int, implicit: bool) -> tuple[int, bytes, int, int]:
    """(tag, VR, value length, header size) of the element at `pos`, read as `parsing._walk` does."""
    if implicit:
        group, elem, length = _IMPLICIT_HEAD.unpack_from(data, pos)
        return (group << 16) | elem, b"", length, 8
    group, elem, vr, length = _EXPLICIT_HEAD.unpack_from(data, pos)
    if group == 0xFFFE:
        return (group << 16) | elem, b"", _U32.unpack_from(data, pos + 4)[0], 8
    if vr in _LONG_VRS:
        if pos + 12 > len(data):
            raise ValueError("truncated element header")
        return (group << 16) | elem, vr, _U32.unpack_from(data, pos + 8)[0], 12
    return (group << 16) | elem, vr, length, 8


MAX_DEPTH = 64
"""Nesting the fast path reads itself; real files stay far below (pydicom's recursive reader
gives up near 190 levels)."""


def _undefined(data: bytes, pos: int, tag: int, vr: bytes, implicit: bool, depth: int = 0) -> int:
    """End of an undefined-length value that pydicom parses as a sequence, even before pixel data.

    Only the shape pydicom reads exactly like `parsing._walk_items` passes: items with exact
    lengths, VR mode as pydicom guesses it per item, empty delimiters; anything else falls back.
    """
    if implicit:  # pydicom: a sequence if the dictionary says so, or if a private value starts with an item
        from pydicom.datadict import DicomDictionary

        entry = DicomDictionary.get(tag)
        if not (entry[0] == "SQ" if entry else tag >> 16 & 1 and data[pos : pos + 4] == b"\xfe\xff\x00\xe0"):
            raise Fallback
        return _items(data, pos, True, True, depth)
    if vr not in (b"SQ", b"UN"):
        raise Fallback
    return _items(data, pos, vr == b"UN", False, depth)


def _items(data: bytes, pos: int, implicit: bool, assumed: bool, depth: int = 0) -> int:
    """Items up to the sequence delimiter; `assumed`: pydicom's VR mode before its per-item check.
    Sequences nested deeper than `MAX_DEPTH` fall back: pydicom, which reads the file for every
    later request, decides whether it can be read at all."""
    if depth >= MAX_DEPTH:
        raise Fallback
    n = len(data)
    while True:
        if pos + 8 > n:
            raise Fallback
        group, elem, length = _IMPLICIT_HEAD.unpack_from(data, pos)
        pos += 8
        if (group, elem) == (0xFFFE, 0xE0DD) and not length:
            return pos
        if (group, elem) != (0xFFFE, 0xE000) or (length != _UNDEFINED and pos + length > n):
            raise Fallback
        end = None if length == _UNDEFINED else pos + length
        first = not assumed
        while end is None or pos < end:
            if pos + 8 > n:
                raise Fallback
            if end is None and data[pos : pos + 4] == b"\xfe\xff\x0d\xe0":
                if data[pos + 4 : pos + 8] != b"\0\0\0\0":
                    raise Fallback
                pos += 8
                break
            if first and (0x40 < data[pos + 4] < 0x5B and 0x40 < data[pos + 5] < 0x5B) == implicit:
                raise Fallback  # pydicom would read this item in the other VR mode
            first = False
            tag, vr, length, head = _header(data, pos, implicit)
            if tag >> 16 == 0xFFFE or not (implicit or vr in _VALID_VRS):
                raise Fallback
            pos += head
            if length == _UNDEFINED:
                pos = _undefined(data, pos, tag, vr, implicit, depth + 1)
            else:
                pos += length
        if pos > (n if end is None else end):
            raise Fallback


def _scan(data: bytes) -> tuple[int | None, str, dict[int, tuple[bytes, int, int]]]:
    """Walk the top level like `check_structure`; collect (VR, offset, length) of wanted tags."""
    start, ts, implicit = dataset_syntax(data)
    n = len(data)
    pos = start
    pixel: int | None = None
    reading = True  # pydicom's stop_before_pixels: nothing after pixel data is in its Dataset
    found: dict[int, tuple[bytes, int, int]] = {}
    while pos < n:
        if pos + 8 > n:
            raise ValueError("truncated element header")
        tag, vr, length, head = _header(data, pos, implicit)
        if tag >> 16 == 0xFFFE:
            if tag in _DELIMITERS:
                raise ValueError("unexpected delimiter")
            raise Fallback
        if reading and not implicit and vr not in _VALID_VRS:
            raise Fallback
        if tag == mt.PIXEL_DATA:
            pixel = pos
        if tag in _PIXEL_TAGS:
            reading = False
        if length != _UNDEFINED:
            if reading and tag in _WANTED:
                found[tag] = (vr or _WANTED[tag], pos + head, length)
            pos += head + length
            if pos > n:
                raise ValueError("truncated element value")
        elif not reading:
            pos = ps._walk_items(data, pos + head, True, implicit or vr == b"UN")
        elif tag in _WANTED:
            raise Fallback
        else:
            try:
                pos = _undefined(data, pos + head, tag, vr, implicit)
            except (ValueError, struct.error):
                raise Fallback from None
    return pixel, ts, found


def _decode(raw: bytes, codec: str) -> str:
    if b"\x1b" in raw:
        raise Fallback  # code extensions
    try:
        return raw.decode(codec)
    except UnicodeDecodeError:
        raise Fallback from None  # pydicom warns and substitutes characters


def _text(vr: bytes, raw: bytes, codec: str) -> str:
    """The main tag value as `element_text(pydicom value)` gives it."""
    if vr not in _HANDLED:
        raise Fallback  # UN (pydicom swaps in the dictionary VR), SQ, floats, binary
    if not raw:
        return ""
    if vr in _PLAIN or vr == b"UI":  # pydicom's UID class also strips any whitespace
        parts = raw.decode("latin-1").rstrip(" \x00").split("\\")
        return "\\".join((p.strip() if vr == b"UI" else p).rstrip(" \x00") for p in parts)
    if vr in _TEXT:
        return "\\".join(p.rstrip(" \x00") for p in _decode(raw, codec).split("\\"))
    if vr in _SINGLE:
        return _decode(raw, codec).rstrip(" \x00")
    if vr == b"PN":
        # Kept as written, with every component group: pydicom's PersonName drops trailing empty
        # groups (`Wang^XiaoDong=王^小东=`), Orthanc does not, and DICOMweb answers count them.
        parts = _decode(raw.rstrip(b"\x00 "), codec).split("\\")
        return "\\".join(p.rstrip(" \x00") for p in parts)
    if vr == b"IS" or vr == b"DS":
        text = raw.decode("latin-1")
        parts = (text.strip() if vr == b"DS" else text).rstrip(" \x00").split("\\")
        pattern = _DS_PART if vr == b"DS" else _IS_PART
        if not all(pattern.fullmatch(p) for p in parts):
            raise Fallback  # pydicom would raise, or format the number itself
        return "\\".join(p.strip(" ") for p in parts)
    if vr == b"AE":
        return "\\".join(p.strip().rstrip(" \x00") for p in raw.decode("latin-1").split("\\"))
    fmt = _INTS[vr]
    size = struct.calcsize(fmt)
    if len(raw) % size:
        raise Fallback  # pydicom raises with its own message
    return "\\".join(str(v) for v in struct.unpack(f"<{len(raw) // size}{fmt[1]}", raw))


def _charset(data: bytes, found: dict[int, tuple[bytes, int, int]], default_encoding: str) -> str:
    entry = found.get(mt.SPECIFIC_CHARACTER_SET)
    if entry is None:
        return codec_of_encoding(default_encoding)
    vr, offset, length = entry
    if vr != b"CS":
        raise Fallback
    codec = _CHARSETS.get(data[offset : offset + length].decode("latin-1").rstrip(" \x00"))
    if codec is None:
        raise Fallback  # multi-valued (code extensions), GB18030, misspelled, ...
    return codec


def parse_fast(data: bytes, default_encoding: str = "Latin1") -> ParsedInstance | None:
    """`parsing.parse(data)` without pydicom (`dataset` is None), or None for the pydicom path.

    Raises the same OrthancError as `parse` for empty, truncated and UID-less files.
    """
    if not data:
        raise bad_file("Received an empty DICOM file")
    if len(data) < 8:
        raise bad_file(f"Cannot parse an invalid DICOM file (size: {len(data)} bytes)")
    try:
        pixel_offset, ts, found = _scan(data)
        codec = _charset(data, found, default_encoding)
        texts = {tag: _text(vr, data[off : off + length], codec) for tag, (vr, off, length) in found.items()}
    except Fallback:
        return None
    except (ValueError, struct.error) as exc:
        raise bad_file(f"Cannot parse an invalid DICOM file (size: {len(data)} bytes)") from exc
    main: dict[ResourceType, dict[int, str]] = {
        level: {t: texts[t] for t in tags if t in texts} for level, tags in mt.MAIN_TAGS.items()
    }
    for t in (mt.STUDY_INSTANCE_UID, mt.SERIES_INSTANCE_UID, mt.SOP_INSTANCE_UID):
        if t not in texts:  # Orthanc 1.10.1: an absent identifier is 404 InexistentTag
            raise OrthancError(ErrorCode.INEXISTENT_TAG)
    study_uid, series_uid, sop_uid = (
        texts[t] for t in (mt.STUDY_INSTANCE_UID, mt.SERIES_INSTANCE_UID, mt.SOP_INSTANCE_UID)
    )
    if not study_uid or not series_uid or not sop_uid:
        raise bad_file("Empty Study/Series/SOP Instance UID in the DICOM file")
    inst = main[ResourceType.INSTANCE]
    index = inst.get(mt.INSTANCE_NUMBER)
    if index is None:
        index = inst.get(mt.IMAGE_INDEX)
    return ParsedInstance(
        ids=idmod.compute(texts.get(mt.PATIENT_ID, ""), study_uid, series_uid, sop_uid),
        main_tags=main,
        sop_class_uid=texts.get(mt.SOP_CLASS_UID, ""),
        transfer_syntax=ts,
        pixel_data_offset=pixel_offset,
        index_in_series=index.strip() if index is not None else None,
        expected_instances=expected_instances(main[ResourceType.SERIES]),
        pixel_data_vr=ps.pixel_data_vr(data, pixel_offset, ts, texts.get(ps.BITS_ALLOCATED)),
    )


# ---------------------------------------------------------------- native pixel data (previews)
IMAGE_PIXEL_TAGS: dict[int, bytes] = {
    0x00280002: b"US",  # Samples per Pixel
    0x00280004: b"CS",  # Photometric Interpretation
    0x00280006: b"US",  # Planar Configuration
    0x00280008: b"IS",  # Number of Frames
    0x00280010: b"US",  # Rows
    0x00280011: b"US",  # Columns
    0x00280100: b"US",  # Bits Allocated
    0x00280101: b"US",  # Bits Stored
    0x00280103: b"US",  # Pixel Representation
}
"""The Image Pixel module elements a native frame is laid out by, with their dictionary VRs."""
RENDER_TAGS: dict[int, bytes] = {
    0x00080016: b"UI",  # SOP Class UID (RT Dose has no rescale)
    0x00281050: b"DS",  # Window Center
    0x00281051: b"DS",  # Window Width
    0x00281052: b"DS",  # Rescale Intercept
    0x00281053: b"DS",  # Rescale Slope
    0x52009230: b"SQ",  # Per-frame Functional Groups
}
"""Elements /rendered reads besides the Image Pixel ones: `native_pixels` notes where they are."""
_NATIVE_SYNTAXES = frozenset((ps.IMPLICIT_VR_LE, "1.2.840.10008.1.2.1"))


@dataclass(frozen=True, slots=True)
class NativePixels:
    """Where a file's native pixel data lies, and the Image Pixel module values present."""

    numbers: dict[int, int]
    """The US and IS elements of `IMAGE_PIXEL_TAGS` found, by tag."""
    photometric: str | None
    offset: int
    """Of the Pixel Data value in the file."""
    length: int
    others: dict[int, tuple[bytes, int, int]]
    """(VR, offset, length) of the top-level `RENDER_TAGS` elements, by tag (VR b"" in implicit
    VR files, b"??" when an element is there twice)."""


def native_pixels(data: bytes) -> NativePixels | None:
    """The layout of the pixel data, when the file is little endian with native pixel data at
    top level and reads exactly as pydicom reads it; None otherwise (the caller takes the pydicom
    path: this never guesses)."""
    try:
        start, ts, implicit = dataset_syntax(data)
        if ts not in _NATIVE_SYNTAXES:
            return None
        n = len(data)
        pos = start
        values: dict[int, int] = {}
        others: dict[int, tuple[bytes, int, int]] = {}
        photometric: str | None = None
        while pos + 8 <= n:
            tag, vr, length, head = _header(data, pos, implicit)
            if tag >> 16 == 0xFFFE or not (implicit or vr in _VALID_VRS):
                return None
            pos += head
            if tag in _PIXEL_TAGS:
                if tag != mt.PIXEL_DATA or length == _UNDEFINED or pos + length > n:
                    return None
                return NativePixels(values, photometric, pos, length, others)
            if tag in RENDER_TAGS:
                others[tag] = (b"??", pos, length) if tag in others else (vr, pos, length)
            if length == _UNDEFINED:
                pos = _undefined(data, pos, tag, vr, implicit)
                continue
            if pos + length > n:
                return None
            expected = IMAGE_PIXEL_TAGS.get(tag)
            if expected is not None:
                if tag in values or (photometric is not None and tag == 0x00280004) or not (implicit or vr == expected):
                    return None
                raw = data[pos : pos + length]
                if expected == b"US":
                    if length != 2:
                        return None
                    values[tag] = raw[0] | raw[1] << 8
                else:
                    text = raw.decode("latin-1").strip(" \x00")
                    if expected == b"IS":
                        if not text.isdigit():
                            return None
                        values[tag] = int(text)
                    else:
                        photometric = text
            pos += length
    except (Fallback, ValueError, struct.error):
        return None
    return None
