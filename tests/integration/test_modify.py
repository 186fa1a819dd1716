"""POST /instances/{id}/modify: the modified copy of one instance, with Orthanc's rules."""

from __future__ import annotations

import io

import dicomgen
import pydicom


def test_modify_instance_answers_a_modified_copy(client):
    u = client.upload(dicomgen.make(patient=1, rows=0, columns=0))
    original = pydicom.dcmread(io.BytesIO(client.get(f"/instances/{u['ID']}/file").body))
    r = client.post(
        f"/instances/{u['ID']}/modify", {"Replace": {"StudyDescription": "Changed"}, "Remove": ["Manufacturer"]}
    )
    assert r.status == 200 and r.headers["content-type"] == "application/dicom"
    ds = pydicom.dcmread(io.BytesIO(r.body))
    assert ds.StudyDescription == "Changed" and "Manufacturer" not in ds
    # an instance-level modification: a new SOPInstanceUID, the parents kept
    assert ds.SOPInstanceUID != original.SOPInstanceUID
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert (ds.StudyInstanceUID, ds.SeriesInstanceUID) == (original.StudyInstanceUID, original.SeriesInstanceUID)
    assert client.get("/instances").json() == [u["ID"]]  # nothing stored


def test_modify_identifiers_needs_force_and_renews_uids_below(client):
    u = client.upload(dicomgen.make(patient=2, rows=0, columns=0))
    body = {"Replace": {"PatientName": "MyName[*]", "PatientID": "test_brackets"}}
    r = client.post(f"/instances/{u['ID']}/modify", body)
    assert r.status == 400 and "Force" in r.json()["Details"]
    assert client.post(f"/instances/{u['ID']}/modify", {"Remove": ["SOPInstanceUID"], "Force": True}).status == 400
    r = client.post(f"/instances/{u['ID']}/modify", {**body, "Force": True})
    ds = pydicom.dcmread(io.BytesIO(r.body))
    original = pydicom.dcmread(io.BytesIO(client.get(f"/instances/{u['ID']}/file").body))
    assert ds.PatientID == "test_brackets"
    assert ds.StudyInstanceUID != original.StudyInstanceUID  # a patient-level change: every UID is new
    stored = client.upload(r.body)
    # brackets are literal in DICOM wildcards
    for level, name in (("Series", "MyName[*]"), ("Patient", "MyName[*]"), ("Study", "MyName*")):
        found = client.post("/tools/find", {"Level": level, "Query": {"PatientName": name}}).json()
        assert len(found) == 1, (level, name)
    assert client.post("/tools/find", {"Level": "Patient", "Query": {"PatientName": "MyName[]"}}).json() == []
    assert stored["ParentPatient"] != u["ParentPatient"]
    assert client.post(f"/instances/{u['ID']}/modify", [1]).status == 400
    assert client.post("/instances/nope/modify", {}).status == 404
