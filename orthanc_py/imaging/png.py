"""PNG files byte for byte as Orthanc writes them (libpng 1.6 with its default settings).

Orthanc's answers are compared by MD5 (its own test suite does), so the writer follows what
libpng does when nothing is configured: every row gets the filter of least "sum of absolute
differences" among None, Sub, Up, Average and Paeth (the first in that order on a tie; Up,
Average and Paeth are left out of one-row images, Sub, Average and Paeth out of one-column
images; 16-bit images end with IEND twice, as Orthanc's writer calls png_write_end after
png_write_png), the rows go through zlib level 6 with the Z_FILTERED strategy, a window no larger than
the image needs, the zlib header naming the smallest window that covers the image, and IDAT
chunks of 8192 bytes. The filters are computed for all rows at once with numpy.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

try:  # libpng's filtering in C (setup.py); `_filtered` below is the reference and the fallback
    from . import _pngfilter
except ImportError:  # pragma: no cover - built wherever a C compiler is available
    _pngfilter = None  # type: ignore[assignment]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IDAT_SIZE = 8192  # libpng's PNG_ZBUF_SIZE: one IDAT chunk per full output buffer
_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # samples per pixel -> gray, gray+alpha, RGB, RGBA
_IDAT_CRC = zlib.crc32(b"IDAT")
_pack_u32 = struct.Struct(">I").pack


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(payload, zlib.crc32(kind)))


def _paeth(raw: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The Paeth filter (PNG 9.4), the predictor chosen with byte masks (np.where is slower)."""
    ci = c.astype(np.int16)
    d1 = b - ci  # p - a, with p = a + b - c
    d2 = a - ci  # p - b
    pa, pb, pc = np.abs(d1), np.abs(d2), np.abs(d1 + d2)
    use_a = ((pa <= pb) & (pa <= pc)).view(np.uint8)
    use_b = (pb <= pc).view(np.uint8) & (use_a ^ 1)
    mask_a, mask_b = use_a * np.uint8(255), use_b * np.uint8(255)
    return raw - ((a & mask_a) | (b & mask_b) | (c & ~(mask_a | mask_b)))


def _filtered(raw: np.ndarray, bpp: int, allowed: tuple[int, ...]) -> np.ndarray:
    """Each row (height, rowbytes) prefixed with its filter type and filtered as libpng does
    (byte arithmetic wraps around, as PNG's filters do). The five filterings are written into
    one array and costed in one pass: few numpy calls, which is what a small image costs."""
    height, rowbytes = raw.shape
    a = np.zeros_like(raw)  # the byte one pixel to the left
    a[:, bpp:] = raw[:, :-bpp]
    b = np.zeros_like(raw)  # the byte above (zeros above the first row)
    b[1:] = raw[:-1]
    c = np.zeros_like(raw)
    c[1:, bpp:] = raw[:-1, :-bpp]
    candidates = np.empty((5, height, rowbytes), np.uint8)
    candidates[0] = raw
    np.subtract(raw, a, out=candidates[1])
    np.subtract(raw, b, out=candidates[2])
    np.subtract(raw, (a >> 1) + (b >> 1) + (a & b & 1), out=candidates[3])  # floor((a + b) / 2)
    candidates[4] = _paeth(raw, a, b, c)
    costs = np.abs(candidates.view(np.int8).astype(np.int16)).sum(axis=2, dtype=np.int64)
    if len(allowed) < 5:
        costs[[k for k in range(5) if k not in allowed]] = np.iinfo(np.int64).max
    best = costs.argmin(axis=0)  # the first minimum wins, as in libpng
    rows = np.empty((height, rowbytes + 1), np.uint8)
    rows[:, 0] = best
    rows[:, 1:] = candidates[best, np.arange(height)]
    return rows


FAST_FROM = 65536
"""Raw image bytes from which `encode(..., exact=False)` trades libpng's compression for speed."""


