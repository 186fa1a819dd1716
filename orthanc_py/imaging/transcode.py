"""Transfer syntaxes: re-encoding a stored file, and cutting its pixel data into frames.

Used where a client names the transfer syntax it wants (WADO-RS instances and frames, C-STORE
to a peer that lacks the stored syntax). Only decoding is offered: a compressed file can be
given uncompressed when pydicom has a decoder for it; nothing is ever compressed here.
"""

from __future__ import annotations

import io
from typing import Any

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
UNCOMPRESSED = frozenset({IMPLICIT_LE, EXPLICIT_LE, DEFLATED_LE, EXPLICIT_BE})

# Media type of a frame in a compressed syntax (PS3.18 Table 8.7.3-2).
_FRAME_MEDIA = {
    "1.2.840.10008.1.2.5": "image/dicom-rle",
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
}
_MEDIA_ALIASES = {"image/x-dicom-rle": "image/dicom-rle", "image/x-jls": "image/jls"}
MEDIA_TYPES = frozenset(_FRAME_MEDIA.values()) | frozenset(_MEDIA_ALIASES)


class CannotTranscode(Exception):
    """The file cannot be given in the requested transfer syntax (no decoder, or an encoder would be needed)."""


def frame_media(syntax: str) -> str:
    """The media type a frame in `syntax` travels as (application/octet-stream when uncompressed)."""
    return _FRAME_MEDIA.get(syntax, "application/octet-stream")


def syntaxes_of_media(media: str) -> set[str]:
    """The compressed syntaxes whose frames are `media` (image/jpeg, image/jls, ...)."""
    media = _MEDIA_ALIASES.get(media, media)
    return {ts for ts, m in _FRAME_MEDIA.items() if m == media}


def can_decode(syntax: str) -> bool:
    """Whether pixel data stored in `syntax` can be given uncompressed."""
    if syntax in UNCOMPRESSED:
        return True
    try:
        from pydicom.pixels import get_decoder

        return bool(get_decoder(syntax).is_available)
    except (NotImplementedError, ValueError, ImportError):
        return False


def _read(data: bytes) -> Any:
    import pydicom

    return pydicom.dcmread(io.BytesIO(data), force=True)


def stored_syntax(ds: Any) -> str:
    meta = getattr(ds, "file_meta", None)
    return str(getattr(meta, "TransferSyntaxUID", "") or EXPLICIT_LE)


def transcode(data: bytes, target: str) -> bytes:
    """The DICOM file `data` in `target`; the same bytes when it already is. Targets other than
    the stored syntax must be Explicit or Implicit VR Little Endian."""
    ds = _read(data)
    return transcode_dataset(ds, target, data)


def recode(ds: Any, target: str) -> None:
    """Make the dataset `ds` encode itself in `target` (Explicit or Implicit VR Little Endian),
    decoding its pixel data when stored compressed; CannotTranscode otherwise."""
    from pydicom.uid import UID

    from . import jpeg_encode

    source = stored_syntax(ds)
    if source == target:
        return
    if target in jpeg_encode.SYNTAXES and source != EXPLICIT_BE:
        _encode_in_place(ds, target)
        return
    if target not in (EXPLICIT_LE, IMPLICIT_LE) or source == EXPLICIT_BE:
        raise CannotTranscode(f"Cannot transcode from {source} to {target}")
    if source not in UNCOMPRESSED and _decode_jpeg_in_place(ds):
        pass
    elif source not in UNCOMPRESSED:
        try:
            # pydicom would give a lossy source a new SOPInstanceUID; Orthanc keeps it when it
            # only decodes (a new UID comes with lossy *compression*)
            ds.decompress(generate_instance_uid=False)
        except Exception as exc:  # pydicom raises many kinds for a missing or failing decoder
            raise CannotTranscode(f"Cannot decode {source}: {exc}") from exc
    if ds.original_encoding[0] is not None and ds.original_encoding[0] != (target == IMPLICIT_LE):
        # elements still raw were read with the source's VR mode (no VR when implicit): decode
        # them, or pydicom would write them as if they were in the target's
        for _elem in ds.iterall():
            pass
    ds.file_meta.TransferSyntaxUID = UID(target)
    ds.set_original_encoding(target == IMPLICIT_LE, True)  # the character set is unchanged


