"""Transfer syntaxes: re-encoding a stored file, and cutting its pixel data into frames.

Used wherever a transfer syntax is asked for: modify's and archives' `Transcode`, ingest
transcoding, `/instances/{id}/file?transcode=`, WADO-RS, C-STORE to a peer that lacks the
stored syntax. The pixel data is first decoded (pydicom's decoders, 8-bit JPEG through Pillow
as DCMTK decodes it), then encoded in the target:

- uncompressed: Implicit/Explicit VR Little Endian, Explicit VR Big Endian, Deflated;
- RLE Lossless (pydicom's encoder, pylibjpeg-rle when present);
- JPEG Baseline / Extended (8-bit, lossy at the given quality, libjpeg through Pillow) and
  JPEG Lossless (.57, .70: `jpeg_encode`, up to 16 bits);
- JPEG-LS lossless and near-lossless (NEAR=2, as Orthanc asks DCMTK), through pyjpegls;
- JPEG 2000 lossless and lossy, through pylibjpeg-openjpeg.

A lossy encoding gives the instance a new SOPInstanceUID and the lossy compression attributes,
as DCMTK does for Orthanc (Orthanc always allows the new UID).
"""

from __future__ import annotations

import io
from typing import Any

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
UNCOMPRESSED = frozenset({IMPLICIT_LE, EXPLICIT_LE, DEFLATED_LE, EXPLICIT_BE})
RLE = "1.2.840.10008.1.2.5"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEGLS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEGLS_NEAR_LOSSLESS = "1.2.840.10008.1.2.4.81"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
J2K = "1.2.840.10008.1.2.4.91"
LOSSY = frozenset({JPEG_BASELINE, JPEG_EXTENDED, JPEGLS_NEAR_LOSSLESS, J2K})
ENCODABLE = UNCOMPRESSED | {
    RLE,
    JPEG_BASELINE,
    JPEG_EXTENDED,
    JPEG_LOSSLESS,
    JPEG_LOSSLESS_SV1,
    JPEGLS_LOSSLESS,
    JPEGLS_NEAR_LOSSLESS,
    J2K_LOSSLESS,
    J2K,
}
"""The targets `transcode` can reach (from any syntax it can decode)."""
VIDEO = frozenset(
    {
        "1.2.840.10008.1.2.4.100",
        "1.2.840.10008.1.2.4.100.1",
        "1.2.840.10008.1.2.4.101",
        "1.2.840.10008.1.2.4.101.1",
        "1.2.840.10008.1.2.4.102",
        "1.2.840.10008.1.2.4.102.1",
        "1.2.840.10008.1.2.4.103",
        "1.2.840.10008.1.2.4.103.1",
        "1.2.840.10008.1.2.4.104",
        "1.2.840.10008.1.2.4.104.1",
        "1.2.840.10008.1.2.4.105",
        "1.2.840.10008.1.2.4.105.1",
        "1.2.840.10008.1.2.4.106",
        "1.2.840.10008.1.2.4.106.1",
        "1.2.840.10008.1.2.4.107",
        "1.2.840.10008.1.2.4.108",
    }
)
DEFAULT_QUALITY = 90
"""Orthanc's default DicomLossyTranscodingQuality."""
_INSTANCE_UID_ROOT = "1.2.276.0.7230010.3.1.4."  # DCMTK's root for SOP instance UIDs, as Orthanc's

# Media type of a frame in a compressed syntax (PS3.18 Table 8.7.3-2).
_FRAME_MEDIA = {
    "1.2.840.10008.1.2.5": "image/dicom-rle",
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
}
_MEDIA_ALIASES = {"image/x-dicom-rle": "image/dicom-rle", "image/x-jls": "image/jls"}
MEDIA_TYPES = frozenset(_FRAME_MEDIA.values()) | frozenset(_MEDIA_ALIASES)


class CannotTranscode(Exception):
    """The file cannot be given in the requested transfer syntax (no decoder, no encoder for
    this kind of image, or a corrupt stream)."""


def is_known_syntax(uid: str) -> bool:
    """Whether `uid` names a transfer syntax (Orthanc answers 400 "Unknown transfer syntax"
    otherwise)."""
    from pydicom.uid import UID

    try:
        return bool(UID(uid).is_transfer_syntax) or uid in VIDEO
    except (ValueError, AttributeError):
        return False


