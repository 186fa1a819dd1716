"""DICOM JSON (PS3.18 F.2), the two renderings Orthanc gives:

- `to_json_dict`: as Orthanc's DICOMweb plugin (WADO-RS metadata, the change feed), binary
  values by BulkDataURI; the same answer as pydicom's `Dataset.to_json_dict`, faster.
- `dicomweb_json`: as Orthanc's REST API (GET /instances/{id}/file with Accept:
  application/dicom+json), binary values inline, values read as DCMTK reads them (dcmtkvalues).

About `to_json_dict`:

A first WADO-RS /metadata of a study renders every instance: pydicom's own conversion costs
~0.45 ms per instance (a DataElement per element), most of the cold request. Here the raw
values pydicom read are converted directly for the common, unambiguous cases (text without odd
padding, numbers, binary values); every other element (sequences, implicit-VR ambiguities,
unusual character sets or values) goes through pydicom itself, so the answer is always
pydicom's. tests/unit/test_webjson.py checks equality on pydicom's test files.
"""

from __future__ import annotations

import base64
import math
import re
import struct
from collections.abc import Callable
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from .dcmtkvalues import (
    NUMERIC,
    STRING_VRS,
    Charset,
    Raw,
    TagsOptions,
    charset_value,
    content_bytes,
    creator_of,
    machine_string,
    private_creators,
    raw_element,
)
from .decimaljson import decimal_strings
from .dictionary import TagDictionary

