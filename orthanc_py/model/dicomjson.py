"""Orthanc's JSON renderings of a DICOM dataset: `/tags`, `/header` and the `/content` walk.

Orthanc 1.10/1.12 render values through DCMTK, so the rules below mirror what DCMTK does while
loading a file (trailing padding dropped, odd lengths completed with a NUL, numbers printed like
`boost::lexical_cast`) and what Orthanc's `FromDcmtkBridge::DatasetToJson` does with them.  The
functions only read the raw bytes pydicom kept (`RawDataElement`), so pixel data is never decoded.
"""

from __future__ import annotations

import base64
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pydicom.charset import convert_encodings, decode_bytes
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from .charsets import codec_of_encoding
from .dictionary import UNKNOWN_TAG_NAME, TagDictionary, dcmtk

Format = Literal["full", "simplify", "short"]
FORMATS: tuple[str, ...] = ("full", "simplify", "short")

MAX_TAG_LENGTH = 256
"""Orthanc's ORTHANC_MAXIMUM_TAG_LENGTH: longer UTF-8 values become "TooLong" (null)."""

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

# DCMTK's internal VRs for context-dependent elements, read from implicit-VR files as DCMTK does.
_IMPLICIT_OF_DCMTK_VR = {"xs": "US", "ox": "OW", "px": "OW", "lt": "OW", "up": "UL", "na": "UN"}


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
    "ISO 2022 IR 149": "euc_kr",
    "ISO 2022 IR 58": "iso_ir_58",
    "GB18030": "gb18030",
    "GBK": "gbk",
}


_DELIMITERS = {ord(c) for c in "\\\r\n\t\f^="}


class _Charset:
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
        return data.decode(self.codec, errors="ignore")  # Orthanc drops what does not decode


_ASCII = _Charset("ISO_IR 999")


# --- raw access to elements ------------------------------------------------------------------------


@dataclass(slots=True)
class _Raw:
    """One element as DCMTK sees it: VR, value bytes as stored, byte order."""

    vr: str
    value: bytes
    little: bool
    undefined_length: bool = False
    padded: bool = False  # a UN element read as a string: DCMTK removed no padding


def _implicit_vr(tag: int, creator: str | None, dictionary: TagDictionary) -> str:
    """The VR DCMTK assigns to an element read with implicit VR (dictionary or UN)."""
    vr = dictionary.vr(tag, creator)
    if vr is None:
        return "UN"
    return _IMPLICIT_OF_DCMTK_VR.get(vr, vr)


def _raw(
    ds: Dataset, tag: int, creator: str | None, charset: str | list[str] | None, dictionary: TagDictionary
) -> _Raw | Sequence:
    """Raw bytes of a leaf, or the pydicom Sequence of an SQ element.

    A UN element whose dictionary VR is a string VR is read as that VR, its padding kept
    (Orthanc 1.10.1 answers "100851.980000 " for a UN StudyTime); other UN elements stay UN.
    """
    elem = ds.get_item(BaseTag(tag))
    if isinstance(elem, RawDataElement):
        vr = elem.VR or _implicit_vr(tag, creator, dictionary)
        if vr == "US" and not elem.VR and dictionary.vr(tag, creator) == "xs" and _signed_pixels(ds):
            vr = "SS"  # DCMTK resolves "US or SS" with PixelRepresentation
        if vr == "SQ":
            value = ds[tag].value  # pydicom parses the items
            if isinstance(value, Sequence):
                return value
            # a sequence only the dictionary in force knows (implicit VR, private): parse it as one
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    value = convert_raw_data_element(elem._replace(VR="SQ"), ds=ds).value
            except Exception:  # not a sequence after all: its bytes are shown as UN
                value = None
            if isinstance(value, Sequence):
                return value
            vr = "UN"
        value = bytes(elem.value or b"")
        if vr == "UN" and elem.length != 0xFFFFFFFF:
            known = dictionary.vr(tag, creator)
            if known in _STRING_VRS:
                return _Raw(known, value, True, False, padded=True)
        return _Raw(vr, value, elem.is_little_endian, elem.length == 0xFFFFFFFF)
    assert isinstance(elem, DataElement)
    if elem.VR == "SQ":
        return elem.value
    return _Raw(elem.VR, _encode(elem, charset), True, elem.is_undefined_length)


