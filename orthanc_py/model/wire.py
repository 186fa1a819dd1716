"""What a stored DICOM file becomes on the wire: the one reading used by every sender (C-STORE
SCU, the C-STORE sub-operations of C-MOVE and C-GET).

Ingest accepts files the way DCMTK does: with or without the 128-byte preamble and "DICM", with
no, partial or disagreeing File Meta Information. A sender must read them the same way, and send
the dataset as it was received: `stored_dataset` returns a pydicom dataset whose identity
(SOP class and instance) comes from the dataset itself, whose transfer syntax is the encoding
the bytes really use, and which carries those bytes (`encoded_body`) so that the network layer
can send them untouched when the peer accepted that syntax. Anything that changes the dataset
(`for_peer` transcoding) drops the bytes, so that pydicom encodes what was changed.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from ..imaging.transcode import CannotTranscode, recode
from .dicomfile import DEFLATED, EXPLICIT_VR_BE, IMPLICIT_VR_LE, dataset_offset

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
_ENCODED = "_orthanc_encoded_body"


def body_offset(data: bytes) -> int:
    """Offset of the dataset in a stored file, found as ingest found it."""
    return dataset_offset(data)


def _syntax_of(implicit: bool | None, little: bool | None) -> str:
    if implicit:
        return IMPLICIT_VR_LE
    return EXPLICIT_VR_LE if little is not False else EXPLICIT_VR_BE


def stored_dataset(data: bytes) -> Dataset:
    """The stored file `data` as the dataset to send (see the module docstring)."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID

    with warnings.catch_warnings():  # pydicom warns about what ingest tolerates
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    implicit, little = ds.original_encoding
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        meta = ds.file_meta = FileMetaDataset()
    declared = str(getattr(meta, "TransferSyntaxUID", "") or "")
    start = body_offset(data)
    first_vr = data[start + 4 : start + 6]
    if len(first_vr) == 2 and little is not False and declared != DEFLATED:
        # what the bytes say (pydicom reads a dataset whose meta lies, but keeps the lie)
        looks_implicit = not (first_vr.isalpha() and first_vr.isupper())
        if looks_implicit != bool(implicit):
            implicit = looks_implicit
            ds.set_original_encoding(implicit, True)
    try:
        uid = UID(declared)
        encoding = (uid.is_implicit_VR, uid.is_little_endian)
        agrees = bool(declared) and uid.is_transfer_syntax and encoding == (implicit, little)
    except (ValueError, AttributeError):
        agrees = False
    ts = declared if agrees else _syntax_of(implicit, little)
    meta.TransferSyntaxUID = UID(ts)
    # the identity the peer needs is the dataset's, whatever the meta says
    for meta_kw, kw in (("MediaStorageSOPClassUID", "SOPClassUID"), ("MediaStorageSOPInstanceUID", "SOPInstanceUID")):
        value = ds.get(kw)
        if value is not None:
            setattr(meta, meta_kw, value)
    object.__setattr__(ds, _ENCODED, (ts, data[start:]))
    return ds


def encoded_body(ds: Any, implicit: bool, little: bool, deflated: bool) -> bytes | None:
    """The bytes the dataset was stored with, when they are its encoding in the syntax asked for
    (the dataset was not transcoded since `stored_dataset`); None otherwise."""
    from pydicom.dataset import Dataset
    from pydicom.uid import UID

    held = getattr(ds, _ENCODED, None) if isinstance(ds, Dataset) else None
    if held is None:
        return None
    ts, body = held
    meta = getattr(ds, "file_meta", None)
    if meta is None or str(getattr(meta, "TransferSyntaxUID", "")) != ts:
        return None
    uid = UID(ts)
    if (uid.is_implicit_VR, uid.is_little_endian, uid.is_deflated) != (implicit, little, deflated):
        return None
    if deflated and len(body) % 2:
        return bytes(body) + b"\x00"  # the deflate stream padded to even length, as PS3.5 wants
    return bytes(body)


def wire_syntax(ds: Dataset) -> str:
    """The transfer syntax the dataset is (to be) encoded in."""
    return str(ds.file_meta.TransferSyntaxUID)


def for_peer(ds: Dataset, accepted: Collection[str]) -> bool:
    """Make `ds` go in one of the `accepted` transfer syntaxes: unchanged when its own is
    accepted, else transcoded to Explicit VR Little Endian (Orthanc's preferred syntax), else to
    Implicit VR Little Endian or Explicit VR Big Endian, as Orthanc does.
    False when no accepted syntax can be reached."""
    ts = wire_syntax(ds)
    if ts in accepted:
        return True
    for target in (EXPLICIT_VR_LE, IMPLICIT_VR_LE, EXPLICIT_VR_BE):
        if target in accepted:
            try:
                recode(ds, target)
            except CannotTranscode:
                return False
            object.__setattr__(ds, _ENCODED, None)
            return True
    return False