def _deflate_fast(data: bytes) -> bytes:
    """zlib's run-length strategy at level 1: 5-20x faster than libpng's settings on a large
    image, a few percent larger, and the same pixels once decoded."""
    z = zlib.compressobj(1, zlib.DEFLATED, 15, 8, zlib.Z_RLE)
    return z.compress(data) + z.flush()


def _deflate(data: bytes, size: int) -> bytes:
    """zlib as libpng sets it up: level 6, Z_FILTERED, memLevel 8, the window shrunk to the
    image when it is small (then the header names the smallest window covering it)."""
    wbits = 15
    if size <= 16384:
        half = 1 << (wbits - 1)
        while size + 262 <= half:
            half >>= 1
            wbits -= 1
    wbits = max(wbits, 9)
    z = zlib.compressobj(6, zlib.DEFLATED, wbits, 8, zlib.Z_FILTERED)
    whole = z.compress(data) + z.flush()
    if size > 16384:
        return whole
    out = bytearray(whole)
    if (out[0] & 0x0F) == 8 and (out[0] & 0xF0) <= 0x70:
        cinfo = out[0] >> 4
        half = 1 << (cinfo + 7)
        if size <= half:
            while True:
                half >>= 1
                cinfo -= 1
                if not (cinfo > 0 and size <= half):
                    break
            out[0] = (out[0] & 0x0F) | (cinfo << 4)
            flags = out[1] & 0xE0
            flags += 0x1F - ((out[0] << 8) + flags) % 0x1F
            out[1] = flags
    return bytes(out)


def encode(image: np.ndarray, exact: bool = True) -> bytes:
    """A PNG of `image`: (height, width) or (height, width, samples), uint8 or 16-bit
    (written big-endian, as PNG wants; int16 is written as its two's complement). With
    `exact` off, an image of FAST_FROM bytes or more is compressed for speed (same pixels,
    other bytes than Orthanc's)."""
    if image.ndim == 2:
        image = image[:, :, None]
    height, width, samples = image.shape
    if image.dtype.itemsize == 1:
        depth, raw = 8, np.ascontiguousarray(image, np.uint8)
    elif image.dtype.itemsize == 2:
        depth, raw = 16, np.ascontiguousarray(image.view(np.uint16), ">u2").view(np.uint8)
    else:
        raise ValueError(f"cannot write {image.dtype} pixels as PNG")
    color = _COLOR_TYPES[samples]
    bpp = samples * depth // 8
    rowbytes = width * bpp
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0))
    parts: list[bytes | memoryview] = [_SIGNATURE, header]
    if height and width:
        allowed = [0, 1, 2, 3, 4]
        if height == 1:
            allowed = [k for k in allowed if k not in (2, 3, 4)]
        if width == 1:
            allowed = [k for k in allowed if k not in (1, 3, 4)]
        if _pngfilter is not None:
            mask = sum(1 << k for k in allowed)
            rows = _pngfilter.filter_rows(np.ascontiguousarray(raw).data, height, rowbytes, bpp, mask)
        else:
            rows = _filtered(raw.reshape(height, rowbytes), bpp, tuple(allowed)).tobytes()
        size = (rowbytes + 1) * height if rowbytes < 32768 and height < 32768 else 0xFFFFFFFF
        if exact or raw.size < FAST_FROM:
            stream = _deflate(rows, size)
        else:
            stream = _deflate_fast(rows)
        view = memoryview(stream)  # the chunks refer to the stream: one copy, by the final join
        for i in range(0, len(stream), _IDAT_SIZE):
            piece = view[i : i + _IDAT_SIZE]
            parts += (_pack_u32(len(piece)) + b"IDAT", piece, _pack_u32(zlib.crc32(piece, _IDAT_CRC)))
    parts.append(_chunk(b"IEND", b""))
    if depth == 16 and height:
        parts.append(parts[-1])
    return b"".join(parts)
