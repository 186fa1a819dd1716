"""STOW-RS, QIDO-RS and WADO-RS with dicomweb-client (a real DICOMweb client), plus raw requests."""

from __future__ import annotations

import io

import dicomgen
import pydicom
import pytest

dicomweb_client = pytest.importorskip("dicomweb_client")


@pytest.fixture
def web(server):
    from dicomweb_client.api import DICOMwebClient

    return DICOMwebClient(url=f"http://127.0.0.1:{server.port}/dicom-web")


def datasets(patient: int, n: int) -> list[pydicom.Dataset]:
    return [
        pydicom.dcmread(io.BytesIO(dicomgen.make(patient=patient, instance=i, rows=16, columns=16))) for i in range(n)
    ]


def test_store_search_retrieve(web, client):
    ds = datasets(1, 3)
    answer = web.store_instances(ds)
    assert len(answer.ReferencedSOPSequence) == 3
    assert "FailedSOPSequence" not in answer  # no failure: absent, as Orthanc's plugin 1.19+ answers
    assert len(client.get("/instances").json()) == 3
    study_uid = ds[0].StudyInstanceUID
    found = web.search_for_studies(search_filters={"PatientID": "PID00001"})
    assert [s["0020000D"]["Value"][0] for s in found] == [study_uid]
    assert len(web.search_for_instances(study_instance_uid=study_uid)) == 3
    retrieved = web.retrieve_study(study_uid)
    assert sorted(r.SOPInstanceUID for r in retrieved) == sorted(d.SOPInstanceUID for d in ds)
    one = web.retrieve_instance(study_uid, ds[0].SeriesInstanceUID, ds[0].SOPInstanceUID)
    assert one.PatientID == "PID00001"
    meta = web.retrieve_series_metadata(study_uid, ds[0].SeriesInstanceUID)
    assert len(meta) == 3 and meta[0]["00100020"]["Value"] == ["PID00001"]
    assert "BulkDataURI" in meta[0]["7FE00010"]


def test_stow_statuses(server, client):
    from dicomweb_client.api import DICOMwebClient

    base = f"http://127.0.0.1:{server.port}/dicom-web"
    web = DICOMwebClient(url=base)
    first = datasets(2, 1)
    web.store_instances(first)
    # Azure's prefixes: duplicate -> 409 with reason 45070; wrong study in the URL -> 43265
    raw = dicomgen.make(patient=2, instance=0, rows=16, columns=16)
    r = client.post("/v1/studies", raw, headers={"Content-Type": "application/dicom"})
    assert r.status == 409
    assert r.json()["00081198"]["Value"][0]["00081197"]["Value"] == [45070]
    other = dicomgen.make(patient=3, rows=16, columns=16)
    r = client.post("/dicom-web/v1/studies/1.2.3", other, headers={"Content-Type": "application/dicom"})
    assert r.status == 409 and r.json()["00081198"]["Value"][0]["00081197"]["Value"] == [43265]
    # multipart with a broken part: the good part is stored, 202
    boundary = "XyZ"
    good = dicomgen.make(patient=4, rows=16, columns=16)
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + good
        + f"\r\n--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + b"not dicom"
        + f"\r\n--{boundary}--\r\n".encode()
    )
    r = client.post(
        "/v2/studies",
        body,
        headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary="{boundary}"'},
    )
    assert r.status == 202
    assert len(r.json()["00081199"]["Value"]) == 1 and len(r.json()["00081198"]["Value"]) == 1
    assert client.get("/dicom-web/studies/1.2.3.4.5").status == 404
    assert client.post("/dicom-web/studies", b"x", headers={"Content-Type": "text/plain"}).status == 415


def test_rendered_frames_wado_uri_and_delete(client):
    data = dicomgen.make(patient=5, rows=16, columns=16)
    client.upload(data)
    ds = pydicom.dcmread(io.BytesIO(data))
    path = f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    png = client.get(path + "/rendered", headers={"Accept": "image/png"})
    assert png.status == 200 and png.body[:8] == b"\x89PNG\r\n\x1a\n"
    default = client.get(path + "/rendered")  # JPEG without Accept, as Orthanc's plugin
    assert default.status == 200 and default.body[:2] == b"\xff\xd8"
    assert client.get(path + "/rendered", headers={"Accept": "image/gif"}).status == 400
    jpeg = client.get(path + "/thumbnail", headers={"Accept": "image/jpeg"})
    assert jpeg.status == 200 and jpeg.body[:2] == b"\xff\xd8"
    frame = client.get(path + "/frames/1", headers={"Accept": "multipart/related; type=application/octet-stream"})
    assert frame.status == 200 and ds.PixelData in frame.body
    assert client.get(path + "/frames/2").status == 404
    single = client.get(path, headers={"Accept": "application/dicom"})
    assert single.status == 200 and single.body == data
    uri = f"/wado?requestType=WADO&studyUID={ds.StudyInstanceUID}&seriesUID={ds.SeriesInstanceUID}"
    assert client.get(uri + f"&objectUID={ds.SOPInstanceUID}&contentType=application/dicom").body == data
    assert client.get(uri + f"&objectUID={ds.SOPInstanceUID}&contentType=image/png").body[:4] == b"\x89PNG"
    assert client.get(uri + f"&objectUID={ds.SOPInstanceUID}&contentType=image/jpg").body[:2] == b"\xff\xd8"
    assert client.get(uri + "&objectUID=1.2.3").status == 404
    assert client.delete(path).status == 204
    assert client.get("/instances").json() == []
    assert client.delete(path).status == 404