def checked_target(value: Any) -> str:
    """A requested target syntax, as Orthanc checks it: OrthancError 400 (ParameterOutOfRange,
    "Unknown transfer syntax: ...") when it names none."""
    from ..errors import ErrorCode, OrthancError

    if not isinstance(value, str) or not is_known_syntax(value):
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Unknown transfer syntax: {value}")
    return value


def transcode_or_error(data: bytes, target: str, *, quality: int = DEFAULT_QUALITY) -> bytes:
    """`transcode`, failures given as Orthanc answers them: OrthancError 500 (InternalError,
    "Cannot transcode to transfer syntax: ...")."""
    from ..errors import ErrorCode, OrthancError

    try:
        return transcode(data, target, quality=quality)
    except CannotTranscode as exc:
        raise OrthancError(ErrorCode.INTERNAL_ERROR, f"Cannot transcode to transfer syntax: {target}") from exc


def lossy_quality(value: Any) -> int:
    """A quality for lossy transcoding (an integer from 1 to 100, as Orthanc checks it);
    ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"The quality for lossy transcoding must be an integer between 1 and 100, received: {value}")
    try:
        quality = int(value)
    except ValueError:
        raise ValueError(
            f"The quality for lossy transcoding must be an integer between 1 and 100, received: {value}"
        ) from None
    if not 1 <= quality <= 100:
        raise ValueError(f"The quality for lossy transcoding must be an integer between 1 and 100, received: {value}")
    return quality


def requested_quality(value: Any, default: int) -> int:
    """The quality a request asks for (`lossy-quality`, "LossyQuality": Orthanc 1.12.7), or
    `default` (the LossyQuality setting) when it names none; an error as Orthanc answers it."""
    if value is None:
        return default
    from ..errors import ErrorCode, OrthancError

    try:
        return lossy_quality(value)
    except ValueError as exc:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, str(exc)) from exc


def frame_media(syntax: str) -> str:
    """The media type a frame in `syntax` travels as (application/octet-stream when uncompressed)."""
    return _FRAME_MEDIA.get(syntax, "application/octet-stream")


def syntaxes_of_media(media: str) -> set[str]:
    """The compressed syntaxes whose frames are `media` (image/jpeg, image/jls, ...)."""
    media = _MEDIA_ALIASES.get(media, media)
    return {ts for ts, m in _FRAME_MEDIA.items() if m == media}


def can_decode(syntax: str) -> bool:
    """Whether pixel data stored in `syntax` can be given uncompressed."""
    if syntax in UNCOMPRESSED:
        return True
    try:
        from pydicom.pixels import get_decoder

        return bool(get_decoder(syntax).is_available)
    except (NotImplementedError, ValueError, ImportError):
        return False


def _read(data: bytes) -> Any:
    import pydicom

    return pydicom.dcmread(io.BytesIO(data), force=True)


def stored_syntax(ds: Any) -> str:
    """The syntax of the file meta, else the encoding the dataset was read in."""
    meta = getattr(ds, "file_meta", None)
    declared = str(getattr(meta, "TransferSyntaxUID", "") or "")
    if declared:
        return declared
    implicit, little = getattr(ds, "original_encoding", (None, None))
    return IMPLICIT_LE if implicit else EXPLICIT_BE if little is False else EXPLICIT_LE


def transcode(data: bytes, target: str, *, quality: int = DEFAULT_QUALITY) -> bytes:
    """The DICOM file `data` in `target`; the same bytes when it already is. CannotTranscode
    when the pixel data cannot be decoded, or cannot be encoded in `target`."""
    ds = _read(data)
    return transcode_dataset(ds, target, data, quality=quality)


def transcode_dataset(ds: Any, target: str, original: bytes | None = None, *, quality: int = DEFAULT_QUALITY) -> bytes:
    """As `transcode`, for a dataset already read (`original` is returned when nothing changes).
    `ds` is changed in place (it ends in `target`)."""
    if stored_syntax(ds) == target and original is not None:
        return original
    recode(ds, target, quality=quality)
    return write(ds)


def write(ds: Any) -> bytes:
    """The DICOM file of `ds`, in the syntax its file meta names (as `recode` leaves it)."""
    target = stored_syntax(ds)
    out = io.BytesIO()
    ds.save_as(out, implicit_vr=target == IMPLICIT_LE, little_endian=target != EXPLICIT_BE, enforce_file_format=True)
    return out.getvalue()


def recode(ds: Any, target: str, *, quality: int = DEFAULT_QUALITY) -> None:
    """Make the dataset `ds` encode itself in `target` (one of ENCODABLE), decoding its pixel
    data when stored compressed; CannotTranscode when that cannot be done."""
    source = stored_syntax(ds)
    if source == target:
        return
    if target not in ENCODABLE or source in VIDEO:
        raise CannotTranscode(f"Cannot transcode to transfer syntax: {target}")
    if source not in UNCOMPRESSED:
        _decode_in_place(ds, source)
    _to_little_endian(ds)
    if target in UNCOMPRESSED:
        _set_syntax(ds, target)
        if target == EXPLICIT_BE:
            _swap_binary(ds, pixel_bits=int(ds.get("BitsAllocated", 16) or 16))
        return
    if "PixelData" not in ds:
        _set_syntax(ds, target)  # nothing to compress: only the syntax changes, as with DCMTK
        return
    _compress(ds, target, quality)


def _set_syntax(ds: Any, target: str) -> None:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID

    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()

    ds.file_meta.TransferSyntaxUID = UID(target)
    ds.set_original_encoding(target == IMPLICIT_LE, target != EXPLICIT_BE)


def _settle_raw(ds: Any) -> None:
    """Decode the elements still raw: they were read with the source's VR mode and byte order,
    and pydicom would write them as if they were in the target's."""
    for _elem in ds.iterall():
        pass


