"""Element values as DCMTK reads them, without pydicom: the character set chosen as Orthanc's
DetectEncoding(), trailing padding dropped, odd lengths completed with a NUL, numbers printed like
`boost::lexical_cast`, and the JSON nodes of Orthanc's /tags. The renderers of pydicom datasets
(dcmtkvalues, orthancjson) and the fast one over the file's bytes (fasttags) share them; the fast
one answers /tags without importing pydicom.
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass, field
from typing import Any

from .charsets import DICOM_CODECS, codec_of_encoding
from .dictionary import TagDictionary, dcmtk

PIXEL_DATA = 0x7FE00010
PIXEL_REPRESENTATION = 0x00280103

STRING_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)
# Binary VRs Orthanc skips without DicomToJsonFlags_IncludeBinary (IsBinaryTag) and renders as null.
BINARY_VRS = frozenset({"OB", "OW", "UN", "OB or OW", "OW or OB", "ox"})
# VRs with no JSON rendering in Orthanc's ConvertLeafElement switch: always null.
_NULL_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "SV", "UV", "ox"})
# (struct code, item size) of numeric VRs; SV/UV/OV/OD/OL only matter for byte-swapping /content.
NUMERIC: dict[str, tuple[str, int]] = {
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

# DCMTK's internal VRs for context-dependent elements, read from implicit-VR files as DCMTK does.
_IMPLICIT_OF_DCMTK_VR = {"xs": "US", "ox": "OW", "px": "OW", "lt": "OW", "up": "UL", "na": "UN"}


# --- character sets ------------------------------------------------------------------------------


_DELIMITERS = {ord(c) for c in "\\\r\n\t\f^="}


class Charset:
    """Decoder for one dataset, chosen the way Orthanc's DetectEncoding() does."""

    __slots__ = ("codec", "terms")

    def __init__(self, value: str | None, default_encoding: str = "Latin1") -> None:
        self.codec: str | None = codec_of_encoding(default_encoding)  # None: unsupported, ASCII only
        self.terms: list[str] = []  # several terms: ISO 2022 code extensions, decoded by pydicom
        if value is None:
            return
        tokens = [t.strip() for t in value.split("\\")]
        for token in tokens:
            if token:
                self.codec = DICOM_CODECS.get(token.upper())
                break
        if len(tokens) > 1 and self.codec is not None:
            self.terms = tokens

    def decode(self, data: bytes) -> str:
        if self.codec is None:
            return "".join(chr(b) for b in data if 32 <= b < 127)
        if self.terms:
            from pydicom.charset import convert_encodings, decode_bytes

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return decode_bytes(data, convert_encodings(self.terms), _DELIMITERS)
        if self.codec == "latin-1" or data.isascii():
            return data.decode("latin-1")
        return data.decode(self.codec, errors="ignore")  # Orthanc drops what does not decode


ASCII = Charset("ISO_IR 999")


# --- raw access to elements ------------------------------------------------------------------------


@dataclass(slots=True)
class Raw:
    """One element as DCMTK sees it: VR, value bytes as stored, byte order."""

    vr: str
    value: bytes
    little: bool
    undefined_length: bool = False
    padded: bool = False  # a UN element read as a string: DCMTK removed no padding


def implicit_vr(tag: int, creator: str | None, dictionary: TagDictionary) -> str:
    """The VR DCMTK assigns to an element read with implicit VR (dictionary or UN)."""
    vr = dictionary.vr(tag, creator)
    if vr is None:
        return "UN"
    return _IMPLICIT_OF_DCMTK_VR.get(vr, vr)


def signed_representation(value: object) -> bool:
    """Whether a PixelRepresentation value (raw little-endian bytes, or a number pydicom
    converted) says signed pixels: DCMTK then reads "US or SS" (xs) elements as SS."""
    if isinstance(value, bytes | bytearray):
        return len(value) >= 2 and value[0] == 1 and value[1] == 0
    return value == 1


def creator_text(value: bytes) -> str:
    """A private creator as its raw value bytes name it (padding and what follows a NUL dropped)."""
    return value.rstrip(b" \0").split(b"\0")[0].decode("latin-1")


def creator_of(tag: int, creators: dict[tuple[int, int], str]) -> str | None:
    group, elem = tag >> 16, tag & 0xFFFF
    if group % 2 == 0 or elem < 0x1000:
        return None
    return creators.get((group, elem >> 8))


# --- names ---------------------------------------------------------------------------------------------


def tag_name(tag: int, creator: str | None = None, dictionary: TagDictionary | None = None) -> str:
    """The name Orthanc gives to a tag (DCMTK's dictionary + `Dictionary`), "Unknown Tag & Data" if none."""
    return (dictionary or dcmtk()).name(tag, creator)


# --- values ----------------------------------------------------------------------------------------------


def machine_string(raw: Raw) -> bytes:
    """A string value after DCMTK loads it: odd length completed by a NUL, trailing padding removed."""
    return _machine_string(raw.vr, raw.value, raw.padded)


