"""The File Meta Information Orthanc writes in front of an instance received over DICOM
(C-STORE SCP, C-GET SCU): PS3.10 7.1, with the identifiers of the DCMTK Orthanc is built with
(the header's size shows in PixelDataOffset)."""

from __future__ import annotations

import struct

# Orthanc writes the File Meta Information of a received instance with the identifiers of the
# DCMTK it is built with (the header's size shows in PixelDataOffset).
IMPLEMENTATION_CLASS_UID = "1.2.276.0.7230010.3.0.3.6.7"
IMPLEMENTATION_VERSION_NAME = "OFFIS_DCMTK_367"


def _meta_element(group_elem: bytes, vr: bytes, value: bytes) -> bytes:
    """One explicit VR little endian element of the file meta group (short or long form)."""
    if vr in (b"OB", b"UN", b"SQ", b"UT"):
        return group_elem + vr + b"\0\0" + struct.pack("<I", len(value)) + value
    return group_elem + vr + struct.pack("<H", len(value)) + value


def _padded(text: str, pad: bytes) -> bytes:
    raw = text.encode("ascii")
    return raw + pad if len(raw) % 2 else raw


def file_meta_bytes(sop_class: str, sop_instance: str, transfer_syntax: str) -> bytes:
    """Preamble, "DICM" and the File Meta Information of a received instance, as Orthanc writes
    them (PS3.10 7.1). Written by hand: pydicom takes ~170 us per instance for these 200 bytes."""
    body = b"".join(
        (
            _meta_element(b"\x02\x00\x01\x00", b"OB", b"\x00\x01"),
            _meta_element(b"\x02\x00\x02\x00", b"UI", _padded(sop_class, b"\0")),
            _meta_element(b"\x02\x00\x03\x00", b"UI", _padded(sop_instance, b"\0")),
            _meta_element(b"\x02\x00\x10\x00", b"UI", _padded(transfer_syntax, b"\0")),
            _meta_element(b"\x02\x00\x12\x00", b"UI", _padded(IMPLEMENTATION_CLASS_UID, b"\0")),
            _meta_element(b"\x02\x00\x13\x00", b"SH", _padded(IMPLEMENTATION_VERSION_NAME, b" ")),
        )
    )
    length = _meta_element(b"\x02\x00\x00\x00", b"UL", struct.pack("<I", len(body)))
    return b"\0" * 128 + b"DICM" + length + body
