"""Frames decoded as Orthanc 1.10.1 decodes them (its DicomImageDecoder over DCMTK).

A decoded frame is a numpy array plus Orthanc's pixel format name, because the later steps
(preview stretching, truncation to 8/16 bits, rendering) depend on that format, not only on
the array's dtype:

| format | array |
| --- | --- |
| Grayscale8 / Grayscale16 / SignedGrayscale16 / Grayscale32 | (rows, columns) uint8 / uint16 / int16 / uint32 |
| RGB24 / RGB48 | (rows, columns, 3) uint8 / uint16 |

What Orthanc does, and so what this does:
- Native syntaxes: the pixel format comes from Bits Stored/Allocated, Samples per Pixel, Pixel
  Representation and the photometric interpretation (RGB needs "RGB": YBR_FULL native data is
  refused). Interleaved data is copied as is (the unused high bits are not masked) and shifted
  right when High Bit is not Bits Stored - 1; planar, 1-bit and shifted signed data are read
  value by value, masked and sign-extended on Bits Stored. PALETTE COLOR goes through its
  lookup table (8-bit indices: the entries' high bytes; 16-bit: the entries as they are).
- Compressed syntaxes (RLE, JPEG processes 1, 2/4, 14, 14 SV1, JPEG-LS): the frame's
  fragments are decoded; the photometric interpretation is ignored for the pixel format;
  YCbCr JPEG is converted to RGB when the photometric interpretation is YBR_*, as DCMTK does;
  planar RGB and YBR_FULL frames are interleaved, YBR_FULL turned into RGB, as Orthanc 1.12
  does (the version this server reports; 1.10.1 read colour-by-plane bytes as interleaved).
- Philips' private PMSCT_RLE1 compression (no Pixel Data element).
- Anything else (JPEG 2000, video...) cannot be decoded: Orthanc 1.10.1 answers so too.

Errors are OrthancError with Orthanc's codes: a frame out of range of a native image is
ParameterOutOfRange (Orthanc's image routes answer it with an empty 404), an image it cannot
decode NotImplemented, a malformed one BadFileFormat.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ErrorCode, OrthancError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

GRAY8, GRAY16, SGRAY16, GRAY32, RGB24, RGB48 = (
    "Grayscale8",
    "Grayscale16",
    "SignedGrayscale16",
    "Grayscale32",
    "RGB24",
    "RGB48",
)
_DTYPES = {GRAY8: "u1", GRAY16: "<u2", SGRAY16: "<i2", GRAY32: "<u4", RGB24: "u1", RGB48: "<u2"}
_CHANNELS = {GRAY8: 1, GRAY16: 1, SGRAY16: 1, GRAY32: 1, RGB24: 3, RGB48: 3}

NATIVE_SYNTAXES = frozenset(
    ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99")
)
RLE = "1.2.840.10008.1.2.5"
JPEG_SYNTAXES = frozenset(
    (
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.53",
        "1.2.840.10008.1.2.4.55",
        "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.70",
    )
)
JPEG_LS_SYNTAXES = frozenset(("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"))
_BASELINE = "1.2.840.10008.1.2.4.50"


@dataclass(frozen=True)
class Frame:
    """One decoded frame: pixels and Orthanc's pixel format for them."""

    pixels: np.ndarray
    format: str

    @property
    def is_color(self) -> bool:
        return self.format in (RGB24, RGB48)


def _not_implemented(details: str | None = None) -> OrthancError:
    return OrthancError(ErrorCode.NOT_IMPLEMENTED, details)


def _bad_file(details: str | None = None) -> OrthancError:
    return OrthancError(ErrorCode.BAD_FILE_FORMAT, details)


def _uint(ds: Dataset, keyword: str) -> int | None:
    """The first value of an integer attribute, None when absent or empty."""
    import pydicom

    if keyword not in ds:
        return None
    value = ds[keyword].value
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        if not value:
            return None
        value = value[0]
    if isinstance(value, bytes):
        value = int.from_bytes(value[:2], "little") if len(value) >= 2 else None
    try:
        out = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise _not_implemented() from None
    if out is None or out < 0:
        raise _not_implemented()
    return out


