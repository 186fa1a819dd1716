"""Decoded frames and Orthanc's PNG preview (grayscale stretched to the frame's own range)."""

from __future__ import annotations

import io

import numpy as np
import pydicom
from PIL import Image


def decode_frame(data: bytes, frame: int) -> np.ndarray:
    """The pixels of one frame (IndexError when out of range, ValueError when undecodable).

    A missing Pixel Representation is read as unsigned, as DCMTK (hence Orthanc) reads it."""
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


def preview_png(data: bytes, frame: int = 0) -> bytes:
    arr = decode_frame(data, frame)
    img = Image.fromarray(to_uint8(arr) if arr.ndim == 2 else arr.astype(np.uint8))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def render_image(data: bytes, frame: int, fmt: str, thumbnail: bool) -> bytes:
    """A frame as an 8-bit PNG or JPEG (DICOMweb /rendered, /thumbnail, WADO-URI)."""
    arr = decode_frame(data, frame)
    img = Image.fromarray(to_uint8(arr) if arr.ndim == 2 else arr.astype(np.uint8))
    if thumbnail:
        img.thumbnail((128, 128))
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()
