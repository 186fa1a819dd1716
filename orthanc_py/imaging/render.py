"""Decoded frames and Orthanc's PNG preview (grayscale stretched to the frame's own range).

Native little-endian frames of the common layouts (monochrome 8/16 bits, RGB 8 bits) are read
straight from the file's bytes (`_native_frame`); pydicom's `pixel_array` gives the same array
but its decoder set-up cost five times the rest of a 64x64 preview. Everything else (compressed,
big endian, palette, YBR, odd lengths) goes through pydicom. PNGs of 8-bit images are written
here (`png_bytes`), PIL's writer cost as much as the rest of the preview.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import numpy as np
import pydicom
from PIL import Image

from ..model.fastparse import native_pixels

_SAMPLES, _PLANAR, _FRAMES = 0x00280002, 0x00280006, 0x00280008
_ROWS, _COLUMNS, _ALLOCATED, _STORED, _SIGNED = 0x00280010, 0x00280011, 0x00280100, 0x00280101, 0x00280103
_DTYPES: dict[tuple[int, int], np.dtype[Any]] = {
    (8, 0): np.dtype("u1"),
    (8, 1): np.dtype("i1"),
    (16, 0): np.dtype("<u2"),
    (16, 1): np.dtype("<i2"),
}


def _native_frame(data: bytes, frame: int) -> np.ndarray | None:
    """The array pydicom's `pixel_array` gives for one frame (with its unused high bits
    cleared, or sign-extended when signed, as pydicom does by default), MONOCHROME1 inverted as
    `decode_frame` does; None when the layout is not one read here."""
    found = native_pixels(data)
    if found is None:
        return None
    v, photometric, offset, length = found.numbers, found.photometric, found.offset, found.length
    try:
        rows, cols, bits, stored, samples = v[_ROWS], v[_COLUMNS], v[_ALLOCATED], v[_STORED], v[_SAMPLES]
    except KeyError:
        return None
    signed = v.get(_SIGNED, 0)
    frames = v.get(_FRAMES, 1)
    if samples == 1 and photometric in ("MONOCHROME1", "MONOCHROME2"):
        planar = 0
    elif samples == 3 and photometric == "RGB" and bits == 8 and v.get(_PLANAR) in (0, 1):
        planar = v[_PLANAR]
    else:
        return None
    dtype = _DTYPES.get((bits, signed))
    if dtype is None or not 0 < stored <= bits or frames < 1 or not rows or not cols:
        return None
    per_frame = rows * cols * samples
    expected = per_frame * frames * dtype.itemsize
    if length != expected and not (length == expected + 1 and expected % 2):
        return None  # pydicom warns, truncates or refuses: let it
    if frame >= frames:
        raise IndexError(frame)
    arr = np.frombuffer(data, dtype, per_frame, offset + frame * per_frame * dtype.itemsize)
    if stored < bits:
        shift = bits - stored
        arr = (arr << shift) >> shift
    if samples == 1:
        arr = arr.reshape(rows, cols)
        return arr.max() - arr if photometric == "MONOCHROME1" else arr
    if planar:
        return arr.reshape(3, rows, cols).transpose(1, 2, 0)
    return arr.reshape(rows, cols, 3)


def decode_frame(data: bytes, frame: int) -> np.ndarray:
    """The pixels of one frame (IndexError when out of range, ValueError when undecodable).

    A missing Pixel Representation is read as unsigned, as DCMTK (hence Orthanc) reads it."""
    arr = _native_frame(data, frame)
    return _pydicom_frame(data, frame) if arr is None else arr


def _pydicom_frame(data: bytes, frame: int) -> np.ndarray:
    """`decode_frame` through pydicom: any layout and transfer syntax it decodes."""
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    if "PixelData" not in ds:
        raise ValueError("no pixel data")
    if "PixelRepresentation" not in ds:
        ds.PixelRepresentation = 0
    try:
        arr = ds.pixel_array
    except (AttributeError, KeyError, NotImplementedError, RuntimeError, TypeError) as exc:
        raise ValueError(f"cannot decode the pixel data: {exc}") from exc
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        if frame >= arr.shape[0]:
            raise IndexError(frame)
        arr = arr[frame]
    elif frame != 0:
        raise IndexError(frame)
    if str(getattr(ds, "PhotometricInterpretation", "")) == "MONOCHROME1" and arr.ndim == 2:
        arr = arr.max() - arr
    return np.asarray(arr)


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Orthanc's preview mapping for grayscale: the frame's minimum to 0, its maximum to 255."""
    if arr.dtype == np.uint8:
        return arr
    a = arr.astype(np.float64)
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    return np.clip(np.round((a - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)


_PNG_COLOR_TYPES = {1: 0, 3: 2, 4: 6}  # samples per pixel -> PNG color type (gray, RGB, RGBA)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bytes(arr: np.ndarray) -> bytes:
    """An 8-bit gray, RGB or RGBA image as PNG: every row with the "Up" filter, one zlib stream.

    Three times faster than PIL's writer for a small image (PIL tries five filters on every
    row); the file is up to a fifth larger on smooth images, the pixels are the same. Other
    shapes go through PIL."""
    samples = 1 if arr.ndim == 2 else arr.shape[2] if arr.ndim == 3 else 0
    color = _PNG_COLOR_TYPES.get(samples)
    if arr.dtype != np.uint8 or color is None or arr.size == 0:
        out = io.BytesIO()
        Image.fromarray(arr).save(out, format="PNG")
        return out.getvalue()
    height, width = arr.shape[:2]
    flat = arr.reshape(height, width * samples)
    rows = np.empty((height, flat.shape[1] + 1), np.uint8)
    rows[:, 0] = 2  # Up: each byte minus the one above it (PNG 9.2)
    rows[0, 1:] = flat[0]
    np.subtract(flat[1:], flat[:-1], out=rows[1:, 1:])
    header = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)),
            _png_chunk(b"IEND", b""),
        )
    )


def preview_png(data: bytes, frame: int = 0) -> bytes:
    return _preview_of(decode_frame(data, frame))


def _preview_of(arr: np.ndarray) -> bytes:
    return png_bytes(to_uint8(arr) if arr.ndim == 2 else arr.astype(np.uint8))


SMALL_FILE = 64 * 1024
"""Files up to this size with native pixels (at most ~32K pixels) are previewed where they are
read: ~0.1 ms of work, less than a hop to a worker thread and back."""


def small_preview_png(data: bytes, frame: int = 0) -> bytes | None:
    """`preview_png` of a small file with native pixels; None for any other file (render it
    with `preview_png` in a worker thread)."""
    if len(data) > SMALL_FILE:
        return None
    arr = _native_frame(data, frame)
    return None if arr is None else _preview_of(arr)


def render_image(data: bytes, frame: int, fmt: str, thumbnail: bool) -> bytes:
    """A frame as an 8-bit PNG or JPEG (DICOMweb /rendered, /thumbnail, WADO-URI)."""
    arr = decode_frame(data, frame)
    pixels = to_uint8(arr) if arr.ndim == 2 else arr.astype(np.uint8)
    if fmt == "PNG" and not thumbnail:
        return png_bytes(pixels)
    img = Image.fromarray(pixels)
    if thumbnail:
        img.thumbnail((128, 128))
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()
