"""Metadata, attachments, revisions, compression and labels over real HTTP (Orthanc 1.12 answers)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import dicomgen
import pytest

from orthanc_py.storage import accessor

CONFIG = {
    "CheckRevisions": True,
    "UserMetadata": {"my-metadata": 1098},
    "UserContentType": {"report": [1030, "application/pdf"], "notes": 1031},
}


def md5(data: bytes | str) -> str:
    return hashlib.md5(data.encode() if isinstance(data, str) else data).hexdigest()


@pytest.fixture
def srv(make_server):
    return make_server(CONFIG)


@pytest.fixture
def c(srv):
    return srv.client()


@pytest.fixture
def up(c):
    return c.upload(dicomgen.make(patient=1, rows=4))


def test_user_metadata_by_name_and_number(c, up):
    pid, iid = up["ParentPatient"], up["ID"]
    r = c.put(f"/patients/{pid}/metadata/my-metadata", "hello")
    assert (r.status, r.body, r.headers["etag"]) == (200, b"", f'"0-{md5("hello")}"')
    assert c.get(f"/patients/{pid}/metadata/1098").body == b"hello"  # the same metadata by number
    assert "my-metadata" in c.get(f"/patients/{pid}/metadata").json()
    assert c.get(f"/patients/{pid}/metadata?expand").json()["my-metadata"] == "hello"
    assert 1098 in c.get(f"/patients/{pid}/metadata?numeric").json()
    numeric = c.get(f"/patients/{pid}/metadata?expand&numeric").json()
    assert numeric["1098"] == "hello" and "7" in numeric  # LastUpdate is metadata 7
    assert c.get(f"/patients/{pid}/metadata/unknown-name").json()["OrthancStatus"] == 7  # InexistentItem
    kinds = [ch["ChangeType"] for ch in c.get("/changes").json()["Changes"]]
    assert kinds[-1] == "UpdatedMetadata"
    assert c.get(f"/instances/{iid}/metadata/MainDicomTagsSignature").status == 200
    found = c.post("/tools/find", {"Level": "Patient", "Query": {}, "ResponseContent": ["Metadata"]}).json()
    assert found[0]["Metadata"]["my-metadata"] == "hello"  # named as UserMetadata names it
    bulk = c.post("/tools/bulk-content", {"Resources": [pid], "Metadata": True}).json()
    assert bulk[0]["Metadata"]["my-metadata"] == "hello"
    system = c.get("/system").json()
    assert system["UserMetadata"] == {"my-metadata": 1098} and system["CheckRevisions"] is True


def test_metadata_revisions(c, up):
    iid = up["ID"]
    url = f"/instances/{iid}/metadata/1024"
    assert c.put(url, "hello").headers["etag"] == f'"0-{md5("hello")}"'
    assert c.put(url, "again").status == 409  # CheckRevisions: an existing value needs If-Match
    assert c.put(url, "again", headers={"If-Match": f"1-{md5('hello')}"}).status == 409  # wrong revision
    r = c.put(url, "again", headers={"If-Match": f'"0-{md5("hello")}"'})
    assert (r.status, r.headers["etag"]) == (200, f'"1-{md5("again")}"')
    tag = c.get(url).headers["etag"]
    nm = c.get(url, headers={"If-None-Match": tag})
    assert (nm.status, nm.body, nm.headers["etag"]) == (304, b"", tag)
    assert c.get(url, headers={"If-None-Match": '"0-' + md5("again") + '"'}).status == 200  # stale revision
    assert c.get(url, headers={"If-None-Match": '"aaa"'}).status == 400  # not an ETag
    assert c.delete(url).status == 409  # If-Match is mandatory with CheckRevisions
    assert c.delete(url, headers={"If-Match": f"1-{md5('tata')}"}).status == 409
    assert c.delete(url, headers={"If-Match": tag}).status == 200
    assert c.delete(url, headers={"If-Match": tag}).status == 404
    assert c.get(url).status == 404
    # system metadata: a bare 403
    for r in (c.put(f"/instances/{iid}/metadata/TransferSyntax", "x"), c.delete(f"/instances/{iid}/metadata/Origin")):
        assert (r.status, r.body) == (403, b"")
    ts = c.get(f"/instances/{iid}/metadata/TransferSyntax")
    assert ts.headers["etag"] == f'"0-{md5(ts.body)}"'


def test_user_attachments(c, up):
    pid = up["ParentPatient"]
    size = int(c.get(f"/patients/{pid}/statistics").json()["DiskSize"])
    assert c.put(f"/patients/{pid}/attachments/22", "x").status == 403  # not a user content type
    r = c.put(f"/patients/{pid}/attachments/report", b"%PDF-1.4 fake")
    assert (r.status, r.body, r.headers["etag"]) == (200, b"{}", f'"0-{md5(b"%PDF-1.4 fake")}"')
    assert c.put(f"/patients/{pid}/attachments/1031", "note").status == 200
    assert c.get(f"/patients/{pid}/attachments").json() == ["report", "notes"]
    assert c.get(f"/patients/{pid}/attachments?full").json() == {"report": 1030, "notes": 1031}
    data = c.get(f"/patients/{pid}/attachments/report/data")
    assert data.body == b"%PDF-1.4 fake" and data.headers["content-type"] == "application/pdf"
    info = c.get(f"/patients/{pid}/attachments/1031/info").json()
    assert info["UncompressedMD5"] == md5("note") and info["ContentType"] == 1031
    assert c.post(f"/patients/{pid}/attachments/notes/verify-md5").body == b"{}"
    stats = c.get(f"/patients/{pid}/statistics").json()  # user attachments of the patient count
    assert int(stats["DiskSize"]) == size + len(b"%PDF-1.4 fake") + 4
    assert c.get("/statistics").json()["TotalDiskSize"] == stats["DiskSize"]
    assert c.put(f"/patients/{pid}/attachments/notes", "v2").status == 409  # CheckRevisions
    r = c.put(f"/patients/{pid}/attachments/notes", "v2", headers={"If-Match": f"0-{md5('note')}"})
    assert r.headers["etag"] == f'"1-{md5("v2")}"'
    assert c.get(f"/patients/{pid}/attachments/notes/data").body == b"v2"
    assert c.delete(f"/patients/{pid}/attachments/notes").status == 409
    assert c.delete(f"/patients/{pid}/attachments/notes", headers={"If-Match": f"1-{md5('v2')}"}).status == 200
    assert c.get(f"/patients/{pid}/attachments/notes/data").status == 404
    assert c.delete(f"/instances/{up['ID']}/attachments/dicom", headers={"If-Match": "0-x"}).status == 403
    kinds = [ch["ChangeType"] for ch in c.get("/changes").json()["Changes"]]
    assert kinds.count("UpdatedAttachment") == 4
    assert c.put("/instances/11111111-11111111-11111111-11111111-11111111/attachments/1031", "x").status == 404


def test_dicom_attachment_etag_range_and_compression(c, up, srv):
    iid = up["ID"]
    base = f"/instances/{iid}/attachments/dicom"
    raw = c.get(f"/instances/{iid}/file")
    assert raw.headers["content-disposition"] == f'filename="{c.get(base + "/uuid").body.decode()}.dcm"'
    digest = md5(raw.body)
    for suffix in ("", "/data", "/size", "/md5", "/compressed-data", "/info"):
        r = c.get(base + suffix)
        assert r.headers["etag"] == f'"0-{digest}"', suffix
        assert c.get(base + suffix, headers={"If-None-Match": f'"0-{digest}"'}).status == 304
        bad = c.get(base + suffix, headers={"If-None-Match": "tata"})
        assert (bad.status, bad.headers["etag"]) == (400, f'"0-{digest}"')
    full = c.get(base + "/data")
    assert full.headers["content-type"] == "application/dicom" and "content-range" not in full.headers
    n = len(raw.body)
    for header, start, end in (("bytes=128-131", 128, 131), ("bytes=-", 0, n - 1), ("bytes=128-", 128, n - 1)):
        r = c.get(base + "/data", headers={"Range": header})
        assert (r.status, r.body, r.headers["content-range"]) == (
            206,
            raw.body[start : end + 1],
            f"bytes {start}-{end}/{n}",
        )
        assert r.headers["content-type"] == "application/octet-stream"
    assert c.get(base + "/data", headers={"Range": "bytes=-131"}).body == raw.body[:132]  # Orthanc: 0 to 131
    assert c.get(base + "/data", headers={"Range": f"bytes={n}-"}).status == 416
    stats = c.get("/statistics").json()
    assert c.get(base + "/is-compressed").body == b"0"
    assert c.post(base + "/compress").body == b"{}"
    compressed = c.get(base + "/is-compressed")
    assert compressed.body == b"1" and compressed.headers["etag"] == f'"1-{digest}"'  # stored anew: next revision
    packed = c.get(base + "/compressed-data").body
    assert accessor.uncompress(packed) == raw.body and c.get(base + "/compressed-md5").body == md5(packed).encode()
    assert c.get(base + "/compressed-size").body == str(len(packed)).encode()
    assert c.get(base + "/size").body == str(n).encode() and c.get(base + "/md5").body == digest.encode()
    assert c.get(f"/instances/{iid}/file").body == raw.body  # every reader still sees the file
    assert c.get(base + "/data", headers={"Range": "bytes=128-131"}).body == b"DICM"
    assert c.get(f"/instances/{iid}/tags?short").status == 200
    assert c.post(base + "/verify-md5").status == 200
    assert c.get("/statistics").json()["TotalDiskSize"] < stats["TotalDiskSize"]
    stored = next(srv.settings.storage_directory.rglob(c.get(base + "/uuid").body.decode()))
    stored.write_bytes(accessor.compress(raw.body[:-1] + b"x"))  # same size, other content
    assert (c.post(base + "/verify-md5").status, c.post(base + "/verify-md5").body) == (400, b"")
    stored.write_bytes(packed)
    c.post(base + "/uncompress")
    assert c.get(base + "/compressed-data").body == raw.body
    assert c.get("/statistics").json() == stats


def test_storage_compression_setting(make_server, tmp_path):
    srv = make_server({"StorageCompression": True})
    c = srv.client()
    data = dicomgen.make(patient=2, rows=16)
    up = c.upload(data)
    base = f"/instances/{up['ID']}/attachments/dicom"
    uuid = c.get(base + "/uuid").body.decode()
    stored = next(Path(tmp_path).rglob(uuid)).read_bytes()
    assert stored == accessor.compress(data)  # Orthanc's format, byte for byte
    assert c.get(base + "/is-compressed").body == b"1"
    assert c.get(f"/instances/{up['ID']}/file").body == data
    r = c.put(f"/instances/{up['ID']}/attachments/1024", "x" * 1000)
    assert r.status == 200
    info = c.get(f"/instances/{up['ID']}/attachments/1024/info").json()
    assert info["CompressedSize"] < info["UncompressedSize"] == 1000


def test_labels_answers(c, up):
    sid = up["ParentStudy"]
    assert c.delete(f"/studies/{sid}/labels/hello").body == b""  # not there: no error
    r = c.put(f"/studies/{sid}/labels/hello")
    assert (r.status, r.body) == (200, b"")
    assert c.get(f"/studies/{sid}/labels/hello").body == b""
    assert c.get(f"/studies/{sid}/labels/world").status == 404
    assert c.put(f"/studies/{sid}/labels/bad@label").status == 400
    for mode, expected in (("None", 0), ("All", 1), ("Any", 1)):
        found = c.post("/tools/find", {"Level": "Study", "Query": {}, "Labels": ["hello"], "LabelsConstraint": mode})
        assert len(found.json()) == expected, mode
    # "None" without labels constrains nothing (Orthanc 1.12.5)
    assert (
        len(c.post("/tools/find", {"Level": "Study", "Query": {}, "Labels": [], "LabelsConstraint": "None"}).json())
        == 1
    )


def test_pixel_data_offset_needs_a_preamble(c):
    with_preamble = dicomgen.make(patient=3, rows=4)
    iid = c.upload(with_preamble)["ID"]
    assert c.get(f"/instances/{iid}/metadata/PixelDataOffset").status == 200
    bare = dicomgen.make(patient=4, rows=4)[132:]  # no preamble, no "DICM"
    r = c.post("/instances", bare)
    assert r.status == 200
    assert c.get(f"/instances/{r.json()['ID']}/metadata/PixelDataOffset").status == 404


@pytest.mark.skipif(not Path("/usr/sbin/Orthanc").exists(), reason="the real Orthanc is not installed")
def test_storage_areas_are_interchangeable_with_orthanc(tmp_path):
    """Orthanc's compressed files read back with our accessor, and Orthanc serves ours."""
    from tests.conformance.real_orthanc import real_orthanc
    from tests.conftest import free_port

    data = dicomgen.make(patient=5, rows=32)
    config = {"HttpPort": free_port(), "DicomServerEnabled": False, "StorageCompression": True}
    with real_orthanc(tmp_path, config) as url:
        import json
        import urllib.request

        def get(path: str) -> bytes:
            return urllib.request.urlopen(url + path, timeout=10).read()

        req = urllib.request.Request(url + "/instances", data=data, method="POST")
        iid = json.loads(urllib.request.urlopen(req, timeout=10).read())["ID"]
        uuid = json.loads(get(f"/instances/{iid}/attachments/dicom/info"))["Uuid"]
        path = next((tmp_path / "orthanc").rglob(uuid))
        area = accessor.StorageAccessor(_OneFile(path), compression=True)
        assert area.read_file(uuid, 1, accessor.ZLIB_WITH_SIZE) == data  # theirs, read by us
        assert area.read(uuid, 1) == data  # and by UUID alone
        other = dicomgen.make(patient=5, rows=32, instance=0)  # same instance, our compressed bytes
        shutil.copyfile(path, tmp_path / "orthanc-original")
        path.write_bytes(accessor.compress(other))
        assert get(f"/instances/{iid}/file") == other  # ours, served by Orthanc