@dataclass(frozen=True)
class ImageInfo:
    """Orthanc's DicomImageInformation: the image attributes with its defaults and checks."""

    width: int
    height: int
    bits_allocated: int
    bits_stored: int
    high_bit: int
    samples: int
    signed: bool
    planar: bool
    frames: int
    photometric: str

    @classmethod
    def of(cls, ds: Dataset) -> ImageInfo:
        photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
        width = _uint(ds, "Columns") or 0
        height = _uint(ds, "Rows") or 0
        allocated = _uint(ds, "BitsAllocated")
        if allocated is None:
            raise _not_implemented()
        samples = _uint(ds, "SamplesPerPixel")
        samples = 1 if samples is None else samples
        stored = _uint(ds, "BitsStored")
        stored = allocated if stored is None else stored
        if stored > allocated:
            raise _not_implemented()
        high = _uint(ds, "HighBit")
        high = stored - 1 if high is None else high
        representation = _uint(ds, "PixelRepresentation") or 0
        planar = (_uint(ds, "PlanarConfiguration") or 0) if samples > 1 else 0
        frames = 1
        if "NumberOfFrames" in ds:
            try:
                frames = int(str(ds.NumberOfFrames).strip())
            except (TypeError, ValueError):
                raise _not_implemented() from None
        if allocated not in (1, 8, 16, 24, 32):
            raise OrthancError(ErrorCode.INCOMPATIBLE_IMAGE_FORMAT, f"Image not supported: {allocated} bits allocated")
        if frames <= 0:
            raise OrthancError(ErrorCode.INCOMPATIBLE_IMAGE_FORMAT, "Image not supported (no frames)")
        if planar not in (0, 1):
            raise OrthancError(
                ErrorCode.INCOMPATIBLE_IMAGE_FORMAT, f"Image not supported: planar configuration is {planar}"
            )
        if samples == 0:
            raise OrthancError(ErrorCode.INCOMPATIBLE_IMAGE_FORMAT, "Image not supported: samples per pixel is 0")
        if stored == 1 and (allocated != 1 or width % 8):
            raise _bad_file()
        return cls(
            width, height, allocated, stored, high, samples, representation != 0, planar == 1, frames, photometric
        )

    @property
    def shift(self) -> int:
        return self.high_bit + 1 - self.bits_stored

    @property
    def bytes_per_value(self) -> int:
        return self.bits_allocated // 8

    @property
    def frame_size(self) -> int:
        if self.bits_stored == 1:
            return self.height * self.width // 8
        return self.height * self.width * self.bytes_per_value * self.samples

    def pixel_format(self, ignore_photometric: bool) -> str | None:
        """Orthanc's ExtractPixelFormat: the format decoded frames get, None if unsupported."""
        stored, allocated, samples, signed = self.bits_stored, self.bits_allocated, self.samples, self.signed
        if self.photometric == "PALETTE COLOR" and samples == 1 and not signed:
            if stored == 8:
                return RGB24
            if stored == 16:
                return RGB48
        if ignore_photometric or self.photometric in ("MONOCHROME1", "MONOCHROME2"):
            if samples == 1:
                if stored == 8 and not signed:
                    return GRAY8
                if allocated == 16:
                    return SGRAY16 if signed else GRAY16
                if allocated == 32 and not signed:
                    return GRAY32
                if stored == 1 and not signed:
                    return GRAY8
        if samples == 3 and not signed and (ignore_photometric or self.photometric == "RGB"):
            if stored == 8:
                return RGB24
            if stored == 16:
                return RGB48
        return None


def read_dataset(data: bytes) -> Dataset:
    """The whole file parsed (pixel data included); BadFileFormat when it is not DICOM."""
    import pydicom

    try:
        return pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:  # pydicom raises many kinds on garbage
        raise _bad_file(str(exc)) from exc