def _to_little_endian(ds: Any) -> None:
    """An uncompressed dataset as Explicit VR Little Endian (values of the binary VRs swapped
    when it was Big Endian)."""
    _settle_raw(ds)
    if stored_syntax(ds) == EXPLICIT_BE:
        _swap_binary(ds, pixel_bits=int(ds.get("BitsAllocated", 16) or 16))
    _set_syntax(ds, EXPLICIT_LE)


_SWAP_WIDTH = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def _swap_binary(ds: Any, pixel_bits: int) -> None:
    """Swap the bytes of every OW/OF/OL/OD/OV value (Little <-> Big Endian); 8-bit pixel data
    stays as is (and is OB)."""
    import numpy as np

    for elem in ds.iterall():
        value = elem.value
        if elem.VR not in _SWAP_WIDTH or not isinstance(value, bytes | bytearray) or not value:
            continue
        width = _SWAP_WIDTH[elem.VR]
        if elem.tag == 0x7FE00010:
            if getattr(elem, "is_undefined_length", False):
                continue
            if pixel_bits <= 8:
                elem.VR = "OB"
                continue
            width = 4 if pixel_bits == 32 else 2
        if len(value) % width:
            continue
        swapped = np.frombuffer(value, dtype=f"<u{width}").astype(f">u{width}").tobytes()
        elem.value = swapped


def _decode_in_place(ds: Any, source: str) -> None:
    """Compressed pixel data made native (Explicit VR Little Endian); the SOPInstanceUID is
    kept (Orthanc gives a new one only when it *compresses* lossily)."""
    if "PixelData" not in ds:
        _set_syntax(ds, EXPLICIT_LE)
        return
    if _decode_jpeg_in_place(ds):
        _set_syntax(ds, EXPLICIT_LE)
        return
    try:
        ds.decompress(generate_instance_uid=False)
    except Exception as exc:  # pydicom raises many kinds for a missing or failing decoder
        raise CannotTranscode(f"Cannot decode {source}: {exc}") from exc
    if int(ds.get("BitsAllocated", 8) or 8) > 8:
        ds["PixelData"].VR = "OW"
    _set_syntax(ds, EXPLICIT_LE)


def _geometry(ds: Any) -> tuple[int, int, int, int, int]:
    """rows, columns, samples per pixel, bits allocated, number of frames."""
    try:
        return (
            int(ds.Rows),
            int(ds.Columns),
            int(ds.get("SamplesPerPixel", 1) or 1),
            int(ds.BitsAllocated),
            int(ds.get("NumberOfFrames", 1) or 1),
        )
    except (AttributeError, TypeError, ValueError) as exc:
        raise CannotTranscode("The image has no valid geometry (Rows, Columns, BitsAllocated)") from exc