_SPLIT = frozenset(("AE", "AS", "CS", "DA", "DT", "LO", "SH", "TM", "UC", "UI"))
_SINGLE = frozenset(("LT", "ST", "UT", "UR"))
_CHARSET_VRS = frozenset(("LO", "SH", "UC", "LT", "ST", "UT", "PN"))
_BINARY = frozenset(("OB", "OD", "OF", "OL", "OV", "OW"))
_NUMBERS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d", "UV": "Q", "SV": "q"}
_CODECS = {"": "latin-1", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8", "ISO_IR 6": "latin-1"}
_IS = re.compile(r"[+-]?[0-9]{1,12}")


class _Slow(Exception):
    """This element needs pydicom's conversion."""


def _components(raw: bytes, codec: str, split: bool) -> list[str]:
    text = raw.decode(codec).rstrip(" \x00")
    if not text:
        return []
    parts = text.split("\\") if split else [text]
    for p in parts:
        if p and (p[0] == " " or p[-1] == " " or "\x00" in p):
            raise _Slow
    return parts


def _value(vr: str, raw: bytes, codec: str) -> list[Any] | None:
    """The "Value" list of an element (None: no value), or _Slow."""
    if vr in _SPLIT or vr in _SINGLE:
        if vr not in _CHARSET_VRS and not raw.isascii():
            raise _Slow
        parts = _components(raw, codec if vr in _CHARSET_VRS else "latin-1", vr in _SPLIT)
        return [p or None for p in parts] or None
    if vr == "PN":
        parts = _components(raw, codec, True)
        if any("=" in p for p in parts):
            raise _Slow
        return [{"Alphabetic": p} if p else None for p in parts] or None
    if vr == "DS":
        if not raw.isascii():
            raise _Slow
        return _decimal_value(raw.decode("latin-1"))
    if vr == "IS":
        if not raw.isascii():
            raise _Slow
        parts = _components(raw, "latin-1", True)
        if not all(_IS.fullmatch(p) for p in parts if p):
            raise _Slow
        return [int(p) if p else None for p in parts] or None
    code = _NUMBERS.get(vr)
    if code is not None:
        size = struct.calcsize(code)
        if len(raw) % size:
            raise _Slow
        values = list(struct.unpack(f"<{len(raw) // size}{code}", raw))
        if vr in ("FL", "FD") and not all(math.isfinite(v) for v in values):
            raise _Slow
        return [_number(float(v)) for v in values] if vr in ("FL", "FD") else values or None
    raise _Slow


def _decimal_value(text: str) -> list[str | None] | None:
    """The "Value" of a DS element from its text (None: no value): the text up to a NUL, its
    trailing padding removed (as DCMTK reads it), then model.decimaljson's rule."""
    text = text.split("\x00", 1)[0].rstrip(" ")
    return decimal_strings(text) if text else None


def _decimal_element(elem: Any) -> dict[str, Any]:
    """A DS element pydicom has converted, from the text of its values (a DSfloat keeps the text
    it was read from)."""
    raw = elem.value
    items = raw if isinstance(raw, list | tuple | MultiValue) else [raw]
    value = _decimal_value("\\".join("" if v is None else str(v) for v in items))
    return {"vr": "DS"} if value is None else {"vr": "DS", "Value": value}


def _integers_with_gaps(elem: Any) -> dict[str, Any]:
    """An IS element with empty components: null for each empty one."""
    values: list[Any] = []
    raw = elem.value
    for v in raw if isinstance(raw, list | tuple | MultiValue) else [raw]:
        text = str(v).strip() if v is not None else ""
        values.append(int(float(text)) if text else None)
    return {"vr": elem.VR, "Value": values}


BulkHandler = Callable[[Any, str], str]
"""The BulkDataURI of an element, given the element and the path of the items that hold it
("" at the top level, "60031010/1/" inside the first item of (6003,1010): Orthanc's form)."""


_FLOAT_VRS = frozenset(("FL", "FD"))


def _number(v: float) -> float | int:
    """An FL or FD value as Orthanc writes it: integral values without a fraction ("4", not "4.0")."""
    return int(v) if v.is_integer() and abs(v) < 2**53 else v


def to_json_dict(
    ds: Any, bulk_handler: BulkHandler, bulk_threshold: int = 1024, _path: str = "", _codec: str | None = ""
) -> dict[str, Any]:
    """`ds.to_json_dict(bulk_data_threshold=bulk_threshold, bulk_data_element_handler=...)`, with
    sequences rendered here so that nested bulk data gets its path, DS values as strings
    (model.decimaljson) and FL/FD integers as integers."""
    charset = ds.get("SpecificCharacterSet", None) if "SpecificCharacterSet" in ds else None
    if charset is not None:
        codec = _CODECS.get(charset) if isinstance(charset, str) else None
    else:  # an item without its own character set: its parent's
        codec = "latin-1" if _codec == "" else _codec
    inline_max = (bulk_threshold // 4) * 3

    def handler_of(elem: Any) -> str:
        return bulk_handler(elem, _path)

    out: dict[str, Any] = {}
    for elem in ds.elements():
        tag = elem.tag
        key = f"{tag:08X}"
        raw = elem.value
        vr = elem.VR
        if codec is not None and getattr(elem, "is_raw", False) and isinstance(raw, bytes) and elem.is_little_endian:
            if vr is None:  # implicit VR: the dictionary's, when it has exactly one
                try:
                    vr = dictionary_VR(tag) if not (tag >> 16) & 1 else None
                except KeyError:
                    vr = None
            if vr is not None and vr != "SQ" and vr != "UN" and " " not in vr:
                try:
                    if vr in _BINARY:
                        if not raw:
                            out[key] = {"vr": vr}
                        elif len(raw) > inline_max:
                            out[key] = {"vr": vr, "BulkDataURI": bulk_handler(ds[tag], _path)}
                        else:
                            out[key] = {"vr": vr, "InlineBinary": base64.b64encode(raw).decode("ascii")}
                        continue
                    value = _value(vr, raw, codec)
                    out[key] = {"vr": vr} if value is None else {"vr": vr, "Value": value}
                    continue
                except (_Slow, UnicodeDecodeError, struct.error):
                    pass
        full = ds[tag]
        if full.VR == "SQ":
            items = [
                to_json_dict(item, bulk_handler, bulk_threshold, f"{_path}{tag:08x}/{i}/", codec)
                for i, item in enumerate(full.value, 1)
                if len(item)  # Orthanc leaves out empty items
            ]
            out[key] = {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
            continue
        if full.VR == "DS":
            out[key] = _decimal_element(full)
            continue
        try:
            rendered = full.to_json_dict(handler_of, bulk_threshold)
        except ValueError:  # pydicom cannot render an empty number among others
            rendered = _integers_with_gaps(full)
        if "Value" in rendered and isinstance(rendered["Value"], list):
            # empty components are null (Orthanc); FL/FD integers without a fraction
            rendered["Value"] = [
                None if v == "" else _number(v) if isinstance(v, float) and full.VR in _FLOAT_VRS else v
                for v in rendered["Value"]
            ]
        out[key] = rendered
    charset_json = out.get("00080005")
    if charset_json is not None and "Value" in charset_json:  # Orthanc lists the character sets only
        charset_json["Value"] = [v for v in charset_json["Value"] if v]
    return out


def sequence_json(ds: Dataset, tag: int) -> dict[str, Any] | None:
    """One sequence of `ds` in DICOM JSON, its items' text decoded with the dataset's character
    set and binary values inline (QIDO-RS answers the sequences includefield names, as Orthanc's
    DICOMweb plugin 1.17+); None when `ds` has no such element."""
    if tag not in ds:
        return None
    sub = Dataset()
    if "SpecificCharacterSet" in ds:
        sub.SpecificCharacterSet = ds.SpecificCharacterSet
    sub.add(ds[tag])
    return to_json_dict(sub, lambda _elem, _path: "", bulk_threshold=1 << 30).get(f"{tag:08X}")


# --- DICOM JSON as Orthanc's REST API writes it (GET /instances/{id}/file, Accept: application/dicom+json)


def _web_number(text: str, integer: bool) -> Any:
    """IS/FL/FD values as Orthanc's DicomWebJsonVisitor writes them: integral numbers as
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
    if vr == "DS":
        return decimal_strings(text)
    parts = [text] if vr in ("LT", "ST", "UT", "UR") else text.split("\\")
    out: list[Any] = []
    for part in parts:
        if not part:
            out.append(None)
        elif vr == "PN":
            groups = part.split("=")
            out.append({key: g for key, g in zip(("Alphabetic", "Ideographic", "Phonetic"), groups, strict=False) if g})
        elif vr == "IS":
            out.append(_web_number(part.strip(), True))
        else:
            out.append(part)
    return out


def _web_leaf(raw: Raw, charset: Charset, dictionary_vr: str | None) -> dict[str, Any] | None:
    vr = raw.vr
    if vr in STRING_VRS:
        text = charset.decode(machine_string(raw).split(b"\0", 1)[0])
        return {"vr": vr, "Value": _web_strings(vr, text)} if text else {"vr": vr}
    if vr in NUMERIC:
        code, size = NUMERIC[vr]
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
    data = content_bytes(raw)
    if len(data) % 2:
        data += b"\0"  # DCMTK completes an odd length when it loads the file
    return {"vr": vr, "InlineBinary": base64.b64encode(data).decode("ascii")} if data else {"vr": vr}


def _web_json(
    ds: Dataset, charset: Charset, terms: str | list[str] | None, dictionary: TagDictionary
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    creators = private_creators(ds)
    for key in sorted(ds.keys()):
        tag = int(key)
        if tag & 0xFFFF == 0:
            continue  # group lengths
        creator = creator_of(tag, creators)
        raw = raw_element(ds, tag, creator, terms, dictionary)
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
    value = charset_value(ds)
    charset = Charset(value, options.default_encoding)
    terms = [t.strip() for t in value.split("\\")] if value is not None else None
    return _web_json(ds, charset, terms, options.dictionary)


# --- DICOM JSON of values the index keeps as text (QIDO-RS)