def syntax_of(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    uid = str(getattr(meta, "TransferSyntaxUID", "") or "") if meta is not None else ""
    if not uid:
        return "1.2.840.10008.1.2.1" if not ds.is_implicit_VR else "1.2.840.10008.1.2"
    return uid


def frames_count(ds: Dataset) -> int:
    """Orthanc's DicomFrameIndex::GetFramesCount: Number of Frames, 1 when absent."""
    if "NumberOfFrames" not in ds or ds["NumberOfFrames"].value in (None, ""):
        return 1
    try:
        count = int(str(ds.NumberOfFrames).strip())
    except ValueError:
        return 1
    if count < 0:
        raise _bad_file()
    return count


# --- raw frames (the bytes of one frame, fragments joined) ---------------------------------


def _fragments(value: bytes) -> list[bytes]:
    """The items of an encapsulated Pixel Data value, the offset table first."""
    items: list[bytes] = []
    pos, n = 0, len(value)
    while pos + 8 <= n:
        group, element, length = struct.unpack_from("<HHI", value, pos)
        pos += 8
        if (group, element) == (0xFFFE, 0xE0DD):
            break
        if (group, element) != (0xFFFE, 0xE000) or length == 0xFFFFFFFF or pos + length > n:
            raise _bad_file()
        items.append(value[pos : pos + length])
        pos += length
    if not items:
        raise _bad_file()
    return items


def _fragments_of_frame(items: list[bytes], frames: int, index: int) -> list[bytes]:
    """Orthanc's FragmentIndex: one fragment per frame when the counts match, otherwise the
    Basic Offset Table says where each frame starts."""
    fragments = items[1:]
    if len(fragments) < frames:
        raise _bad_file()
    if len(fragments) == frames:
        return [fragments[index]]
    table = items[0]
    if len(table) % 4:
        raise _bad_file()
    offsets = list(struct.unpack(f"<{len(table) // 4}I", table)) if table else [0]
    if len(offsets) != frames or offsets[0] != 0:
        raise _bad_file()
    starts = {off: i for i, off in enumerate(offsets)}
    owner: list[int] = []
    offset, current = 0, 0
    for fragment in fragments:
        if current + 1 < frames and offset == offsets[current + 1]:
            current += 1
        owner.append(current)
        offset += len(fragment) + 8
    if current + 1 != frames or len(starts) != frames:
        raise _bad_file()
    return [f for f, o in zip(fragments, owner, strict=True) if o == index]


def _pmsct_rle1(ds: Dataset) -> bytes | None:
    """Philips' PMSCT_RLE1 pixels (private 07a1,1011 names it, 07a1,100a holds them):
    a run-length pass (0xa5 count value) then a delta pass (0x5a low high: absolute)."""
    kind = ds.get((0x07A1, 0x1011))
    content = ds.get((0x07A1, 0x100A))
    if kind is None or content is None or not content.value:
        return None
    name = kind.value
    if isinstance(name, bytes):
        name = name.decode("latin-1")
    if str(name).strip(" \x00") != "PMSCT_RLE1":
        return None
    raw = content.value if isinstance(content.value, bytes) else bytes(content.value)
    src = np.frombuffer(raw, np.uint8)
    # run-length pass
    out = bytearray()
    i, n = 0, len(raw)
    while i < n:
        b = raw[i]
        if b == 0xA5 and i + 2 < n:
            out += bytes([raw[i + 2]]) * (raw[i + 1] + 1)
            i += 3
        elif b == 0xA5:
            out.append(raw[i + 2] if i + 2 < n else 0)
            i += 3
        else:
            out.append(b)
            i += 1
    del src
    # delta pass
    values: list[int] = []
    delta = 0
    j, m = 0, len(out)
    while j < m:
        if out[j] == 0x5A and j + 2 < m:
            value = out[j + 1] | (out[j + 2] << 8)
            j += 3
        else:
            value = (delta + (out[j] - 256 if out[j] > 127 else out[j])) & 0xFFFF
            j += 1
        values.append(value)
        delta = value
    return np.asarray(values, np.uint16).astype("<u2").tobytes()


def raw_frame(ds: Dataset, index: int) -> tuple[bytes, str]:
    """GET /frames/{n}/raw: the frame's bytes as stored and their MIME type (Orthanc's
    DicomFrameIndex: the image attributes are checked first, then the frame number)."""
    count = frames_count(ds)
    if count and (_uint(ds, "Rows") is None or _uint(ds, "Columns") is None):
        raise _not_implemented()  # what Orthanc 1.10.1 answers for an empty Rows or Columns
    info = ImageInfo.of(ds) if count else None
    syntax = syntax_of(ds)
    mime = {
        _BASELINE: "image/jpeg",
        "1.2.840.10008.1.2.4.90": "image/jp2",
        "1.2.840.10008.1.2.4.91": "image/jp2",
    }.get(syntax, "application/octet-stream")
    chunk: Callable[[], bytes] | None = None
    if info is None:
        pass
    elif "PixelData" in ds:
        elem = ds["PixelData"]
        value = elem.value or b""
        if getattr(elem, "is_undefined_length", False):
            items = _fragments(value)
            if len(items) < count + 1:
                raise _bad_file()

            def chunk() -> bytes:
                return b"".join(_fragments_of_frame(items, count, index))
        else:
            size = info.frame_size
            if len(value) < size * count:
                raise _bad_file()
            native = _native_bytes(ds, value)

            def chunk() -> bytes:
                return native[index * size : (index + 1) * size]
    else:
        psmct = _pmsct_rle1(ds)
        if psmct is not None:
            size = info.frame_size
            if len(psmct) < size * count:
                raise _bad_file()

            def chunk() -> bytes:
                assert psmct is not None
                return psmct[index * size : (index + 1) * size]

    if index >= count:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE)
    if chunk is None:
        raise _bad_file("Cannot access a raw frame")
    return chunk(), mime


