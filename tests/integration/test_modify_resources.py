"""POST /{patients,studies,series}/{id}/modify and /tools/bulk-modify: ResourceModification jobs
on real files (tags, UIDs and relationships across a study, metadata, labels, errors)."""

from __future__ import annotations

import io
import time
from typing import Any

import dicomgen
import pydicom


def _study(client: Any, patient: int = 1, series: int = 2, per_series: int = 3, rows: int = 16) -> list[dict]:
    return [
        client.upload(dicomgen.make(patient=patient, series=s, instance=i, rows=rows, columns=rows))
        for s in range(series)
        for i in range(per_series)
    ]


def _datasets(client: Any, level: str, public_id: str) -> list[pydicom.Dataset]:
    out = []
    for inst in client.get(f"/{level}/{public_id}/instances").json():
        out.append(pydicom.dcmread(io.BytesIO(client.get(f"/instances/{inst['ID']}/file").body)))
    return out


def test_modify_study_keeps_relationships_and_pixels(client):
    up = _study(client)
    study = up[0]["ParentStudy"]
    r = client.post(f"/studies/{study}/modify", {"Replace": {"PatientName": "Jodogne^Seb"}})
    assert r.status == 200, r.body
    answer = r.json()
    new = answer["ID"]
    assert answer["Type"] == "Study" and answer["Path"] == f"/studies/{new}" and new != study
    assert answer["PatientID"] == up[0]["ParentPatient"]  # PatientID untouched: same patient
    assert answer["InstancesCount"] == 6 and answer["FailedInstancesCount"] == 0
    assert client.get(f"/studies/{new}").json()["ModifiedFrom"] == study
    before = {ds.SOPInstanceUID: ds for ds in _datasets(client, "studies", study)}
    after = _datasets(client, "studies", new)
    assert len(after) == 6 and len(before) == 6  # KeepSource defaults to true
    assert len({ds.StudyInstanceUID for ds in after}) == 1
    assert after[0].StudyInstanceUID not in {ds.StudyInstanceUID for ds in before.values()}
    assert len({ds.SeriesInstanceUID for ds in after}) == 2  # each series mapped to one new UID
    assert all(str(ds.PatientName) == "Jodogne^Seb" for ds in after)
    assert not {ds.SOPInstanceUID for ds in after} & set(before)
    # the pixel data is carried as it is, and the source can be found back
    for inst in client.get(f"/studies/{new}/instances").json():
        source = client.get(f"/instances/{inst['ID']}/metadata/ModifiedFrom").body.decode()
        a = pydicom.dcmread(io.BytesIO(client.get(f"/instances/{inst['ID']}/file").body))
        b = pydicom.dcmread(io.BytesIO(client.get(f"/instances/{source}/file").body))
        assert a.PixelData == b.PixelData and a.InstanceNumber == b.InstanceNumber
        series = client.get(f"/instances/{inst['ID']}").json()["ParentSeries"]
        assert (
            client.get(f"/series/{series}").json()["ModifiedFrom"]
            == client.get(f"/instances/{source}").json()["ParentSeries"]
        )
    # the new study's main tags come from the modified files
    assert client.get(f"/studies/{new}").json()["PatientMainDicomTags"]["PatientName"] == "Jodogne^Seb"


def test_modify_series_stays_in_its_study_and_keep_source_false_removes_it(client):
    up = _study(client, patient=2, series=1, per_series=2)
    series = up[0]["ParentSeries"]
    answer = client.post(f"/series/{series}/modify", {"Replace": {"SeriesDescription": "New"}, "KeepSource": False})
    answer = answer.json()
    assert answer["Type"] == "Series"
    info = client.get(f"/series/{answer['ID']}").json()
    assert info["ParentStudy"] == up[0]["ParentStudy"] and info["MainDicomTags"]["SeriesDescription"] == "New"
    assert client.get(f"/series/{series}").status == 404
    assert len(client.get("/instances").json()) == 2