def _signed_pixels(ds: Dataset) -> bool:
    elem = ds.get_item(BaseTag(0x00280103))
    if elem is None:
        return False
    value = elem.value
    if isinstance(value, bytes | bytearray):
        return len(value) >= 2 and value[0] == 1 and value[1] == 0
    return value == 1


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


def tag_name(tag: int, creator: str | None = None, dictionary: TagDictionary | None = None) -> str:
    """The name Orthanc gives to a tag (DCMTK's dictionary + `Dictionary`), "Unknown Tag & Data" if none."""
    return (dictionary or dcmtk()).name(tag, creator)


# --- values ----------------------------------------------------------------------------------------------


def _machine_string(raw: _Raw) -> bytes:
    """A string value after DCMTK loads it: odd length completed by a NUL, trailing padding removed."""
    value = raw.value
    if raw.padded:
        return value
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


def _leaf_value(raw: _Raw, charset: _Charset, dictionary_vr: str | None) -> str | None:
    """Orthanc's ConvertLeafElement with DicomToJsonFlags_ConvertBinaryToNull; None means null."""
    vr = raw.vr
    if vr in _STRING_VRS:
        return charset.decode(_machine_string(raw).split(b"\0", 1)[0])
    if dictionary_vr == "up":  # DCMTK's offset pointers (DICOMDIR): no JSON rendering
        return None
    if vr in _NUMERIC:
        return _number(raw)
    if vr == "AT" and len(raw.value) >= 4:
        group, elem = struct.unpack("<HH" if raw.little else ">HH", raw.value[:4])
        return f"{group:04x},{elem:04x}"
    return None


# --- /tags and /header -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TagsOptions:
    """How /tags renders a dataset: the dictionary in force, `DefaultEncoding` (files without
    SpecificCharacterSet), `?whole` (tags after the pixel data too, Orthanc 1.12.4) and
    `?ignore-length` (tags rendered whatever their length)."""

    dictionary: TagDictionary = field(default_factory=dcmtk)
    default_encoding: str = "Latin1"
    whole: bool = False
    ignore_length: frozenset[int] = frozenset()