def _native_frames(ds: Any) -> tuple[Any, int]:
    """The native pixel data as an array (frames, rows, columns[, samples]) with interleaved
    samples, and the bits allocated."""
    import numpy as np

    rows, columns, samples, bits, count = _geometry(ds)
    if bits not in (8, 16):
        raise CannotTranscode(f"Cannot compress pixel data of {bits} bits allocated")
    dtype = np.dtype("<u1" if bits == 8 else "<u2")
    size = rows * columns * samples * count
    pixels = ds.PixelData
    if len(pixels) < size * dtype.itemsize:
        raise CannotTranscode("The pixel data is shorter than its frames")
    array = np.frombuffer(pixels, dtype=dtype, count=size)
    if samples == 1:
        return array.reshape(count, rows, columns), bits
    if int(ds.get("PlanarConfiguration", 0) or 0) == 1:
        return array.reshape(count, samples, rows, columns).transpose(0, 2, 3, 1), bits
    return array.reshape(count, rows, columns, samples), bits


def _compress(ds: Any, target: str, quality: int) -> None:
    """Encode the native pixel data of `ds` in the compressed `target`."""
    import numpy as np
    from pydicom.encaps import encapsulate

    rows, columns, samples, bits, count = _geometry(ds)
    photometric = str(ds.get("PhotometricInterpretation", "") or "")
    uncompressed_size = rows * columns * samples * ((bits + 7) // 8) * count
    if samples not in (1, 3) or (samples == 3 and photometric not in ("RGB", "YBR_FULL")):
        raise CannotTranscode(f"Cannot transcode to transfer syntax: {target} ({samples} samples, {photometric})")
    if bits == 32 and samples == 1 and target in (RLE, J2K_LOSSLESS, J2K, JPEGLS_LOSSLESS, JPEGLS_NEAR_LOSSLESS):
        frames = None  # 32-bit: left to pydicom's encoders (RLE takes it; the others refuse)
    else:
        frames, bits = _native_frames(ds)
    source_uid = str(ds.get("SOPInstanceUID", "") or "")
    if frames is not None and samples == 3 and int(ds.get("PlanarConfiguration", 0) or 0) == 1:
        ds.PixelData = np.ascontiguousarray(frames).tobytes()
        ds.PlanarConfiguration = 0
    stored = int(ds.get("BitsStored", bits) or bits)
    description = ""
    if frames is None:
        encoded = _pydicom_encode(ds, target, quality)
        if target == RLE:
            description = "Lossless RLE compression"
    elif target in (JPEG_BASELINE, JPEG_EXTENDED):
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
        encoded = _jpeg_lossy(frames, bits, stored, photometric, target, quality, signed)
        if samples == 3:
            ds.PhotometricInterpretation = "YBR_FULL_422"
        kind = "JPEG baseline" if target == JPEG_BASELINE else f"JPEG extended sequential {8 if bits == 8 else 12} bit"
        description = f"Lossy compression with {kind}, IJG quality factor {quality}"
    elif target in (JPEG_LOSSLESS, JPEG_LOSSLESS_SV1):
        from . import jpeg_encode

        selection = 6 if target == JPEG_LOSSLESS else 1
        precision = max(2, min(stored, bits))
        encoded = [jpeg_encode.lossless(frame, precision, selection) for frame in frames]
        description = f"Lossless JPEG compression, selection value {selection}, point transform 0"
    else:
        encoded = _pydicom_encode(ds, target, quality)
        if target == RLE:
            description = "Lossless RLE compression"
    compressed = sum(len(f) for f in encoded) or 1
    ratio = f"{uncompressed_size / compressed:g}"
    ds.PixelData = encapsulate(encoded)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    _set_syntax(ds, target)
    if target == J2K_LOSSLESS and samples == 3 and photometric == "RGB":
        ds.PhotometricInterpretation = "YBR_RCT"
    elif target == J2K and samples == 3 and photometric == "RGB":
        ds.PhotometricInterpretation = "YBR_ICT"
    if description:
        description += f", compression ratio {ratio}"
    elif target == JPEGLS_NEAR_LOSSLESS:
        description = f"near lossless JPEG-LS compression, factor {ratio} (NEAR=2)"
    if description:
        _add_derivation(ds, description)
    if target in LOSSY:
        method = "ISO_14495_1" if target == JPEGLS_NEAR_LOSSLESS else "ISO_15444_1" if target == J2K else "ISO_10918_1"
        _mark_lossy(ds, ratio, method, source_uid)


def _jpeg_lossy(
    frames: Any, bits: int, stored: int, photometric: str, target: str, quality: int, signed: bool = False
) -> list[bytes]:
    """8-bit frames in JPEG Baseline/Extended through Pillow (libjpeg): monochrome, or colour
    with 4:2:2 chroma subsampling (YBR_FULL_422), as DCMTK encodes them for Orthanc; unsigned
    monochrome frames of up to 12 bits stored in JPEG Extended 12-bit (`jpeg_encode`)."""
    from PIL import Image

    from . import jpeg_encode

    if target == JPEG_EXTENDED and bits == 16 and stored <= 12 and frames.ndim == 3 and not signed:
        mask = (1 << stored) - 1
        return [jpeg_encode.extended_12bit(frame & mask, quality) for frame in frames]
    if bits != 8 or stored != 8:
        raise CannotTranscode(
            f"Cannot transcode to transfer syntax: {target} (8-bit images, or unsigned monochrome up to 12 bits "
            f"for JPEG Extended; BitsStored is {stored})"
        )
    out = []
    for frame in frames:
        if frame.ndim == 2:
            image = Image.fromarray(frame, "L")
        else:
            image = Image.fromarray(frame, "YCbCr" if photometric == "YBR_FULL" else "RGB")
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=quality, subsampling=1)
        stream = buf.getvalue()
        if target == JPEG_EXTENDED:
            at = stream.index(b"\xff\xc0")
            stream = stream[:at] + b"\xff\xc1" + stream[at + 2 :]
        out.append(jpeg_encode.even(stream))
    return out


