"""Orthanc's HTTP layer: faked methods, XML answers, error content types, form uploads,
?expand=false, and bad input answered 4xx (never 5xx)."""

from __future__ import annotations

import gzip
import struct
from xml.dom import minidom

import dicomgen


def _two_patients(client) -> list[str]:
    client.upload(dicomgen.make(patient=1, rows=0))
    client.upload(dicomgen.make(patient=2, rows=0))
    return client.get("/patients").json()


def test_method_faked_by_header_and_by_argument(client):
    a, b = _two_patients(client)
    r = client.post(f"/patients/{a}/protected", "1", headers={"X-HTTP-Method-Override": "PUT"})
    assert r.status == 200
    assert client.get(f"/patients/{a}/protected").body == b"1"
    assert client.request("GET", f"/patients/{a}/protected?_method=put", "0").status == 200  # Ruby's way
    assert client.get(f"/patients/{a}/protected").body == b"0"
    assert client.post(f"/patients/{a}", headers={"X-HTTP-Method-Override": "delete"}).status == 200
    assert client.get(f"/patients/{b}?_method=DELETE").json() == {"RemainingAncestor": None}
    assert client.get("/patients").json() == []
    # Orthanc fakes PUT and DELETE only: anything else is a bare 400
    r = client.post("/tools/find", {}, headers={"X-HTTP-Method-Override": "GET"})
    assert (r.status, r.body) == (400, b"")
    assert client.get("/system", headers={"X-HTTP-Method-Override": "GET"}).status == 400
    assert client.get("//system?_method=post").status == 400


def test_xml_answers_when_asked(client):
    client.upload(dicomgen.make(rows=0))
    tools = client.get("/tools").json()
    r = client.get("/tools", headers={"Accept": "application/xml"})
    assert r.headers["content-type"] == "application/xml; charset=utf-8"
    items = minidom.parseString(r.body).getElementsByTagName("root")[0].getElementsByTagName("item")
    assert [i.childNodes[0].data for i in items] == tools
    system = minidom.parseString(client.get("/system", headers={"Accept": "application/xml"}).body)
    assert system.getElementsByTagName("DicomAet")[0].childNodes[0].data == "ORTHANC"
    assert system.getElementsByTagName("CheckRevisions")[0].childNodes[0].data == "false"
    empty = client.get("/changes?since=100000&limit=1", headers={"Accept": "application/xml"}).body
    assert b"<Changes />" in empty
    # Accept is split on ";" and compared whole; the last of XML and JSON wins
    assert client.get("/tools", headers={"Accept": "text/html, application/xml"}).json() == tools
    assert client.get("/tools", headers={"Accept": "application/xml;application/json"}).json() == tools
    # text answers and errors are left as they are
    assert client.get("/tools/now", headers={"Accept": "application/xml"}).headers["content-type"] == "text/plain"
    r = client.get("/nope", headers={"Accept": "application/xml"})
    assert r.status == 404 and r.json()["OrthancStatus"] == 17


def test_error_content_types(client):
    r = client.get("/rnm94%3Cscript%3Ealert(1)%3C/script%3Ejdtkc/explorer.html")
    assert (r.status, r.headers["content-type"]) == (404, "text/plain")
    assert r.headers["x-content-type-options"] == "nosniff"
    r = client.put("/system", "hello")
    assert r.status == 405 and r.headers["allow"] == "GET" and "content-type" not in r.headers
    assert client.get("/system").headers["x-content-type-options"] == "nosniff"


def _form(parts: list[tuple[str, bytes]], boundary: str, close: bool = True) -> bytes:
    body = b"".join(
        b'--%s\r\nContent-Disposition: form-data; name="files[]"; filename="%s"\r\n\r\n%s\r\n'
        % (boundary.encode(), name.encode(), data)
        for name, data in parts
    )
    return body + (b"--%s--" % boundary.encode() if close else b"--%s" % boundary.encode())