def test_change_feed(client):
    a = dicomgen.make(patient=6, instance=0, rows=8, columns=8)
    b = dicomgen.make(patient=6, instance=1, rows=8, columns=8)
    ia = client.upload(a)["ID"]
    client.upload(b)
    feed = client.get("/dicom-web/changefeed?offset=0&limit=10&includeMetadata=false").json()
    assert [(e["Sequence"], e["Action"], e["State"]) for e in feed] == [
        (1, "create", "current"),
        (2, "create", "current"),
    ]
    assert feed[0]["SopInstanceUid"] == dicomgen.uid("sop", 6, 0, 0, 0)
    assert feed[0]["StudyInstanceUid"] == dicomgen.uid("study", 6, 0)
    assert "Metadata" not in feed[0]
    client.delete(f"/instances/{ia}")
    feed = client.get("/dicom-web/v1/changefeed?offset=0").json()
    assert [(e["Action"], e["State"]) for e in feed] == [
        ("create", "deleted"),
        ("create", "current"),
        ("delete", "deleted"),
    ]
    assert feed[1]["Metadata"]["00100020"]["Value"] == ["PID00006"]
    latest = client.get("/dicom-web/changefeed/latest").json()
    assert latest["Sequence"] == 3 and latest["Action"] == "delete"
    assert client.get("/dicom-web/changefeed?offset=3").json() == []
    assert client.get("/dicom-web/changefeed?limit=x").status == 400


def test_metadata_summary_follows_changes(client):
    files = [dicomgen.make(patient=7, instance=i, rows=8, columns=8) for i in range(3)]
    ids = [client.upload(f)["ID"] for f in files[:2]]
    ds = pydicom.dcmread(io.BytesIO(files[0]))
    path = f"/dicom-web/studies/{ds.StudyInstanceUID}/metadata"
    headers = {"Accept": "application/dicom+json"}
    assert len(client.get(path, headers=headers).json()) == 2
    assert len(client.get(path, headers=headers).json()) == 2  # from the summary
    client.upload(files[2])
    assert len(client.get(path, headers=headers).json()) == 3
    client.delete(f"/instances/{ids[0]}")
    assert len(client.get(path, headers=headers).json()) == 2


def test_series_level_rendered_and_delete_with_dicomweb_client(web, client):
    other_series = dicomgen.make(patient=9, series=1, instance=0, rows=16, columns=16)
    ds = [*datasets(9, 2), pydicom.dcmread(io.BytesIO(other_series))]
    web.store_instances(ds)
    study, series = ds[0].StudyInstanceUID, ds[0].SeriesInstanceUID
    found = web.search_for_series(study_instance_uid=study)
    assert {s["0020000E"]["Value"][0] for s in found} == {series, ds[2].SeriesInstanceUID}
    assert all(s["00201209"]["Value"][0] in (1, 2) for s in found)  # NumberOfSeriesRelatedInstances
    assert len(web.search_for_series(search_filters={"Modality": "CT"})) == 2
    got = web.retrieve_series(study, series)
    assert sorted(d.SOPInstanceUID for d in got) == sorted(d.SOPInstanceUID for d in ds[:2])
    png = web.retrieve_instance_rendered(study, series, ds[0].SOPInstanceUID, media_types=("image/png",))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    jpeg = web.retrieve_instance_frames_rendered(
        study, series, ds[0].SOPInstanceUID, frame_numbers=[1], media_types=("image/jpeg",)
    )
    assert jpeg[:2] == b"\xff\xd8"
    web.delete_instance(study, series, ds[1].SOPInstanceUID)
    assert len(web.search_for_instances(study_instance_uid=study)) == 2
    web.delete_series(study, ds[2].SeriesInstanceUID)
    assert [s["0020000E"]["Value"][0] for s in web.search_for_series(study_instance_uid=study)] == [series]
    web.delete_study(study)
    assert web.search_for_studies(search_filters={"PatientID": "PID00009"}) == []
    assert client.get("/studies").json() == []


def test_a_full_disk_fails_parts_with_out_of_resources(server, client, monkeypatch):
    import errno

    def full(*_args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(server.ctx.storage, "create", full)
    data = dicomgen.make(patient=10, rows=8, columns=8)
    r = client.post("/v1/studies", data, headers={"Content-Type": "application/dicom"})
    assert r.status == 409
    assert r.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xA700]
    r = client.post("/dicom-web/studies", data, headers={"Content-Type": "application/dicom"})
    assert r.status == 400  # Orthanc's plugin 1.19+: every part failed (0x0110, processing failure)
    failed = r.json()["00081198"]["Value"][0]
    assert failed["00081197"]["Value"] == [0x0110] and failed["00081155"]["Value"] == [dicomgen.uid("sop", 10, 0, 0, 0)]
    r = client.post("/instances", data)
    assert r.status == 500 and r.json()["OrthancStatus"] == 2001  # FileStorageCannotWrite, as Orthanc
    assert "No space left" in r.json()["Details"]
    assert client.get("/instances").json() == []
