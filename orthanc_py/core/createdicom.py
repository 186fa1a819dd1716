"""POST /tools/create-dicom: a new instance (or a series) built from JSON, as Orthanc's
CreateDicom (OrthancRestAnonymizeModify.cpp) and ParsedDicomFile do it.

- "Tags" (version 2 of the request): tags by keyword or "gggg,eeee", strings or arrays of
  objects for sequences; "application/octet-stream" data URIs are decoded into binary values
  unless "InterpretBinaryTags" is false. PatientID and the three UIDs are generated; the dates
  and times of creation are now (UTC). A tag that is already set (generated, or inherited from
  "Parent") may only be overridden with "Force" (PatientID and the dates excepted).
- "Parent": the tags of the parent's modules (patient, study, series) are copied from one of
  its instances, so the new instance joins that patient/study/series.
- "Content": a data URI: PNG, JPEG or PAM (decoded into native pixel data; with "Encapsulate", a JPEG
  is kept as is), PDF, STL/OBJ/MTL (encapsulated documents), octet-stream (raw pixel data). A
  list of contents makes a series (one instance each).
- Without "Tags" (version 1): top-level members are tags, PixelData is the content.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime as _dt
import io
import struct
import uuid
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import generate_uid

from ..errors import ErrorCode, OrthancError
from ..index.base import Transaction
from ..model import maintags as mt
from ..model.charsets import DICOM_CODECS, ENCODINGS
from ..model.enums import ResourceType
from ..model.filemeta import file_meta_bytes
from ..model.ids import is_public_id
from ..model.modules import MODULE_TAGS
from ..model.orthancjson import parse_tag
from . import ingest
from . import resources as core_res
from .context import ServerContext
from .files import read_dicom

_STUDY_ROOT = "1.2.276.0.7230010.3.1.2."
_SERIES_ROOT = "1.2.276.0.7230010.3.1.3."
_INSTANCE_ROOT = "1.2.276.0.7230010.3.1.4."
_NO_SOP_CLASS = "1.2.276.0.7230010.3.1.0.1"  # what DCMTK writes in the meta header without one
EXPLICIT_LE = "1.2.840.10008.1.2.1"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
PDF_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.104.1"
_BINARY_PREFIX = "data:application/octet-stream;base64,"
_BINARY_VRS = frozenset({"OB", "OW", "OD", "OF", "OL", "OV", "UN", "ox", "px", "lt"})
_INT_VRS = {"US": (0, 0xFFFF), "SS": (-0x8000, 0x7FFF), "UL": (0, 0xFFFFFFFF), "SL": (-(2**31), 2**31 - 1)}
_FLOAT_VRS = frozenset({"FL", "FD", "OF", "OD"})
# Tags a request may set although the new instance has them already (Orthanc's InjectTags)
_OVERRIDABLE = frozenset(
    {
        mt.PATIENT_ID,
        0x00080022,  # AcquisitionDate
        0x00080032,
        0x00080023,  # ContentDate
        0x00080033,
        0x00080012,  # InstanceCreationDate
        0x00080013,
        0x00080021,  # SeriesDate
        0x00080031,
        0x00080020,  # StudyDate
        0x00080030,
    }
)
_DOCUMENTS = {
    "model/stl": "1.2.840.10008.5.1.4.1.1.104.3",
    "model/obj": "1.2.840.10008.5.1.4.1.1.104.4",
    "model/mtl": "1.2.840.10008.5.1.4.1.1.104.5",
}
PIXEL_DATA = 0x7FE00010
ENCAPSULATED_DOCUMENT = 0x00420011
MIME_TYPE_OF_DOCUMENT = 0x00420012


@dataclass
class _Options:
    decode_binary: bool
    private_creator: str
    force: bool
    encapsulate: bool


@dataclass
class NewInstance:
    """A dataset being built, and how it is to be written."""

    ds: Dataset
    transfer_syntax: str = EXPLICIT_LE


def _tag_text(tag: int) -> str:
    return mt.format_tag(tag).lower()


def _parse_tag(name: str, ctx: ServerContext | None = None) -> int:
    """Orthanc's ParseTag: "gggg,eeee" or a name of the dictionary (with `Dictionary` entries)."""
    try:
        return parse_tag(name, ctx.dictionary if ctx is not None else None)
    except ValueError as exc:
        raise OrthancError(ErrorCode.UNKNOWN_DICOM_TAG, f"Unknown DICOM tag: {name}", http_status=400) from exc