def _to_json(
    ds: Dataset,
    fmt: str,
    charset: _Charset,
    charset_terms: str | list[str] | None,
    header: bool,
    options: TagsOptions,
    depth: int = 0,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    creators = _creators(ds)
    dictionary = options.dictionary
    for key in sorted(ds.keys()):
        tag = int(key)
        if depth == 0 and tag > PIXEL_DATA and not options.whole:
            break  # DicomToJsonFlags_StopAfterPixelData, even without pixel data
        group, elem = tag >> 16, tag & 0xFFFF
        creator = _creator_of(tag, creators)
        entry = dictionary.lookup(tag, creator)
        name = entry.name if entry is not None else UNKNOWN_TAG_NAME
        if header and (group % 2 == 1 or entry is None):
            continue  # DicomToJsonFlags_None: no private, no unknown tags
        raw = _raw(ds, tag, creator, charset_terms, dictionary)
        if isinstance(raw, Sequence):
            items = [_to_json(item, fmt, charset, charset_terms, header, options, depth + 1) for item in raw]
            node: Any = {"Name": name, "Type": "Sequence", "Value": items} if fmt == "full" else items
        else:
            if header and (raw.vr in _BINARY_VRS or entry is None):
                continue  # nor binary ones
            value = _leaf_value(raw, charset, entry.vr if entry is not None else None)
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


def _check(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")


def orthanc_tags(ds: Dataset, fmt: str = "full", options: TagsOptions | None = None) -> dict[str, Any]:
    """GET /instances/{id}/tags[?simplify|?short]: every element of the dataset (file meta excluded)."""
    _check(fmt)
    options = options or TagsOptions()
    value = _charset_value(ds)
    charset = _Charset(value, options.default_encoding)
    terms = [t.strip() for t in value.split("\\")] if value is not None else None
    return _to_json(ds, fmt, charset, terms, False, options)


def orthanc_header(file_meta: Dataset, fmt: str = "full", dictionary: TagDictionary | None = None) -> dict[str, Any]:
    """GET /instances/{id}/header[?simplify|?short]: the file meta group, without binary elements."""
    _check(fmt)
    return _to_json(file_meta, fmt, _ASCII, None, True, TagsOptions(dictionary or dcmtk()))


# --- DICOM JSON of /instances/{id}/file (Accept: application/dicom+json) -------------------------------


def _web_number(text: str, integer: bool) -> Any:
    """IS/DS/FL/FD values as Orthanc's DicomWebJsonVisitor writes them: integral numbers as
    integers, others as floats; a value that is not a number stays a string."""
    try:
        if integer:
            return int(text)
        value = float(text)
    except ValueError:
        return text
    if value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


def _web_strings(vr: str, text: str) -> list[Any]:
    parts = [text] if vr in ("LT", "ST", "UT", "UR") else text.split("\\")
    out: list[Any] = []
    for part in parts:
        if not part:
            out.append(None)
        elif vr == "PN":
            groups = part.split("=")
            out.append({key: g for key, g in zip(("Alphabetic", "Ideographic", "Phonetic"), groups, strict=False) if g})
        elif vr in ("IS", "DS"):
            out.append(_web_number(part.strip(), vr == "IS"))
        else:
            out.append(part)
    return out


def _web_leaf(raw: _Raw, charset: _Charset, dictionary_vr: str | None) -> dict[str, Any] | None:
    vr = raw.vr
    if vr in _STRING_VRS:
        text = charset.decode(_machine_string(raw).split(b"\0", 1)[0])
        return {"vr": vr, "Value": _web_strings(vr, text)} if text else {"vr": vr}
    if vr in _NUMERIC:
        code, size = _NUMERIC[vr]
        count = len(raw.value) // size
        if not count:
            return {"vr": vr}
        values = struct.unpack(("<" if raw.little else ">") + code * count, raw.value[: count * size])
        if vr in ("FL", "FD"):
            return {"vr": vr, "Value": [_web_number(repr(v), False) for v in values]}
        return {"vr": vr, "Value": list(values)}
    if vr == "AT":
        count = len(raw.value) // 4
        fmt = ("<" if raw.little else ">") + "HH" * count
        words = struct.unpack(fmt, raw.value[: count * 4])
        tags = [f"{words[i]:04X}{words[i + 1]:04X}" for i in range(0, len(words), 2)]
        return {"vr": vr, "Value": tags} if tags else {"vr": vr}
    if raw.undefined_length:
        # encapsulated pixel data: Orthanc 1.12.5 answers an empty inline value; UN sequences: nothing
        return {"vr": "OB", "InlineBinary": ""} if vr in ("OB", "OW") else None
    if vr == "UN" and dictionary_vr is not None:
        return None  # a UN element of a known tag whose VR is not a string: not rendered
    if vr not in ("OB", "OD", "OF", "OL", "OV", "OW", "UN"):
        vr = "UN"
    data = _content_bytes(raw)
    if len(data) % 2:
        data += b"\0"  # DCMTK completes an odd length when it loads the file
    return {"vr": vr, "InlineBinary": base64.b64encode(data).decode("ascii")} if data else {"vr": vr}


def _web_json(
    ds: Dataset, charset: _Charset, terms: str | list[str] | None, dictionary: TagDictionary
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    creators = _creators(ds)
    for key in sorted(ds.keys()):
        tag = int(key)
        if tag & 0xFFFF == 0:
            continue  # group lengths
        creator = _creator_of(tag, creators)
        raw = _raw(ds, tag, creator, terms, dictionary)
        if isinstance(raw, Sequence):
            items = [_web_json(item, charset, terms, dictionary) for item in raw]
            out[f"{tag:08X}"] = {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
            continue
        node = _web_leaf(raw, charset, dictionary.vr(tag, creator))
        if node is not None:
            out[f"{tag:08X}"] = node
    return out


def dicomweb_json(ds: Dataset, options: TagsOptions | None = None) -> dict[str, Any]:
    """The whole dataset in DICOM JSON (PS3.18 F.2) as Orthanc's REST API answers it without the
    DICOMweb plugin: binary values inline, UN elements of a known string VR rendered with that VR
    (padding kept), no group lengths, an empty sequence without "Value"."""
    options = options or TagsOptions()
    value = _charset_value(ds)
    charset = _Charset(value, options.default_encoding)
    terms = [t.strip() for t in value.split("\\")] if value is not None else None
    return _web_json(ds, charset, terms, options.dictionary)


# --- /content ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContentResult:
    """Answer of GET /instances/{id}/content/...: a JSON list of strings, or raw bytes.

    Raw answers are sent by Orthanc as `application/octet-stream` whatever the VR.
    """

    kind: Literal["json", "raw"]
    items: list[str] = field(default_factory=list)
    data: bytes = b""


def parse_tag(text: str, dictionary: TagDictionary | None = None) -> int:
    """Orthanc's FromDcmtkBridge::ParseTag: "gggg,eeee", "gggg-eeee", "ggggeeee" or a dictionary name.

    Raises ValueError for an unknown name (Orthanc answers 500 "Unknown DICOM tag").
    """
    hexa = text
    if len(text) == 9 and text[4] in ",-":
        hexa = text[:4] + text[5:]
    if len(hexa) == 8 and all(c in "0123456789abcdefABCDEF" for c in hexa):
        return int(hexa, 16)
    if text in {"GenericGroupLength", "PrivateGroupLength", "PrivateCreator", UNKNOWN_TAG_NAME}:
        raise ValueError(f"Unknown DICOM tag: {text}")
    tag = (dictionary or dcmtk()).tag_of(text)
    if tag is None:
        raise ValueError(f"Unknown DICOM tag: {text}")
    return tag


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
    raw = _raw(ds, PIXEL_DATA, None, None, dcmtk())
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


def content_walk(ds: Dataset, path_parts: list[str], dictionary: TagDictionary | None = None) -> ContentResult:
    """GET /instances/{id}/content/{path}: walk tags and item indexes like ParsedDicomFile::SendPathValue.

    No part lists the item's tags ("gggg-eeee"), a sequence lists its item indexes, a leaf gives
    its value bytes.  Raises LookupError when Orthanc answers 404 (missing tag, bad index) and
    ValueError for an unparsable tag (Orthanc: 500 "Unknown DICOM tag").
    """
    parts = [p for p in path_parts if p]
    if len(parts) in (1, 2) and parse_tag(parts[0], dictionary) == PIXEL_DATA:
        return _pixel_data(ds, parts[1] if len(parts) == 2 else None)
    item = ds
    for pos in range(len(parts) // 2):
        index = _parse_index(parts[2 * pos + 1])
        if index is None:
            raise LookupError(f"bad item index {parts[2 * pos + 1]}")
        tag = parse_tag(parts[2 * pos], dictionary)
        if tag not in item:
            raise LookupError(f"no tag {parts[2 * pos]}")
        seq = _raw(item, tag, _creator_of(tag, _creators(item)), None, dictionary or dcmtk())
        if not isinstance(seq, Sequence):
            raise LookupError(f"{parts[2 * pos]} is not a sequence")
        if index == -1:
            index = len(seq) - 1
        if not 0 <= index < len(seq):
            raise LookupError(f"no item {parts[2 * pos + 1]}")
        item = seq[index]
    if len(parts) % 2 == 0:
        return ContentResult("json", [f"{t >> 16:04x}-{t & 0xFFFF:04x}" for t in sorted(item.keys())])
    tag = parse_tag(parts[-1], dictionary)
    if tag not in item:
        raise LookupError(f"no tag {parts[-1]}")
    charset = _charset_value(ds)
    terms = [t.strip() for t in charset.split("\\")] if charset is not None else None
    leaf = _raw(item, tag, _creator_of(tag, _creators(item)), terms, dictionary or dcmtk())
    if isinstance(leaf, Sequence):
        return ContentResult("json", [str(i) for i in range(len(leaf))])
    return ContentResult("raw", data=_content_bytes(leaf))


__all__ = [
    "FORMATS",
    "MAX_TAG_LENGTH",
    "UNKNOWN_TAG_NAME",
    "ContentResult",
    "Format",
    "TagsOptions",
    "content_walk",
    "dicomweb_json",
    "orthanc_header",
    "orthanc_tags",
    "parse_tag",
    "simplify_full",
    "tag_name",
]