def _pydicom_encode(ds: Any, target: str, quality: int) -> list[bytes]:
    """Frames encoded by pydicom's encoders (RLE; JPEG-LS with pyjpegls; JPEG 2000 with
    pylibjpeg-openjpeg)."""
    from pydicom.pixels import get_encoder

    try:
        encoder = get_encoder(target)
    except (NotImplementedError, ValueError) as exc:
        raise CannotTranscode(f"Cannot transcode to transfer syntax: {target}") from exc
    if not encoder.is_available:
        raise CannotTranscode(f"Cannot transcode to transfer syntax: {target} (no encoder installed)")
    kwargs: dict[str, Any] = {}
    if target == JPEGLS_NEAR_LOSSLESS:
        kwargs["jls_error"] = 2  # Orthanc's NEAR parameter for DCMTK
    elif target == J2K:
        # quality 100 -> 2:1 ... quality 1 -> 100:1 (the compression ratio asked of OpenJPEG)
        kwargs["j2k_cr"] = [float(max(2, round(2 + (100 - quality) * 98 / 99)))]
    try:
        return [bytes(f) for f in encoder.iter_encode(ds, **kwargs)]
    except Exception as exc:  # the encoders raise many kinds for images they cannot take
        raise CannotTranscode(f"Cannot transcode to transfer syntax: {target}: {exc}") from exc


def _add_derivation(ds: Any, text: str) -> None:
    """DCMTK's DerivationDescription: the new step first, the previous ones in brackets."""
    previous = str(ds.get("DerivationDescription", "") or "")
    value = f"{text} [{previous}]" if previous else text
    ds.DerivationDescription = value[:1024]