def _vr(ctx: ServerContext, tag: int, creator: str) -> str:
    private = (tag >> 16) % 2 == 1
    vr = ctx.dictionary.vr(tag, creator if private and creator else None)
    return vr or "UN"


def _value_error(tag: int, text: str) -> OrthancError:
    return OrthancError(
        ErrorCode.BAD_FILE_FORMAT,
        f'While creating a DICOM instance, tag ({_tag_text(tag)}) has out-of-range value: "{text}"',
    )


def _codec(ds: Dataset) -> str:
    charset = ds.get("SpecificCharacterSet")
    if isinstance(charset, str) and charset:
        try:
            return str(pydicom.charset.convert_encodings([charset])[0])
        except Exception:
            return "latin-1"
    return "latin-1" if charset is not None else "ascii"


def _string_element(tag: int, vr: str, text: str | bytes, codec: str) -> DataElement:
    """An element from a string (Orthanc's FillElementWithString): binary VRs take the bytes,
    numbers are parsed, other VRs keep the text."""
    if vr in _BINARY_VRS:
        raw = text if isinstance(text, bytes) else text.encode(codec, "replace")
        if vr == "OW" and len(raw) % 2:
            raise OrthancError(ErrorCode.INTERNAL_ERROR, "A tag with OW VR must have an even number of bytes")
        if len(raw) % 2:
            raw += b"\0"  # values have an even length (DCMTK pads them so)
        return DataElement(tag, "OB" if vr in ("ox", "px") else ("OW" if vr == "lt" else vr), raw)
    value = text.decode(codec, "replace") if isinstance(text, bytes) else text
    try:
        if vr == "xs":
            if "\\" in value:
                return DataElement(tag, "US", [int(v) for v in value.split("\\")])
            vr = "SS" if "-" in value else "US"
        if vr in _INT_VRS:
            lo, hi = _INT_VRS[vr]
            numbers = [int(v.strip()) for v in value.split("\\")]
            if not all(lo <= n <= hi for n in numbers):
                raise ValueError(value)
            return DataElement(tag, vr, numbers if len(numbers) > 1 else numbers[0])
        if vr in _FLOAT_VRS:  # several values since Orthanc 1.12.5
            floats = [float(v.strip()) for v in value.split("\\")]
            return DataElement(tag, vr, floats if len(floats) > 1 else floats[0])
        if vr == "AT":
            return DataElement(tag, vr, _parse_tag(value))
        if vr == "SQ":
            raise ValueError(value)
        return DataElement(tag, vr, value)
    except (ValueError, OverflowError) as exc:
        raise _value_error(tag, value) from exc


def _json_element(ctx: ServerContext, tag: int, value: Any, opts: _Options, codec: str) -> DataElement:
    """An element from a JSON value (Orthanc's FromDcmtkBridge::FromJson)."""
    vr = _vr(ctx, tag, opts.private_creator)
    if value is None:
        value = ""
    if isinstance(value, str):
        text: str | bytes = value
        if opts.decode_binary and value.startswith(_BINARY_PREFIX):
            try:
                text = base64.b64decode(value[len(_BINARY_PREFIX) :], validate=False)
            except (binascii.Error, ValueError) as exc:
                raise OrthancError(ErrorCode.BAD_FILE_FORMAT) from exc
        return _string_element(tag, vr, text, codec)
    if isinstance(value, list):
        if vr != "SQ":
            raise OrthancError(ErrorCode.BAD_PARAMETER_TYPE, f"Bad Parameter type for tag {_tag_text(tag)}")
        items = []
        for item in value:
            child = Dataset()
            if isinstance(item, dict):
                for name in sorted(item):
                    sub = _parse_tag(name, ctx)
                    child.add(_json_element(ctx, sub, item[name], opts, codec))
            elif not (isinstance(item, list) and not item):  # [] stands for an empty item (Lua)
                raise OrthancError(ErrorCode.BAD_PARAMETER_TYPE)
            items.append(child)
        return DataElement(tag, "SQ", items)
    raise OrthancError(ErrorCode.BAD_PARAMETER_TYPE, f"Bad Parameter type for tag {_tag_text(tag)}")


