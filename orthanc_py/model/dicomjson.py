"""Orthanc's JSON renderings of a DICOM dataset: `/tags`, `/header` and the `/content` walk.

Orthanc 1.10/1.12 render values through DCMTK, so the rules below mirror what DCMTK does while
loading a file (trailing padding dropped, odd lengths completed with a NUL, numbers printed like
`boost::lexical_cast`) and what Orthanc's `FromDcmtkBridge::DatasetToJson` does with them.  The
functions only read the raw bytes pydicom kept (`RawDataElement`), so pixel data is never decoded.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import (
    DicomDictionary,
    dictionary_VR,
    get_entry,
    get_private_entry,
    keyword_for_tag,
    tag_for_keyword,
)
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from .maintags import MAIN_TAGS as _MAIN_TAGS

KEYWORD_OF_MAIN_TAG = {t: name for tags in _MAIN_TAGS.values() for t, name in tags.items()}

Format = Literal["full", "simplify", "short"]
FORMATS: tuple[str, ...] = ("full", "simplify", "short")

MAX_TAG_LENGTH = 256
"""Orthanc's ORTHANC_MAXIMUM_TAG_LENGTH: longer UTF-8 values become "TooLong" (null)."""

UNKNOWN_TAG_NAME = "Unknown Tag & Data"  # DCMTK's DcmTag_ERROR_TagName
PIXEL_DATA = 0x7FE00010

_STRING_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)
# Binary VRs Orthanc skips without DicomToJsonFlags_IncludeBinary (IsBinaryTag) and renders as null.
_BINARY_VRS = frozenset({"OB", "OW", "UN", "OB or OW", "OW or OB", "ox"})
# VRs with no JSON rendering in Orthanc's ConvertLeafElement switch: always null.
_NULL_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "SV", "UV", "ox"})
# (struct code, item size) of numeric VRs; SV/UV/OV/OD/OL only matter for byte-swapping /content.
_NUMERIC: dict[str, tuple[str, int]] = {
    "US": ("H", 2),
    "SS": ("h", 2),
    "UL": ("I", 4),
    "SL": ("i", 4),
    "FL": ("f", 4),
    "FD": ("d", 8),
}
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_SWAP_SIZE: dict[str, int] = {
    "US": 2, "SS": 2, "OW": 2, "AT": 2,
    "UL": 4, "SL": 4, "FL": 4, "OF": 4, "OL": 4,
    "FD": 8, "OD": 8, "SV": 8, "UV": 8, "OV": 8,
}  # fmt: skip

# DCMTK 3.6.7's dictionary (the one Orthanc 1.10/1.12 ship with) types these UL tags as the
# internal "up" pointer VR, which Orthanc renders as null.
_DCMTK_POINTERS = frozenset({0x00041200, 0x00041202, 0x00041400, 0x00041420, 0x00041504})
_DCMTK_ONLY_NAMES = {0x00060001: "CurrentFrameFunctionalGroupsSequence"}

