"""The 8-bit mappings of /preview and /rendered (imaging.render.stretch and rendered) give what
Orthanc's ShiftScale gives, written out here step by step as the reference: a*x+b in single
precision, rounded half away from zero (preview) or floored (rendered), clamped to the pixel
type, then to [0, 255]; through the lookup table (large images) and pixel by pixel (small)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from orthanc_py.imaging import render
from orthanc_py.imaging.pixels import GRAY8, GRAY16, GRAY32, SGRAY16, Frame

F32 = np.float32


def _shift_scale(x: np.ndarray, a: Any, b: Any, dtype: Any, rounded: bool) -> np.ndarray:
    v = F32(a) * x.astype(F32) + F32(b)
    info = np.iinfo(dtype)
    lo, hi = F32(info.min), F32(info.max)
    inner = np.trunc(v + np.copysign(F32(0.5), v)) if rounded else np.floor(v)
    return np.where(v >= hi, hi, np.where(v <= lo, lo, inner)).astype(dtype)


def _reference_stretch(arr: np.ndarray) -> np.ndarray:
    lo, hi = int(arr.min()), int(arr.max())
    if lo == hi:
        return np.zeros(arr.shape, np.uint8)
    scaling = F32(255.0) / F32(hi - lo)
    offset = F32(-lo) * scaling
    return np.clip(_shift_scale(arr, scaling, offset, arr.dtype, True), 0, 255).astype(np.uint8)


def _reference_window(arr: np.ndarray, rescale: tuple[float, float], window: tuple[float, float]) -> np.ndarray:
    (intercept, slope), (center, width) = rescale, window
    width = max(width, 1.0)
    slope = 0.0001 if abs(slope) <= 0.0001 else slope
    a = F32(255.0 * slope / width)
    b = F32((intercept - center + width / 2.0) / slope) * a
    values = arr.astype(F32)
    eps = float(np.finfo(F32).eps)
    if abs(float(b)) <= 10 * eps and abs(float(a) - 1.0) <= 10 * eps:
        return np.clip(values, 0, 255).astype(np.uint8)
    return _shift_scale(values, a, b, np.uint8, False)


_FORMATS = {GRAY8: "u1", GRAY16: "<u2", SGRAY16: "<i2", GRAY32: "<u4"}


def _images(fmt: str) -> list[np.ndarray]:
    rng = np.random.default_rng(len(fmt))
    dtype = np.dtype(_FORMATS[fmt])
    info = np.iinfo(dtype)
    top = min(int(info.max), 1 << 20)
    out = []
    for shape in ((1, 1), (3, 7), (64, 64), (300, 256)):  # small: per pixel; large: the table
        for lo, hi in ((info.min, top), (0, 4095), (-1024, 3071), (100, 101), (7, 7), (0, 255)):
            lo, hi = max(lo, int(info.min)), min(hi, top)
            out.append(rng.integers(lo, hi, shape, dtype=dtype, endpoint=True))
    return out


@pytest.mark.parametrize("fmt", [GRAY8, GRAY16, SGRAY16])
def test_preview_stretch_is_shift_scale(fmt: str) -> None:
    for arr in _images(fmt):
        assert np.array_equal(render.stretch(Frame(arr, fmt)), _reference_stretch(arr)), (arr.shape, arr.min())


WINDOWS = [
    ((0.0, 1.0), (40.0, 400.0)),
    ((-1024.0, 1.0), (40.0, 400.0)),
    ((-1024.0, 1.0), (2048.0, 4096.0)),
    ((0.0, 1.0), (127.5, 256.0)),  # the identity
    ((0.5, 0.25), (10.3, 0.2)),  # width below 1
    ((3.0, 0.00001), (-7.0, 33.0)),  # slope below 0.0001
    ((0.0, -2.0), (-100.0, 60000.0)),  # negative slope
    ((1e30, 1.0), (-1e30, 5.0)),  # beyond single precision
]


@pytest.mark.parametrize("fmt", [GRAY8, GRAY16, SGRAY16, GRAY32])
def test_rendered_window_is_shift_scale(fmt: str) -> None:
    for arr in _images(fmt):
        for rescale, window in WINDOWS:
            tags = render.FrameTags(False, rescale, window)
            got, invert = render.rendered(Frame(arr, fmt), tags, render.RenderArgs())
            assert not invert
            expected = _reference_window(arr, rescale, window)
            assert np.array_equal(got, expected), (arr.shape, rescale, window)