def _set_plain(ds: Dataset, tag: int, text: str) -> None:
    """Orthanc's ReplacePlainString: the value as a string, whatever the tag's VR."""
    from pydicom.datadict import dictionary_VR

    try:
        vr = str(dictionary_VR(tag)).split(" or ")[0]
    except KeyError:
        vr = "UN" if (tag >> 16) % 2 else "LO"
    ds[tag] = _string_element(tag, "US" if vr == "US or SS" else vr, text, _codec(ds))


def _set_if_absent(ds: Dataset, tag: int, text: str) -> None:
    if tag not in ds:
        _set_plain(ds, tag, text)


# -- content: data URIs -----------------------------------------------------------------------


def _decode_data_uri(uri: str) -> tuple[str, bytes] | None:
    """(MIME type in lower case, bytes) of a base64 data URI; None when it is not one."""
    if not uri.startswith("data:"):
        return None
    head, sep, payload = uri[5:].partition(",")
    if not sep or not head.endswith(";base64"):
        return None
    try:
        return head[: -len(";base64")].strip().lower(), base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError):
        return None


def _png_16bit_color(data: bytes) -> np.ndarray | None:
    """A 16-bit RGB or RGBA PNG as an (H, W, 3) uint16 array (Pillow reads these as 8-bit);
    None for any other PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    width, height, depth, color, _comp, _filter, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if depth != 16 or color not in (2, 6):
        return None
    if interlace:
        raise OrthancError(ErrorCode.NOT_IMPLEMENTED, "Interlaced 16-bit color PNG")
    channels = 3 if color == 2 else 4
    idat = bytearray()
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    try:
        raw = zlib.decompress(bytes(idat))
    except zlib.error as exc:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT) from exc
    bpp = channels * 2
    stride = width * bpp
    if len(raw) < height * (stride + 1):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
    rows = np.frombuffer(raw, np.uint8, height * (stride + 1)).reshape(height, stride + 1)
    out = np.zeros((height, stride), np.uint8)
    prev = np.zeros(stride, np.int32)
    for y in range(height):
        kind, line = rows[y, 0], rows[y, 1:].astype(np.int32)
        if kind == 0:
            cur = line
        elif kind == 2:
            cur = (line + prev) & 0xFF
        elif kind == 1:  # Sub: a running sum per byte position of the pixel
            cur = np.cumsum(line.reshape(width, bpp), axis=0).reshape(-1) & 0xFF
        elif kind in (3, 4):
            cur = np.zeros(stride, np.int32)
            for x in range(stride):
                a = int(cur[x - bpp]) if x >= bpp else 0
                b = int(prev[x])
                if kind == 3:
                    pred = (a + b) >> 1
                else:
                    c = int(prev[x - bpp]) if x >= bpp else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[x] = (int(line[x]) + pred) & 0xFF
        else:
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
        out[y] = cur
        prev = cur
    pixels = out.view(">u2").reshape(height, width, channels)
    return pixels[:, :, :3].astype("<u2")


def _decode_pam(data: bytes) -> np.ndarray:
    """A PAM image (Netpbm "P7"): grayscale 8/16-bit, RGB 8-bit, RGBA 8/16-bit (alpha dropped)."""
    if not data.startswith(b"P7\n"):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
    end = data.find(b"ENDHDR\n")
    if end < 0:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
    fields: dict[str, str] = {}
    for line in data[3:end].decode("ascii", "replace").splitlines():
        key, _, value = line.strip().partition(" ")
        if key and not key.startswith("#"):
            fields[key] = value.strip()
    try:
        width, height, depth, maxval = (int(fields[k]) for k in ("WIDTH", "HEIGHT", "DEPTH", "MAXVAL"))
    except (KeyError, ValueError) as exc:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT) from exc
    if (depth, maxval) not in ((1, 255), (1, 65535), (3, 255), (4, 255), (4, 65535)):
        raise OrthancError(ErrorCode.NOT_IMPLEMENTED)
    dtype = np.dtype(">u2") if maxval == 65535 else np.dtype(np.uint8)
    count = width * height * depth
    body = data[end + 7 : end + 7 + count * dtype.itemsize]
    if len(body) < count * dtype.itemsize:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
    pixels = np.frombuffer(body, dtype).reshape(height, width, depth)
    pixels = pixels[:, :, 0] if depth == 1 else pixels[:, :, :3]
    return pixels.astype(np.uint16) if maxval == 65535 else pixels


def _decode_image(mime: str, data: bytes) -> np.ndarray:
    """PNG/JPEG -> (H, W) uint8/uint16 or (H, W, 3) uint8/uint16 (alpha dropped, as Orthanc)."""
    from PIL import Image

    if mime == "image/png":
        deep = _png_16bit_color(data)
        if deep is not None:
            return deep
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as exc:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT) from exc
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(img, dtype=np.uint16)
    if mode == "I":
        arr = np.asarray(img)
        if arr.min() < 0 or arr.max() > 0xFFFF:
            raise OrthancError(ErrorCode.NOT_IMPLEMENTED)
        return arr.astype(np.uint16)
    if mode in ("1", "L", "LA"):
        return np.asarray(img.convert("L"), dtype=np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _embed_pixels(ds: Dataset, pixels: np.ndarray) -> None:
    """Orthanc's ParsedDicomFile::EmbedImage: native pixel data and the image module."""
    if PIXEL_DATA in ds:
        del ds[PIXEL_DATA]
    height, width = pixels.shape[:2]
    color = pixels.ndim == 3
    bits = 16 if pixels.dtype == np.uint16 else 8
    _set_plain(ds, 0x00280011, str(width))  # Columns
    _set_plain(ds, 0x00280010, str(height))  # Rows
    _set_plain(ds, 0x00280002, "3" if color else "1")  # SamplesPerPixel
    _set_plain(ds, 0x00280103, "0")  # PixelRepresentation
    if color:
        _set_plain(ds, 0x00280004, "RGB")
        _set_plain(ds, 0x00280006, "0")  # PlanarConfiguration: interleaved
    else:
        _set_if_absent(ds, 0x00280004, "MONOCHROME2")
    _set_plain(ds, 0x00280100, str(bits))
    _set_plain(ds, 0x00280101, str(bits))
    _set_plain(ds, 0x00280102, str(bits - 1))
    body = np.ascontiguousarray(pixels.astype("<u2") if bits == 16 else pixels).tobytes()
    if len(body) % 2:
        body += b"\0"
    ds[PIXEL_DATA] = DataElement(PIXEL_DATA, "OW", body)


