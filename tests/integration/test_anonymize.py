"""POST /{level}/{id}/anonymize, /instances/{id}/anonymize and /tools/bulk-anonymize: Orthanc's
profiles (PS3.15 Basic Profile versions), UIDs mapped consistently across a study, references."""

from __future__ import annotations

import io
from typing import Any

import dicomgen
import pydicom


def _file(client: Any, instance: str) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(client.get(f"/instances/{instance}/file").body))


def _referencing_pair(client: Any, patient: int) -> tuple[dict, dict]:
    """Two instances of one study: the second references the first, both share a frame of reference."""
    frame = dicomgen.uid("frame", patient)
    first = dicomgen.make(
        patient=patient,
        series=0,
        rows=8,
        columns=8,
        extra={"FrameOfReferenceUID": frame, "StationName": "ROOM1", "InstitutionName": "Hospital"},
    )
    first_ds = pydicom.dcmread(io.BytesIO(first))
    ref = pydicom.Dataset()
    ref.ReferencedSOPClassUID = first_ds.SOPClassUID
    ref.ReferencedSOPInstanceUID = first_ds.SOPInstanceUID
    ds = dicomgen.make_dataset(
        dicomgen.Spec(
            patient=patient,
            series=1,
            rows=8,
            columns=8,
            extra={"FrameOfReferenceUID": frame, "ReferencedImageSequence": pydicom.Sequence([ref])},
        )
    )
    ds.add_new(0x00091010, "LO", "private value")
    return client.upload(first), client.upload(dicomgen.to_bytes(ds))


def test_anonymize_study_maps_uids_and_references(client):
    a, b = _referencing_pair(client, 1)
    r = client.post(f"/studies/{a['ParentStudy']}/anonymize", {})
    assert r.status == 200, r.body
    answer = r.json()
    assert answer["Type"] == "Study" and answer["IsAnonymization"] is True
    new = answer["ID"]
    assert client.get(f"/studies/{new}").json()["AnonymizedFrom"] == a["ParentStudy"]
    assert client.get(f"/patients/{answer['PatientID']}").json()["AnonymizedFrom"] == a["ParentPatient"]
    files = {}
    for inst in client.get(f"/studies/{new}/instances").json():
        files[client.get(f"/instances/{inst['ID']}/metadata/AnonymizedFrom").body.decode()] = _file(client, inst["ID"])
    na, nb = files[a["ID"]], files[b["ID"]]
    oa, ob = _file(client, a["ID"]), _file(client, b["ID"])
    # one new identifier per original one, the same in every instance of the job
    assert na.StudyInstanceUID == nb.StudyInstanceUID != oa.StudyInstanceUID
    assert na.FrameOfReferenceUID == nb.FrameOfReferenceUID != oa.FrameOfReferenceUID
    assert nb.ReferencedImageSequence[0].ReferencedSOPInstanceUID == na.SOPInstanceUID
    assert nb.ReferencedImageSequence[0].ReferencedSOPClassUID == ob.ReferencedImageSequence[0].ReferencedSOPClassUID
    assert na.PatientID == nb.PatientID and len(na.PatientID) == 36  # a UUID
    assert str(na.PatientName).startswith("Anonymized") and str(na.PatientName) == str(nb.PatientName)
    assert na.PatientIdentityRemoved == "YES"
    assert na.DeidentificationMethod.endswith("PS 3.15-2023b Table E.1-1 Basic Profile")
    assert na.StudyDate == "" and "InstitutionName" not in na and "StationName" not in na  # Z and X
    assert 0x00091010 not in nb  # private tags go
    assert na.PixelData == oa.PixelData


