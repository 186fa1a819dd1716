"""Orthanc's image answers from decoded frames: /preview, /image-uint8|uint16|int16,
/rendered, /matlab, /numpy, and the PNG/JPEG encodings of them.

Each step follows Orthanc 1.10.1's ImageProcessing arithmetic (single precision, the same
rounding and clamping), so PNG answers are byte for byte Orthanc's (`png.encode`) and JPEG
answers differ only by the encoder (libjpeg-turbo through Pillow, same quality).

The images of a small native file are drawn where it is read (`small_image_answer`): parsing
it with pydicom would cost more than the rest of a 64x64 preview. DICOMweb's /rendered, drawn
as Orthanc's DICOMweb plugin draws it, is `web_rendered`.
"""

from __future__ import annotations

import functools
import io
import zipfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ErrorCode, OrthancError
from ..model.fastparse import RENDER_TAGS, NativePixels, native_pixels
from ..model.fasttags import tags_fast
from ..model.tagtext import TagsOptions
from . import png
from .pixels import GRAY8, GRAY16, GRAY32, RGB24, RGB48, SGRAY16, Frame, decode_dataset, read_dataset

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

PREVIEW, UINT8, UINT16, INT16 = "preview", "uint8", "uint16", "int16"
_F32 = np.float32


def _not_implemented(details: str | None = None) -> OrthancError:
    return OrthancError(ErrorCode.NOT_IMPLEMENTED, details)


def _to_uint8(v: np.ndarray, rounded: bool) -> np.ndarray:
    """ShiftScale's last step when the target is 8 bits (float32 `v`, consumed): rounded half
    away from zero or floored, then clamped to [0, 255]. Below 0 everything ends at 0, so the
    rounding is floor(v + 0.5) there too; four in-place calls instead of a dozen (what a small
    image costs); tests/unit/test_render_mapping.py checks it against ShiftScale as written."""
    if rounded:
        v += _F32(0.5)
    np.floor(v, out=v)
    np.maximum(v, _F32(0), out=v)
    np.minimum(v, _F32(255), out=v)
    return v.astype(np.uint8)


def _through_table(arr: np.ndarray, lo: int, hi: int, function: Any) -> np.ndarray:
    """`function` (elementwise) of an integer image, computed once per value in [lo, hi] and
    looked up: the same results, a few times faster than on every pixel of a large image."""
    values = np.arange(lo, hi + 1, dtype=np.int64).astype(arr.dtype)
    table = function(values)
    if arr.dtype.kind != "u":
        index = arr.astype(np.int32) - lo
    else:
        index = arr - arr.dtype.type(lo) if lo else arr
    return table.take(index)  # take: half the time of table[index] on a large image


_TABLE_MAX = 1 << 17
"""Value ranges up to this size go through a lookup table (`_through_table`)."""


def _table_pays(arr: np.ndarray, lo: int, hi: int) -> bool:
    """Whether the lookup table is smaller than the image (otherwise mapping every pixel is
    less work: a 64x64 image of 12-bit values)."""
    return 0 < hi - lo + 1 < min(arr.size, _TABLE_MAX)


def _identity(offset: float, scaling: float) -> bool:
    eps = float(np.finfo(np.float32).eps)
    return abs(offset) <= 10 * eps and abs(scaling - 1.0) <= 10 * eps