def _mark_lossy(ds: Any, ratio: str, method: str, source_uid: str) -> None:
    """What DCMTK records when it compresses lossily: a new SOPInstanceUID, DERIVED image type,
    the source image as "Uncompressed predecessor", lossy compression code and attributes
    (ratio and method appended to those of an earlier lossy step)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import generate_uid

    was_lossy = str(ds.get("LossyImageCompression", "") or "") == "01"
    ratios = [str(r) for r in _values(ds.get("LossyImageCompressionRatio"))] if was_lossy else []
    methods = [str(m) for m in _values(ds.get("LossyImageCompressionMethod"))] if was_lossy else []
    if was_lossy and len(methods) < len(ratios):
        methods += [""] * (len(ratios) - len(methods))
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = [*ratios, ratio] if ratios else ratio
    ds.LossyImageCompressionMethod = [*methods, method] if methods else method
    image_type = [str(v) for v in _values(ds.get("ImageType"))]
    if image_type:
        image_type[0] = "DERIVED"
        ds.ImageType = image_type
    if source_uid:
        reference = Dataset()
        reference.ReferencedSOPClassUID = ds.get("SOPClassUID", "")
        reference.ReferencedSOPInstanceUID = source_uid
        purpose = Dataset()
        purpose.CodeValue = "121320"
        purpose.CodingSchemeDesignator = "DCM"
        purpose.CodeMeaning = "Uncompressed predecessor"
        reference.PurposeOfReferenceCodeSequence = Sequence([purpose])
        ds.SourceImageSequence = Sequence([reference])
    code = Dataset()
    code.CodeValue = "113040"
    code.CodingSchemeDesignator = "DCM"
    code.CodeMeaning = "Lossy Compression"
    ds.DerivationCodeSequence = Sequence([code])
    uid = generate_uid(prefix=_INSTANCE_UID_ROOT)
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid


def _values(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        return [value]
    return list(value)


def _frame_length(ds: Any) -> int | None:
    try:
        bits = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1) * int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError):
        return None
    return (bits + 7) // 8


def frames(data: bytes, numbers: list[int] | None, decode: bool) -> tuple[list[bytes], str]:
    """Frames `numbers` (1-based; None: all) of the file and the syntax they are in: as stored,
    or uncompressed Explicit VR Little Endian when `decode` and the file is compressed or Big
    Endian.
    IndexError names a frame that does not exist; LookupError means no pixel data."""
    ds = _read(data)
    if "PixelData" not in ds:
        raise LookupError("The instance has no pixel data")
    syntax = stored_syntax(ds)
    count = int(ds.get("NumberOfFrames", 1) or 1)
    if numbers is None:
        numbers = list(range(1, count + 1))
    for n in numbers:
        if not 1 <= n <= count:
            raise IndexError(f"No frame {n} (the instance has {count})")
    if syntax not in UNCOMPRESSED:
        if decode:
            return [_decoded_frame(ds, n - 1) for n in numbers], EXPLICIT_LE
        from pydicom.encaps import generate_frames

        stored = list(generate_frames(ds.PixelData, number_of_frames=count))
        return [bytes(stored[n - 1]) for n in numbers], syntax
    pixels = ds.PixelData
    size = _frame_length(ds) or len(pixels) // count
    parts = [bytes(pixels[(n - 1) * size : n * size]) for n in numbers]
    if syntax != EXPLICIT_BE:
        return parts, EXPLICIT_LE
    if not decode:
        return parts, EXPLICIT_BE
    # Big Endian frames given uncompressed are swapped to Little Endian (DICOMweb plugin 1.17+)
    bits = int(ds.get("BitsAllocated", 16) or 16)
    width = 4 if bits == 32 else 2 if bits > 8 else 1
    if width > 1:
        import numpy as np

        big, little = f">u{width}", f"<u{width}"
        parts = [np.frombuffer(p[: len(p) - len(p) % width], big).astype(little).tobytes() for p in parts]
    return parts, EXPLICIT_LE


JPEG_8BIT = frozenset({"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"})


def _jpeg_frame(ds: Any, index: int) -> bytes | None:
    """An 8-bit JPEG frame decoded by libjpeg through Pillow, colour-converted as the stream
    says (YCbCr to RGB): the same bytes as DCMTK's decoder, which Orthanc uses. None when
    Pillow cannot give it as L or RGB."""
    if stored_syntax(ds) not in JPEG_8BIT or int(ds.get("BitsAllocated", 8) or 8) != 8:
        return None
    from PIL import Image
    from pydicom.encaps import generate_frames

    count = int(ds.get("NumberOfFrames", 1) or 1)
    for i, frame in enumerate(generate_frames(ds.PixelData, number_of_frames=count)):
        if i == index:
            try:
                with Image.open(io.BytesIO(frame)) as image:
                    if image.mode not in ("L", "RGB"):
                        return None
                    return image.tobytes()
            except (OSError, ValueError):
                return None
    return None


def _decode_jpeg_in_place(ds: Any) -> bool:
    """Decode an 8-bit JPEG dataset's frames with `_jpeg_frame` (DCMTK's bytes), colour ones
    becoming RGB as DCMTK makes them; False when that path does not apply."""
    count = int(ds.get("NumberOfFrames", 1) or 1)
    decoded = []
    for index in range(count):
        frame = _jpeg_frame(ds, index)
        if frame is None:
            return False
        decoded.append(frame)
    ds.PixelData = b"".join(decoded)
    ds["PixelData"].VR = "OW"  # as DCMTK writes decoded pixel data
    if int(ds.get("SamplesPerPixel", 1) or 1) == 3:
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
    ds["PixelData"].is_undefined_length = False
    if len(ds.PixelData) % 2:
        ds.PixelData += b"\x00"
    return True


AS_STORED = "*"


def frames_in(data: bytes, numbers: list[int], target: str, quality: int = 90) -> tuple[list[bytes], str]:
    """Frames `numbers` (1-based) in `target`: AS_STORED, Explicit or Implicit VR Little Endian
    (decoded when stored compressed), or a compressed syntax of ENCODABLE (8-bit monochrome
    frames in JPEG encoded as DCMTK encodes them; other images through `recode`). Returns the
    frames and the syntax they are in; CannotTranscode when that cannot be done."""
    from . import jpeg_encode

    if target == AS_STORED:
        return frames(data, numbers, False)
    parts, _syntax = frames(data, numbers, True)
    if target in (EXPLICIT_LE, IMPLICIT_LE):
        return parts, target
    if target not in ENCODABLE:
        raise CannotTranscode(f"Cannot transcode frames to {target}")
    ds = _read(data)
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        eight_bit_gray = int(ds.BitsAllocated) == 8 and int(ds.get("SamplesPerPixel", 1) or 1) == 1
    except (AttributeError, TypeError, ValueError):
        eight_bit_gray = False
    if eight_bit_gray and target in jpeg_encode.SYNTAXES:
        return [jpeg_encode.encode(p, rows, columns, target, quality) for p in parts], target
    # any other image: the whole instance encoded in `target`, then its frames
    from pydicom.encaps import generate_frames

    recode(ds, target, quality=quality)
    count = int(ds.get("NumberOfFrames", 1) or 1)
    encoded = list(generate_frames(ds.PixelData, number_of_frames=count))
    return [bytes(encoded[n - 1]) for n in numbers], target


def _decoded_frame(ds: Any, index: int) -> bytes:
    from pydicom.pixels import pixel_array

    fast = _jpeg_frame(ds, index)
    if fast is not None:
        return fast
    try:
        array = pixel_array(ds, index=index)
    except Exception as exc:  # missing plugin, corrupt stream
        raise CannotTranscode(f"Cannot decode {stored_syntax(ds)}: {exc}") from exc
    return bytes(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())


def element_value(data: bytes, tag: int, path: tuple[tuple[int, int], ...] = ()) -> bytes | None:
    """The raw value of element `tag`, at the top level or inside the items that `path` names
    ((sequence tag, 0-based item index) pairs), for a BulkDataURI; None when there is none."""
    dataset = _read(data)
    for seq_tag, index in path:
        if seq_tag not in dataset or dataset[seq_tag].VR != "SQ" or not 0 <= index < len(dataset[seq_tag].value):
            return None
        dataset = dataset[seq_tag].value[index]
    if tag not in dataset:
        return None
    elem = dataset[tag]
    if isinstance(elem.value, bytes | bytearray):
        return bytes(elem.value)
    return None if elem.VR == "SQ" else _encode_value(elem)


def _encode_value(elem: Any) -> bytes:
    """Little-endian bytes of a non-binary element (numbers, text), as a bulk data value."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element

    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = True
    write_data_element(fp, elem)
    raw = fp.getvalue()
    return raw[8:]  # tag (4) + length (4) in Implicit VR Little Endian