def _machine_string(vr: str, value: bytes, padded: bool = False) -> bytes:
    if padded:
        return value
    if len(value) % 2:
        value += b"\0"
    return value.rstrip(b"\0" if vr == "UI" else b" ")


def _number(vr: str, data: bytes, little: bool) -> str | None:
    code, size = NUMERIC[vr]
    count = len(data) // size
    if count == 0:
        return None
    if not (len(data) > size and len(data) % size == 0):
        count = 1
    values = struct.unpack(("<" if little else ">") + code * count, data[: count * size])
    if vr in ("FL", "FD"):
        return "\\".join(format(v, ".17g") for v in values)
    return "\\".join(str(v) for v in values)


def leaf_value(raw: Raw, charset: Charset, dictionary_vr: str | None) -> str | None:
    """Orthanc's ConvertLeafElement with DicomToJsonFlags_ConvertBinaryToNull; None means null."""
    return leaf_text(raw.vr, raw.value, charset, dictionary_vr, raw.little, raw.padded)


def leaf_text(
    vr: str, value: bytes, charset: Charset, dictionary_vr: str | None, little: bool = True, padded: bool = False
) -> str | None:
    """`leaf_value` of an element given by its parts (the fast renderer reads them from the file
    without building a `Raw`)."""
    if vr in STRING_VRS:
        return charset.decode(_machine_string(vr, value, padded).split(b"\0", 1)[0])
    if dictionary_vr == "up":  # DCMTK's offset pointers (DICOMDIR): no JSON rendering
        return None
    if vr in NUMERIC:
        return _number(vr, value, little)
    if vr == "AT" and len(value) >= 4:
        group, elem = struct.unpack("<HH" if little else ">HH", value[:4])
        return f"{group:04x},{elem:04x}"
    return None


@dataclass(frozen=True, slots=True)
class TagsOptions:
    """How /tags renders a dataset: the dictionary in force, `DefaultEncoding` (files without
    SpecificCharacterSet), `?whole` (tags after the pixel data too, Orthanc 1.12.4) and
    `?ignore-length` (tags rendered whatever their length)."""

    dictionary: TagDictionary = field(default_factory=dcmtk)
    default_encoding: str = "Latin1"
    whole: bool = False
    ignore_length: frozenset[int] = frozenset()


def content_bytes(raw: Raw) -> bytes:
    """What DCMTK's getPartialValue() streams: machine strings, little-endian numbers."""
    if raw.vr in STRING_VRS:
        value = machine_string(raw)
        if len(value) % 2:
            value += b"\0" if raw.vr == "UI" else b" "
        return value
    size = _SWAP_SIZE.get(raw.vr)
    if raw.little or size is None:
        return raw.value
    data = raw.value[: len(raw.value) - len(raw.value) % size]
    return b"".join(data[i : i + size][::-1] for i in range(0, len(data), size))


# --- JSON nodes of Orthanc's /tags ------------------------------------------------------------------

MAX_TAG_LENGTH = 256
"""Orthanc's ORTHANC_MAXIMUM_TAG_LENGTH: longer UTF-8 values become "TooLong" (null)."""


def sequence_node(name: str, items: list[dict[str, Any]], fmt: str) -> Any:
    """The JSON of a sequence element whose items are rendered."""
    return {"Name": name, "Type": "Sequence", "Value": items} if fmt == "full" else items


def leaf_node(tag: int, name: str, creator: str | None, value: str | None, fmt: str, options: TagsOptions) -> Any:
    """The JSON of a leaf element of value `value` (None: null): values longer than
    MAX_TAG_LENGTH bytes are "TooLong" unless `?ignore-length` names the tag."""
    if value is None:
        kind = "Null"
    elif (
        len(value) > MAX_TAG_LENGTH // 4
        and len(value.encode("utf-8")) > MAX_TAG_LENGTH
        and tag not in options.ignore_length
    ):
        kind, value = "TooLong", None
    else:
        kind = "String"
    if fmt != "full":
        return value
    node: dict[str, Any] = {"Name": name}
    if creator is not None:
        node["PrivateCreator"] = creator
    node["Type"] = kind
    node["Value"] = value
    return node


def finish_object(out: dict[str, Any], fmt: str) -> dict[str, Any]:
    """The object of one dataset, its keys (tags, or names with ?simplify) in Orthanc's order;
    duplicated names: the last one (in tag order) wins, as in Orthanc."""
    return dict(sorted(out.items())) if fmt == "simplify" else out


def simplify_full(full: dict[str, Any], fmt: str) -> dict[str, Any]:
    """A full rendering ({"gggg,eeee": {"Name", "Type", "Value"}}) turned into ?simplify (keys are
    names) or ?short (keys are tags), sequences included (Orthanc's SimplifyDicomAsJson)."""
    if fmt == "full":
        return full
    out: dict[str, Any] = {}
    for key, node in full.items():
        value = node.get("Value")
        if node.get("Type") == "Sequence" and isinstance(value, list):
            value = [simplify_full(item, fmt) for item in value]
        out[node.get("Name", key) if fmt == "simplify" else key] = value
    return dict(sorted(out.items())) if fmt == "simplify" else out
