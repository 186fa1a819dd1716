"""WebDAV (/webdav/): the trees Orthanc 1.10.1 serves, read, written and deleted with raw WebDAV
requests, with the cadaver client end to end, and compared with what Orthanc answers."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote
from xml.dom import minidom

import dicomgen
import pytest

DEPTH0 = {"Depth": "0"}
DEPTH1 = {"Depth": "1"}


def propfind(client: Any, path: str, depth: int = 1) -> dict[str, dict[str, Any]]:
    """PROPFIND parsed as Orthanc's integration suite parses it: href -> properties."""
    r = client.request("PROPFIND", quote(path), headers={"Depth": str(depth)})
    assert r.status == 207, (path, r.status, r.body)
    assert r.headers["content-type"] == "application/xml; charset=UTF-8"
    doc = minidom.parseString(r.body)
    root = doc.documentElement
    assert root.nodeName == "D:multistatus" and root.getAttribute("xmlns:D") == "DAV:"
    out: dict[str, dict[str, Any]] = {}
    for response in root.getElementsByTagName("D:response"):
        href = unquote(response.getElementsByTagName("D:href")[0].firstChild.nodeValue)
        status = response.getElementsByTagName("D:status")[0].firstChild.nodeValue
        assert status == "HTTP/1.1 200 OK"
        prop = response.getElementsByTagName("D:prop")[0]
        info: dict[str, Any] = {"folder": bool(prop.getElementsByTagName("D:collection"))}
        for name in ("displayname", "creationdate", "getlastmodified", "getcontentlength", "getcontenttype"):
            nodes = prop.getElementsByTagName("D:" + name)
            if nodes:
                info[name] = nodes[0].firstChild.nodeValue
        out[href] = info
    return out


def names(listing: dict[str, dict[str, Any]]) -> list[str]:
    """The items of a listing (its first response is the folder itself)."""
    return [v["displayname"] for v in list(listing.values())[1:]]


def study(patient: int, study_no: int = 0, series: int = 0, instance: int = 0, **kw: Any) -> bytes:
    return dicomgen.make(patient=patient, study=study_no, series=series, instance=instance, rows=4, columns=4, **kw)


def test_root_options_and_depths(client: Any) -> None:
    r = client.request("OPTIONS", "/webdav/")
    assert r.status == 200 and r.headers["dav"] == "1,2" and r.body == b""
    assert r.headers["allow"] == "GET, PUT, DELETE, OPTIONS, PROPFIND, HEAD, LOCK, UNLOCK, PROPPATCH, MKCOL"
    assert client.request("OPTIONS", "/webdav/by-patients").status == 404  # Orthanc: at the root only
    for suffix in ("", "/"):
        top = propfind(client, "/webdav" + suffix, 0)
        assert list(top) == ["/webdav/"] and top["/webdav/"]["displayname"] == "webdav" and top["/webdav/"]["folder"]
        top = propfind(client, "/webdav" + suffix, 1)
        assert names(top) == ["by-dates", "by-patients", "by-studies", "by-uids", "uploads"]
        assert all(v["folder"] for v in top.values()) and "/webdav/by-uids" in top
        for folder in ("by-dates", "by-patients", "by-studies", "by-uids", "uploads"):
            for depth in (0, 1):
                assert list(propfind(client, f"/webdav/{folder}{suffix}", depth)) == [f"/webdav/{folder}/"]
    created = top["/webdav/"]["creationdate"]
    assert created.endswith("Z") and time.strptime(created, "%Y-%m-%dT%H:%M:%SZ")
    # Depth other than 0 or 1, or none: Orthanc's errors, naming the method GET
    r = client.request("PROPFIND", "/webdav/", headers={"Depth": "2"})
    assert r.status == 500 and r.json()["OrthancStatus"] == 9 and r.json()["Method"] == "GET"
    assert "can only be 0 or 1" in r.json()["Details"]
    assert client.request("PROPFIND", "/webdav/").json()["Details"] == "WebDAV PROPFIND without depth"
    r = client.request("PROPFIND", "/webdav/", headers={"Depth": "infinity"})
    assert r.status == 400 and r.json()["OrthancStatus"] == 5
    assert client.request("PROPFIND", "/webdav/nope", headers=DEPTH0).status == 404


