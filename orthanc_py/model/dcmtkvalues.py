"""Element values of a pydicom dataset as DCMTK reads them, for Orthanc's JSON renderings
(orthancjson: /tags, /header, /content) and for DICOM JSON (webjson): raw bytes pydicom kept (pixel
data is never decoded); the rules themselves are in `tagtext` (no pydicom), re-exported here.
"""

from __future__ import annotations

import warnings

from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from .dictionary import TagDictionary
from .tagtext import (
    _LONG_VRS,
    ASCII,
    BINARY_VRS,
    NUMERIC,
    PIXEL_DATA,
    PIXEL_REPRESENTATION,
    STRING_VRS,
    Charset,
    Raw,
    TagsOptions,
    content_bytes,
    creator_of,
    creator_text,
    implicit_vr,
    leaf_text,
    leaf_value,
    machine_string,
    signed_representation,
    tag_name,
)


def raw_element(
    ds: Dataset, tag: int, creator: str | None, charset: str | list[str] | None, dictionary: TagDictionary
) -> Raw | Sequence:
    """Raw bytes of a leaf, or the pydicom Sequence of an SQ element.

    A UN element whose dictionary VR is a string VR is read as that VR, its padding kept
    (Orthanc 1.10.1 answers "100851.980000 " for a UN StudyTime); other UN elements stay UN.
    """
    elem = ds.get_item(BaseTag(tag))
    if isinstance(elem, RawDataElement):
        vr = elem.VR or implicit_vr(tag, creator, dictionary)
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
            if known in STRING_VRS:
                return Raw(known, value, True, False, padded=True)
        return Raw(vr, value, elem.is_little_endian, elem.length == 0xFFFFFFFF)
    assert isinstance(elem, DataElement)
    if elem.VR == "SQ":
        return elem.value
    return Raw(elem.VR, _encode(elem, charset), True, elem.is_undefined_length)


def _signed_pixels(ds: Dataset) -> bool:
    elem = ds.get_item(BaseTag(PIXEL_REPRESENTATION))
    return elem is not None and signed_representation(elem.value)


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


def charset_value(ds: Dataset) -> str | None:
    if 0x00080005 not in ds:
        return None
    elem = ds.get_item(BaseTag(0x00080005))
    if isinstance(elem, RawDataElement):
        return bytes(elem.value or b"").decode("latin-1")
    value = elem.value
    if value is None or isinstance(value, str):
        return value
    return "\\".join(str(v) for v in value)  # MultiValue


def private_creators(ds: Dataset) -> dict[tuple[int, int], str]:
    """Private creators declared in this item, keyed by (group, block)."""
    found: dict[tuple[int, int], str] = {}
    for tag in ds.keys():  # iterating a Dataset itself would convert every element
        group, elem = tag >> 16, tag & 0xFFFF
        if group % 2 == 1 and 0x10 <= elem <= 0xFF:
            item = ds.get_item(tag)
            value = item.value
            if isinstance(value, bytes | bytearray):
                text = creator_text(bytes(value))
            else:
                text = "" if value is None else str(value).rstrip(" \0")
            found[(group, elem)] = text
    return found


__all__ = [
    "ASCII",
    "BINARY_VRS",
    "NUMERIC",
    "PIXEL_DATA",
    "PIXEL_REPRESENTATION",
    "STRING_VRS",
    "Charset",
    "Raw",
    "TagsOptions",
    "charset_value",
    "content_bytes",
    "creator_of",
    "creator_text",
    "implicit_vr",
    "leaf_text",
    "leaf_value",
    "machine_string",
    "private_creators",
    "raw_element",
    "signed_representation",
    "tag_name",
]