def stretch(frame: Frame) -> np.ndarray:
    """Orthanc's preview mapping: colour as is (RGB48 keeps its high bytes), grayscale from
    its own minimum to 0 and maximum to 255."""
    arr, fmt = frame.pixels, frame.format
    if fmt == RGB24:
        return arr
    if fmt == RGB48:
        return (arr >> 8).astype(np.uint8)
    if fmt not in (GRAY8, GRAY16, SGRAY16):
        raise _not_implemented()
    if arr.size == 0:
        return arr.astype(np.uint8)
    lo, hi = int(arr.min()), int(arr.max())
    if lo == hi:
        return np.zeros(arr.shape, np.uint8)
    scaling = _F32(255.0) / _F32(hi - lo)
    offset = _F32(-lo) * scaling  # ShiftScale: (x + offset) * scaling as a*x + b
    if _identity(float(offset), float(scaling)):
        return np.clip(arr, 0, 255).astype(np.uint8)

    def mapping(x: np.ndarray) -> np.ndarray:  # ShiftScale to x's type, then to [0, 255]: the same
        return _to_uint8(scaling * x.astype(_F32) + offset, True)

    return _through_table(arr, lo, hi, mapping) if _table_pays(arr, lo, hi) else mapping(arr)


def truncate(frame: Frame, mode: str) -> np.ndarray:
    """/image-uint8, -uint16, -int16: grayscale values clamped to the target type; colour
    images refused (Orthanc does not turn colour into gray here)."""
    if frame.format == RGB24:
        raise _not_implemented()
    if frame.format not in (GRAY8, GRAY16, SGRAY16):
        raise _not_implemented()
    dtype: Any = {UINT8: np.uint8, UINT16: np.uint16, INT16: np.int16}[mode]
    info = np.iinfo(dtype)
    return np.clip(frame.pixels.astype(np.int64), info.min, info.max).astype(dtype)


def extract(frame: Frame, mode: str, invert: bool) -> np.ndarray:
    """Orthanc's ApplyExtractionMode: the array an image route encodes."""
    out = stretch(frame) if mode == PREVIEW else truncate(frame, mode)
    if invert:
        if out.dtype != np.uint8 or out.ndim != 2:
            raise _not_implemented()
        out = 255 - out
    return out


def encode(image: np.ndarray, mime: str, quality: int = 90, exact: bool = True) -> bytes:
    """PNG (Orthanc's bytes; with `exact` off, a large image's bytes are compressed for
    speed, pixels unchanged) or JPEG (8-bit only, as Orthanc)."""
    if mime == "image/png":
        return png.encode(image, exact)
    if image.dtype != np.uint8:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE)
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(image).save(out, format="JPEG", quality=quality)
    return out.getvalue()


# --- /rendered ----------------------------------------------------------------------------