def transcode_dataset(ds: Any, target: str, original: bytes | None = None) -> bytes:
    """As `transcode`, for a dataset already read (`original` is returned when nothing changes)."""
    if stored_syntax(ds) == target and original is not None:
        return original
    recode(ds, target)
    out = io.BytesIO()
    ds.save_as(out, implicit_vr=target == IMPLICIT_LE, little_endian=True, enforce_file_format=True)
    return out.getvalue()


def _frame_length(ds: Any) -> int | None:
    try:
        bits = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1) * int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError):
        return None
    return (bits + 7) // 8


def frames(data: bytes, numbers: list[int] | None, decode: bool) -> tuple[list[bytes], str]:
    """Frames `numbers` (1-based; None: all) of the file and the syntax they are in: as stored,
    or uncompressed (Explicit VR Little Endian) when `decode` and the file is compressed.
    IndexError names a frame that does not exist; LookupError means no pixel data."""
    ds = _read(data)
    if "PixelData" not in ds:
        raise LookupError("The instance has no pixel data")
    syntax = stored_syntax(ds)
    count = int(ds.get("NumberOfFrames", 1) or 1)
    if numbers is None:
        numbers = list(range(1, count + 1))
    for n in numbers:
        if not 1 <= n <= count:
            raise IndexError(f"No frame {n} (the instance has {count})")
    if syntax not in UNCOMPRESSED:
        if decode:
            return [_decoded_frame(ds, n - 1) for n in numbers], EXPLICIT_LE
        from pydicom.encaps import generate_frames

        stored = list(generate_frames(ds.PixelData, number_of_frames=count))
        return [bytes(stored[n - 1]) for n in numbers], syntax
    pixels = ds.PixelData
    size = _frame_length(ds) or len(pixels) // count
    return [
        bytes(pixels[(n - 1) * size : n * size]) for n in numbers
    ], EXPLICIT_BE if syntax == EXPLICIT_BE else EXPLICIT_LE


JPEG_8BIT = frozenset({"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"})


def _jpeg_frame(ds: Any, index: int) -> bytes | None:
    """An 8-bit JPEG frame decoded by libjpeg through Pillow, colour-converted as the stream
    says (YCbCr to RGB): the same bytes as DCMTK's decoder, which Orthanc uses. None when
    Pillow cannot give it as L or RGB."""
    if stored_syntax(ds) not in JPEG_8BIT or int(ds.get("BitsAllocated", 8) or 8) != 8:
        return None
    from PIL import Image
    from pydicom.encaps import generate_frames

    count = int(ds.get("NumberOfFrames", 1) or 1)
    for i, frame in enumerate(generate_frames(ds.PixelData, number_of_frames=count)):
        if i == index:
            try:
                with Image.open(io.BytesIO(frame)) as image:
                    if image.mode not in ("L", "RGB"):
                        return None
                    return image.tobytes()
            except (OSError, ValueError):
                return None
    return None