def test_in_place_modification_with_all_uids_kept(make_server):
    client = make_server({"OverwriteInstances": True}).client()
    up = _study(client, patient=3, series=1, per_series=2)
    study = up[0]["ParentStudy"]
    for i in up:
        assert client.put(f"/instances/{i['ID']}/labels/mine", b"").status == 200
    body = {
        "Replace": {"PatientName": "Renamed"},
        "Keep": ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"],
        "Force": True,
        "KeepLabels": True,
    }
    keep_source_false = client.post(f"/studies/{study}/modify", {**body, "KeepSource": False})
    assert keep_source_false.status == 400  # it would delete the modified files
    r = client.post(f"/studies/{study}/modify", body)
    assert r.status == 200 and r.json()["ID"] == study
    assert client.get(f"/studies/{study}").json()["PatientMainDicomTags"]["PatientName"] == "Renamed"
    assert client.get(f"/patients/{up[0]['ParentPatient']}").json()["MainDicomTags"]["PatientName"] == "Renamed"
    assert sorted(client.get("/instances").json()) == sorted(i["ID"] for i in up)
    assert all(client.get(f"/instances/{i['ID']}/labels").json() == ["mine"] for i in up)


def test_modify_paths_into_sequences(client):
    seq = [{"ReferencedSOPClassUID": "1.2.3", "ReferencedSOPInstanceUID": f"1.2.3.{i}"} for i in range(3)]
    u = client.upload(dicomgen.make(patient=4, rows=0, columns=0, extra={"ReferencedImageSequence": _sequence(seq)}))
    r = client.post(
        f"/studies/{u['ParentStudy']}/modify",
        {
            "Replace": {
                "ReferencedImageSequence[1].ReferencedSOPInstanceUID": "9.9",
                "ReferencedImageSequence[*].ReferencedSOPClassUID": "4.5",
            },
            "Remove": ["ReferencedImageSequence[2].ReferencedSOPInstanceUID"],
        },
    )
    (ds,) = _datasets(client, "studies", r.json()["ID"])
    items = ds.ReferencedImageSequence
    assert [it.ReferencedSOPClassUID for it in items] == ["4.5"] * 3
    assert items[0].ReferencedSOPInstanceUID == "1.2.3.0" and items[1].ReferencedSOPInstanceUID == "9.9"
    assert "ReferencedSOPInstanceUID" not in items[2]


def _sequence(items: list[dict[str, str]]) -> pydicom.Sequence:
    out = []
    for item in items:
        d = pydicom.Dataset()
        for k, v in item.items():
            setattr(d, k, v)
        out.append(d)
    return pydicom.Sequence(out)


def test_asynchronous_job_and_bulk_modify(client):
    up = _study(client, patient=5, series=1, per_series=2)
    r = client.post(
        f"/studies/{up[0]['ParentStudy']}/modify", {"Replace": {"StudyDescription": "A"}, "Asynchronous": True}
    )
    job = r.json()
    assert set(job) == {"ID", "Path"} and job["Path"] == f"/jobs/{job['ID']}"
    for _ in range(200):
        info = client.get(f"/jobs/{job['ID']}").json()
        if info["State"] in ("Success", "Failure"):
            break
        time.sleep(0.05)
    assert info["State"] == "Success" and info["Type"] == "ResourceModification" and info["Progress"] == 100
    assert info["Content"]["Type"] == "Study" and info["Content"]["IsAnonymization"] is False
    # bulk: the resources touched, at every level (the parents are the same: instance level)
    bulk = client.post("/tools/bulk-modify", {"Resources": [up[0]["ID"]], "Replace": {"StationName": "X"}}).json()
    types = sorted(r["Type"] for r in bulk["Resources"])
    assert types == ["Instance", "Patient", "Series", "Study"]
    found = {r["Type"]: r["ID"] for r in bulk["Resources"]}
    assert found["Instance"] != up[0]["ID"] and found["Series"] == up[0]["ParentSeries"]
    assert client.get(f"/instances/{found['Instance']}/metadata/ModifiedFrom").body.decode() == up[0]["ID"]


def test_modify_transcodes_the_stored_copies(client):
    up = _study(client, patient=6, series=1, per_series=1, rows=8)
    r = client.post(f"/series/{up[0]['ParentSeries']}/modify", {"Transcode": "1.2.840.10008.1.2"})
    assert r.status == 200 and r.json()["Transcode"] == "1.2.840.10008.1.2"
    (inst,) = client.get(f"/series/{r.json()['ID']}/instances").json()
    assert client.get(f"/instances/{inst['ID']}/metadata/TransferSyntax").body.decode() == "1.2.840.10008.1.2"
    a = pydicom.dcmread(io.BytesIO(client.get(f"/instances/{inst['ID']}/file").body))
    b = pydicom.dcmread(io.BytesIO(client.get(f"/instances/{up[0]['ID']}/file").body))
    assert (a.pixel_array == b.pixel_array).all()


