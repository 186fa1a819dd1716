"""Resource navigation: lists, expansion, children/parents, statistics, tags, content, delete."""

from __future__ import annotations

import dicomgen
import pytest


def small(**kw: object) -> bytes:
    return dicomgen.make(rows=16, columns=16, **kw)


@pytest.fixture
def populated(client):
    """2 patients; patient 0 has 2 studies; study (0,0) has 2 series of 2 instances."""
    ids = []
    for patient, study, series, instance in [
        (0, 0, 0, 0),
        (0, 0, 0, 1),
        (0, 0, 1, 0),
        (0, 0, 1, 1),
        (0, 1, 0, 0),
        (1, 0, 0, 0),
    ]:
        ids.append(client.upload(small(patient=patient, study=study, series=series, instance=instance)))
    return ids


def test_levels_and_expansion(client, populated):
    first = populated[0]
    patients = client.get("/patients").json()
    assert patients == [first["ParentPatient"], populated[-1]["ParentPatient"]]
    assert len(client.get("/studies").json()) == 3
    assert len(client.get("/series").json()) == 4
    assert len(client.get("/instances").json()) == 6

    patient = client.get(f"/patients/{first['ParentPatient']}").json()
    assert set(patient) == {"ID", "IsProtected", "IsStable", "Labels", "LastUpdate", "MainDicomTags", "Studies", "Type"}
    assert patient["IsProtected"] is False  # Orthanc 1.12.8+
    assert patient["Type"] == "Patient" and len(patient["Studies"]) == 2
    assert patient["MainDicomTags"]["PatientID"] == "PID00000"

    study = client.get(f"/studies/{first['ParentStudy']}").json()
    assert study["ParentPatient"] == first["ParentPatient"]
    assert study["PatientMainDicomTags"]["PatientName"] == "Patient^00000"
    assert study["MainDicomTags"]["StudyDate"] == "20200101"
    assert "PatientName" not in study["MainDicomTags"]
    assert len(study["Series"]) == 2

    series = client.get(f"/series/{first['ParentSeries']}").json()
    assert series["Status"] == "Unknown" and series["ExpectedNumberOfInstances"] is None
    assert series["Instances"] == [populated[0]["ID"], populated[1]["ID"]]
    assert series["MainDicomTags"]["Modality"] == "CT"

    inst = client.get(f"/instances/{first['ID']}").json()
    assert set(inst) == {
        "FileSize",
        "FileUuid",
        "ID",
        "IndexInSeries",
        "Labels",
        "MainDicomTags",
        "ParentSeries",
        "Type",
    }
    assert inst["IndexInSeries"] == 1 and inst["FileSize"] > 0

    short = client.get(f"/studies/{first['ParentStudy']}?short").json()
    assert short["MainDicomTags"]["0008,0020"] == "20200101"
    assert short["PatientMainDicomTags"]["0010,0020"] == "PID00000"
    full = client.get(f"/patients/{first['ParentPatient']}?full").json()
    assert full["MainDicomTags"]["0010,0010"] == {"Name": "PatientName", "Type": "String", "Value": "Patient^00000"}

    expanded = client.get("/studies?expand").json()
    assert [s["ID"] for s in expanded] == client.get("/studies").json()
    # whole-level listings (one query) equal the resources read one by one, labels and protection too
    assert client.put(f"/studies/{first['ParentStudy']}/labels/urgent", b"").status == 200
    assert client.put(f"/patients/{first['ParentPatient']}/protected", "1").status == 200
    garbage = client.put(f"/patients/{first['ParentPatient']}/protected", b"\x00\xff")  # not text: 400, not 500
    assert garbage.status == 400 and garbage.json()["OrthancError"] == "Bad request"
    for level in ("patients", "studies", "series"):
        listed = client.get(f"/{level}?expand").json()
        assert listed == [client.get(f"/{level}/{r['ID']}").json() for r in listed]
    assert any(s["Labels"] == ["urgent"] for s in client.get("/studies?expand").json())
    found = client.post("/tools/find", {"Level": "Patient", "Query": {}, "ResponseContent": ["IsProtected"]}).json()
    assert any(p["IsProtected"] for p in found)
    assert client.get("/studies?since=1&limit=1").json() == client.get("/studies").json()[1:2]
    bad = client.get("/studies?limit=1")
    assert bad.status == 400 and bad.json()["OrthancStatus"] == 8

    req = client.get(f"/studies/{first['ParentStudy']}?requested-tags=PatientName;0008,0060;Rows").json()
    assert req["RequestedTags"] == {"PatientName": "Patient^00000", "Modality": "CT", "Rows": "16"}


def test_relatives(client, populated):
    first = populated[0]
    sid = first["ParentStudy"]
    assert client.get(f"/studies/{sid}/patient").json()["ID"] == first["ParentPatient"]
    assert [s["ID"] for s in client.get(f"/studies/{sid}/series").json()] == client.get(f"/studies/{sid}").json()[
        "Series"
    ]
    assert len(client.get(f"/studies/{sid}/instances").json()) == 4
    assert len(client.get(f"/patients/{first['ParentPatient']}/instances").json()) == 5
    assert client.get(f"/instances/{first['ID']}/study").json()["ID"] == sid
    assert client.get(f"/instances/{first['ID']}/patient").json()["ID"] == first["ParentPatient"]
    assert client.get(f"/patients/{first['ParentPatient']}/patient").status == 404