# Public tags that pydicom's (newer) dictionary knows but DCMTK 3.6.7's does not: Orthanc names
# them "Unknown Tag & Data".  The second set was retired after DCMTK 3.6.7, so no "RETIRED_" prefix.
_NEWER_THAN_DCMTK: frozenset[int] = frozenset(
    (
        0x0008001C, 0x00080202, 0x00080400, 0x00080401, 0x00080402, 0x00080403, 0x00080404, 0x00080405,
        0x00080406, 0x00080407, 0x00080408, 0x00080409, 0x0008040A, 0x0008040B, 0x0008040C, 0x0008040D,
        0x0008040E, 0x0008040F, 0x00080410, 0x00080411, 0x00080412, 0x00080413, 0x00080414, 0x00080415,
        0x00080416, 0x00080417, 0x00080418, 0x00080419, 0x0008041A, 0x0008041B, 0x0008041C, 0x0008041D,
        0x0008041E, 0x0008041F, 0x00080420, 0x00080421, 0x00080422, 0x00080423, 0x00080424, 0x00080425,
        0x00080426, 0x00080427, 0x00080428, 0x00080429, 0x00081112, 0x0008119B, 0x00102161, 0x00120022,
        0x00120023, 0x00120032, 0x00120041, 0x00120043, 0x00120054, 0x00120055, 0x00120073, 0x00140200,
        0x00140201, 0x00140202, 0x00140203, 0x00140204, 0x00140205, 0x00140206, 0x00140207, 0x00180061,
        0x00181204, 0x00181205, 0x00189445, 0x00189821, 0x00189822, 0x00189823, 0x00189824, 0x00189825,
        0x00189826, 0x00189828, 0x00189829, 0x0018982A, 0x0018982B, 0x0018982C, 0x0018982D, 0x0018982E,
        0x0018982F, 0x00189830, 0x00189831, 0x00189832, 0x00189833, 0x00189834, 0x00189835, 0x00189836,
        0x0022000F, 0x00280020, 0x00283001, 0x003A0317, 0x003A0318, 0x003A0319, 0x003A0320, 0x003A0321,
        0x003A0322, 0x003A0323, 0x003A0324, 0x003A0325, 0x003A0326, 0x003A0327, 0x003A0328, 0x003A0329,
        0x003A032A, 0x003A032B, 0x003A032C, 0x003A032D, 0x003A032E, 0x00480114, 0x00480115, 0x00480116,
        0x00480117, 0x00700315, 0x04000315, 0x30020100, 0x30020101, 0x30020102, 0x30020103, 0x30020104,
        0x30020105, 0x30020106, 0x30020107, 0x30020108, 0x30020109, 0x3002010A, 0x3002010B, 0x3002010C,
        0x3002010D, 0x3002010E, 0x3002010F, 0x30020110, 0x30020111, 0x30020112, 0x30020113, 0x30020114,
        0x30020115, 0x30020116, 0x30020117, 0x30020118, 0x30020119, 0x3002011A, 0x3002011B, 0x3002011C,
        0x3002011D, 0x3002011E, 0x3002011F, 0x30020120, 0x30020121, 0x30020122, 0x30020123, 0x30020124,
        0x30020125, 0x30020126, 0x30020127, 0x30020128, 0x30020129, 0x3002012A, 0x3002012B, 0x3002012C,
        0x3002012D, 0x3002012E, 0x3002012F, 0x30020130, 0x30020131, 0x30020132, 0x30020133, 0x30020134,
        0x30020135, 0x3006002D, 0x3006002E, 0x3006004B, 0x3006004C, 0x3006004D, 0x3006004E, 0x3006004F,
        0x300800A1, 0x300800A2, 0x300800A3, 0x300800A4, 0x300A0054, 0x300A068B, 0x300A0782, 0x300A079F,
        0x300A07A0, 0x300A07A1, 0x300C0129, 0x301000A0, 0x7FE00003,
    )
)  # fmt: skip

_RETIRED_AFTER_DCMTK: frozenset[int] = frozenset(
    (
        0x00380004, 0x00701807, 0x00701808, 0x30040010, 0x30040012, 0x30060085, 0x30060088, 0x3008002B,
        0x30100090,
    )
)  # fmt: skip


# --- character sets ------------------------------------------------------------------------------

# Orthanc's GetDicomEncoding(), as Python codecs ("ISO_IR 6" is treated as UTF-8 by Orthanc).
_CODECS: dict[str, str] = {
    "ISO_IR 6": "utf-8",
    "ISO 2022 IR 6": "utf-8",
    "ISO_IR 192": "utf-8",
    "ISO_IR 100": "latin-1",
    "ISO 2022 IR 100": "latin-1",
    "ISO_IR 101": "iso8859_2",
    "ISO 2022 IR 101": "iso8859_2",
    "ISO_IR 109": "iso8859_3",
    "ISO 2022 IR 109": "iso8859_3",
    "ISO_IR 110": "iso8859_4",
    "ISO 2022 IR 110": "iso8859_4",
    "ISO_IR 148": "iso8859_9",
    "ISO 2022 IR 148": "iso8859_9",
    "ISO_IR 144": "iso8859_5",
    "ISO 2022 IR 144": "iso8859_5",
    "ISO_IR 127": "iso8859_6",
    "ISO 2022 IR 127": "iso8859_6",
    "ISO_IR 126": "iso8859_7",
    "ISO 2022 IR 126": "iso8859_7",
    "ISO_IR 138": "iso8859_8",
    "ISO 2022 IR 138": "iso8859_8",
    "ISO_IR 166": "tis_620",
    "ISO 2022 IR 166": "tis_620",
    "ISO_IR 13": "shift_jis",
    "ISO 2022 IR 13": "shift_jis",
    "ISO 2022 IR 87": "iso2022_jp",
    "ISO 2022 IR 159": "iso2022_jp_2",
    "ISO 2022 IR 149": "iso_ir_149",
    "ISO 2022 IR 58": "iso_ir_58",
    "GB18030": "gb18030",
    "GBK": "gbk",
}
_DEFAULT_CODEC = "latin-1"  # Orthanc's "DefaultEncoding" configuration option defaults to Latin1
_DELIMITERS = {ord(c) for c in "\\\r\n\t\f^="}