def test_form_upload_of_several_files(client):
    a, b = dicomgen.make(patient=1, rows=0), dicomgen.make(patient=2, rows=0)
    boundary = "----WebKitFormBoundaryX"
    r = client.post(
        "/instances",
        _form([("a.dcm", a), ("b.dcm", b)], boundary),
        headers={
            "Content-Type": f"multipart/form-data  ;  boundary = {boundary} ",
            "X-Requested-With": "XMLHttpRequest",
        },
    )
    assert (r.status, r.body) == (200, b"")
    assert len(client.get("/instances").json()) == 2
    r = client.post(
        "/instances",
        _form([("a.dcm", a)], boundary),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}", "X-Requested-With": "fetch"},
    )
    assert r.status == 500 and r.json()["OrthancError"] == "Error in the network protocol"
    # a part that is not DICOM is refused as a plain upload would be
    r = client.post(
        "/instances",
        _form([("x.txt", b"hello")], boundary),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status == 400


def test_form_upload_in_chunks(client):
    data = dicomgen.make(patient=3, rows=0)
    boundary = "B0undary"
    headers = {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "X-File-Name": "c.dcm",
        "X-File-Size": str(len(data)),
    }
    for start in range(0, len(data), 700):
        assert client.get("/instances").json() == []
        r = client.post(
            "/instances", _form([("c.dcm", data[start : start + 700])], boundary, close=False), headers=headers
        )
        assert r.status == 200
    assert len(client.get("/instances").json()) == 1
    bad = dict(headers, **{"X-File-Size": "nope"})
    assert client.post("/instances", _form([("c.dcm", data)], boundary), headers=bad).status == 500


def test_expand_false(client):
    r = client.upload(dicomgen.make(rows=0))
    study = r["ParentStudy"]
    assert client.get("/instances?expand=false").json() == [r["ID"]]
    assert client.get("/instances?expand=true").json()[0]["ID"] == r["ID"]
    assert client.get("/instances?expand").json()[0]["ID"] == r["ID"]
    assert client.get(f"/studies/{study}/instances?expand=false").json() == [r["ID"]]
    assert client.get(f"/studies/{study}/instances").json()[0]["MainDicomTags"]["SOPInstanceUID"]
    assert client.get(f"/studies/{study}/series?expand=false").json() == [r["ParentSeries"]]
    assert client.get(f"/instances/{r['ID']}/study?expand=false").json()["ID"] == study  # a parent stays an object


def test_system_user_metadata_and_conformance(make_server):
    c = make_server({"UserMetadata": {"my-metadata": 1098}}).client()
    assert c.get("/system").json()["UserMetadata"] == {"my-metadata": 1098}
    text = c.get("/tools/dicom-conformance")
    assert text.headers["content-type"] == "text/plain"
    assert "1.2.840.10008.1.1" in text.body.decode() and "1.2.840.10008.5.1.4.1.1.2" in text.body.decode()
    assert "1.2.840.10008.5.1.4.1.2.2.1" in text.body.decode()  # study root C-FIND
    tools = c.get("/tools").json()
    for name in ("dicom-conformance", "invalidate-tags", "bulk-content", "bulk-delete", "reconstruct"):
        assert name in tools
    r = c.post("/tools/invalidate-tags", "")
    assert (r.status, r.body) == (200, b"")


def test_export_to_file_system(make_server, tmp_path):
    off = make_server().client()
    iid = off.upload(dicomgen.make(rows=0))["ID"]
    target = tmp_path / "out.dcm"
    r = off.post(f"/instances/{iid}/export", str(target))
    assert (r.status, r.body) == (403, b"") and not target.exists()
    on = make_server({"RestApiWriteToFileSystemEnabled": True}).client()
    data = dicomgen.make(rows=0)
    iid = on.upload(data)["ID"]
    assert on.post(f"/instances/{iid}/export", str(target)).json() == {}
    assert target.read_bytes() == data
    assert on.post(f"/instances/{iid}/export", str(tmp_path / "no" / "such" / "dir.dcm")).status == 500


# --- bad input: 4xx, never 5xx -------------------------------------------------------------------


def _nested(depth: int) -> bytes:
    """A ContentSequence nested `depth` levels deep (undefined lengths), as raw explicit VR LE."""
    opening = (
        struct.pack("<HH", 0x0040, 0xA730)
        + b"SQ\0\0"
        + b"\xff\xff\xff\xff"
        + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    ) * depth
    closing = (struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)) * depth
    return opening + closing


def test_deeply_nested_sequences_are_bad_input(client):
    base = dicomgen.make(rows=0)
    assert client.post("/instances", base + _nested(10)).status == 200
    # what is stored can be read back: deeper than the fast parser goes, pydicom decides
    iid = client.upload(dicomgen.make(patient=100, rows=0) + _nested(100))["ID"]
    assert client.get(f"/instances/{iid}/tags").status == 200
    assert client.get(f"/instances/{iid}/simplified-tags").status == 200
    for depth in (250, 1000, 5000):
        r = client.post("/instances", dicomgen.make(patient=depth, rows=0) + _nested(depth))
        assert r.status == 400 and r.json()["OrthancStatus"] == 15
    assert len(client.get("/instances").json()) == 2


def test_body_that_is_not_gzip_is_bad_input(client):
    data = dicomgen.make(rows=0)
    r = client.post("/instances", data, headers={"Content-Encoding": "gzip"})
    assert r.status == 400 and r.json()["OrthancStatus"] == 15
    assert client.post("/instances", gzip.compress(data), headers={"Content-Encoding": "gzip"}).status == 200
    assert len(client.get("/instances").json()) == 1


def test_item_length_past_the_end_of_the_file(client):
    item = (
        struct.pack("<HHI", 0xFFFE, 0xE000, 100000)
        + struct.pack("<HH", 0x0008, 0x0100)
        + b"SH"
        + struct.pack("<H", 2)
        + b"AB"
    )
    seq = struct.pack("<HH", 0x0040, 0xA730) + b"SQ\0\0"
    undefined = seq + b"\xff\xff\xff\xff" + item
    too_long = seq + struct.pack("<I", 100008) + item
    for i, tail in enumerate((undefined, too_long)):
        r = client.post("/instances", dicomgen.make(patient=i, rows=0) + tail)
        assert r.status == 400 and r.json()["OrthancStatus"] == 15
    assert client.get("/instances").json() == []


def test_auto_directories(client):
    """Orthanc answers GET on some intermediate URIs with the list of their children."""
    tools = client.get("/tools").json()
    assert tools == sorted(tools) and {"now", "find", "dicom-conformance", "invalidate-tags"} <= set(tools)
    assert "tools" not in tools and not any("{" in t for t in tools)
    iid = client.upload(dicomgen.make(rows=0))["ID"]
    renderings = client.get(f"/instances/{iid}/frames/0").json()
    assert {"matlab", "raw", "preview", "rendered"} <= set(renderings)
    # as in Orthanc, the listing does not look the instance up
    assert client.get("/instances/nope/frames/0").json() == renderings
    assert client.get("/nope/nope.html").status == 404