def _native_bytes(ds: Dataset, value: bytes) -> bytes:
    """Native pixel data in little endian (big endian files are swapped word by word)."""
    if syntax_of(ds) == "1.2.840.10008.1.2.2" and (_uint(ds, "BitsAllocated") or 8) > 8:
        width = (_uint(ds, "BitsAllocated") or 16) // 8
        return np.frombuffer(value[: len(value) // width * width], f">u{width}").astype(f"<u{width}").tobytes()
    return value


# --- decoding -----------------------------------------------------------------------------


def decode(data: bytes, index: int) -> Frame:
    """Frame `index` of a DICOM file, decoded as Orthanc does."""
    return decode_dataset(read_dataset(data), index)


def decode_dataset(ds: Dataset, index: int) -> Frame:
    syntax = syntax_of(ds)
    if syntax in NATIVE_SYNTAXES or syntax == "1.2.840.10008.1.2.1.99":
        return _decode_native(ds, index)
    if syntax in JPEG_SYNTAXES or syntax in JPEG_LS_SYNTAXES or syntax == RLE:
        return _decode_compressed(ds, index, syntax)
    raise _not_implemented(
        f"The built-in DCMTK decoder cannot decode some DICOM instance whose transfer syntax is: {syntax}"
    )


def _decode_native(ds: Dataset, index: int) -> Frame:
    info = ImageInfo.of(ds)
    fmt = info.pixel_format(False)
    if fmt is None:
        raise _not_implemented("Unsupported DICOM image")
    if "PixelData" in ds:
        value = ds["PixelData"].value or b""
        if getattr(ds["PixelData"], "is_undefined_length", False):
            raise _bad_file()
        value = _native_bytes(ds, value)
    else:
        psmct = _pmsct_rle1(ds)
        if psmct is None:
            raise _bad_file()
        value = psmct
    if info.bits_allocated > 32 or info.bits_stored >= 32:
        raise _not_implemented()
    if info.frames * info.frame_size > len(value):
        raise _bad_file()
    if index >= info.frames:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE)
    if info.photometric == "PALETTE COLOR":
        return _palette(ds, info, fmt, value)
    source = info.pixel_format(False)
    if not info.planar and info.bits_stored != 1 and source is not None:
        dtype = np.dtype(_DTYPES[source])
        channels = _CHANNELS[source]
        size = info.height * info.width * channels * dtype.itemsize
        if (index + 1) * size <= len(value):
            arr = np.frombuffer(value, dtype, info.height * info.width * channels, index * size)
            shape = (info.height, info.width) if channels == 1 else (info.height, info.width, channels)
            arr = arr.reshape(shape)
            shift = info.shift
            if shift == 0:
                return Frame(arr, fmt)
            if fmt in (GRAY8, GRAY16):
                return Frame(arr >> shift, fmt)
    return Frame(_slow_copy(info, fmt, value, index), fmt)


def _slow_copy(info: ImageInfo, fmt: str, value: bytes, index: int) -> np.ndarray:
    """Orthanc's value-by-value copy (DicomIntegerPixelAccessor): masked and sign-extended on
    Bits Stored, clamped to the target type."""
    h, w, channels = info.height, info.width, info.samples
    base = index * info.frame_size
    if info.bits_stored == 1:
        if channels != 1:
            raise OrthancError(ErrorCode.INCOMPATIBLE_IMAGE_FORMAT)
        bits = np.frombuffer(value, np.uint8, info.frame_size, base).reshape(h, w // 8)
        unpacked = np.unpackbits(bits, axis=1, bitorder="little")
        values = unpacked.astype(np.int64) * 255
    else:
        bpv = info.bytes_per_value
        raw = np.frombuffer(value, np.uint8, info.frame_size, base)
        words = np.zeros(raw.size // bpv, np.uint32)
        for k in range(bpv):
            words |= raw[k::bpv].astype(np.uint32) << (8 * k)
        words >>= info.shift
        if info.signed:
            mask = (1 << (info.bits_stored - 1)) - 1
            sign = 1 << (info.bits_stored - 1)
            values = np.where(words & sign, -mask + (words & mask).astype(np.int64) - 1, words & mask).astype(np.int64)
        else:
            values = (words & ((1 << info.bits_stored) - 1)).astype(np.int64)
        if info.planar:
            values = values.reshape(channels, h, w).transpose(1, 2, 0)
        else:
            values = values.reshape(h, w, channels)
        if channels == 1:
            values = values.reshape(h, w)
    if fmt == GRAY32 or fmt == RGB48:
        raise OrthancError(ErrorCode.INTERNAL_ERROR)
    info_dtype = np.dtype(_DTYPES[fmt])
    limits = np.iinfo(info_dtype)
    return np.clip(values, limits.min, limits.max).astype(info_dtype)


def _palette(ds: Dataset, info: ImageInfo, fmt: str, value: bytes) -> Frame:
    """PALETTE COLOR through its lookup tables, as Orthanc accepts them (one frame,
    interleaved, three identical descriptors of 256 8-bit or 65536 16-bit entries)."""
    try:
        descriptors = [list(ds[f"{c}PaletteColorLookupTableDescriptor"].value) for c in ("Red", "Green", "Blue")]
        tables = [np.frombuffer(ds[f"{c}PaletteColorLookupTableData"].value, "<u2") for c in ("Red", "Green", "Blue")]
    except (KeyError, TypeError, ValueError):
        raise _not_implemented() from None
    if info.planar or info.frames != 1 or not (descriptors[0] == descriptors[1] == descriptors[2]):
        raise _not_implemented()
    h, w = info.height, info.width
    if fmt == RGB24:
        if descriptors[0] != [256, 0, 16] or any(t.size != 256 for t in tables):
            raise _not_implemented()
        if len(value) != w * h:
            vr = ds["PixelData"].VR
            if not (vr == "OW" and info.bits_allocated == 8 and 2 * len(value) == w * h):
                raise _not_implemented()
        indices = np.frombuffer(value, np.uint8, min(len(value), w * h))
        if indices.size < w * h:
            raise _not_implemented()
        out = np.stack([(t >> 8).astype(np.uint8)[indices] for t in tables], axis=1)
        return Frame(out.reshape(h, w, 3), RGB24)
    if descriptors[0] != [0, 0, 16] or any(t.size != 65536 for t in tables) or len(value) != 2 * w * h:
        raise _not_implemented()
    indices = np.frombuffer(value, "<u2", w * h)
    out = np.stack([t[indices] for t in tables], axis=1)
    return Frame(out.reshape(h, w, 3).astype(np.uint16), RGB48)


def _ybr_full_to_rgb(arr: np.ndarray) -> np.ndarray:
    """Orthanc's ConvertJpegYCbCrToRgb: single precision, truncated towards zero."""
    f = arr.astype(np.float32)
    y, cb, cr = f[..., 0], f[..., 1] - np.float32(128), f[..., 2] - np.float32(128)
    r = y + np.float32(1.402) * cr
    g = y - np.float32(0.344136) * cb - np.float32(0.714136) * cr
    b = y + np.float32(1.772) * cb
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


def _decode_compressed(ds: Dataset, index: int, syntax: str) -> Frame:
    info = ImageInfo.of(ds)
    fmt = info.pixel_format(True)
    if fmt is None:
        raise _not_implemented("Unsupported DICOM image")
    if "PixelData" not in ds or not getattr(ds["PixelData"], "is_undefined_length", False):
        raise _bad_file()
    try:
        fragments = _fragments_of_frame(_fragments(ds["PixelData"].value), info.frames, index)
    except (OrthancError, IndexError) as exc:
        raise _bad_file("Cannot decode a non-palette image") from exc
    stream = b"".join(fragments)
    try:
        if syntax == RLE:
            arr, model = _rle(stream, info, fmt, fragments)
        else:
            arr, model = _jpeg(stream, info, fmt, syntax)
    except OrthancError:
        raise
    except Exception as exc:
        raise _bad_file("Cannot decode a non-palette image") from exc
    if info.photometric == "PALETTE COLOR" and info.samples == 1:
        raise _not_implemented("Cannot decode a compressed palette image")
    if info.samples == 3 and info.planar:
        if fmt == RGB24 and model in ("RGB", "YBR_FULL"):
            if model == "YBR_FULL":  # Orthanc converts what DCMTK left in YCbCr
                arr = _ybr_full_to_rgb(arr)
        else:  # colour-by-plane bytes that Orthanc reads as interleaved pixels
            arr = np.ascontiguousarray(arr.transpose(2, 0, 1)).reshape(arr.shape)
    return Frame(arr, fmt)


def _rle(stream: bytes, info: ImageInfo, fmt: str, fragments: list[bytes]) -> tuple[np.ndarray, str]:
    """RLE Lossless (PS3.5 G): one segment per byte of each sample, most significant first."""
    from pydicom.pixels.decoders.rle import _rle_decode_frame

    bits = info.bits_allocated
    decoded = _rle_decode_frame(b"".join(fragments), info.height, info.width, info.samples, bits, ">")
    dtype = np.dtype(_DTYPES[fmt])
    planes = np.frombuffer(bytes(decoded), f"<u{bits // 8}" if bits > 8 else "u1")
    planes = planes.reshape(info.samples, info.height, info.width)
    if info.samples == 1:
        arr = planes[0]
    else:
        arr = planes.transpose(1, 2, 0)
    arr = np.ascontiguousarray(arr).astype(dtype.newbyteorder("<") if dtype.itemsize > 1 else dtype, copy=False)
    if fmt in (SGRAY16,):
        arr = arr.view(np.int16) if arr.dtype.itemsize == 2 else arr
    return arr, info.photometric


def _codecs_decode(stream: bytes, syntax: str, ybr: bool) -> np.ndarray:
    """12-bit lossy, lossless JPEG and JPEG-LS: imagecodecs (libjpeg-turbo 3, whose 12-bit
    decoding gives DCMTK's values exactly; CharLS for JPEG-LS), else pylibjpeg's libjpeg."""
    try:
        import imagecodecs

        available = True
    except ImportError:
        available = False
    if available:
        try:
            if syntax in JPEG_LS_SYNTAXES:
                return np.asarray(imagecodecs.jpegls_decode(stream))
            return np.asarray(imagecodecs.jpeg8_decode(stream))
        except Exception:  # a stream libjpeg-turbo refuses: let libjpeg try
            pass
    import libjpeg

    return np.asarray(libjpeg.decode(stream, colour_transform=1 if ybr else 0))


def _jpeg(stream: bytes, info: ImageInfo, fmt: str, syntax: str) -> tuple[np.ndarray, str]:
    """JPEG and JPEG-LS: 8-bit lossy through libjpeg-turbo (Pillow), the same results as
    DCMTK's IJG 6b decoder; the others through `_codecs_decode`."""
    ybr = info.photometric.startswith("YBR")
    arr: np.ndarray | None = None
    if syntax in (_BASELINE, "1.2.840.10008.1.2.4.51") and info.bits_stored <= 8:
        from PIL import Image

        try:
            img = Image.open(io.BytesIO(stream))
            if info.samples == 3 and not ybr and img.mode == "RGB":
                img.draft("YCbCr", img.size)
            img.load()
            arr = np.asarray(img)
        except Exception:
            arr = None
    if arr is None:
        arr = _codecs_decode(stream, syntax, ybr and info.samples == 3)
    dtype = np.dtype(_DTYPES[fmt])
    arr = np.asarray(arr)
    if info.samples == 3 and arr.ndim == 2:
        arr = arr.reshape(info.height, info.width, 3)
    if arr.shape[:2] != (info.height, info.width):
        raise _bad_file("Cannot decode a non-palette image")
    if fmt == SGRAY16:
        arr = arr.astype(np.uint16).view(np.int16)
    else:
        arr = arr.astype(dtype)
    return np.ascontiguousarray(arr), "RGB" if ybr else info.photometric