class _Charset:
    """Decoder for one dataset, chosen the way Orthanc's DetectEncoding() does."""

    __slots__ = ("codec", "terms")

    def __init__(self, value: str | None) -> None:
        self.codec: str | None = _DEFAULT_CODEC  # None: unsupported charset, keep ASCII only
        self.terms: list[str] = []  # several terms: ISO 2022 code extensions, decoded by pydicom
        if value is None:
            return
        tokens = [t.strip() for t in value.split("\\")]
        for token in tokens:
            if token:
                self.codec = _CODECS.get(token.upper())
                break
        if len(tokens) > 1 and self.codec is not None:
            self.terms = tokens

    def decode(self, data: bytes) -> str:
        if self.codec is None:
            return "".join(chr(b) for b in data if 32 <= b < 127)
        if self.terms:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return decode_bytes(data, convert_encodings(self.terms), _DELIMITERS)
        if self.codec == "latin-1" or data.isascii():
            return data.decode("latin-1")
        return data.decode(self.codec, errors="replace")


_ASCII = _Charset("ISO_IR 999")


# --- raw access to elements ------------------------------------------------------------------------


@dataclass(slots=True)
class _Raw:
    """One element as DCMTK sees it: VR, value bytes as stored, byte order."""

    vr: str
    value: bytes
    little: bool
    undefined_length: bool = False


def _implicit_vr(tag: int, creator: str | None) -> str:
    """The VR DCMTK assigns to an element read with implicit VR (dictionary or UN)."""
    group, elem = tag >> 16, tag & 0xFFFF
    entry = DicomDictionary.get(tag)
    if entry is not None:
        vr = str(entry[0])
    elif group % 2 == 1:
        if elem == 0:
            return "UL"
        if 0x10 <= elem <= 0xFF:
            return "LO"
        if creator is None:
            return "UN"
        try:
            vr = str(get_private_entry(tag, creator)[0])
        except KeyError:
            return "UN"
    elif elem == 0:
        return "UL"
    else:
        try:
            vr = str(dictionary_VR(tag))
        except KeyError:
            return "UN"
    if " or " in vr:  # ambiguous (US or SS, OB or OW...): DCMTK's default is the first one
        vr = "OW" if vr.startswith("OB") else vr.split(" or ")[0]
    return vr


def _raw(ds: Dataset, tag: int, creator: str | None, charset: str | list[str] | None) -> _Raw | Sequence:
    """Raw bytes of a leaf, or the pydicom Sequence of an SQ element."""
    elem = ds.get_item(BaseTag(tag))
    if isinstance(elem, RawDataElement):
        vr = elem.VR or _implicit_vr(tag, creator)
        if vr == "SQ":
            return ds[tag].value  # pydicom parses the items
        return _Raw(vr, bytes(elem.value or b""), elem.is_little_endian, elem.length == 0xFFFFFFFF)
    assert isinstance(elem, DataElement)
    if elem.VR == "SQ":
        return elem.value
    return _Raw(elem.VR, _encode(elem, charset), True, elem.is_undefined_length)


def _encode(elem: DataElement, charset: str | list[str] | None) -> bytes:
    """Value bytes of an element pydicom already converted (explicit VR little endian)."""
    if elem.value is None or elem.value == "" or elem.value == []:
        return b""
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_data_element(fp, elem, charset)
    data = fp.getvalue()
    body = data[12 if elem.VR in _LONG_VRS else 8 :]
    if elem.is_undefined_length:
        return body[:-8] if body.endswith(b"\xfe\xff\xdd\xe0\x00\x00\x00\x00") else body
    return body


def _charset_value(ds: Dataset) -> str | None:
    if 0x00080005 not in ds:
        return None
    elem = ds.get_item(BaseTag(0x00080005))
    if isinstance(elem, RawDataElement):
        return bytes(elem.value or b"").decode("latin-1")
    value = elem.value
    if value is None or isinstance(value, str):
        return value
    return "\\".join(str(v) for v in value)  # MultiValue