def test_browse_and_download(client: Any) -> None:
    p1 = {"patient_id": "P1", "patient_name": "Doe^Jöhn", "study_description": "Head/Neck"}
    a = client.upload(study(1, **p1))
    b = client.upload(study(1, series=1, modality="MR", series_description="T1", **p1))
    c = client.upload(study(2, patient_id="P2", study_date="20191231"))
    d = client.upload(study(3, patient_id="P2é", patient_name="Patient^00002", study_date="20191231"))
    # by-patients: "{{PatientID}} - {{PatientName}}", printable ASCII, no slash; equal names get
    # " (1)" in the order of public IDs
    second = max([c, d], key=lambda i: i["ParentPatient"])
    patients = propfind(client, "/webdav/by-patients")
    assert names(patients) == ["P1 - Doe^Jhn", "P2 - Patient^00002", "P2 - Patient^00002 (1)"]
    assert patients["/webdav/by-patients/P1 - Doe^Jhn"]["creationdate"].endswith("Z")
    dup = "/webdav/by-patients/P2 - Patient^00002 (1)/20191231 - Synthetic study/CT - Synthetic series"
    assert names(propfind(client, dup)) == [second["ID"] + ".dcm"]
    studies = propfind(client, "/webdav/by-patients/P1 - Doe^Jhn")
    assert next(iter(studies)) == "/webdav/by-patients/P1 - Doe^Jhn/"
    assert names(studies) == ["20200101 - HeadNeck"]
    series = propfind(client, "/webdav/by-patients/P1 - Doe^Jhn/20200101 - HeadNeck")
    assert names(series) == ["CT - Synthetic series", "MR - T1"]
    folder = "/webdav/by-patients/P1 - Doe^Jhn/20200101 - HeadNeck/CT - Synthetic series"
    files = propfind(client, folder)
    assert names(files) == [a["ID"] + ".dcm"]
    item = files[f"{folder}/{a['ID']}.dcm"]
    stored = client.get(f"/instances/{a['ID']}/file").body
    assert not item["folder"] and item["getcontentlength"] == str(len(stored))
    assert item["getcontenttype"] == "application/dicom"
    r = client.get(quote(f"{folder}/{a['ID']}.dcm"))
    assert r.status == 200 and r.body == stored and r.headers["content-type"] == "application/dicom"
    assert r.headers["last-modified"] == item["getlastmodified"]
    r = client.request("HEAD", quote(f"{folder}/{a['ID']}.dcm"))
    assert r.status == 200 and r.body == b"" and r.headers["content-type"] == "application/dicom"
    # PROPFIND of a file: its folder, then the file
    one = propfind(client, f"{folder}/{a['ID']}.dcm", 0)
    assert list(one) == [folder + "/", f"{folder}/{a['ID']}.dcm"]
    # folders have no content; unknown names are empty folders (Orthanc 1.10.1)
    assert client.get(quote(folder)).status == 404
    assert names(propfind(client, "/webdav/by-patients/nobody/x")) == []
    assert client.get(quote(f"{folder}/nothing.dcm")).status == 404
    # by-studies: "{{PatientID}} - {{PatientName}} - {{StudyDescription}}"
    assert names(propfind(client, "/webdav/by-studies")) == [
        "P1 - Doe^Jhn - HeadNeck",
        "P2 - Patient^00002 - Synthetic study",
        "P2 - Patient^00002 - Synthetic study (1)",
    ]
    assert names(propfind(client, "/webdav/by-studies/P1 - Doe^Jhn - HeadNeck/MR - T1")) == [b["ID"] + ".dcm"]
    # by-dates: years, months, studies
    assert names(propfind(client, "/webdav/by-dates")) == ["2019", "2020"]
    assert names(propfind(client, "/webdav/by-dates/2019")) == ["2019-12"]
    assert names(propfind(client, "/webdav/by-dates/2019/2019-12")) == [
        "P2 - Patient^00002 - Synthetic study",
        "P2 - Patient^00002 - Synthetic study (1)",
    ]
    deep = "/webdav/by-dates/2019/2019-12/P2 - Patient^00002 - Synthetic study/CT - Synthetic series"
    first_study = min([c, d], key=lambda i: i["ParentStudy"])  # study folders: by study public ID
    assert names(propfind(client, deep)) == [first_study["ID"] + ".dcm"]
    r = client.request("PROPFIND", "/webdav/by-dates/20191", headers=DEPTH0)
    assert r.status == 400 and r.json()["Method"] == "GET"  # Orthanc: a year has 4 characters
    assert client.request("PROPFIND", "/webdav/by-dates/2019/foo", headers=DEPTH0).status == 500