def _jpeg_info(data: bytes) -> tuple[int, int, int, int]:
    """(rows, columns, components, precision) from a JPEG's start-of-frame marker."""
    pos = 2
    if data[:2] != b"\xff\xd8":
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Not a JPEG file")
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            pos += 1
            continue
        marker = data[pos + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            pos += 1 if marker == 0xFF else 2
            continue
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            precision, rows, columns, components = struct.unpack(">BHHB", data[pos + 4 : pos + 10])
            return rows, columns, components, precision
        pos += 2 + length
    raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Not a JPEG file")


def _encapsulate_jpeg(new: NewInstance, data: bytes) -> None:
    """The JPEG file as the one fragment of encapsulated pixel data (JPEG baseline)."""
    rows, columns, components, precision = _jpeg_info(data)
    if precision != 8 or components not in (1, 3):
        raise OrthancError(ErrorCode.NOT_IMPLEMENTED, "Only 8-bit grayscale or color JPEG can be encapsulated")
    ds = new.ds
    if PIXEL_DATA in ds:
        del ds[PIXEL_DATA]
    for tag, text in (
        (0x00280010, str(rows)),
        (0x00280011, str(columns)),
        (0x00280002, str(components)),
        (0x00280100, "8"),
        (0x00280101, "8"),
        (0x00280102, "7"),
        (0x00280103, "0"),
        (0x00280004, "YBR_FULL_422" if components == 3 else "MONOCHROME2"),
    ):
        _set_plain(ds, tag, text)
    if components == 3:
        _set_plain(ds, 0x00280006, "0")
    elif 0x00280006 in ds:
        del ds[0x00280006]
    fragment = data + b"\0" if len(data) % 2 else data
    ds[PIXEL_DATA] = DataElement(PIXEL_DATA, "OB", encapsulate([fragment], has_bot=False), is_undefined_length=True)
    new.transfer_syntax = JPEG_BASELINE


def _encapsulate_document(ds: Dataset, mime: str, data: bytes) -> None:
    _set_plain(ds, MIME_TYPE_OF_DOCUMENT, mime)
    ds[ENCAPSULATED_DOCUMENT] = DataElement(ENCAPSULATED_DOCUMENT, "OB", data + b"\0" if len(data) % 2 else data)


def embed_content(new: NewInstance, uri: str, encapsulate_jpeg: bool = False) -> None:
    """Orthanc's ParsedDicomFile::EmbedContent: an image, a document or raw pixel data."""
    decoded = _decode_data_uri(uri)
    if decoded is None:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
    mime, data = decoded
    ds = new.ds
    if mime == "image/jpeg" and encapsulate_jpeg:
        _encapsulate_jpeg(new, data)
    elif mime in ("image/png", "image/jpeg"):
        _embed_pixels(ds, _decode_image(mime, data))
    elif mime == "image/x-portable-arbitrarymap":
        _embed_pixels(ds, _decode_pam(data))
    elif mime == "application/octet-stream":
        ds[PIXEL_DATA] = DataElement(PIXEL_DATA, "OW", data + b"\0" if len(data) % 2 else data)
    elif mime == "application/pdf":
        if not data.startswith(b"%PDF-"):
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Not a PDF file")
        _encapsulate_document(ds, mime, data)
        _set_if_absent(ds, mt.SOP_CLASS_UID, PDF_SOP_CLASS)
        _set_if_absent(ds, 0x00080060, "OT")  # Modality
        _set_if_absent(ds, 0x00080064, "WSD")  # ConversionType
    elif mime in _DOCUMENTS:
        _encapsulate_document(ds, mime, data)
        _set_if_absent(ds, mt.SOP_CLASS_UID, _DOCUMENTS[mime])
        _set_if_absent(ds, 0x00080060, "M3D")
    else:
        raise OrthancError(
            ErrorCode.NOT_IMPLEMENTED, f"Unsupported MIME type for the content of a new DICOM file: {mime}"
        )


# -- building and storing ---------------------------------------------------------------------


def new_dataset() -> Dataset:
    """Orthanc's ParsedDicomFile(true): a generated PatientID and new UIDs."""
    ds = Dataset()
    ds[mt.PATIENT_ID] = DataElement(mt.PATIENT_ID, "LO", str(uuid.uuid4()))
    ds[mt.STUDY_INSTANCE_UID] = DataElement(mt.STUDY_INSTANCE_UID, "UI", generate_uid(prefix=_STUDY_ROOT))
    ds[mt.SERIES_INSTANCE_UID] = DataElement(mt.SERIES_INSTANCE_UID, "UI", generate_uid(prefix=_SERIES_ROOT))
    ds[mt.SOP_INSTANCE_UID] = DataElement(mt.SOP_INSTANCE_UID, "UI", generate_uid(prefix=_INSTANCE_ROOT))
    return ds


def serialize(new: NewInstance) -> bytes:
    """Part 10 bytes: Orthanc's file meta header, then the dataset in explicit VR little endian."""
    ds = new.ds
    sop_class = str(ds.get("SOPClassUID", "") or _NO_SOP_CLASS)
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_dataset(fp, ds)
    return file_meta_bytes(sop_class, str(ds.SOPInstanceUID), new.transfer_syntax) + fp.getvalue()


def _set_encoding(ds: Dataset, name: str) -> None:
    term = ENCODINGS.get(name)
    if term is not None:
        ds[0x00080005] = DataElement(0x00080005, "CS", term)


def _canonical_charset(term: str) -> str | None:
    """The Specific Character Set Orthanc writes for a term it reads (its GetDicomEncoding,
    then SetEncoding): "ISO 2022 IR 100" is written "ISO_IR 100"; None for an unknown term."""
    term = term.strip()
    if term in ENCODINGS.values():
        return term
    if term not in DICOM_CODECS:
        return None
    if term == "GBK":
        return "GB18030"
    if term == "ISO 2022 IR 159":
        return "ISO 2022 IR 87"
    single = term.replace("ISO 2022 IR ", "ISO_IR ")
    return single if single in ENCODINGS.values() else None


def _inject_tags(ctx: ServerContext, ds: Dataset, tags: Any, opts: _Options) -> None:
    """Orthanc's InjectTags: the user's tags, refusing to override what is set already."""
    if not isinstance(tags, dict):
        raise OrthancError(ErrorCode.BAD_REQUEST, "Tags field is not an array")
    codec = _codec(ds)
    for name in sorted(tags):
        tag = _parse_tag(name, ctx)
        if tag == 0x00080005:
            continue
        if not opts.force and tag not in _OVERRIDABLE and tag in ds:
            raise OrthancError(ErrorCode.CREATE_DICOM_OVERRIDE_TAG, name)
        if tag == PIXEL_DATA:
            raise OrthancError(ErrorCode.CREATE_DICOM_USE_CONTENT)
        ds[tag] = _json_element(ctx, tag, tags[name], opts, codec)


def _options(ctx: ServerContext, body: dict[str, Any]) -> _Options:
    def flag(key: str, default: bool) -> bool:
        value = body.get(key, default)
        if not isinstance(value, bool):
            raise OrthancError(ErrorCode.BAD_REQUEST)
        return value

    creator = body.get("PrivateCreator", ctx.settings.default_private_creator)
    if not isinstance(creator, str):
        raise OrthancError(ErrorCode.BAD_REQUEST)
    return _Options(flag("InterpretBinaryTags", True), creator, flag("Force", False), flag("Encapsulate", False))


async def _parent_tags(ctx: ServerContext, ds: Dataset, parent: Any) -> ResourceType:
    """Copy the module tags of the parent (and of its ancestors) from one of its instances."""
    if not isinstance(parent, str):
        raise OrthancError(ErrorCode.CREATE_DICOM_BAD_PARENT)

    def run(txn: Transaction) -> tuple[ResourceType, str]:
        hit = txn.lookup(parent) if is_public_id(parent) else None
        if hit is None:
            raise OrthancError(ErrorCode.CREATE_DICOM_BAD_PARENT)
        if hit[1] is ResourceType.INSTANCE:
            raise OrthancError(ErrorCode.CREATE_DICOM_PARENT_IS_INSTANCE)
        first = txn.descendants(hit[0], ResourceType.INSTANCE)[:1]
        if not first:
            raise OrthancError(ErrorCode.INTERNAL_ERROR)
        return hit[1], txn.resources(first)[0].public_id

    level, sibling_id = await ctx.index.read(run)
    data = await read_dicom(ctx, sibling_id)
    sibling = await ctx.run(lambda: pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True))
    charset = sibling.get("SpecificCharacterSet")
    if charset is not None:
        term = charset if isinstance(charset, str) else (charset[0] if len(charset) else "")
        canonical = _canonical_charset(str(term))
        if canonical is not None:
            ds[0x00080005] = DataElement(0x00080005, "CS", canonical)
        else:
            _set_encoding(ds, ctx.default_encoding)
    tags: set[int] = set()
    lv: ResourceType | None = level
    while lv is not None:
        tags |= MODULE_TAGS[lv]
        lv = lv.parent
    for tag in sorted(tags):
        if tag in sibling:
            elem = sibling[tag]
            if elem.VR != "SQ" and elem.VR not in _BINARY_VRS:
                ds[tag] = copy.deepcopy(elem)
    return level


