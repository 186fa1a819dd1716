"""model.wire: a stored file read as ingest accepted it, for sending."""

from __future__ import annotations

import io

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from orthanc_py.model.wire import body_offset, encoded_body, for_peer, stored_dataset, wire_syntax


def _file(meta_ts: str, implicit: bool, preamble: bool) -> tuple[bytes, Dataset]:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.SOPInstanceUID = generate_uid()
    ds.PatientID = "W"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.3"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()  # disagrees with the dataset
    ds.file_meta.TransferSyntaxUID = meta_ts
    out = io.BytesIO()
    if preamble:
        ds.preamble = b"\0" * 128
    pydicom.dcmwrite(out, ds, implicit_vr=implicit, little_endian=True)
    return out.getvalue(), ds


def test_a_file_without_preamble_goes_as_its_dataset_says() -> None:
    data, ds = _file(ExplicitVRLittleEndian, implicit=False, preamble=False)
    assert data[:2] == b"\x02\x00"
    start = body_offset(data)
    assert data[start : start + 4] == b"\x08\x00\x16\x00"  # (0008,0016), the first dataset element
    sent = stored_dataset(data)
    assert sent.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert sent.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
    assert encoded_body(sent, False, True, False) == data[start:]
    assert encoded_body(sent, True, True, False) is None  # not the encoding asked for


def test_meta_that_lies_about_the_encoding_is_overruled() -> None:
    implicit, _ds = _file(ImplicitVRLittleEndian, implicit=True, preamble=False)
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = io.BytesIO()
    pydicom.filewriter.write_file_meta_info(pydicom.filebase.DicomFileLike(out), meta, enforce_standard=False)
    data = out.getvalue() + implicit[body_offset(implicit) :]
    sent = stored_dataset(data)
    assert wire_syntax(sent) == ImplicitVRLittleEndian
    assert encoded_body(sent, True, True, False) == data[body_offset(data) :]


def test_transcoding_drops_the_stored_bytes() -> None:
    data, ds = _file(ImplicitVRLittleEndian, implicit=True, preamble=True)
    sent = stored_dataset(data)
    assert for_peer(sent, [ImplicitVRLittleEndian]) and encoded_body(sent, True, True, False) is not None
    assert for_peer(sent, [ExplicitVRLittleEndian])
    assert wire_syntax(sent) == ExplicitVRLittleEndian
    assert encoded_body(sent, False, True, False) is None
    assert not for_peer(stored_dataset(data), ["1.2.840.10008.1.2.4.50"])  # no way there
    assert sent.PatientID == ds.PatientID
