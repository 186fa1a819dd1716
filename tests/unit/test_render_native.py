"""The small-file reader (imaging.render.native_frame) gives exactly what the general decoder
(imaging.pixels, Orthanc's rules) gives, previews are byte-equal whichever path drew them, and
the PNG writer round-trips."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from orthanc_py.errors import OrthancError
from orthanc_py.imaging import pixels, png, render
from orthanc_py.model.fastparse import native_pixels
from orthanc_py.model.fasttags import tags_fast


def _file(
    pixels: bytes,
    rows: int,
    cols: int,
    bits: int,
    stored: int,
    signed: int | None = 0,
    photometric: str = "MONOCHROME2",
    samples: int = 1,
    planar: int | None = None,
    frames: int | None = None,
    syntax: str = ExplicitVRLittleEndian,
    with_sequence: bool = False,
) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    if with_sequence:  # an undefined-length sequence before the pixel module
        item = Dataset()
        item.ReferencedSOPInstanceUID = generate_uid()
        ds.ReferencedImageSequence = [item]
        ds["ReferencedImageSequence"].is_undefined_length = True
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if planar is not None:
        ds.PlanarConfiguration = planar
    if frames is not None:
        ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, stored, stored - 1
    if signed is not None:
        ds.PixelRepresentation = signed
    ds.PixelData = pixels
    ds["PixelData"].VR = "OB" if bits == 8 else "OW"
    out = io.BytesIO()
    implicit = syntax == ImplicitVRLittleEndian
    pydicom.dcmwrite(out, ds, enforce_file_format=True, little_endian=True, implicit_vr=implicit)
    return out.getvalue()


def _random(n: int, dtype: str, seed: int) -> bytes:
    info = np.iinfo(dtype)
    return np.random.default_rng(seed).integers(info.min, info.max, size=n, dtype=dtype, endpoint=True).tobytes()


CASES = {
    "u16 12 bits, garbage in the high bits": _file(_random(64 * 48, "<u2", 1), 64, 48, 16, 12),
    "u16 full": _file(_random(64 * 64, "<u2", 2), 64, 64, 16, 16),
    "s16 12 bits (sign extended)": _file(_random(32 * 32, "<u2", 3), 32, 32, 16, 12, signed=1),
    "s16 full": _file(_random(32 * 32, "<i2", 4), 32, 32, 16, 16, signed=1),
    "u8": _file(_random(40 * 30, "u1", 5), 40, 30, 8, 8),
    "u8 odd length, padded": _file(_random(5 * 5, "u1", 6) + b"\0", 5, 5, 8, 8),
    "s8": _file(_random(16 * 16, "i1", 7), 16, 16, 8, 8, signed=1),
    "u8 6 bits": _file(_random(16 * 16, "u1", 8), 16, 16, 8, 6),
    "MONOCHROME1 u16": _file(_random(32 * 32, "<u2", 9), 32, 32, 16, 10, photometric="MONOCHROME1"),
    "MONOCHROME1 u8": _file(_random(32 * 32, "u1", 10), 32, 32, 8, 8, photometric="MONOCHROME1"),
    "no Pixel Representation": _file(_random(16 * 16, "<u2", 11), 16, 16, 16, 12, signed=None),
    "RGB interleaved": _file(_random(20 * 10 * 3, "u1", 12), 20, 10, 8, 8, photometric="RGB", samples=3, planar=0),
    "RGB planar": _file(_random(20 * 10 * 3, "u1", 13), 20, 10, 8, 8, photometric="RGB", samples=3, planar=1),
    "multiframe u16": _file(_random(3 * 16 * 16, "<u2", 14), 16, 16, 16, 12, frames=3),
    "multiframe MONOCHROME1 u8": _file(_random(2 * 8 * 8, "u1", 15), 8, 8, 8, 8, photometric="MONOCHROME1", frames=2),
    "implicit VR": _file(_random(24 * 24, "<u2", 16), 24, 24, 16, 12, syntax=ImplicitVRLittleEndian),
    "sequence before the pixels": _file(_random(16 * 16, "<u2", 17), 16, 16, 16, 12, with_sequence=True),
}


def _decoded_or_error(data: bytes, frame: int) -> pixels.Frame | str:
    try:
        return pixels.decode(data, frame)
    except OrthancError as err:
        return err.code.name


@pytest.mark.parametrize("name", sorted(CASES))
def test_native_frame_is_the_decoded_frame(name: str) -> None:
    """Where the small-file reader takes a file, it gives what the general decoder gives."""
    data = CASES[name]
    assert native_pixels(data) is not None, "the fast parse should read this layout"
    for frame in range(4):
        found = render.native_frame(data, frame)
        decoded = _decoded_or_error(data, frame)
        if found is None:
            continue
        assert not isinstance(decoded, str), decoded
        assert found[0].format == decoded.format
        assert found[0].pixels.dtype == decoded.pixels.dtype and np.array_equal(found[0].pixels, decoded.pixels)


@pytest.mark.parametrize("name", sorted(CASES))
def test_small_preview_is_the_preview(name: str) -> None:
    data = CASES[name]
    small = render.small_image_answer(data, 0, render.PREVIEW, None, "image/png")
    if small is not None:
        assert small == render.preview_png(data, 0)


LARGE = {  # beyond SMALL_FILE: drawn in a worker thread, still without pydicom
    "CT u16 12 bits 512x512": _file(_random(512 * 512, "<u2", 21), 512, 512, 16, 12),
    "s16 MONOCHROME1 300x260": _file(_random(300 * 260, "<i2", 22), 300, 260, 16, 16, 1, "MONOCHROME1"),
    "RGB 200x180": _file(_random(200 * 180 * 3, "u1", 23), 200, 180, 8, 8, photometric="RGB", samples=3, planar=0),
    "multiframe u8 3x160x170": _file(_random(3 * 160 * 170, "u1", 24), 160, 170, 8, 8, frames=3),
}


@pytest.mark.parametrize("name", sorted(LARGE))
@pytest.mark.parametrize("mode", [render.PREVIEW, render.UINT16, "rendered"])
def test_large_native_answer_is_the_pydicom_answer(name: str, mode: str) -> None:
    """native_image_answer (no size limit) gives the bytes of the pydicom path, every frame."""
    data = LARGE[name]
    assert len(data) > render.SMALL_FILE and render.small_image_answer(data, 0, mode, None, "image/png") is None
    for frame in (0, 2):
        try:
            ds = pixels.read_dataset(data)
            expected: bytes | str = render.image_answer(
                pixels.decode_dataset(ds, frame), render.FrameTags.of(ds, frame), mode, None, "image/png"
            )
        except OrthancError as err:
            expected = err.code.name
        try:
            got = render.native_image_answer(data, frame, mode, None, "image/png")
        except OrthancError as err:
            got = err.code.name
        if frame == 0 or name.startswith("multiframe"):
            assert got == expected, frame
        else:
            assert got is None  # no such frame: the pydicom path gives Orthanc's error


def test_orthanc_decoding_rules() -> None:
    """Unused high bits are kept (Orthanc copies the words), signed data is not sign-extended
    unless shifted, MONOCHROME1 is inverted only by the preview, 8-bit signed is refused."""
    garbage = np.frombuffer(_random(64 * 48, "<u2", 1), "<u2").reshape(64, 48)
    frame = pixels.decode(CASES["u16 12 bits, garbage in the high bits"], 0)
    assert frame.format == pixels.GRAY16 and np.array_equal(frame.pixels, garbage)
    assert _decoded_or_error(CASES["s8"], 0) == "NOT_IMPLEMENTED"
    assert _decoded_or_error(CASES["u16 full"], 1) == "PARAMETER_OUT_OF_RANGE"
    mono1 = CASES["MONOCHROME1 u8"]
    raw = pixels.decode(mono1, 0).pixels
    preview = np.asarray(Image.open(io.BytesIO(render.preview_png(mono1, 0))))
    stretched = render.stretch(pixels.Frame(raw, pixels.GRAY8))
    assert np.array_equal(preview, 255 - stretched)
    planar = pixels.decode(CASES["RGB planar"], 0)
    flat = np.frombuffer(_random(20 * 10 * 3, "u1", 13), np.uint8).reshape(3, 20, 10).transpose(1, 2, 0)
    assert planar.format == pixels.RGB24 and np.array_equal(planar.pixels, flat)


def test_other_layouts_are_not_read_natively() -> None:
    ybr = _file(_random(8 * 8 * 3, "u1", 20), 8, 8, 8, 8, photometric="YBR_FULL", samples=3, planar=0)
    palette = _file(_random(64, "u1", 21), 8, 8, 8, 8, photometric="PALETTE COLOR")
    short = _file(_random(8 * 8, "<u2", 22)[:-8], 8, 8, 16, 12)
    rgb16 = _file(_random(4 * 4 * 3, "<u2", 23), 4, 4, 16, 16, photometric="RGB", samples=3, planar=0)
    for data in (ybr, palette, short, rgb16):
        assert render.native_frame(data, 0) is None
    assert native_pixels(b"\0" * 128 + b"DICM") is None


@pytest.mark.parametrize(
    "shape",
    [(64, 64), (1, 1), (1, 17), (17, 1), (5, 7, 3), (6, 4, 4), (3, 3, 2)],
    ids=lambda s: "x".join(map(str, s)),
)
def test_png_decodes_to_the_same_pixels(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(len(shape) * 100 + shape[0])
    for arr in (rng.integers(0, 256, size=shape, dtype=np.uint8), np.full(shape, 200, np.uint8)):
        data = png.encode(arr)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), arr)
    wide = rng.integers(0, 65536, size=shape[:2], dtype=np.uint16)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png.encode(wide)))).astype(np.uint16), wide)


def _tagged(syntax: str = ExplicitVRLittleEndian, **elements: Any) -> bytes:
    """A small 16-bit CT whose /rendered tags are `elements` (keyword: value, or (VR, value))."""
    data = _file(_random(16 * 16, "<u2", 30), 16, 16, 16, 12, syntax=syntax)
    ds = pydicom.dcmread(io.BytesIO(data))
    for keyword, value in elements.items():
        if isinstance(value, tuple):
            ds.add_new(keyword, value[0], value[1])
        else:
            setattr(ds, keyword, value)
    out = io.BytesIO()
    implicit = syntax == ImplicitVRLittleEndian
    pydicom.dcmwrite(out, ds, enforce_file_format=True, little_endian=True, implicit_vr=implicit)
    return out.getvalue()


RENDER_CASES = {
    "none": _tagged(),
    "window": _tagged(WindowCenter="40", WindowWidth="400"),
    "window and rescale": _tagged(WindowCenter="40", WindowWidth="400", RescaleIntercept="-1024", RescaleSlope="1"),
    "multi-valued, spaced": _tagged(WindowCenter=["40", "300"], WindowWidth=[" 400", "1500"]),
    "exponents": _tagged(WindowCenter="4.5e1", WindowWidth="+4E2", RescaleSlope="0.5", RescaleIntercept="-1.5e3"),
    "only a center": _tagged(WindowCenter="40"),
    "only a slope": _tagged(RescaleSlope="2"),
    "RT dose": _tagged(SOPClassUID="1.2.840.10008.5.1.4.1.1.481.2", RescaleSlope="2", RescaleIntercept="5"),
    "implicit VR": _tagged(ImplicitVRLittleEndian, WindowCenter="40", WindowWidth="400", RescaleSlope="3"),
    "bits stored window": _tagged(BitsStored=10),
    "bad number": _tagged(WindowCenter="1234", WindowWidth="400").replace(b"1234", b"12ab"),
    "bad number, plain bytes": _tagged(WindowCenter="1234", WindowWidth="400").replace(b"1234", b"1e+e"),
    "empty width": _tagged(WindowCenter="40", WindowWidth=("DS", "")),
    "as UN": _tagged(WindowCenter="40", WindowWidth="400").replace(  # pydicom writes DS: made by hand
        b"(\x00P\x10DS\x02\x0040", b"(\x00P\x10UN\x00\x00\x02\x00\x00\x0040"
    ),
    "as LO": _tagged(WindowCenter=("LO", "40"), WindowWidth=("LO", "400")),
    "per-frame groups": _tagged(PerFrameFunctionalGroupsSequence=[Dataset()], WindowCenter="40", WindowWidth="400"),
    "MONOCHROME1": _tagged(PhotometricInterpretation="MONOCHROME1", WindowCenter="40", WindowWidth="400"),
}


@pytest.mark.parametrize("name", sorted(RENDER_CASES))
def test_native_rendered_tags_are_orthancs(name: str) -> None:
    """The tags /rendered reads from the native walk are those the tag reader and pydicom give,
    or the walk leaves the file to the tag reader; the images are the same bytes."""
    data = RENDER_CASES[name]
    layout = native_pixels(data)
    assert layout is not None
    found = render._native_frame_of(data, layout, 0)
    assert found is not None
    quick = render._native_tags(data, layout, found[1])
    assert (quick is None) == (name in ("as UN", "as LO", "per-frame groups", "bad number"))
    short = tags_fast(data, "short", render._short_options(), with_pixels=False)
    reference = None if short is None else render.FrameTags.of_short(short, 0)  # small_image_answer's before
    if reference is None:  # left to pydicom, as before
        assert quick is None and render.small_image_answer(data, 0, "rendered", None, "image/png") is None
        return
    if quick is not None:
        assert quick == reference
    if not name.startswith("bad number"):  # pydicom refuses to read those numbers at all
        ds = pixels.read_dataset(data)
        assert reference == render.FrameTags.of(ds, 0)
    expected = render.image_answer(found[0], reference, "rendered", None, "image/png")
    assert render.small_image_answer(data, 0, "rendered", None, "image/png") == expected