def test_by_uids_and_json_files(client: Any) -> None:
    a = client.upload(study(1))
    info = client.get(f"/instances/{a['ID']}/simplified-tags").json()
    st, se, sop = info["StudyInstanceUID"], info["SeriesInstanceUID"], info["SOPInstanceUID"]
    assert names(propfind(client, "/webdav/by-uids")) == [st]
    listing = propfind(client, f"/webdav/by-uids/{st}")
    assert names(listing) == ["study.json", se]
    r = client.get(f"/webdav/by-uids/{st}/study.json")
    assert r.status == 200 and r.headers["content-type"] == "application/json"
    assert listing[f"/webdav/by-uids/{st}/study.json"]["getcontentlength"] == str(len(r.body))
    assert r.headers["last-modified"] == "not-a-date-timeZ"  # Orthanc 1.10.1 has no time for these
    assert json.loads(r.body) == client.get(f"/studies/{a['ParentStudy']}").json()
    assert b'\r\n\t"ID" : ' in r.body and r.body.endswith(b"}\r\n")  # JsonCpp's layout, DOS newlines
    # a file, not a REST answer: never turned into XML
    assert client.get(f"/webdav/by-uids/{st}/study.json", headers={"Accept": "application/xml"}).body == r.body
    listing = propfind(client, f"/webdav/by-uids/{st}/{se}")
    assert names(listing) == ["series.json", sop + ".dcm"]
    assert json.loads(client.get(f"/webdav/by-uids/{st}/{se}/series.json").body)["ID"] == a["ParentSeries"]
    assert client.get(f"/webdav/by-uids/{st}/{se}/{sop}.dcm").body == client.get(f"/instances/{a['ID']}/file").body
    # any UID is a folder down to the series level; study.json only where the study is
    assert names(propfind(client, "/webdav/by-uids/1.2.3/4.5")) == []
    assert client.request("PROPFIND", "/webdav/by-uids/1.2.3/4.5/6.7", headers=DEPTH0).status == 404
    assert client.get("/webdav/by-uids/1.2.3/study.json").status == 404


def _instances(client: Any) -> list[str]:
    return client.get("/instances").json()


def test_uploads(client: Any) -> None:
    data = study(5)
    r = client.put("/webdav/uploads/one.dcm", data)
    assert r.status == 201 and r.body == b""
    (iid,) = _instances(client)
    meta = client.get(f"/instances/{iid}/metadata?expand").json()
    assert meta["Origin"] == "WebDav" and meta["RemoteAET"] == ""
    assert names(propfind(client, "/webdav/uploads")) == []  # stored, then removed
    # folders, files that are not DICOM (removed), empty files (kept), a ZIP of DICOM files
    assert client.request("MKCOL", "/webdav/uploads/cd").status == 201
    assert client.request("MKCOL", "/webdav/uploads/cd").status == 403
    assert client.request("MKCOL", "/webdav/uploads/no/such").status == 403
    assert client.request("MKCOL", "/webdav/by-patients/x").status == 403
    assert client.put("/webdav/uploads/cd/readme.txt", b"hello").status == 201
    assert client.put("/webdav/uploads/cd/empty.txt", b"").status == 201
    listing = propfind(client, "/webdav/uploads/cd")
    assert names(listing) == ["empty.txt"] and listing["/webdav/uploads/cd/empty.txt"]["getcontentlength"] == "0"
    r = client.get("/webdav/uploads/cd/empty.txt")
    assert r.status == 200 and r.headers["content-type"] == "text/plain" and r.body == b""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a/1.dcm", study(6))
        z.writestr("a/2.dcm", study(6, instance=1))
        z.writestr("notes.txt", "not DICOM")
    assert client.put("/webdav/uploads/cd/disc.zip", buf.getvalue()).status == 201
    assert len(_instances(client)) == 3
    assert names(propfind(client, "/webdav/uploads")) == ["cd"]
    assert client.delete("/webdav/uploads/cd/empty.txt").status == 204
    assert client.delete("/webdav/uploads/cd/empty.txt").status == 403
    assert client.delete("/webdav/uploads/cd").status == 204
    # where uploads are not possible
    assert client.put("/webdav/uploads/none/x.dcm", data).status == 403
    assert client.put("/webdav/by-patients/x.dcm", data).status == 403
    r = client.put("/webdav/uploads", data)
    assert r.status == 400 and r.json()["OrthancError"] == "Parameter out of range" and r.json()["Method"] == "PUT"
    assert client.get("/webdav/uploads").status == 400  # as Orthanc: the folder is no file