def _now_utc() -> tuple[str, str]:
    now = _dt.datetime.now(_dt.UTC)
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S") + ".000000"


async def _store(ctx: ServerContext, new: NewInstance, origin: ingest.Origin) -> ingest.StoreResult:
    data = await ctx.run(serialize, new)
    return await ingest.store(ctx, data, origin)


async def _create_series(
    ctx: ServerContext, base: Dataset, content: list[Any], opts: _Options, origin: ingest.Origin
) -> dict[str, Any]:
    """One instance per item of "Content" (Orthanc's CreateSeries); none kept on error."""
    _set_plain(base, 0x00201002, str(len(content)))  # ImagesInAcquisition
    _set_plain(base, 0x00200105, "1")  # NumberOfTemporalPositions
    series: str | None = None
    try:
        for i, item in enumerate(content):
            new = NewInstance(copy.deepcopy(base))
            new.ds[mt.SOP_INSTANCE_UID] = DataElement(mt.SOP_INSTANCE_UID, "UI", generate_uid(prefix=_INSTANCE_ROOT))
            payload = item
            if isinstance(item, dict):
                if "Content" not in item:
                    raise OrthancError(ErrorCode.CREATE_DICOM_NO_PAYLOAD)
                payload = item["Content"]
                if "Tags" in item:
                    _inject_tags(ctx, new.ds, item["Tags"], opts)
            if not isinstance(payload, str):
                raise OrthancError(ErrorCode.CREATE_DICOM_USE_DATA_URI_SCHEME)
            await ctx.run(embed_content, new, payload, opts.encapsulate)
            _set_plain(new.ds, 0x00200013, str(i + 1))  # InstanceNumber
            _set_plain(new.ds, 0x00541330, str(i + 1))  # ImageIndex
            result = await _store(ctx, new, origin)
            series = result.ids.series
    except BaseException:
        if series is not None:
            try:
                await core_res.delete(ctx, series, ResourceType.SERIES)
            except OrthancError:
                pass
        raise
    assert series is not None
    return {"ID": series, "Path": f"/series/{series}", "Status": "Success"}


