"""/tools/bulk-content, /tools/bulk-delete, reconstruction, and the CompletedSeries change."""

from __future__ import annotations

import dicomgen


def _hierarchy(client, **spec) -> list[str]:
    r = client.upload(dicomgen.make(rows=0, **spec))
    return [r["ParentPatient"], r["ParentStudy"], r["ParentSeries"], r["ID"]]


def test_bulk_content(client):
    a = _hierarchy(client, patient=1)
    a2 = _hierarchy(client, patient=1, instance=1)[3]
    b = _hierarchy(client, patient=2)
    r = client.post("/tools/bulk-content", {"Resources": [*a, "nope", "11111111-11111111-11111111-11111111-11111111"]})
    items = r.json()
    assert [i["ID"] for i in items] == a  # each at its own level, unknown IDs skipped
    assert [i["Type"] for i in items] == ["Patient", "Study", "Series", "Instance"]
    assert "LastUpdate" in items[0]["Metadata"] and items[3]["Metadata"]["Origin"] == "RestApi"
    assert items[1] == {**client.get(f"/studies/{a[1]}").json(), "Metadata": items[1]["Metadata"]}
    # up the hierarchy to one parent, down to all children, without duplicates
    up = client.post("/tools/bulk-content", {"Resources": [a[3], a2, b[3]], "Level": "Study", "Metadata": False}).json()
    assert sorted(i["ID"] for i in up) == sorted([a[1], b[1]]) and "Metadata" not in up[0]
    assert up[0]["PatientMainDicomTags"]["PatientID"] in ("PID00001", "PID00002")
    down = client.post("/tools/bulk-content", {"Resources": [a[0]], "Level": "Instance"}).json()
    assert sorted(i["ID"] for i in down) == sorted([a[3], a2])
    assert client.post("/tools/bulk-content", {"Resources": "x"}).status == 400
    assert client.post("/tools/bulk-content", {"Resources": [], "Level": "Nope"}).status == 400
    assert client.post("/tools/bulk-content", [1]).status == 400


def test_bulk_delete(client):
    a = _hierarchy(client, patient=1)
    b = _hierarchy(client, patient=2)
    c = _hierarchy(client, patient=3)
    r = client.post("/tools/bulk-delete", {"Resources": [a[3], b[0], b[3], "nope"]})
    assert (r.status, r.body) == (200, b"")
    assert client.get("/patients").json() == [c[0]]


def test_reconstruct_takes_the_tags_of_the_last_instance(client):
    first = _hierarchy(client, series_description="first")
    _hierarchy(client, instance=1, series_description="second")
    series = first[2]
    assert client.get(f"/series/{series}").json()["MainDicomTags"]["SeriesDescription"] == "first"
    r = client.post(f"/series/{series}/reconstruct", {})
    assert (r.status, r.body) == (200, b"")
    assert client.get(f"/series/{series}").json()["MainDicomTags"]["SeriesDescription"] == "second"
    found = client.post("/tools/find", {"Level": "Series", "Query": {"SeriesDescription": "second"}}).json()
    assert found == [series]  # the searchable values follow
    assert client.post("/tools/find", {"Level": "Series", "Query": {"SeriesDescription": "first"}}).json() == []
    assert client.post("/tools/reconstruct", {"ReconstructFiles": False}).status == 200
    assert client.post(f"/instances/{first[3]}/reconstruct").status == 200
    assert client.get(f"/series/{series}").json()["MainDicomTags"]["SeriesDescription"] == "first"
    client.post(f"/series/{series}/reconstruct")
    assert client.get(f"/series/{series}").json()["MainDicomTags"]["SeriesDescription"] == "second"
    # LimitToThisLevelMainDicomTags (1.12.4): this level only, from one instance (the first here)
    assert client.post(f"/series/{series}/reconstruct", {"LimitToThisLevelMainDicomTags": True}).status == 200
    assert client.get(f"/series/{series}").json()["MainDicomTags"]["SeriesDescription"] == "first"
    assert client.post(f"/series/{series}/reconstruct", "not json").status == 200  # Orthanc ignores it
    assert client.post("/studies/nope/reconstruct", {}).status == 404
    assert client.post(f"/series/{series}/reconstruct", {"ReconstructFiles": "yes"}).status == 400


def _completed(client) -> list[str]:
    changes = client.get("/changes?since=0&limit=1000").json()["Changes"]
    return [c["ID"] for c in changes if c["ChangeType"] == "CompletedSeries"]


def test_completed_series_change(client):
    extra = {"ImagesInAcquisition": 2, "NumberOfTemporalPositions": 1}
    for i in range(2):
        r = client.upload(dicomgen.make(rows=0, instance=i, extra=extra))
        series = r["ParentSeries"]
        assert client.get(f"/series/{series}").json()["Status"] == ("Missing" if i == 0 else "Complete")
        assert _completed(client) == ([] if i == 0 else [series])
    client.delete("/changes")
    client.upload(dicomgen.make(rows=0, instance=1, sop_uid="1.2.3.4.5.6.7", extra=extra))
    assert client.get(f"/series/{series}").json()["Status"] == "Inconsistent"
    assert _completed(client) == []


def test_reconstruct_files_applies_storage_compression(make_server):
    c = make_server({"StorageCompression": True}).client()
    iid = c.upload(dicomgen.make(rows=16, columns=16))["ID"]
    data = c.get(f"/instances/{iid}/file").body
    compressed = f"/instances/{iid}/attachments/dicom/is-compressed"
    assert c.get(compressed).body == b"1"
    assert c.post(f"/instances/{iid}/attachments/dicom/uncompress").status == 200
    assert c.get(compressed).body == b"0"
    assert c.post(f"/studies/{c.get(f'/instances/{iid}/study').json()['ID']}/reconstruct", {}).status == 200
    assert c.get(compressed).body == b"0"  # tags only, by default
    assert c.post("/tools/reconstruct", {"ReconstructFiles": True}).status == 200
    assert c.get(compressed).body == b"1"
    assert c.get(f"/instances/{iid}/file").body == data