def test_faked_locks_and_other_methods(client: Any) -> None:
    r = client.request("LOCK", "/webdav/uploads/x.dcm", "<?xml version='1.0'?><D:lockinfo xmlns:D='DAV:'/>")
    assert r.status == 201 and r.headers["lock-token"].startswith("opaquelocktoken:0x")
    assert r.headers["content-type"] == "application/xml"
    lock = minidom.parseString(r.body).documentElement
    assert lock.nodeName == "D:prop"
    assert (
        lock.getElementsByTagName("D:locktoken")[0].getElementsByTagName("D:href")[0].firstChild.nodeValue
        == (r.headers["lock-token"])
    )
    assert client.request("UNLOCK", "/webdav/uploads/x.dcm", headers={"Lock-Token": "<x>"}).status == 204
    r = client.request("PROPPATCH", "/webdav/uploads/x.dcm")
    assert r.status == 207 and b"<D:href>/webdav/uploads/x.dcm</D:href>" in r.body
    assert client.request("MOVE", "/webdav/uploads/x.dcm").status == 400
    assert client.request("COPY", "/webdav/uploads/x.dcm").status == 400
    r = client.post("/webdav/uploads/x.dcm", b"x")
    assert r.status == 404 and r.json()["OrthancError"] == "Unknown resource"
    # WebDAV methods outside /webdav/: a bare 404, as Orthanc answers
    for method in ("PROPFIND", "OPTIONS", "MKCOL", "LOCK"):
        r = client.request(method, "/patients")
        assert (r.status, r.body) == (404, b""), method
    assert client.request("PROPFIND", "/nonexistent").body == b""


def test_delete(make_server: Any) -> None:
    readonly = make_server().client()
    readonly.upload(study(1))
    assert readonly.delete(quote("/webdav/by-patients/PID00001 - Patient^00001")).status == 403
    assert readonly.delete("/webdav/by-uids/1.2.3").status == 403
    assert len(_instances(readonly)) == 1

    client = make_server({"WebDavDeleteAllowed": True}).client()
    a = client.upload(study(1))
    b = client.upload(study(1, instance=1))
    c = client.upload(study(2))
    folder = "/webdav/by-patients/PID00001 - Patient^00001/20200101 - Synthetic study/CT - Synthetic series"
    assert client.delete(quote(f"{folder}/{a['ID']}.dcm")).status == 204
    assert client.delete(quote(f"{folder}/{a['ID']}.dcm")).status == 403  # no such instance any more
    assert sorted(_instances(client)) == sorted([b["ID"], c["ID"]])
    assert client.delete(quote("/webdav/by-patients/nobody")).status == 204  # Orthanc: nothing to do
    assert client.delete(quote("/webdav/by-patients/PID00001 - Patient^00001")).status == 204
    assert _instances(client) == [c["ID"]]
    tags = client.get(f"/instances/{c['ID']}/simplified-tags").json()
    st, se = tags["StudyInstanceUID"], tags["SeriesInstanceUID"]
    assert client.delete(f"/webdav/by-uids/{st}/study.json").status == 204  # virtual: accepted, no effect
    assert client.delete(f"/webdav/by-uids/{st}/{se}/series.json").status == 204
    assert _instances(client) == [c["ID"]]
    assert client.delete(f"/webdav/by-uids/{st}/{se}/other.txt").status == 403
    assert client.delete(f"/webdav/by-uids/{st}").status == 204
    assert _instances(client) == []
    assert client.delete("/webdav").status == 403 and client.delete("/webdav/by-uids").status == 403