def test_statistics(client, populated):
    stats = client.get("/statistics").json()
    assert (stats["CountPatients"], stats["CountStudies"], stats["CountSeries"], stats["CountInstances"]) == (
        2,
        3,
        4,
        6,
    )
    assert int(stats["TotalDiskSize"]) > 0 and isinstance(stats["TotalDiskSizeMB"], int)
    s = client.get(f"/patients/{populated[0]['ParentPatient']}/statistics").json()
    assert (s["CountStudies"], s["CountSeries"], s["CountInstances"]) == (2, 3, 5)
    assert s["DiskSize"] == s["DicomDiskSize"]
    series = client.get(f"/series/{populated[0]['ParentSeries']}/statistics").json()
    assert series["CountInstances"] == 2 and "CountSeries" not in series


def test_tags_and_content(client, populated):
    iid = populated[0]["ID"]
    tags = client.get(f"/instances/{iid}/tags").json()
    assert tags["0010,0010"] == {"Name": "PatientName", "Type": "String", "Value": "Patient^00000"}
    assert client.get(f"/instances/{iid}/tags?simplify").json()["PatientName"] == "Patient^00000"
    assert client.get(f"/instances/{iid}/simplified-tags").json()["PatientID"] == "PID00000"
    assert client.get(f"/instances/{iid}/tags?short").json()["0010,0020"] == "PID00000"
    header = client.get(f"/instances/{iid}/header?simplify").json()
    assert header["TransferSyntaxUID"] == "1.2.840.10008.1.2.1"
    content = client.get(f"/instances/{iid}/content").json()
    assert "0010-0010" in content
    raw = client.get(f"/instances/{iid}/content/0010-0010")
    assert raw.body.rstrip(b" ") == b"Patient^00000"
    assert client.get(f"/instances/{iid}/content/0010-0010/0").status == 404
    assert client.get(f"/instances/{iid}/content/ffff-ffff").status == 404
    shared = client.get(f"/series/{populated[0]['ParentSeries']}/shared-tags?simplify").json()
    assert shared["SeriesInstanceUID"] and "SOPInstanceUID" not in shared
    module = client.get(f"/studies/{populated[0]['ParentStudy']}/module?simplify").json()
    assert "StudyDate" in module and "InstitutionName" not in module and "PatientName" not in module
    mp = client.get(f"/studies/{populated[0]['ParentStudy']}/module-patient?simplify").json()
    assert mp["PatientName"] == "Patient^00000"
    it = client.get(f"/series/{populated[0]['ParentSeries']}/instances-tags?short").json()
    assert set(it) == {populated[0]["ID"], populated[1]["ID"]}
    assert client.get(f"/instances/{iid}/frames").json() == [0]


def test_metadata_and_labels(client, populated):
    iid = populated[0]["ID"]
    assert client.put(f"/instances/{iid}/metadata/1025", "hello").status == 200
    assert client.get(f"/instances/{iid}/metadata/1025").body == b"hello"
    assert client.get(f"/instances/{iid}/metadata/1024").status == 404
    assert client.get(f"/instances/{iid}/metadata/Nonexistent").json()["OrthancStatus"] == 7
    assert client.delete(f"/instances/{iid}/metadata/1025").status == 200
    assert client.get(f"/instances/{iid}/metadata/1025").status == 404
    sid = populated[0]["ParentStudy"]
    assert client.put(f"/studies/{sid}/labels/urgent").status == 200
    assert client.get(f"/studies/{sid}/labels").json() == ["urgent"]
    assert client.get(f"/studies/{sid}").json()["Labels"] == ["urgent"]
    assert client.get("/tools/labels").json() == ["urgent"]
    found = client.post("/tools/find", {"Level": "Study", "Query": {}, "Labels": ["urgent"]}).json()
    assert found == [sid]
    assert client.delete(f"/studies/{sid}/labels/urgent").status == 200
    assert client.get(f"/studies/{sid}/labels").json() == []


def test_delete_cascade(client, server, populated):
    first = populated[0]
    r = client.delete(f"/instances/{first['ID']}")
    assert r.json() == {
        "RemainingAncestor": {"ID": first["ParentSeries"], "Path": f"/series/{first['ParentSeries']}", "Type": "Series"}
    }
    assert client.get(f"/instances/{first['ID']}").status == 404
    assert client.get(f"/instances/{first['ID']}").body == b""
    assert client.delete(f"/instances/{first['ID']}").status == 404
    r = client.delete(f"/series/{first['ParentSeries']}")
    assert r.json()["RemainingAncestor"]["Type"] == "Study"
    r = client.delete(f"/patients/{populated[-1]['ParentPatient']}")
    assert r.json() == {"RemainingAncestor": None}
    assert len(client.get("/instances").json()) == 3
    files = [p for p in server.settings.storage_directory.rglob("*") if p.is_file() and "sqlite" not in p.name]
    assert len(files) == 3
    # The last instance of a series takes the series, study and patient with it.
    r = client.delete(f"/studies/{first['ParentStudy']}")
    assert r.json()["RemainingAncestor"]["ID"] == first["ParentPatient"]
    assert client.get("/studies").json() == [populated[4]["ParentStudy"]]
