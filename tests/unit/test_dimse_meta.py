"""The file meta header written for received instances is byte for byte what pydicom writes."""

from __future__ import annotations

import io

import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID

from orthanc_py.model.filemeta import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, file_meta_bytes


@pytest.mark.parametrize(
    ("sop_class", "sop_instance", "syntax"),
    [
        ("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5.6.7.8.9", "1.2.840.10008.1.2.1"),  # odd lengths
        ("1.2.840.10008.5.1.4.1.1.7", "1.2.276.0.7230010.3.1.4.2455711835.6056.1170936079.1", "1.2.840.10008.1.2"),
        ("1.2.840.10008.5.1.4.1.1.4", "1.2.3.4", "1.2.840.10008.1.2.4.50"),  # even lengths
    ],
)
def test_meta_matches_pydicom(sop_class: str, sop_instance: str, syntax: str) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = UID(syntax)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    expected = io.BytesIO()
    expected.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(expected, meta, enforce_standard=True)  # type: ignore[arg-type]
    assert file_meta_bytes(sop_class, sop_instance, syntax) == expected.getvalue()