def test_anonymize_options_and_profiles(client):
    a, _b = _referencing_pair(client, 2)
    study = a["ParentStudy"]
    r = client.post(
        f"/studies/{study}/anonymize",
        {"DicomVersion": "2008", "Keep": ["StationName"], "KeepPrivateTags": True, "Replace": {"PatientName": "P"}},
    ).json()
    files = [_file(client, i["ID"]) for i in client.get(f"/studies/{r['ID']}/instances").json()]
    assert all(str(ds.PatientName) == "P" for ds in files)
    assert any(ds.get("StationName") == "ROOM1" for ds in files)
    assert all(ds.StudyDate == "20200101" for ds in files)  # 2008 keeps the dates
    assert any(0x00091010 in ds for ds in files)
    # not one of Orthanc's profiles any more: the method names Orthanc only (1.12.7)
    version = client.get("/system").json()["Version"]
    assert all(ds.DeidentificationMethod == f"Orthanc {version}" for ds in files)
    r = client.post(f"/studies/{study}/anonymize", {"DicomVersion": "nope"})
    assert r.status == 400 and r.json()["OrthancError"] == "Parameter out of range"
    assert r.json()["Details"] == "Unknown specific version of the DICOM standard: nope"
    r = client.post(f"/studies/{study}/anonymize", {"Keep": ["SOPInstanceUID"]})
    assert r.status == 400 and "Force" in r.json()["Details"]


def test_anonymize_instance_answers_the_file(client):
    a, _b = _referencing_pair(client, 3)
    r = client.post(f"/instances/{a['ID']}/anonymize")  # an empty body is an empty request
    assert r.status == 200 and r.headers["content-type"] == "application/dicom"
    ds = pydicom.dcmread(io.BytesIO(r.body))
    original = _file(client, a["ID"])
    assert ds.SOPInstanceUID != original.SOPInstanceUID and ds.StudyInstanceUID != original.StudyInstanceUID
    assert ds.FrameOfReferenceUID != original.FrameOfReferenceUID
    assert len(client.get("/instances").json()) == 2  # nothing stored


def test_bulk_anonymize_and_keep_source(client):
    a, b = _referencing_pair(client, 4)
    r = client.post("/tools/bulk-anonymize", {"Resources": [a["ID"], b["ID"]], "KeepSource": False}).json()
    kinds = sorted({x["Type"] for x in r["Resources"]})
    assert kinds == ["Instance", "Patient", "Series", "Study"]
    studies = [x["ID"] for x in r["Resources"] if x["Type"] == "Study"]
    assert len(studies) == 1  # both instances land in the same new study
    assert sorted(client.get("/studies").json()) == studies  # the sources are gone
    assert client.post("/tools/bulk-anonymize", {"Resources": "x"}).status == 400


def test_anonymize_inside_sequences(client):
    """Orthanc 1.9.5+: inside sequences, anonymization removes the profile's X tags, the private
    tags and the cleared tags that are not strings, and empties the cleared strings."""
    ds = dicomgen.make_dataset(dicomgen.Spec(patient=5, rows=0, columns=0))
    item = pydicom.Dataset()
    item.add_new(0x00090010, "LO", "Lunit")
    item.add_new(0x00091002, "UN", b"ABCD")
    item.add_new(0x00160071, "DS", "-12")  # GPS latitude: removed
    item.add_new(0x00340005, "OB", b"13")  # cleared, but not a string: removed
    item.StudyDescription = "Hello"  # removed
    item.StudyDate = "20210705"  # cleared
    inner = pydicom.Dataset()
    inner.PatientID = "HELLO"
    item.ReferencedStudySequence = pydicom.Sequence([inner])  # removed
    item.CodeMeaning = "MEANING1"
    code = pydicom.Dataset()
    code.CodeMeaning = "MEANING2"
    item.EquivalentCodeSequence = pydicom.Sequence([code])
    ds.MappingResourceIdentificationSequence = pydicom.Sequence([item])
    u = client.upload(dicomgen.to_bytes(ds))
    r = client.post(f"/studies/{u['ParentStudy']}/anonymize", {}).json()
    (inst,) = client.get(f"/studies/{r['ID']}/instances").json()
    tags = client.get(f"/instances/{inst['ID']}/tags?short").json()
    (out,) = tags["0008,0124"]
    assert out == {"0008,0020": "", "0008,0104": "MEANING1", "0008,0121": [{"0008,0104": "MEANING2"}]}
