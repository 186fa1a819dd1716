"""QIDO-RS through the core find engine: levels, scoped forms, matching, includefield, paging."""

from __future__ import annotations

import dicomgen
import pytest


@pytest.fixture
def data(client):
    specs = [
        dict(patient=0, patient_name="Smith^John", study_date="20190105", modality="CT"),
        dict(patient=0, patient_name="Smith^John", study_date="20190105", modality="CT", instance=1),
        dict(patient=1, patient_name="Doe^Jane", study_date="20210301", modality="MR"),
    ]
    return [client.upload(dicomgen.make(rows=8, columns=8, **s)) for s in specs]


def qido(client, path: str, **headers: str):
    r = client.get(path, headers={"Accept": "application/dicom+json", **headers})
    assert r.status == 200, r.body
    assert r.headers["content-type"].startswith("application/dicom+json")
    return r.json()


def test_studies(client, data, server):
    studies = qido(client, "/dicom-web/studies")
    assert len(studies) == 2
    smith = qido(client, "/dicom-web/studies?PatientName=smith*")
    assert len(smith) == 1
    s = smith[0]
    assert s["0020000D"] == {"vr": "UI", "Value": [dicomgen.uid("study", 0, 0)]}
    assert s["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Smith^John"}]}
    assert s["00201208"]["Value"] == [2] and s["00201206"]["Value"] == [1]
    assert s["00080061"]["Value"] == ["CT"]
    assert s["00081190"]["Value"][0].endswith(f"/dicom-web/studies/{dicomgen.uid('study', 0, 0)}")
    assert qido(client, "/dicom-web/studies?StudyDate=20200101-20211231")[0]["00080020"]["Value"] == ["20210301"]
    assert qido(client, "/dicom-web/studies?00100020=PID00001")[0]["00100020"]["Value"] == ["PID00001"]
    assert qido(client, "/dicom-web/studies?PatientName=nobody") == []
    assert len(qido(client, "/dicom-web/studies?limit=1")) == 1
    assert len(qido(client, "/dicom-web/studies?limit=1&offset=1")) == 1
    assert qido(client, "/dicom-web/v1/studies?PatientName=doe") == []
    assert len(qido(client, "/dicom-web/v1/studies?PatientName=doe&fuzzymatching=true")) == 1
    everything = qido(client, "/dicom-web/studies?PatientName=Doe*&includefield=all")[0]
    assert everything["00081030"]["Value"] == ["Synthetic study"]
    assert client.get("/dicom-web/studies", headers={"Accept": "image/png"}).status == 406
    assert client.get("/dicom-web/studies?limit=x").status == 400


def test_series_and_instances(client, data):
    study = dicomgen.uid("study", 0, 0)
    series = qido(client, f"/dicom-web/studies/{study}/series")
    assert len(series) == 1 and series[0]["00080060"]["Value"] == ["CT"]
    assert series[0]["00201209"]["Value"] == [2]
    assert len(qido(client, "/dicom-web/series?Modality=MR")) == 1
    instances = qido(client, f"/dicom-web/studies/{study}/instances")
    assert sorted(i["00200013"]["Value"][0] for i in instances) == [1, 2]
    series_uid = dicomgen.uid("series", 0, 0, 0)
    scoped = qido(client, f"/dicom-web/studies/{study}/series/{series_uid}/instances?InstanceNumber=2")
    assert len(scoped) == 1 and scoped[0]["00080018"]["Value"] == [dicomgen.uid("sop", 0, 0, 0, 1)]
    assert scoped[0]["00280010"]["Value"] == [8]
    assert len(qido(client, "/dicom-web/instances")) == 3


def test_includefield_names_a_sequence(client):
    """DICOMweb plugin 1.17+: a sequence includefield names is answered with its items (read
    from the file); an instance without it answers nothing for it."""
    from pydicom.dataset import Dataset

    items = []
    for uid in ("1.2.3.1", "1.2.3.2"):
        item = Dataset()
        item.ReferencedSOPClassUID = dicomgen.CT_IMAGE_STORAGE
        item.ReferencedSOPInstanceUID = uid
        items.append(item)
    client.upload(dicomgen.make(patient=4, rows=8, columns=8, extra={"ReferencedImageSequence": items}))
    client.upload(dicomgen.make(patient=4, instance=1, rows=8, columns=8))
    found = qido(client, "/dicom-web/instances?PatientID=PID00004&includefield=00081140")
    by_number = {a["00200013"]["Value"][0]: a for a in found}
    seq = by_number[1]["00081140"]
    assert seq["vr"] == "SQ"
    assert [i["00081155"]["Value"][0] for i in seq["Value"]] == ["1.2.3.1", "1.2.3.2"]
    assert seq["Value"][0]["00081150"] == {"vr": "UI", "Value": [dicomgen.CT_IMAGE_STORAGE]}
    assert "00081140" not in by_number[2]