def test_settings(make_server: Any) -> None:
    off = make_server({"WebDavEnabled": False}).client()
    r = off.request("PROPFIND", "/webdav/", headers=DEPTH1)
    assert (r.status, r.body) == (404, b"")
    assert off.request("OPTIONS", "/webdav").status == 404
    assert off.get("/webdav/by-patients").json()["OrthancError"] == "Unknown resource"
    no_upload = make_server({"WebDavUploadAllowed": False}).client()
    assert names(propfind(no_upload, "/webdav")) == ["by-dates", "by-patients", "by-studies", "by-uids"]
    assert no_upload.put("/webdav/uploads/x.dcm", study(1)).status == 403
    assert no_upload.request("MKCOL", "/webdav/uploads/x").status == 403
    assert no_upload.request("PROPFIND", "/webdav/uploads", headers=DEPTH0).status == 404


def test_auth_and_lua_filter(make_server: Any, tmp_path: Path) -> None:
    script = tmp_path / "filter.lua"
    script.write_text(
        "function IncomingHttpRequestFilter(method, uri, ip, username, headers)\n"
        "  if string.sub(uri, 1, 19) == '/webdav/by-patients' then return method ~= 'GET' end\n"
        "  if string.sub(uri, 1, 15) == '/webdav/uploads' then return method ~= 'PUT' end\n"
        "  return true\nend\n"
    )
    srv = make_server({"AuthenticationEnabled": True, "RegisteredUsers": {"alice": "pw"}, "LuaScripts": [str(script)]})
    r = srv.client().request("PROPFIND", "/webdav/", headers=DEPTH1)
    assert r.status == 401 and r.headers["www-authenticate"] == 'Basic realm="Orthanc Secure Area"'
    alice = srv.client(("alice", "pw"))
    assert alice.request("PROPFIND", "/webdav/", headers=DEPTH1).status == 207
    # the filter is told GET for PROPFIND, OPTIONS and HEAD, PUT for MKCOL, LOCK...
    assert alice.request("PROPFIND", "/webdav/by-patients", headers=DEPTH1).status == 403
    assert alice.request("MKCOL", "/webdav/uploads/x").status == 403
    assert alice.request("LOCK", "/webdav/uploads/x").status == 403
    assert alice.request("PROPFIND", "/webdav/uploads", headers=DEPTH1).status == 207


@pytest.mark.skipif(shutil.which("cadaver") is None, reason="the cadaver WebDAV client is not installed")
def test_cadaver_end_to_end(make_server: Any, tmp_path: Path) -> None:
    """A real WebDAV client: list, download, upload (found as an instance), delete."""
    srv = make_server({"AuthenticationEnabled": True, "RegisteredUsers": {"alice": "pw"}, "WebDavDeleteAllowed": True})
    client = srv.client(("alice", "pw"))
    a = client.upload(study(1))
    stored = client.get(f"/instances/{a['ID']}/file").body
    (tmp_path / ".netrc").write_text("machine 127.0.0.1\nlogin alice\npassword pw\n")
    os.chmod(tmp_path / ".netrc", 0o600)
    (tmp_path / "new.dcm").write_bytes(study(2))
    folder = "/webdav/by-patients/PID00001 - Patient^00001/20200101 - Synthetic study/CT - Synthetic series"
    commands = "\n".join(
        [
            f'cd "{folder}"',
            "ls",
            f"get {a['ID']}.dcm got.dcm",
            "cd /webdav/uploads",
            "mkdir disc",
            "put new.dcm disc/new.dcm",
            f'rm "{folder}/{a["ID"]}.dcm"',
            "quit",
            "",
        ]
    )
    done = subprocess.run(
        ["cadaver", f"http://127.0.0.1:{srv.port}/webdav/"],
        input=commands,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "HOME": str(tmp_path)},
        timeout=60,
    )
    out = done.stdout
    assert f"{a['ID']}.dcm" in out and "succeeded" in out, out
    assert (tmp_path / "got.dcm").read_bytes() == stored
    instances = _instances(client)
    assert a["ID"] not in instances and len(instances) == 1  # deleted, and the upload stored
    assert client.get(f"/instances/{instances[0]}/metadata/Origin").body == b"WebDav"