def _first_number(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        seq = list(value)  # type: ignore[call-overload]
        if not seq:
            return None
        value = seq[0]
    try:
        return float(str(value).split("\\")[0].strip())
    except ValueError:
        return None


def per_frame_item(ds: Dataset, index: int, sequence: str) -> Dataset | None:
    groups = ds.get("PerFrameFunctionalGroupsSequence")
    if not groups or index >= len(groups):
        return None
    inner = groups[index].get(sequence)
    return inner[0] if inner else None


def _is_string(ds: Dataset, keyword: str) -> bool:
    """Present with a string VR: DCMTK does not read an element stored as UN as a string."""
    raw = ds.get_item(keyword)
    return raw is not None and raw.VR != "UN"


def number_pair(ds: Dataset | None, first: str, second: str) -> tuple[float, float] | None:
    if ds is None or not _is_string(ds, first) or not _is_string(ds, second):
        return None
    a, b = _first_number(ds[first].value), _first_number(ds[second].value)
    if a is None or b is None:
        return None
    return a, b


def rescale_of(ds: Dataset, index: int) -> tuple[float, float]:
    """(intercept, slope) as Orthanc's ParsedDicomFile::GetRescale reads them."""
    if str(ds.get("SOPClassUID", "")) == "1.2.840.10008.5.1.4.1.1.481.2":  # RT Dose: no rescale
        return 0.0, 1.0
    found = number_pair(ds, "RescaleIntercept", "RescaleSlope")
    if found is None:
        found = number_pair(
            per_frame_item(ds, index, "PixelValueTransformationSequence"), "RescaleIntercept", "RescaleSlope"
        )
    return found if found is not None else (0.0, 1.0)


def windowing_of(ds: Dataset, index: int) -> tuple[float, float]:
    """(center, width) as Orthanc's GetDefaultWindowing reads them: the file's, a frame's
    Frame VOI LUT, or the whole range of Bits Stored."""
    found = number_pair(ds, "WindowCenter", "WindowWidth")
    if found is None:
        found = number_pair(per_frame_item(ds, index, "FrameVOILUTSequence"), "WindowCenter", "WindowWidth")
    if found is not None:
        return found
    bits = ds.get("BitsStored")
    return _bits_window(int(bits) if isinstance(bits, int) and bits else 8)


def _bits_window(stored: int) -> tuple[float, float]:
    """(center, width) of Orthanc's default window, 2^BitsStored wide, computed as C's
    `1 << bits` on a 32-bit int does on x86 (32 bits gives 1, 31 a negative width)."""
    width = (1 << (stored & 31)) & 0xFFFFFFFF
    if width >= 1 << 31:
        width -= 1 << 32
    return float(width) / 2.0, float(width)


@dataclass(frozen=True)
class FrameTags:
    """What /rendered reads from the file for one frame: MONOCHROME1?, (intercept, slope),
    (center, width)."""

    monochrome1: bool
    rescale: tuple[float, float]
    window: tuple[float, float]

    @classmethod
    def of(cls, ds: Dataset, index: int) -> FrameTags:
        mono1 = str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1"
        return cls(mono1, rescale_of(ds, index), windowing_of(ds, index))

    @classmethod
    def of_short(cls, tags: dict[str, Any], index: int) -> FrameTags | None:
        """The same from Orthanc's "short" JSON of the file (the fast tag reader's answer);
        None when a value is not as a plain string (the caller reads the file with pydicom)."""

        def text(where: dict[str, Any], key: str) -> str | None:
            value = where.get(key)
            if value is None:
                return None
            if not isinstance(value, str):
                raise ValueError(key)
            return value

        def pair(where: dict[str, Any] | None, first: str, second: str) -> tuple[float, float] | None:
            if where is None:
                return None
            a, b = text(where, first), text(where, second)
            if a is None or b is None:
                return None
            x, y = _first_number(a), _first_number(b)
            return None if x is None or y is None else (x, y)

        def per_frame(sequence: str) -> dict[str, Any] | None:
            groups = tags.get("5200,9230")
            if not isinstance(groups, list) or index >= len(groups) or not isinstance(groups[index], dict):
                return None
            inner = groups[index].get(sequence)
            return inner[0] if isinstance(inner, list) and inner and isinstance(inner[0], dict) else None

        try:
            mono1 = (text(tags, "0028,0004") or "").strip() == "MONOCHROME1"
            if (text(tags, "0008,0016") or "").strip() == "1.2.840.10008.5.1.4.1.1.481.2":
                rescale: tuple[float, float] | None = (0.0, 1.0)
            else:
                rescale = pair(tags, "0028,1052", "0028,1053") or pair(per_frame("0028,9145"), "0028,1052", "0028,1053")
            window = pair(tags, "0028,1050", "0028,1051") or pair(per_frame("0028,9132"), "0028,1050", "0028,1051")
            if window is None:
                stored = text(tags, "0028,0101")
                window = _bits_window(int(stored) if stored and stored.strip().isdigit() and int(stored) else 8)
        except ValueError:
            return None
        return cls(mono1, rescale or (0.0, 1.0), window)


@dataclass(frozen=True)
class RenderArgs:
    """The query of /rendered (None: not given)."""

    window_center: float | None = None
    window_width: float | None = None
    width: int = 0
    height: int = 0
    smooth: bool = False


def resize_nearest(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Orthanc's nearest-neighbour Resize (sampling at pixel centres, single precision)."""
    src_h, src_w = image.shape[:2]
    if width == 0 or height == 0:
        return np.zeros((height, width, *image.shape[2:]), image.dtype)
    sx = _F32(src_w) / _F32(width)
    sy = _F32(src_h) / _F32(height)
    xs = np.clip(np.floor((np.arange(width, dtype=_F32) + _F32(0.5)) * sx).astype(np.int64), 0, src_w - 1)
    ys = np.clip(np.floor((np.arange(height, dtype=_F32) + _F32(0.5)) * sy).astype(np.int64), 0, src_h - 1)
    return image[ys][:, xs]


def _smooth(image: np.ndarray) -> np.ndarray:
    """Orthanc's SmoothGaussian5x5 without rounding: the separable kernel 1 4 6 4 1 with the
    borders repeated, divided by 256 and truncated (all sums are exact in single precision)."""
    kernel = (1, 4, 6, 4, 1)
    x = image.astype(np.int64)
    pad_w = [(0, 0), (2, 2)] + [(0, 0)] * (x.ndim - 2)
    padded = np.pad(x, pad_w, mode="edge")
    w = x.shape[1]
    horizontal = sum(k * padded[:, i : i + w] for i, k in enumerate(kernel))
    pad_h = [(2, 2)] + [(0, 0)] * (x.ndim - 1)
    padded = np.pad(horizontal, pad_h, mode="edge")
    h = x.shape[0]
    vertical = sum(k * padded[i : i + h] for i, k in enumerate(kernel))
    return np.clip(vertical // 256, 0, 255).astype(np.uint8)


def _target_size(shape: tuple[int, ...], args: RenderArgs) -> tuple[int, int]:
    height, width = shape[0], shape[1]
    if not width or not height:
        return width, height
    ratio = _F32(1)
    if args.width and args.height:
        ratio = min(_F32(args.width) / _F32(width), _F32(args.height) / _F32(height))
    elif args.width:
        ratio = _F32(args.width) / _F32(width)
    elif args.height:
        ratio = _F32(args.height) / _F32(height)

    def iround(v: np.float32) -> int:
        return int(np.trunc(v + np.copysign(_F32(0.5), v)))

    return iround(ratio * _F32(width)), iround(ratio * _F32(height))


def rendered(frame: Frame, tags: FrameTags, args: RenderArgs) -> tuple[np.ndarray, bool]:
    """Orthanc's /rendered: (8-bit image, whether to invert it). Grayscale goes through the
    rescale and the window (the file's unless given) to 8 bits; colour is left as is."""
    invert = tags.monochrome1
    intercept, slope = tags.rescale
    center, width = tags.window
    if args.window_center is not None:
        center = args.window_center
    if args.window_width is not None:
        width = args.window_width
    arr = frame.pixels
    target_w, target_h = _target_size(arr.shape, args)
    same = (target_w, target_h) == (arr.shape[1], arr.shape[0])
    if frame.is_color:
        if same:
            return stretch(frame), False
        if frame.format != RGB24:
            raise _not_implemented()
        if args.smooth and (target_w < arr.shape[1] or target_h < arr.shape[0]):
            arr = _smooth(arr)
        return resize_nearest(arr, target_w, target_h), False
    if frame.format not in (GRAY8, GRAY16, SGRAY16, GRAY32):
        raise _not_implemented()
    if width <= 1.0:
        width = 1.0
    if abs(slope) <= 0.0001:
        slope = 0.0001
    scaling = 255.0 * slope / width
    offset = (intercept - center + width / 2.0) / slope
    a = _F32(scaling)
    b = _F32(offset) * _F32(scaling)

    def mapping(x: np.ndarray) -> np.ndarray:
        values = x.astype(_F32)
        if _identity(float(b), float(a)):
            return np.clip(values, 0, 255).astype(np.uint8)
        return _to_uint8(a * values + b, False)

    lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
    out = _through_table(arr, lo, hi, mapping) if _table_pays(arr, lo, hi) else mapping(arr)
    if not same:
        if args.smooth and (target_w < arr.shape[1] or target_h < arr.shape[0]):
            out = _smooth(out)
        out = resize_nearest(out, target_w, target_h)
    return out, invert


def image_answer(
    decoded: Frame, tags: FrameTags, mode: str, args: RenderArgs | None, mime: str, quality: int = 90
) -> bytes:
    """The body of Orthanc's /preview, /image-uint8|uint16|int16 (`mode`) or /rendered (`mode`
    "rendered", with `args`) of a decoded frame, encoded as `mime` (PNG, JPEG or PAM).
    ParameterOutOfRange for a JPEG of 16-bit values, as Orthanc."""
    if mode == "rendered":
        image, invert = rendered(decoded, tags, args or RenderArgs())
        extraction = UINT8 if image.ndim == 2 else PREVIEW
        decoded = Frame(image, GRAY8 if image.ndim == 2 else RGB24)
    else:
        extraction = mode
        invert = mode == PREVIEW and tags.monochrome1
    if mime == "image/jpeg" and extraction not in (PREVIEW, UINT8):
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE)
    out = extract(decoded, extraction, invert)
    if mime == "image/x-portable-arbitrarymap":
        return pam(out)
    # /rendered is what viewers ask for at full size; it is not /preview (whose bytes clients
    # compare with Orthanc's), so large rendered PNGs are compressed for speed.
    return encode(out, mime, quality, exact=mode != "rendered")


@functools.cache
def _short_options() -> TagsOptions:
    """Options of the fast tag reader, made on first use (they load DCMTK's dictionary)."""
    return TagsOptions()


def small_image_answer(
    data: bytes, index: int, mode: str, args: RenderArgs | None, mime: str, quality: int = 90
) -> bytes | None:
    """`image_answer` of a small file with native pixels of a common layout, read without
    pydicom (cheap enough for the event loop); None for any other file."""
    if len(data) > SMALL_FILE:
        return None
    return native_image_answer(data, index, mode, args, mime, quality, SMALL_ELEMENTS)


def native_image_answer(
    data: bytes,
    index: int,
    mode: str,
    args: RenderArgs | None,
    mime: str,
    quality: int = 90,
    max_elements: int | None = None,
) -> bytes | None:
    """`image_answer` of a file with native pixels of a common layout (`native_frame`), read
    without pydicom whatever its size (0.2 ms less per 512x512 CT); None for any other file
    (the caller then reads it with pydicom). `max_elements` bounds the tags walked for
    /rendered."""
    layout = native_pixels(data)
    found = None if layout is None else _native_frame_of(data, layout, index)
    if found is None:
        return None
    assert layout is not None
    tags: FrameTags | None
    if mode == "rendered":
        tags = _native_tags(data, layout, found[1])
        if tags is None:
            short = tags_fast(data, "short", _short_options(), with_pixels=False, max_elements=max_elements)
            tags = None if short is None else FrameTags.of_short(short, index)
        if tags is None:
            return None
    else:
        tags = FrameTags(found[1], (0.0, 1.0), (0.0, 0.0))
    return image_answer(found[0], tags, mode, args, mime, quality)


_RT_DOSE = "1.2.840.10008.5.1.4.1.1.481.2"
_PLAIN = {b"DS": frozenset(b"0123456789+-.eE \\"), b"UI": frozenset(b"0123456789. \0")}
"""The bytes a value may hold for `_native_tags` to read it (anything else: the tag reader)."""


def _native_tags(data: bytes, layout: NativePixels, monochrome1: bool) -> FrameTags | None:
    """What `FrameTags.of_short` reads, from the elements the native walk noted (a third of a
    small /rendered's work saved); None when a value is not plain ASCII of its own VR, or the
    file has per-frame groups (the tag reader then decides, as before)."""
    if 0x52009230 in layout.others:
        return None
    texts: dict[int, str] = {}
    for tag, (vr, offset, length) in layout.others.items():
        expected = RENDER_TAGS[tag]
        raw = data[offset : offset + length]
        if vr not in (b"", expected) or length > 64 or not _PLAIN[expected].issuperset(raw):
            return None
        texts[tag] = raw.split(b"\0", 1)[0].decode("ascii")

    def pair(first: int, second: int) -> tuple[float, float] | None:
        a, b = texts.get(first), texts.get(second)
        if a is None or b is None:
            return None
        x, y = _first_number(a), _first_number(b)
        return None if x is None or y is None else (x, y)

    if texts.get(0x00080016, "").strip() == _RT_DOSE:
        rescale: tuple[float, float] | None = (0.0, 1.0)
    else:
        rescale = pair(0x00281052, 0x00281053)
    window = pair(0x00281050, 0x00281051)
    if window is None:
        window = _bits_window(layout.numbers.get(0x00280101) or 8)
    return FrameTags(monochrome1, rescale or (0.0, 1.0), window)


SMALL_ELEMENTS = 150
"""At most this many elements are walked by the fast tag reader on the event loop."""


def pam(image: np.ndarray) -> bytes:
    """A Portable Arbitrary Map, as Orthanc's PamWriter writes it (16-bit big endian)."""
    height, width = image.shape[:2]
    depth = 1 if image.ndim == 2 else image.shape[2]
    maxval = 255 if image.dtype.itemsize == 1 else 65535
    tupltype = {1: "GRAYSCALE", 3: "RGB", 4: "RGB_ALPHA"}[depth]
    head = f"P7\nWIDTH {width}\nHEIGHT {height}\nDEPTH {depth}\nMAXVAL {maxval}\nTUPLTYPE {tupltype}\nENDHDR\n"
    return head.encode() + image.astype(">u2" if maxval > 255 else "u1").tobytes()


# --- /matlab and /numpy -------------------------------------------------------------------


def matlab(frame: Frame) -> bytes:
    """Orthanc's Octave/Matlab matrix text of a frame."""
    arr = frame.pixels
    if frame.format == RGB24:
        height, width = arr.shape[:2]
        rows = ["".join(f"{v} " for v in row.tolist()) for row in arr.reshape(height, width * 3)]
        return f"double(permute(reshape([ {''.join(rows)}], [ 3 {height} {width} ]), [ 3 2 1 ]))".encode()
    if frame.format not in (GRAY8, GRAY16, SGRAY16, GRAY32):
        raise _not_implemented()
    rows = ["".join(f"{v} " for v in row.tolist()) for row in arr]
    return ("double([ " + "; ".join(rows) + "])").encode()


_NUMPY_TYPES = {GRAY8: ("<u1", 1), GRAY16: ("<u2", 1), SGRAY16: ("<i2", 1), RGB24: ("<u1", 3), "Float32": ("<f4", 1)}


def numpy_header(depth: int, height: int, width: int, fmt: str) -> bytes:
    """Orthanc's NumpyWriter header (format 1.0, padded to a multiple of 64 bytes)."""
    if fmt not in _NUMPY_TYPES:
        raise _not_implemented()
    descr, channels = _NUMPY_TYPES[fmt]
    prefix = f"{depth}, " if depth else ""
    info = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': ({prefix}{height},{width},{channels}), }}"
    minimum = 8 + 2 + len(info) + 1
    length = 64
    while length < minimum:
        length += 64
    zeros = length - minimum
    header_length = len(info) + zeros + 1
    return b"\x93NUMPY\x01\x00" + header_length.to_bytes(2, "little") + info.encode() + b" " * zeros + b"\n"


def numpy_pixels(frame: Frame, ds: Dataset, index: int, rescale: bool) -> tuple[str, bytes]:
    """(format written, bytes) of one frame for /numpy: grayscale through the rescale as
    float32 when `rescale`, otherwise the decoded values."""
    if rescale and frame.format != RGB24:
        if frame.format not in (GRAY8, GRAY16, SGRAY16, GRAY32):
            raise _not_implemented()
        intercept, slope = rescale_of(ds, index)
        values = frame.pixels.astype(_F32)
        if not _identity(intercept, slope):
            values = _F32(slope) * values + _F32(intercept)
        return "Float32", values.astype("<f4").tobytes()
    if frame.format not in _NUMPY_TYPES:
        raise _not_implemented()
    return frame.format, np.ascontiguousarray(frame.pixels).astype(_NUMPY_TYPES[frame.format][0]).tobytes()


def numpy_file(header: bytes, body: list[bytes], compress: bool) -> bytes:
    """The .npy, or a .npz of one array named arr_0 as Orthanc writes it."""
    data = header + b"".join(body)
    if not compress:
        return data
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, allowZip64=len(data) >= 1 << 30) as zf:
        zf.writestr("arr_0", data)
    return out.getvalue()


# --- the whole preview of a file (also used by DICOMweb and WADO-URI) ----------------------


def preview_png(data: bytes, frame: int = 0) -> bytes:
    """Orthanc's /preview PNG of one frame of a DICOM file."""
    ds = read_dataset(data)
    decoded = decode_dataset(ds, frame)
    invert = str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1"
    return png.encode(extract(decoded, PREVIEW, invert))


SMALL_FILE = 64 * 1024
"""Files up to this size with native pixels (at most ~32K pixels) are previewed where they are
read: ~0.1 ms of work, less than a hop to a worker thread and back."""

_SMALL_FORMATS: dict[tuple[int, int], tuple[np.dtype[Any], str]] = {
    (8, 0): (np.dtype("u1"), GRAY8),
    (16, 0): (np.dtype("<u2"), GRAY16),
    (16, 1): (np.dtype("<i2"), SGRAY16),
}


def native_frame(data: bytes, index: int) -> tuple[Frame, bool] | None:
    """(frame, MONOCHROME1?) read straight from a little-endian native file of a common layout
    (monochrome 8/16 bits, interleaved RGB 8 bits, no shift), exactly as `pixels.decode`
    decodes it; None when the layout is not one read here."""
    found = native_pixels(data)
    return None if found is None else _native_frame_of(data, found, index)


def _native_frame_of(data: bytes, found: NativePixels, index: int) -> tuple[Frame, bool] | None:
    v, photometric = found.numbers, found.photometric
    try:
        rows, cols, bits, samples = v[0x00280010], v[0x00280011], v[0x00280100], v.get(0x00280002, 1)
    except KeyError:
        return None
    stored = v.get(0x00280101, bits)
    high = v.get(0x00280102, stored - 1)
    signed = v.get(0x00280103, 0)
    frames = v.get(0x00280008, 1)
    if high != stored - 1 or not rows or not cols or frames < 1 or index >= frames:
        return None
    if samples == 1 and photometric in ("MONOCHROME1", "MONOCHROME2"):
        if bits == 8 and stored != 8:
            return None
        key = _SMALL_FORMATS.get((bits, signed))
        if key is None:
            return None
        dtype: np.dtype[Any] = key[0]
        fmt = key[1]
        shape: tuple[int, ...] = (rows, cols)
    elif (
        samples == 3 and photometric == "RGB" and bits == 8 and stored == 8 and not signed and v.get(0x00280006, 0) == 0
    ):
        dtype, fmt, shape = np.dtype(np.uint8), RGB24, (rows, cols, 3)
    else:
        return None
    count = int(np.prod(shape))
    size = count * dtype.itemsize
    if found.length < size * frames:
        return None
    arr = np.frombuffer(data, dtype, count, found.offset + index * size).reshape(shape)
    return Frame(arr, fmt), photometric == "MONOCHROME1"