def _encode_in_place(ds: Any, target: str) -> None:
    """Encode the dataset's frames in a JPEG syntax of `jpeg_encode` (decoding them first when
    stored compressed): 8-bit monochrome images, or RGB ones for the lossless syntaxes."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import UID

    from . import jpeg_encode

    if "PixelData" not in ds:
        raise CannotTranscode("The instance has no pixel data")
    if stored_syntax(ds) not in UNCOMPRESSED:
        recode(ds, EXPLICIT_LE)
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError) as exc:
        raise CannotTranscode(f"Cannot encode this image in {target}") from exc
    colour = samples == 3 and ds.get("PhotometricInterpretation") == "RGB" and not ds.get("PlanarConfiguration", 0)
    if bits != 8 or not (samples == 1 or (colour and target not in (jpeg_encode.BASELINE, jpeg_encode.EXTENDED))):
        raise CannotTranscode(f"Cannot encode this image in {target}")
    count = int(ds.get("NumberOfFrames", 1) or 1)
    size = rows * columns * samples
    pixels = ds.PixelData
    if len(pixels) < size * count:
        raise CannotTranscode("The pixel data is shorter than its frames")
    encoded = [
        jpeg_encode.encode(pixels[i * size : (i + 1) * size], rows, columns, target, samples=samples)
        for i in range(count)
    ]
    ds.PixelData = encapsulate(encoded)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    if target in (jpeg_encode.BASELINE, jpeg_encode.EXTENDED):
        ds.LossyImageCompression = "01"
    ds.file_meta.TransferSyntaxUID = UID(target)
    ds.set_original_encoding(False, True)


def _decode_jpeg_in_place(ds: Any) -> bool:
    """Decode an 8-bit JPEG dataset's frames with `_jpeg_frame` (DCMTK's bytes), colour ones
    becoming RGB as DCMTK makes them; False when that path does not apply."""
    count = int(ds.get("NumberOfFrames", 1) or 1)
    decoded = []
    for index in range(count):
        frame = _jpeg_frame(ds, index)
        if frame is None:
            return False
        decoded.append(frame)
    ds.PixelData = b"".join(decoded)
    ds["PixelData"].VR = "OW"  # as DCMTK writes decoded pixel data
    if int(ds.get("SamplesPerPixel", 1) or 1) == 3:
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
    ds["PixelData"].is_undefined_length = False
    if len(ds.PixelData) % 2:
        ds.PixelData += b"\x00"
    return True


AS_STORED = "*"


def frames_in(data: bytes, numbers: list[int], target: str, quality: int = 90) -> tuple[list[bytes], str]:
    """Frames `numbers` (1-based) in `target`: AS_STORED, Explicit or Implicit VR Little Endian
    (decoded when stored compressed), or a JPEG syntax of `jpeg_encode` (8-bit monochrome
    images only, encoded as DCMTK encodes them). Returns the frames and the syntax they are in;
    CannotTranscode when that cannot be done."""
    from . import jpeg_encode

    if target == AS_STORED:
        return frames(data, numbers, False)
    parts, syntax = frames(data, numbers, True)
    if target in (EXPLICIT_LE, IMPLICIT_LE):
        return parts, target if syntax != EXPLICIT_BE else syntax
    if target not in jpeg_encode.SYNTAXES or syntax == EXPLICIT_BE:
        raise CannotTranscode(f"Cannot transcode frames to {target}")
    ds = _read(data)
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        eight_bit_gray = int(ds.BitsAllocated) == 8 and int(ds.get("SamplesPerPixel", 1) or 1) == 1
    except (AttributeError, TypeError, ValueError):
        eight_bit_gray = False
    if not eight_bit_gray:
        raise CannotTranscode(f"Cannot encode this image in {target} (8-bit monochrome images only)")
    return [jpeg_encode.encode(p, rows, columns, target, quality) for p in parts], target


def _decoded_frame(ds: Any, index: int) -> bytes:
    from pydicom.pixels import pixel_array

    fast = _jpeg_frame(ds, index)
    if fast is not None:
        return fast
    try:
        array = pixel_array(ds, index=index)
    except Exception as exc:  # missing plugin, corrupt stream
        raise CannotTranscode(f"Cannot decode {stored_syntax(ds)}: {exc}") from exc
    return bytes(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())


def element_value(data: bytes, tag: int, path: tuple[tuple[int, int], ...] = ()) -> bytes | None:
    """The raw value of element `tag`, at the top level or inside the items that `path` names
    ((sequence tag, 0-based item index) pairs), for a BulkDataURI; None when there is none."""
    dataset = _read(data)
    for seq_tag, index in path:
        if seq_tag not in dataset or dataset[seq_tag].VR != "SQ" or not 0 <= index < len(dataset[seq_tag].value):
            return None
        dataset = dataset[seq_tag].value[index]
    if tag not in dataset:
        return None
    elem = dataset[tag]
    if isinstance(elem.value, bytes | bytearray):
        return bytes(elem.value)
    return None if elem.VR == "SQ" else _encode_value(elem)


def _encode_value(elem: Any) -> bytes:
    """Little-endian bytes of a non-binary element (numbers, text), as a bulk data value."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element

    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = True
    write_data_element(fp, elem)
    raw = fp.getvalue()
    return raw[8:]  # tag (4) + length (4) in Implicit VR Little Endian
