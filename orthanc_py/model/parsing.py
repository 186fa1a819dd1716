"""Parse the header of a DICOM file: what ingest needs, without touching the pixel data.

`parse` takes `fastparse`'s one pass over the bytes when it can be exact, else pydicom, which
reads elements lazily so only the main DICOM tags are decoded. pydicom accepts truncated input
silently; `dicomfile.check_structure` walks the element headers first to refuse a file that ends
early (Orthanc/DCMTK refuses such files with "Bad file format").
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import pydicom
from pydicom.charset import decode_bytes
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

from ..errors import ErrorCode, OrthancError
from . import ids as idmod
from . import maintags as mt
from .charsets import codec_of_encoding
from .dicomfile import (
    _LONG_VRS,
    _UNDEFINED,
    BITS_ALLOCATED,
    DEFLATED,
    EXPLICIT_VR_BE,
    IMPLICIT_VR_LE,
    ParsedInstance,
    _dataset_start,
    as_int,
    bad_file,
    check_structure,
    dataset_offset,
    expected_instances,
    pixel_data_vr,
)
from .dictionary import dcmtk
from .enums import ResourceType
from .fastparse import parse_fast

_CHARSET_VRS = frozenset(("LO", "LT", "PN", "SH", "ST", "UC", "UT"))  # decoded with the character set
_STRING_VRS = frozenset(
    ("AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT")
)


def un_text(ds: Dataset, tag: int, value: bytes) -> str | None:
    """A main tag stored with VR UN, as Orthanc shows it: when DCMTK's dictionary gives a string
    VR, the text up to the first NUL with its padding kept ("120000.000000 "); otherwise none
    (Orthanc 1.10.1 has no NumberOfSlices for a UN one)."""
    if dcmtk().vr(tag) not in _STRING_VRS:
        return None
    encodings = getattr(ds, "_character_set", None) or ["iso8859"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return decode_bytes(value.split(b"\0", 1)[0], encodings, set())


def _keep_empty_groups(text: str, raw: bytes) -> str:
    """A person name with the trailing empty component groups it was written with
    (`Wang^XiaoDong=王^小东=`): pydicom's PersonName drops them, Orthanc keeps the value as
    written, and DICOMweb answers count the groups."""
    raw = raw.rstrip(b" \x00")
    written = len(raw) - len(raw.rstrip(b"="))
    kept = len(text) - len(text.rstrip("="))
    return text + "=" * (written - kept) if written > kept else text


def element_text(value: Any) -> str | None:
    """A DICOM value as Orthanc shows it in main tags; None for binary values.

    Multiple values are joined with backslashes; numbers keep their string form from the
    file; trailing padding (spaces, NULs) is removed.
    """
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        return None
    if isinstance(value, MultiValue | list | tuple):
        parts = [element_text(v) for v in value]
        if any(p is None for p in parts):
            return None
        return "\\".join(p for p in parts if p is not None)
    if isinstance(value, Dataset) or (hasattr(value, "__iter__") and not isinstance(value, str | PersonName)):
        return None
    return str(value).rstrip(" \x00")


def parse(data: bytes, default_encoding: str = "Latin1") -> ParsedInstance:
    """Parse a Part 10 file (or a raw dataset) and compute everything ingest stores.

    Text of a file without SpecificCharacterSet is decoded with `default_encoding` (Orthanc's
    `DefaultEncoding` in force at ingest), what does not decode being dropped, as Orthanc does.

    Raises OrthancError(BAD_FILE_FORMAT) for non-DICOM input, truncated files and files
    without Study/Series/SOP Instance UID.
    """
    if not data:
        raise bad_file("Received an empty DICOM file")
    if len(data) < 8:
        raise bad_file(f"Cannot parse an invalid DICOM file (size: {len(data)} bytes)")
    fast = parse_fast(data, default_encoding)  # one pass over the bytes; None when only pydicom can be exact
    if fast is not None:
        return fast
    try:
        pixel_offset, ts = check_structure(data)
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    except OrthancError:
        raise
    except Exception as exc:
        raise bad_file(f"Cannot parse an invalid DICOM file (size: {len(data)} bytes)") from exc
    meta_ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if meta_ts:
        ts = str(meta_ts)
    default_codec = None if 0x00080005 in ds else codec_of_encoding(default_encoding)
    if default_codec == "latin-1":
        default_codec = None  # pydicom's own default
    try:
        main: dict[ResourceType, dict[int, str]] = {}
        for level, tags in mt.MAIN_TAGS.items():
            values: dict[int, str] = {}
            for t in tags:
                item = ds.get_item(t)
                if item is None:
                    continue
                if isinstance(item, RawDataElement) and item.VR == "UN":
                    text = un_text(ds, t, bytes(item.value or b""))
                    if text is not None:
                        values[t] = text
                    continue
                if default_codec is not None and isinstance(item, RawDataElement):
                    vr = item.VR or dcmtk().vr(t)
                    if vr in _CHARSET_VRS:
                        raw = bytes(item.value or b"").decode(default_codec, errors="ignore")
                        values[t] = "\\".join(p.rstrip(" \x00") for p in raw.split("\\")).rstrip(" \x00")
                        continue
                text = element_text(ds[t].value)
                if text is not None and isinstance(item, RawDataElement) and item.VR == "PN":
                    text = _keep_empty_groups(text, bytes(item.value or b""))
                if text is not None:
                    values[t] = text
            main[level] = values
    except Exception as exc:
        raise bad_file(f"Cannot decode the DICOM tags: {exc}") from exc
    patient_id = main[ResourceType.PATIENT].get(mt.PATIENT_ID, "")
    study_uid = main[ResourceType.STUDY].get(mt.STUDY_INSTANCE_UID, "")
    series_uid = main[ResourceType.SERIES].get(mt.SERIES_INSTANCE_UID, "")
    sop_uid = main[ResourceType.INSTANCE].get(mt.SOP_INSTANCE_UID, "")
    for t in (mt.STUDY_INSTANCE_UID, mt.SERIES_INSTANCE_UID, mt.SOP_INSTANCE_UID):
        if t not in ds:  # Orthanc 1.10.1: an absent identifier is 404 InexistentTag
            raise OrthancError(ErrorCode.INEXISTENT_TAG)
    if not study_uid or not series_uid or not sop_uid:
        raise bad_file("Empty Study/Series/SOP Instance UID in the DICOM file")
    try:
        sop_class = ds.get(mt.SOP_CLASS_UID)
        sop_class_uid = element_text(sop_class.value) if sop_class is not None else ""
    except Exception as exc:
        raise bad_file(f"Cannot decode the DICOM tags: {exc}") from exc
    inst = main[ResourceType.INSTANCE]
    index = inst.get(mt.INSTANCE_NUMBER)
    if index is None:
        index = inst.get(mt.IMAGE_INDEX)
    bits = ds.get(BITS_ALLOCATED)
    bits_text = element_text(bits.value) if bits is not None and not isinstance(bits.value, bytes) else None
    return ParsedInstance(
        ids=idmod.compute(patient_id, study_uid, series_uid, sop_uid),
        main_tags=main,
        sop_class_uid=sop_class_uid or "",
        transfer_syntax=ts or IMPLICIT_VR_LE,
        pixel_data_offset=pixel_offset,
        index_in_series=index.strip() if index is not None else None,
        expected_instances=expected_instances(main[ResourceType.SERIES]),
        dataset=ds,
        pixel_data_vr=pixel_data_vr(data, pixel_offset, ts or IMPLICIT_VR_LE, bits_text),
    )


__all__ = [
    "BITS_ALLOCATED",
    "DEFLATED",
    "EXPLICIT_VR_BE",
    "IMPLICIT_VR_LE",
    "_LONG_VRS",
    "_UNDEFINED",
    "ParsedInstance",
    "_dataset_start",
    "as_int",
    "bad_file",
    "check_structure",
    "dataset_offset",
    "element_text",
    "expected_instances",
    "parse",
    "pixel_data_vr",
    "un_text",
]