def test_bad_requests_answer_orthanc_errors(client):
    up = _study(client, patient=7, series=1, per_series=1, rows=0)
    study = up[0]["ParentStudy"]
    r = client.post(f"/studies/{study}/modify", {"Replace": {"StudyInstanceUID": "1.2"}})
    body = r.json()
    assert r.status == 400 and body["HttpStatus"] == 400 and body["OrthancError"] == "Bad request"
    assert (
        body["Details"]
        == 'Marking tag "StudyInstanceUID" as to be replaced requires the "Force" option to be set to true'
    )
    assert body["Uri"] == f"/studies/{study}/modify" and body["Method"] == "POST"
    r = client.post(f"/studies/{study}/modify", [1])
    assert r.status == 400 and r.json()["OrthancError"] == "Bad file format"
    r = client.post(f"/studies/{study}/modify", {"Force": 1})
    assert r.json()["Details"] == 'Member "Force" should be a Boolean value'
    r = client.post(f"/studies/{study}/modify", {"Transcode": "1.2.3"})
    assert r.status == 400 and r.json()["Details"] == "Unknown transfer syntax UID: 1.2.3"
    r = client.post(f"/studies/{study}/modify", {"Remove": ["PatientID"], "Force": True})
    assert r.status == 400 and "forbidden" in r.json()["Details"]
    assert client.post("/studies/nope/modify", {}).status == 404
    assert len(client.get("/instances").json()) == 1  # nothing stored by a refused request


def test_removed_identifier_fails_the_job_not_the_submission(client):
    """As Orthanc, a removed main identifier ("Force" given) is refused when the modification
    is applied: an asynchronous request gets its job, which fails on its first instance."""
    up = _study(client, patient=9, series=1, per_series=1, rows=0)
    patient = up[0]["ParentPatient"]
    r = client.post(f"/patients/{patient}/modify", {"Remove": ["PatientID"], "Force": True, "Asynchronous": True})
    assert r.status == 200, r.body
    job_id = r.json()["ID"]
    deadline = time.monotonic() + 10
    while (info := client.get(f"/jobs/{job_id}").json())["State"] not in ("Success", "Failure"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert info["State"] == "Failure" and info["ErrorCode"] == 8 and info["Progress"] == 0
    assert info["ErrorDetails"] == "It is forbidden to remove one of the main Dicom identifiers"
    assert info["Content"]["InstancesCount"] == 1 and "ID" not in info["Content"]
    r = client.post(f"/instances/{up[0]['ID']}/modify", {"Remove": ["SOPInstanceUID"], "Force": True})
    assert r.status == 400 and r.json()["Details"] == "It is forbidden to remove one of the main Dicom identifiers"
    assert len(client.get("/instances").json()) == 1


def test_job_rebuilt_from_its_spec_gives_the_same_uids(server):
    """SaveJobs/resubmit: the registered factory runs the job again from its spec; the UIDs
    already handed out are kept, so the instances done before are not stored twice."""
    import asyncio

    from orthanc_py.core.jobs import Job

    client = server.client()
    up = _study(client, patient=8, series=1, per_series=2, rows=0)
    job = client.post(f"/studies/{up[0]['ParentStudy']}/modify", {"Replace": {"StudyDescription": "B"}}).json()
    instances = sorted(client.get("/instances").json())
    assert len(instances) == 4
    ctx = server.ctx
    assert ctx is not None and server._loop is not None
    factory = ctx.jobs._factories["ResourceModification"]
    (record,) = [j for j in ctx.jobs.all() if j.type == "ResourceModification"]
    assert record.spec is not None and record.spec["UidMap"]
    run = factory(record.spec)
    again = asyncio.run_coroutine_threadsafe(run(Job("x", "ResourceModification", 0)), server._loop).result(30)
    assert again["ID"] == job["ID"]
    assert sorted(client.get("/instances").json()) == instances  # stored already: nothing new


def test_modify_keeps_empty_elements(client):
    """An element of length 0 (read back as None by pydicom) is copied as it is."""
    u = client.upload(dicomgen.make(patient=9, rows=8, columns=8, accession=""))
    r = client.post(f"/studies/{u['ParentStudy']}/modify", {"Replace": {"PatientName": "E"}})
    assert r.status == 200, r.body
    (ds,) = _datasets(client, "studies", r.json()["ID"])
    assert ds.AccessionNumber == "" and "AccessionNumber" in ds and str(ds.PatientName) == "E"