def _creators(ds: Dataset) -> dict[tuple[int, int], str]:
    """Private creators declared in this item, keyed by (group, block)."""
    found: dict[tuple[int, int], str] = {}
    for tag in ds.keys():  # iterating a Dataset itself would convert every element
        group, elem = tag >> 16, tag & 0xFFFF
        if group % 2 == 1 and 0x10 <= elem <= 0xFF:
            item = ds.get_item(tag)
            value = item.value
            if isinstance(value, bytes | bytearray):
                text = bytes(value).rstrip(b" \0").split(b"\0")[0].decode("latin-1")
            else:
                text = "" if value is None else str(value).rstrip(" \0")
            found[(group, elem)] = text
    return found


def _creator_of(tag: int, creators: dict[tuple[int, int], str]) -> str | None:
    group, elem = tag >> 16, tag & 0xFFFF
    if group % 2 == 0 or elem < 0x1000:
        return None
    return creators.get((group, elem >> 8))


# --- names ---------------------------------------------------------------------------------------------


def tag_name(tag: int, creator: str | None = None) -> str:
    """The name DCMTK 3.6.7 (hence Orthanc) gives to a tag, "Unknown Tag & Data" if none."""
    group, elem = tag >> 16, tag & 0xFFFF
    if group % 2 == 1:
        if group in (1, 3, 5, 7):
            if elem == 0:
                return "IllegalGroupLength"
            return "IllegalPrivateCreator" if elem <= 0xFF else UNKNOWN_TAG_NAME
        if elem == 0:
            return "PrivateGroupLength"
        if 0x10 <= elem <= 0xFF:
            return "PrivateCreator"
        if creator:
            try:
                description = str(get_private_entry(tag, creator)[2])
            except KeyError:
                return UNKNOWN_TAG_NAME
            return "".join(c for c in description if c.isalnum()) or UNKNOWN_TAG_NAME
        return UNKNOWN_TAG_NAME
    if tag in KEYWORD_OF_MAIN_TAG:  # Orthanc names its main DICOM tags itself
        return KEYWORD_OF_MAIN_TAG[tag]
    if tag in _DCMTK_ONLY_NAMES:
        return _DCMTK_ONLY_NAMES[tag]
    entry = DicomDictionary.get(tag)
    if entry is not None:
        if tag in _NEWER_THAN_DCMTK:
            return UNKNOWN_TAG_NAME
        keyword = str(entry[4])
        if entry[3] == "Retired" and tag not in _RETIRED_AFTER_DCMTK:
            return "RETIRED_" + keyword
        return keyword
    if elem == 0:
        return "GenericGroupLength"
    keyword = keyword_for_tag(tag)  # repeating groups (50xx, 60xx, 7Fxx...)
    if not keyword:
        return UNKNOWN_TAG_NAME
    return "RETIRED_" + keyword if get_entry(tag)[3] == "Retired" else keyword


# --- values ----------------------------------------------------------------------------------------------


def _machine_string(raw: _Raw) -> bytes:
    """A string value after DCMTK loads it: odd length completed by a NUL, trailing padding removed."""
    value = raw.value
    if len(value) % 2:
        value += b"\0"
    return value.rstrip(b"\0" if raw.vr == "UI" else b" ")


def _number(raw: _Raw) -> str | None:
    code, size = _NUMERIC[raw.vr]
    data = raw.value
    count = len(data) // size
    if count == 0:
        return None
    if not (len(data) > size and len(data) % size == 0):
        count = 1
    values = struct.unpack(("<" if raw.little else ">") + code * count, data[: count * size])
    if raw.vr in ("FL", "FD"):
        return "\\".join(format(v, ".17g") for v in values)
    return "\\".join(str(v) for v in values)


def _leaf_value(tag: int, raw: _Raw, charset: _Charset) -> str | None:
    """Orthanc's ConvertLeafElement with DicomToJsonFlags_ConvertBinaryToNull; None means null."""
    vr = raw.vr
    if vr in _STRING_VRS:
        return charset.decode(_machine_string(raw).split(b"\0", 1)[0])
    if tag in _DCMTK_POINTERS:
        return None
    if vr in _NUMERIC:
        return _number(raw)
    if vr == "AT" and len(raw.value) >= 4:
        group, elem = struct.unpack("<HH" if raw.little else ">HH", raw.value[:4])
        return f"{group:04x},{elem:04x}"
    return None


# --- /tags and /header -------------------------------------------------------------------------------------