async def _create_v1(ctx: ServerContext, body: dict[str, Any], origin: ingest.Origin) -> dict[str, Any]:
    """Orthanc <= 0.9.3's request: each member a tag with a string value; no data URIs but
    for PixelData."""
    new = NewInstance(new_dataset())
    for name in sorted(body):
        value = body[name]
        if not isinstance(value, str):
            raise OrthancError(ErrorCode.CREATE_DICOM_NOT_STRING)
        tag = _parse_tag(name, ctx)
        if tag == PIXEL_DATA:
            await ctx.run(embed_content, new, value, False)
        else:
            _set_plain(new.ds, tag, value)
    return (await _store(ctx, new, origin)).to_json()


async def create(ctx: ServerContext, body: Any, origin: ingest.Origin) -> dict[str, Any]:
    """Build, store and answer a new instance (or series) from a create-dicom request."""
    if not isinstance(body, dict):
        raise OrthancError(ErrorCode.BAD_REQUEST)
    if "Tags" not in body:
        return await _create_v1(ctx, body, origin)
    tags = body["Tags"]
    if not isinstance(tags, dict):
        raise OrthancError(ErrorCode.BAD_REQUEST)
    new = NewInstance(new_dataset())
    ds = new.ds
    charset = tags.get("SpecificCharacterSet")
    if charset is not None:
        canonical = _canonical_charset(charset) if isinstance(charset, str) else None
        if canonical is None:
            raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Unknown specific character set: {charset}")
        ds[0x00080005] = DataElement(0x00080005, "CS", canonical)
    else:
        _set_encoding(ds, ctx.default_encoding)
    level: ResourceType | None = None
    if "Parent" in body:
        level = await _parent_tags(ctx, ds, body["Parent"])
    opts = _options(ctx, body)
    date, time = _now_utc()
    for tag, text in ((0x00080022, date), (0x00080032, time), (0x00080023, date), (0x00080033, time)):
        _set_plain(ds, tag, text)
    _set_plain(ds, 0x00080012, date)
    _set_plain(ds, 0x00080013, time)
    if level in (None, ResourceType.PATIENT, ResourceType.STUDY):
        _set_plain(ds, 0x00080021, date)
        _set_plain(ds, 0x00080031, time)
    if level in (None, ResourceType.PATIENT):
        _set_plain(ds, 0x00080020, date)
        _set_plain(ds, 0x00080030, time)
    _inject_tags(ctx, ds, tags, opts)
    if "Content" in body:
        content = body["Content"]
        if isinstance(content, str):
            await ctx.run(embed_content, new, content, opts.encapsulate)
        elif isinstance(content, list):
            if content:
                return await _create_series(ctx, ds, content, opts, origin)
        else:
            raise OrthancError(ErrorCode.CREATE_DICOM_USE_DATA_URI_SCHEME)
    return (await _store(ctx, new, origin)).to_json()


def extract_pdf(data: bytes) -> bytes | None:
    """The PDF inside an Encapsulated PDF instance (pad byte removed), None for other files."""
    ds = pydicom.dcmread(io.BytesIO(data), force=True, specific_tags=[mt.SOP_CLASS_UID, MIME_TYPE_OF_DOCUMENT])
    if str(ds.get("SOPClassUID", "")).strip("\0 ") != PDF_SOP_CLASS:
        return None
    if str(ds.get("MIMETypeOfEncapsulatedDocument", "")).strip("\0 ") != "application/pdf":
        return None
    full = pydicom.dcmread(io.BytesIO(data), force=True)
    if ENCAPSULATED_DOCUMENT not in full:
        return None
    pdf = bytes(full[ENCAPSULATED_DOCUMENT].value or b"")
    if pdf and pdf[-1] not in (10, 13):
        pdf = pdf[:-1]
    return pdf
