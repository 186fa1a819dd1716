"""POST /instances: raw DICOM, ZIP, gzip; duplicates; bad input leaves nothing behind."""

from __future__ import annotations

import gzip
import io
import json
import os
import zipfile
from pathlib import Path

import dicomgen

from orthanc_py.model.ids import format_sha1


def small(**kw: object) -> bytes:
    return dicomgen.make(rows=16, columns=16, **kw)


def storage_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".sqlite") and "sqlite" not in p.name]


def test_upload_answer_and_ids(client, server):
    data = small(patient=1, study=2, series=3, instance=4)
    r = client.post("/instances", data, headers={"Content-Type": "application/octet-stream"})
    assert r.status == 200
    body = r.json()
    pid, suid = "PID00001", dicomgen.uid("study", 1, 2)
    seuid, sop = dicomgen.uid("series", 1, 2, 3), dicomgen.uid("sop", 1, 2, 3, 4)
    assert body == {
        "ID": format_sha1(f"{pid}|{suid}|{seuid}|{sop}"),
        "ParentPatient": format_sha1(pid),
        "ParentSeries": format_sha1(f"{pid}|{suid}|{seuid}"),
        "ParentStudy": format_sha1(f"{pid}|{suid}"),
        "Path": f"/instances/{body['ID']}",
        "Status": "Success",
    }
    again = client.post("/instances", data).json()
    assert again["Status"] == "AlreadyStored" and again["ID"] == body["ID"]
    assert client.get("/instances").json() == [body["ID"]]
    file = client.get(f"/instances/{body['ID']}/file")
    assert file.status == 200 and file.headers["content-type"] == "application/dicom" and file.body == data


def test_upload_zip_and_gzip(client):
    files = [small(patient=2, instance=i) for i in range(3)]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, f in enumerate(files):
            zf.writestr(f"dir/{i}.dcm", f)
        zf.writestr("readme.txt", b"not dicom")
    r = client.post("/instances", buf.getvalue())
    assert r.status == 200
    answers = r.json()
    assert isinstance(answers, list) and len(answers) == 3
    assert {a["Status"] for a in answers} == {"Success"}
    gz = client.post("/instances", gzip.compress(small(patient=3)), headers={"Content-Encoding": "gzip"})
    assert gz.status == 200 and gz.json()["Status"] == "Success"
    assert len(client.get("/instances").json()) == 4


