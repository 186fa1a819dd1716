"""png.encode(exact=False): what /rendered uses for large images. Same pixels as the exact
(libpng-identical) writer, other compression; small images keep Orthanc's exact bytes."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from orthanc_py.imaging import png


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_large_image_same_pixels_other_bytes() -> None:
    rng = np.random.default_rng(7)
    smooth = np.add.outer(np.arange(512), np.arange(512)).astype(np.uint16) % 256
    image = (smooth + rng.integers(0, 8, (512, 512))).clip(0, 255).astype(np.uint8)
    exact, fast = png.encode(image), png.encode(image, exact=False)
    assert exact != fast
    assert np.array_equal(_pixels(fast), image)
    assert np.array_equal(_pixels(exact), image)
    assert len(fast) < 2 * len(exact)


def test_sixteen_bit_and_colour_keep_their_pixels() -> None:
    rng = np.random.default_rng(8)
    gray16 = rng.integers(0, 4096, (300, 300)).astype(np.uint16)
    assert np.array_equal(_pixels(png.encode(gray16, exact=False)).astype(np.uint16), gray16)
    rgb = rng.integers(0, 256, (200, 200, 3)).astype(np.uint8)
    assert np.array_equal(_pixels(png.encode(rgb, exact=False)), rgb)


def test_small_image_keeps_the_exact_bytes() -> None:
    image = np.arange(64 * 64, dtype=np.uint32).reshape(64, 64).astype(np.uint8)
    assert png.encode(image, exact=False) == png.encode(image)