class _OneFile:
    """A storage area of one existing file (for reading Orthanc's storage in place)."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def read(self, uuid: str, content_type: int) -> bytes:
        return self._path.read_bytes()

    def new_uuid(self) -> str:
        raise NotImplementedError

    def create(self, uuid: str, data: bytes, content_type: int) -> None:
        raise NotImplementedError

    def read_range(self, uuid: str, content_type: int, start: int, end: int) -> bytes:
        return self.read(uuid, content_type)[start:end]

    def remove(self, uuid: str, content_type: int) -> None:
        raise NotImplementedError

    def path(self, uuid: str, content_type: int) -> str | None:
        return str(self._path)


def test_without_md5s(make_server):
    """StoreMD5ForAttachments false: no MD5 anywhere (routes answer a bare 404, ETags end in "-")."""
    c = make_server({"StoreMD5ForAttachments": False}).client()
    iid = c.upload(dicomgen.make(patient=6, rows=0))["ID"]
    c.put(f"/instances/{iid}/attachments/1024", "hello")
    for name in ("dicom", "1024"):
        base = f"/instances/{iid}/attachments/{name}"
        assert (c.get(base + "/md5").status, c.get(base + "/md5").body) == (404, b"")
        assert "md5" not in c.get(base).json() and "verify-md5" not in c.get(base).json()
        assert c.get(base + "/data").headers["etag"] == '"0-"'
        assert c.post(base + "/verify-md5").status == 400
