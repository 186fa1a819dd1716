"""The C row filter (imaging/_pngfilter.c) chooses and writes exactly what the numpy reference
(png._filtered, checked against libpng's output) does, for every sample layout."""

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


def test_bad_geometry_is_refused() -> None:
    with pytest.raises(ValueError):
        _c_module().filter_rows(b"\0" * 10, 4, 4, 1, 31)