def test_bad_input_is_rejected_and_leaves_nothing(client, server):
    good = small(patient=4)
    cases = {
        "not dicom": (b"hello world, this is not DICOM" * 10, 400, 15),
        "empty": (b"", 400, 15),
        "truncated": (good[: len(good) // 2], 400, 15),
        "truncated header": (good[:400], 400, 15),
    }
    for name, (body, status, code) in cases.items():
        r = client.post("/instances", body)
        assert r.status == status, name
        err = r.json()
        assert err["OrthancStatus"] == code and err["HttpStatus"] == status and err["Method"] == "POST", name
        assert err["Uri"] == "/instances" and err["Message"] == "Bad file format"
    # Missing identifiers: Orthanc 1.10.1 answers 404 InexistentTag.
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        ds = dicomgen.make_dataset(dicomgen.Spec(patient=5, rows=0))
        delattr(ds, keyword)
        if keyword == "SOPInstanceUID":
            ds.SOPInstanceUID = None  # keep file meta writable
            del ds.SOPInstanceUID
            ds.file_meta = None  # type: ignore[assignment]
        r = client.post("/instances", _raw_bytes(ds))
        assert r.status == 404 and r.json()["OrthancStatus"] == 21, keyword
    assert client.get("/instances").json() == []
    assert client.get("/changes").json()["Changes"] == []
    root = server.settings.storage_directory
    assert [p for p in root.rglob("*") if p.is_file() and "sqlite" not in p.name] == []


def _raw_bytes(ds) -> bytes:
    """Dataset without file meta, implicit little endian (what some modalities send)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    buf = DicomBytesIO()
    buf.is_little_endian = True
    buf.is_implicit_VR = True
    write_dataset(buf, ds)
    return buf.getvalue()


def test_raw_dataset_without_meta_is_accepted(client):
    ds = dicomgen.make_dataset(dicomgen.Spec(patient=6, rows=16, columns=16))
    r = client.post("/instances", _raw_bytes(ds))
    assert r.status == 200
    meta = client.get(f"/instances/{r.json()['ID']}/metadata/TransferSyntax")
    assert meta.body == b"1.2.840.10008.1.2"


def test_instance_metadata_recorded(client):
    iid = client.upload(small(patient=7))["ID"]
    meta = client.get(f"/instances/{iid}/metadata?expand").json()
    assert meta["Origin"] == "RestApi"
    assert meta["RemoteIP"] == "127.0.0.1"
    assert meta["RemoteAET"] == ""
    assert meta["HttpUsername"] == ""
    assert meta["IndexInSeries"] == "1"
    assert meta["TransferSyntax"] == "1.2.840.10008.1.2.1"
    assert meta["SopClassUid"] == dicomgen.CT_IMAGE_STORAGE
    assert len(meta["ReceptionDate"]) == 15 and meta["ReceptionDate"][8] == "T"
    assert int(meta["PixelDataOffset"]) > 132
    names = client.get(f"/instances/{iid}/metadata").json()
    assert names[:3] == ["IndexInSeries", "ReceptionDate", "RemoteAET"]


def test_overwrite_instances(make_server):
    srv = make_server({"OverwriteInstances": True})
    c = srv.client()
    data = small(patient=8)
    first = c.upload(data)
    uuid1 = c.get(f"/instances/{first['ID']}").json()["FileUuid"]
    second = c.upload(data)
    assert second["Status"] == "Success" and second["ID"] == first["ID"]
    uuid2 = c.get(f"/instances/{first['ID']}").json()["FileUuid"]
    assert uuid1 != uuid2
    files = [p for p in srv.settings.storage_directory.rglob("*") if p.is_file() and "sqlite" not in p.name]
    assert [p.name for p in files] == [uuid2]
    assert os.path.getsize(files[0]) == len(data)


def test_consecutive_uploads_share_storage_folders(client, server):
    """Files of one upload burst land in few `ab/cd` folders (no directory created per file),
    still laid out as Orthanc lays them out: the folder is the FileUuid's first four digits."""
    ids = [client.post("/instances", small(patient=40, instance=i)).json()["ID"] for i in range(6)]
    uuids = [client.get(f"/instances/{i}").json()["FileUuid"] for i in ids]
    assert len({u[:4] for u in uuids}) <= 2
    for u in uuids:
        assert (Path(server.settings.storage_directory) / u[0:2] / u[2:4] / u).is_file()


def test_chunked_upload_body(client):
    """Transfer-Encoding: chunked, in small chunks: the body is reassembled whole."""
    import http.client

    data = small(patient=41)
    conn = http.client.HTTPConnection("127.0.0.1", client.port, timeout=30)
    pieces = [data[i : i + 1000] for i in range(0, len(data), 1000)]
    conn.request("POST", "/instances", body=iter(pieces), headers={"Transfer-Encoding": "chunked"}, encode_chunked=True)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status == 200, body
    iid = json.loads(body)["ID"]
    assert client.get(f"/instances/{iid}/file").body == data


def test_empty_bodies_in_a_row(client):
    """aiohttp shares one reader among all bodiless requests; reading it again must not spin."""
    for _ in range(3):
        r = client.post("/instances", b"")
        assert r.status == 400 and r.json()["OrthancStatus"] == 15


def test_a_large_upload_is_read_without_pausing_the_socket(client, monkeypatch):
    """The body buffer of a request holds a typical upload whole: aiohttp's 64 KiB default paused
    and resumed the socket once per upload (two epoll_ctl calls on the event loop)."""
    from aiohttp.base_protocol import BaseProtocol

    pauses: list[int] = []
    original = BaseProtocol.pause_reading

    def counting(self: BaseProtocol) -> None:
        pauses.append(1)
        original(self)

    monkeypatch.setattr(BaseProtocol, "pause_reading", counting)
    data = dicomgen.make(patient=41, rows=1024, columns=768)  # 1.5 MB
    assert len(data) > 1_500_000
    body = client.post("/instances", data).json()
    assert body["Status"] == "Success"
    assert client.get(f"/instances/{body['ID']}/file").body == data
    assert pauses == []


def test_a_failed_index_transaction_leaves_no_file(client, server, monkeypatch):
    """The file is written before the index transaction; when that transaction fails, the
    committing thread removes the file and the client gets Orthanc's error body."""
    import sqlite3

    from orthanc_py.core import ingest

    def broken(*_args, **_kw):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(ingest, "_store_txn", broken)
    r = client.post("/instances", small(patient=42))
    assert r.status == 500
    assert r.json()["HttpStatus"] == 500 and r.json()["Uri"] == "/instances"
    monkeypatch.undo()
    assert client.get("/instances").json() == []
    assert storage_files(server.settings.storage_directory) == []
    assert client.post("/instances", small(patient=42)).json()["Status"] == "Success"
