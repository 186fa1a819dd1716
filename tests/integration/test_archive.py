"""ZIP archives and DICOMDIR media: /{level}/{id}/archive|media, /tools/create-archive|media,
asynchronous archives as jobs; names, contents and DICOMDIR checked against the stored files."""

from __future__ import annotations

import io
import time
import zipfile
from typing import Any

import dicomgen
import pydicom
import pytest

from orthanc_py.model.ids import format_sha1


def make(**kw: Any) -> bytes:
    return dicomgen.make(**{"rows": 8, "columns": 8, **kw})


def unzip(body: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert zf.testzip() is None
        return {name: zf.read(name) for name in zf.namelist()}


def upload_study(client: Any, patient: int = 1, study: int = 0, series: int = 2, instances: int = 2, **kw: Any):
    files = {}
    for s in range(series):
        for i in range(instances):
            data = make(patient=patient, study=study, series=s, instance=i, **kw)
            files[client.upload(data)["ID"]] = data
    return files


def study_id(patient: int, study: int) -> str:
    return format_sha1(f"PID{patient:05d}|{dicomgen.uid('study', patient, study)}")


def test_study_archive_holds_the_stored_files_under_orthanc_names(client):
    files = upload_study(client, patient=1, series=2, instances=3)
    sid = study_id(1, 0)
    r = client.get(f"/studies/{sid}/archive")
    assert r.status == 200
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"] == f'filename="{sid}.zip"'
    members = unzip(r.body)
    assert len(members) == 6
    # every stored file, byte for byte
    assert sorted(members.values()) == sorted(files.values())
    # Orthanc's folders: "PatientID PatientName" ("^" is a space), "Accession Description",
    # "Modality SeriesDescription", then the files named from their InstanceNumber (1.12.6)
    folders = {name.rsplit("/", 1)[0] for name in members}
    assert folders == {"PID00001 Patient 00001/ACC00001000 Synthetic study/CT Synthetic series"} | {
        "PID00001 Patient 00001/ACC00001000 Synthetic study/CT Synthetic series-2"
    }
    assert (
        sorted(n.rsplit("/", 1)[1] for n in members)
        == ["CT000001.dcm"] * 2 + ["CT000002.dcm"] * 2 + ["CT000003.dcm"] * 2
    )
    # the series folders follow the order of the series' public IDs, the instances the index's
    series = sorted(client.get(f"/studies/{sid}").json()["Series"])
    first = [n for n in members if n.split("/")[2] == "CT Synthetic series"]
    first_series_files = {
        client.get(f"/instances/{i}/file").body for i in client.get(f"/series/{series[0]}").json()["Instances"]
    }
    assert {members[n] for n in first} == first_series_files


def test_names_are_reduced_like_orthanc(client):
    data = make(
        patient=2,
        patient_id="P-2",
        patient_name="Dupont^Jérôme",
        accession="",
        study_description="",
        series_description="Tête / cou",
        modality="M",
    )
    pid = client.upload(data)["ParentPatient"]
    names = list(unzip(client.get(f"/patients/{pid}/archive").body))
    # non-ASCII dropped, "-" and "/" dropped, "Unknown Study" for an empty folder name, one
    # letter of modality then the InstanceNumber on 7 digits
    assert names == ["P2 Dupont Jrme/Unknown Study/M Tte cou/M0000001.dcm"]


def test_batch_merges_overlapping_resources(client):
    files = upload_study(client, patient=3, series=2, instances=2)
    upload_study(client, patient=4, series=1, instances=1)
    sid = study_id(3, 0)
    study = client.get(f"/studies/{sid}").json()
    one_series = study["Series"][0]
    other_patient = format_sha1("PID00004")
    body = [study["ParentPatient"], sid, one_series, other_patient]
    r = client.post("/tools/create-archive", body)
    assert r.status == 200 and r.headers["content-disposition"] == 'filename="Archive.zip"'
    members = unzip(r.body)
    assert len(members) == 5  # nothing twice
    assert set(files.values()) <= set(members.values())
    same = client.get(f"/tools/create-archive?resources={','.join(body)}")
    assert sorted(unzip(same.body)) == sorted(members)
    assert unzip(client.post("/tools/create-archive", {"Resources": []}).body) == {}
    # bad input
    assert client.post("/tools/create-archive", ["0" * 44]).status == 404
    assert client.post("/tools/create-archive", {"Nope": 1}).status == 400
    assert client.post("/tools/create-archive", [1, 2]).status == 400
    assert client.get("/tools/create-archive").status == 400
    assert client.get(f"/studies/{other_patient}/archive").status == 404  # a patient is not a study
    assert client.get(f"/studies/{sid}/archive?transcode=nope").status == 400
    assert client.post(f"/studies/{sid}/archive", {"Synchronous": "yes"}).status == 400
    # an instance alone, and a file name asked for
    iid = next(iter(files))
    r = client.get(f"/instances/{iid}/archive?filename=one.zip")
    assert r.headers["content-disposition"] == 'filename="one.zip"'
    assert list(unzip(r.body).values()) == [files[iid]]


def test_media_has_a_dicomdir_pydicom_reads_back(client, tmp_path):
    files = upload_study(client, patient=5, series=2, instances=2)
    sid = study_id(5, 0)
    members = unzip(client.get(f"/studies/{sid}/media").body)
    assert sorted(members) == ["DICOMDIR", "IMAGES/IM0", "IMAGES/IM1", "IMAGES/IM2", "IMAGES/IM3"]
    assert sorted(v for k, v in members.items() if k != "DICOMDIR") == sorted(files.values())
    for name, data in members.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    ds = pydicom.dcmread(tmp_path / "DICOMDIR")
    assert ds.FileSetID == "ORTHANC_MEDIA"
    images = [r for r in ds.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE"]
    sops = {str(r.ReferencedSOPInstanceUIDInFile) for r in images}
    assert sops == {str(pydicom.dcmread(io.BytesIO(f)).SOPInstanceUID) for f in files.values()}
    for r in images:  # each record points at the file that holds the instance
        path = tmp_path.joinpath(*r.ReferencedFileID)
        assert pydicom.dcmread(path).SOPInstanceUID == r.ReferencedSOPInstanceUIDInFile
    # the offsets link the records as PS3.3 F.3.2.2 says: walk them from the root
    at = {r.seq_item_tell: r for r in ds.DirectoryRecordSequence}
    reached: list[str] = []

    def walk(offset: int) -> None:
        while offset:
            r = at[offset]
            reached.append(r.DirectoryRecordType)
            walk(r.OffsetOfReferencedLowerLevelDirectoryEntity)
            offset = r.OffsetOfTheNextDirectoryRecord

    walk(ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity)
    assert reached == [r.DirectoryRecordType for r in ds.DirectoryRecordSequence]
    kinds = [r.DirectoryRecordType for r in ds.DirectoryRecordSequence]
    assert kinds == ["PATIENT", "STUDY", "SERIES", "IMAGE", "IMAGE", "SERIES", "IMAGE", "IMAGE"]
    series = [r for r in ds.DirectoryRecordSequence if r.DirectoryRecordType == "SERIES"]
    assert all("SeriesDescription" not in r for r in series)
    # the extended DICOMDIR names the series
    ext = unzip(client.get(f"/studies/{sid}/media?extended").body)["DICOMDIR"]
    series = [r for r in pydicom.dcmread(io.BytesIO(ext)).DirectoryRecordSequence if r.DirectoryRecordType == "SERIES"]
    assert [r.SeriesDescription for r in series] == ["Synthetic series"] * 2
    ext2 = unzip(client.post("/tools/create-media-extended", [sid]).body)["DICOMDIR"]
    assert b"Synthetic series" in ext2 and b"Synthetic series" not in members["DICOMDIR"]


def test_upload_media_archive_stores_its_instances(client):
    files = upload_study(client, patient=6, series=1, instances=2)
    sid = study_id(6, 0)
    media = client.get(f"/studies/{sid}/media").body
    assert client.delete(f"/studies/{sid}").status == 200
    r = client.post("/instances", media)
    assert r.status == 200
    answer = r.json()
    assert sorted(a["ID"] for a in answer) == sorted(files)  # the DICOMDIR is skipped
    assert {a["Status"] for a in answer} == {"Success"}


def wait_job(client: Any, job: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        info = client.get(f"/jobs/{job}").json()
        if info["State"] in ("Success", "Failure"):
            return info
        time.sleep(0.05)
    raise AssertionError("job did not finish")


def test_asynchronous_archive_is_a_job_whose_output_is_downloaded(client):
    files = upload_study(client, patient=7, series=1, instances=3)
    sid = study_id(7, 0)
    r = client.post(f"/studies/{sid}/archive", {"Asynchronous": True, "Filename": 'my"study.zip'})
    assert r.status == 200
    job = r.json()["ID"]
    assert r.json()["Path"] == f"/jobs/{job}"
    info = wait_job(client, job)
    assert info["State"] == "Success" and info["Type"] == "Archive"
    content = info["Content"]
    assert content["InstancesCount"] == 3 and content["Description"] == "REST API"
    assert int(content["UncompressedSize"]) == sum(len(f) for f in files.values())
    out = client.get(f"/jobs/{job}/archive")
    assert out.status == 200 and int(content["ArchiveSize"]) == len(out.body)
    assert out.headers["content-disposition"] == 'filename="my"study.zip"'  # quotes kept (Orthanc < 1.12.11)
    assert sorted(unzip(out.body).values()) == sorted(files.values())
    # MediaArchiveSize is 1: the next archive job's output replaces this one's
    job2 = client.post("/tools/create-media", {"Synchronous": False, "Resources": [sid]}).json()["ID"]
    info2 = wait_job(client, job2)
    assert info2["Type"] == "Media" and info2["State"] == "Success"
    assert "DICOMDIR" in unzip(client.get(f"/jobs/{job2}/archive").body)
    assert client.get(f"/jobs/{job}/archive").status == 404


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2"])
def test_transcoded_archive(client, syntax):
    files = upload_study(client, patient=8, series=1, instances=1)
    sid = study_id(8, 0)
    members = unzip(client.get(f"/studies/{sid}/archive?transcode={syntax}").body)
    (data,) = members.values()
    ds = pydicom.dcmread(io.BytesIO(data))
    assert ds.file_meta.TransferSyntaxUID == syntax
    original = pydicom.dcmread(io.BytesIO(next(iter(files.values()))))
    assert ds.PixelData == original.PixelData
    media = unzip(client.post(f"/studies/{sid}/media", {"Transcode": syntax}).body)
    assert pydicom.dcmread(io.BytesIO(media["IMAGES/IM0"])).file_meta.TransferSyntaxUID == syntax
    dicomdir = pydicom.dcmread(io.BytesIO(media["DICOMDIR"]))
    image = next(r for r in dicomdir.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE")
    assert image.ReferencedTransferSyntaxUIDInFile == syntax
    assert client.post(f"/studies/{sid}/media", {"Transcode": "nope"}).status == 400


def test_client_leaving_mid_archive_does_not_hurt_the_server(server, client):
    upload_study(client, patient=9, series=1, instances=40, rows=256, columns=256)
    sid = study_id(9, 0)
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", f"/studies/{sid}/archive")
    resp = conn.getresponse()
    resp.read(1000)
    conn.close()  # gone after the first bytes
    r = client.get(f"/studies/{sid}/archive")
    assert r.status == 200 and len(unzip(r.body)) == 40


def test_zip_loader_threads_and_compressed_storage(make_server):
    """ZipLoaderThreads reads files ahead on several threads; StorageCompression stores them
    deflated: the archive still holds the original bytes, in order."""
    server = make_server({"ZipLoaderThreads": 3, "StorageCompression": True})
    client = server.client()
    files = upload_study(client, patient=10, series=1, instances=12, rows=64, columns=64)
    sid = study_id(10, 0)
    members = unzip(client.get(f"/studies/{sid}/archive").body)
    names = sorted(members)
    assert names == [
        f"PID00010 Patient 00010/ACC00010000 Synthetic study/CT Synthetic series/CT{i:06d}.dcm" for i in range(1, 13)
    ]
    in_order = client.get(f"/series/{client.get(f'/studies/{sid}').json()['Series'][0]}").json()["Instances"]
    assert [members[n] for n in names] == [files[i] for i in in_order]


def test_cancelled_asynchronous_archive_leaves_no_file(make_server, tmp_path, monkeypatch):
    from orthanc_py.core import archive as core_archive

    read = core_archive._read_member

    def slow_read(ctx: Any, f: Any) -> Any:
        time.sleep(0.05)
        return read(ctx, f)

    monkeypatch.setattr(core_archive, "_read_member", slow_read)
    temp = tmp_path / "temp"
    temp.mkdir()
    server = make_server({"TemporaryDirectory": str(temp)})
    client = server.client()
    upload_study(client, patient=11, series=1, instances=60)
    job = client.post(f"/studies/{study_id(11, 0)}/archive", {"Asynchronous": True}).json()["ID"]
    deadline = time.monotonic() + 10
    while not list(temp.iterdir()) and time.monotonic() < deadline:  # the job is writing its file
        time.sleep(0.01)
    assert client.post(f"/jobs/{job}/cancel", {}).status == 200
    info = wait_job(client, job)
    assert info["State"] == "Failure"
    assert client.get(f"/jobs/{job}/archive").status == 404
    deadline = time.monotonic() + 5
    while list(temp.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(temp.iterdir()) == []


def test_files_are_named_from_their_instance_number(client):
    """Orthanc 1.12.6: the InstanceNumber names a file; without one, its rank in the series."""
    client.upload(make(patient=21, instance=4))  # InstanceNumber 5
    client.upload(make(patient=21, instance=0, extra={"InstanceNumber": ""}))
    pid = client.get("/patients").json()[0]
    names = sorted(n.rsplit("/", 1)[1] for n in unzip(client.get(f"/patients/{pid}/archive").body))
    assert len(names) == 2 and "CT000005.dcm" in names
    assert any(n in ("CT000000.dcm", "CT000001.dcm") for n in names)


def test_client_names_the_download_and_tags_the_job(client):
    """`?filename=` names /file, attachments and archives (Orthanc 1.12.7: control characters
    dropped, quotes kept); an asynchronous archive keeps the request's "UserData" (1.12.9)."""
    iid = client.upload(make(patient=22))["ID"]
    r = client.get(f"/instances/{iid}/file?filename=%22toto%22.dcm")
    assert r.status == 200 and r.headers["content-disposition"] == 'filename=""toto".dcm"'
    r = client.get(f"/instances/{iid}/file?filename=a.dcm%0D%0ASet-Cookie:x=1")
    assert r.headers["content-disposition"] == 'filename="a.dcmSet-Cookie:x=1"' and "set-cookie" not in r.headers
    r = client.get(f"/instances/{iid}/attachments/dicom/data?filename=toto.dcm")
    assert r.status == 200 and r.headers["content-disposition"] == 'filename="toto.dcm"'
    r = client.get(f"/instances/{iid}/archive?filename=x.zip")
    assert r.headers["content-disposition"] == 'filename="x.zip"'
    job = client.post("/tools/create-archive", {"Resources": [iid], "Asynchronous": True, "UserData": {"k": "v"}})
    assert client.get(f"/jobs/{job.json()['ID']}").json()["UserData"] == {"k": "v"}