def test_zip_bomb_and_corrupt_zip_uploads(client: Any) -> None:
    """A ZIP member far larger than its compressed size is left out without being inflated;
    a corrupt archive stores nothing; both answers come at once."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("zeros.dcm", "w", force_zip64=True) as member:
            chunk = bytes(1 << 20)
            for _ in range(300):  # 300 MiB of zeros: ~300 KiB compressed
                member.write(chunk)
        z.writestr("real.dcm", study(7))
    bomb = buf.getvalue()
    assert len(bomb) < 2 << 20
    started = time.monotonic()
    assert client.put("/webdav/uploads/bomb.zip", bomb).status == 201
    assert time.monotonic() - started < 10
    assert len(_instances(client)) == 1
    assert client.put("/webdav/uploads/corrupt.zip", b"PK\x03\x04" + bytes(range(256)) * 8).status == 201
    assert len(_instances(client)) == 1
    assert names(propfind(client, "/webdav/uploads")) == []


def test_folder_names_are_kept(client: Any) -> None:
    """Two series with the same name: the first one listed keeps its name when the second comes,
    whatever their public IDs (Orthanc keeps the names it gave while it runs)."""
    from orthanc_py.model.ids import compute

    def series_id(n: int) -> str:
        ds = dicomgen.make_dataset(dicomgen.Spec(patient=1, series=n, rows=0))
        return compute(ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID).series

    first, later = sorted(range(1, 6), key=series_id)[-1], sorted(range(1, 6), key=series_id)[0]
    assert series_id(later) < series_id(first)  # named first by public ID order if listed together
    a = client.upload(study(1, series=first, series_description="Same"))
    folder = "/webdav/by-patients/PID00001 - Patient^00001/20200101 - Synthetic study"
    assert names(propfind(client, folder)) == ["CT - Same"]
    b = client.upload(study(1, series=later, series_description="Same"))
    assert names(propfind(client, folder)) == ["CT - Same", "CT - Same (1)"]
    assert names(propfind(client, folder + "/CT - Same")) == [a["ID"] + ".dcm"]
    assert names(propfind(client, folder + "/CT - Same (1)")) == [b["ID"] + ".dcm"]
    # by-studies names its own folders: listed together for the first time, by public ID
    top = "/webdav/by-studies/PID00001 - Patient^00001 - Synthetic study"
    assert names(propfind(client, top + "/CT - Same")) == [b["ID"] + ".dcm"]
    client.delete(f"/instances/{a['ID']}")
    assert names(propfind(client, folder)) == ["CT - Same (1)"]


def test_large_file_sent_in_chunks(client: Any) -> None:
    """A file past 16 MiB is sent from the storage area in chunks, with Orthanc's headers."""
    big = dicomgen.make(patient=8, rows=3000, columns=3000)  # 18 MB of pixels
    iid = client.upload(big)["ID"]
    folder = "/webdav/by-patients/PID00008 - Patient^00008/20200101 - Synthetic study/CT - Synthetic series"
    r = client.get(quote(f"{folder}/{iid}.dcm"))
    assert r.status == 200 and r.body == client.get(f"/instances/{iid}/file").body and len(r.body) > 16 << 20
    assert r.headers["content-type"] == "application/dicom" and r.headers["last-modified"].endswith("Z")
    assert "T" in r.headers["last-modified"] and r.headers["content-length"] == str(len(r.body))