def _to_json(
    ds: Dataset,
    fmt: str,
    charset: _Charset,
    charset_terms: str | list[str] | None,
    header: bool,
    depth: int = 0,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    creators = _creators(ds)
    for key in sorted(ds.keys()):
        tag = int(key)
        if depth == 0 and tag > PIXEL_DATA:
            break  # DicomToJsonFlags_StopAfterPixelData, even without pixel data
        group, elem = tag >> 16, tag & 0xFFFF
        creator = _creator_of(tag, creators)
        name = tag_name(tag, creator)
        if header and (group % 2 == 1 or name == UNKNOWN_TAG_NAME):
            continue  # DicomToJsonFlags_None: no private, no unknown tags
        raw = _raw(ds, tag, creator, charset_terms)
        if isinstance(raw, Sequence):
            items = [_to_json(item, fmt, charset, charset_terms, header, depth + 1) for item in raw]
            node: Any = {"Name": name, "Type": "Sequence", "Value": items} if fmt == "full" else items
        else:
            if header and (raw.vr in _BINARY_VRS or name == UNKNOWN_TAG_NAME):
                continue  # nor binary ones
            value = _leaf_value(tag, raw, charset)
            if value is None:
                kind = "Null"
            elif len(value) > MAX_TAG_LENGTH // 4 and len(value.encode("utf-8")) > MAX_TAG_LENGTH:
                kind, value = "TooLong", None
            else:
                kind = "String"
            if fmt == "full":
                node = {"Name": name}
                if creator is not None:
                    node["PrivateCreator"] = creator
                node["Type"] = kind
                node["Value"] = value
            else:
                node = value
        if fmt == "simplify":
            out[name] = node  # duplicated names: the last one (in tag order) wins, as in Orthanc
        else:
            out[f"{group:04x},{elem:04x}"] = node
    if fmt == "simplify":
        return dict(sorted(out.items()))  # Orthanc's JSON objects are sorted by key
    return out


def _check(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")


def orthanc_tags(ds: Dataset, fmt: str = "full") -> dict[str, Any]:
    """GET /instances/{id}/tags[?simplify|?short]: every element of the dataset (file meta excluded)."""
    _check(fmt)
    value = _charset_value(ds)
    charset = _Charset(value)
    terms = [t.strip() for t in value.split("\\")] if value is not None else None
    return _to_json(ds, fmt, charset, terms, header=False)


def orthanc_header(file_meta: Dataset, fmt: str = "full") -> dict[str, Any]:
    """GET /instances/{id}/header[?simplify|?short]: the file meta group, without binary elements."""
    _check(fmt)
    return _to_json(file_meta, fmt, _ASCII, None, header=True)


# --- /content ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContentResult:
    """Answer of GET /instances/{id}/content/...: a JSON list of strings, or raw bytes.

    Raw answers are sent by Orthanc as `application/octet-stream` whatever the VR.
    """

    kind: Literal["json", "raw"]
    items: list[str] = field(default_factory=list)
    data: bytes = b""


def parse_tag(text: str) -> int:
    """Orthanc's FromDcmtkBridge::ParseTag: "gggg,eeee", "gggg-eeee", "ggggeeee" or a DCMTK name.

    Raises ValueError for an unknown name (Orthanc answers 500 "Unknown DICOM tag").
    """
    hexa = text
    if len(text) == 9 and text[4] in ",-":
        hexa = text[:4] + text[5:]
    if len(hexa) == 8 and all(c in "0123456789abcdefABCDEF" for c in hexa):
        return int(hexa, 16)
    if text in {"GenericGroupLength", "PrivateGroupLength", "PrivateCreator"}:
        raise ValueError(f"Unknown DICOM tag: {text}")
    keyword = text.removeprefix("RETIRED_")
    tag = tag_for_keyword(keyword)
    if tag is None or tag_name(tag) != text:
        for extra, name in _DCMTK_ONLY_NAMES.items():
            if name == text:
                return extra
        raise ValueError(f"Unknown DICOM tag: {text}")
    return int(tag)


def _parse_index(text: str) -> int | None:
    """boost::lexical_cast<size_t> then DCMTK's signed item number: "-1" is the last item."""
    body = text[1:] if text[:1] in "+-" else text
    if not body or not body.isdigit() or not body.isascii():
        return None
    value = int(body)
    if text.startswith("-"):
        value = -value % (1 << 64)
    if value >= 1 << 64:
        return None
    signed = value - (1 << 64) if value >= 1 << 63 else value
    return signed


def _content_bytes(raw: _Raw) -> bytes:
    """What DCMTK's getPartialValue() streams: machine strings, little-endian numbers."""
    if raw.vr in _STRING_VRS:
        value = _machine_string(raw)
        if len(value) % 2:
            value += b"\0" if raw.vr == "UI" else b" "
        return value
    size = _SWAP_SIZE.get(raw.vr)
    if raw.little or size is None:
        return raw.value
    data = raw.value[: len(raw.value) - len(raw.value) % size]
    return b"".join(data[i : i + size][::-1] for i in range(0, len(data), size))


def _fragments(data: bytes) -> Iterator[bytes]:
    """Items of encapsulated pixel data, basic offset table included (Orthanc's "blocks")."""
    pos = 0
    while pos + 8 <= len(data):
        group, elem, length = struct.unpack_from("<HHI", data, pos)
        pos += 8
        if (group, elem) != (0xFFFE, 0xE000):
            return
        yield data[pos : pos + length]
        pos += length


def _pixel_data(ds: Dataset, block: str | None) -> ContentResult:
    if PIXEL_DATA not in ds:
        raise LookupError("no pixel data")
    raw = _raw(ds, PIXEL_DATA, None, None)
    if isinstance(raw, Sequence):
        raise LookupError("pixel data is a sequence")
    blocks = list(_fragments(raw.value)) if raw.undefined_length else None
    count = len(blocks) if blocks is not None else 1
    if block is None:
        return ContentResult("json", [str(i) for i in range(count)])
    index = _parse_index(block)  # lexical_cast<unsigned int>: same syntax, but 32 bits
    if index is None or not -(1 << 32) < index < 1 << 32 or index % (1 << 32) >= count:
        raise LookupError(f"no pixel data block {block}")
    index %= 1 << 32
    if blocks is not None:
        return ContentResult("raw", data=blocks[index])
    return ContentResult("raw", data=_content_bytes(raw))


def content_walk(ds: Dataset, path_parts: list[str]) -> ContentResult:
    """GET /instances/{id}/content/{path}: walk tags and item indexes like ParsedDicomFile::SendPathValue.

    No part lists the item's tags ("gggg-eeee"), a sequence lists its item indexes, a leaf gives
    its value bytes.  Raises LookupError when Orthanc answers 404 (missing tag, bad index) and
    ValueError for an unparsable tag (Orthanc: 500 "Unknown DICOM tag").
    """
    parts = [p for p in path_parts if p]
    if len(parts) in (1, 2) and parse_tag(parts[0]) == PIXEL_DATA:
        return _pixel_data(ds, parts[1] if len(parts) == 2 else None)
    item = ds
    for pos in range(len(parts) // 2):
        index = _parse_index(parts[2 * pos + 1])
        if index is None:
            raise LookupError(f"bad item index {parts[2 * pos + 1]}")
        tag = parse_tag(parts[2 * pos])
        if tag not in item:
            raise LookupError(f"no tag {parts[2 * pos]}")
        seq = _raw(item, tag, _creator_of(tag, _creators(item)), None)
        if not isinstance(seq, Sequence):
            raise LookupError(f"{parts[2 * pos]} is not a sequence")
        if index == -1:
            index = len(seq) - 1
        if not 0 <= index < len(seq):
            raise LookupError(f"no item {parts[2 * pos + 1]}")
        item = seq[index]
    if len(parts) % 2 == 0:
        return ContentResult("json", [f"{t >> 16:04x}-{t & 0xFFFF:04x}" for t in sorted(item.keys())])
    tag = parse_tag(parts[-1])
    if tag not in item:
        raise LookupError(f"no tag {parts[-1]}")
    charset = _charset_value(ds)
    terms = [t.strip() for t in charset.split("\\")] if charset is not None else None
    leaf = _raw(item, tag, _creator_of(tag, _creators(item)), terms)
    if isinstance(leaf, Sequence):
        return ContentResult("json", [str(i) for i in range(len(leaf))])
    return ContentResult("raw", data=_content_bytes(leaf))


__all__ = [
    "FORMATS",
    "MAX_TAG_LENGTH",
    "UNKNOWN_TAG_NAME",
    "ContentResult",
    "Format",
    "content_walk",
    "orthanc_header",
    "orthanc_tags",
    "parse_tag",
    "tag_name",
]
