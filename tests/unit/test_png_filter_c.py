"""The C row filter (imaging/_pngfilter.c) chooses and writes exactly what the numpy reference
(png._filtered, checked against libpng's output) does, for every sample layout, with each of
its kernels (plain C, SSE2, AVX2: those the processor has)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from orthanc_py.imaging import png


def _c_module() -> Any:
    if png._pngfilter is None:
        pytest.fail("the C helper _pngfilter is not built (setup.py; a C compiler is needed)")
    return png._pngfilter


@pytest.mark.parametrize(
    ("height", "width", "bpp", "kind"),
    [
        (64, 64, 1, "noise"),
        (37, 53, 1, "smooth"),
        (20, 30, 2, "noise"),  # 16-bit gray
        (33, 17, 3, "smooth"),  # RGB
        (9, 11, 4, "noise"),  # RGBA
        (25, 40, 6, "noise"),  # RGB48
        (1, 50, 1, "noise"),  # one row: None and Sub only
        (50, 1, 1, "smooth"),  # one column: None and Up only
        (300, 257, 1, "flat"),
    ],
)
def test_c_filter_equals_the_reference(height: int, width: int, bpp: int, kind: str) -> None:
    rng = np.random.default_rng(height * 1000 + width)
    rowbytes = width * bpp
    if kind == "noise":
        raw = rng.integers(0, 256, (height, rowbytes), dtype=np.uint8)
    elif kind == "smooth":
        raw = (np.add.outer(np.arange(height), np.arange(rowbytes)) % 256).astype(np.uint8)
    else:
        raw = np.full((height, rowbytes), 200, np.uint8)
    allowed = [0, 1, 2, 3, 4]
    if height == 1:
        allowed = [0, 1]
    if width == 1:
        allowed = [0, 2]
    expected = png._filtered(raw, bpp, tuple(allowed)).tobytes()
    got = _c_module().filter_rows(raw, height, rowbytes, bpp, sum(1 << k for k in allowed))
    assert got == expected


def _kernels() -> list[int]:
    module = _c_module()
    best = module.set_kernel(9)
    return list(range(best + 1))


def _image(rng: np.random.Generator, height: int, rowbytes: int, kind: str) -> np.ndarray:
    if kind == "noise":
        return rng.integers(0, 256, (height, rowbytes), dtype=np.uint8)
    if kind == "smooth":  # gentle gradients plus a little noise: every filter wins somewhere
        y, x = np.mgrid[0:height, 0:rowbytes]
        return ((x * 3 + y * 2) // 5 + rng.integers(0, 3, (height, rowbytes))).astype(np.uint8)
    # edges: flat areas, steps and extremes (0, 127, 128, 255 exercise the signed-byte costs)
    raw = np.zeros((height, rowbytes), np.uint8)
    raw[:, rowbytes // 3 :] = 128
    raw[height // 2 :, : rowbytes // 2] = 255
    raw[::7] = 127
    return raw


@pytest.mark.parametrize("bpp", [1, 2, 3, 4, 6, 8])
@pytest.mark.parametrize("kind", ["noise", "smooth", "edges"])
def test_every_kernel_gives_the_reference_bytes(bpp: int, kind: str) -> None:
    """Widths around the vector sizes (16 and 32 bytes), so that the vector body, the
    first pixel and the tail of a row are all covered, for each pixel size."""
    module = _c_module()
    rng = np.random.default_rng(bpp * 100 + len(kind))
    try:
        for width in (1, 2, 5, 15, 16, 17, 31, 32, 33, 47, 64, 100, 257, 512):
            rowbytes = width * bpp
            height = 9 if width > 100 else 23
            raw = _image(rng, height, rowbytes, kind)
            allowed = (0, 2) if width == 1 else (0, 1, 2, 3, 4)
            expected = png._filtered(raw, bpp, allowed).tobytes()
            for level in _kernels():
                assert module.set_kernel(level) == level
                got = module.filter_rows(raw, height, rowbytes, bpp, sum(1 << k for k in allowed))
                assert got == expected, (width, level)
    finally:
        module.set_kernel(9)


def test_bad_geometry_is_refused() -> None:
    with pytest.raises(ValueError):
        _c_module().filter_rows(b"\0" * 10, 4, 4, 1, 31)
