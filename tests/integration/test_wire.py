"""Orthanc on the wire: URLs as Orthanc parses them (empty components ignored)."""

from __future__ import annotations

import dicomgen


def test_empty_path_components_are_ignored(client):
    assert client.get("//system").json()["DicomAet"] == "ORTHANC"
    iid = client.upload(dicomgen.make(rows=0))["ID"]
    assert client.get("/instances/").json() == [iid]
    assert client.get("//instances//").json() == [iid]
    assert client.get(f"/instances//{iid}/tags/").json() == client.get(f"/instances/{iid}/tags").json()
    # the query string survives the normalisation
    assert client.get("//instances/?expand").json()[0]["ID"] == iid
    assert client.get("//nonexistent/").status == 404
    assert client.request("DELETE", f"//instances/{iid}/").status == 200
    assert client.get("/instances/").json() == []


def test_default_encoding_route(client):
    r = client.get("/tools/default-encoding")
    assert (r.status, r.body, r.headers["content-type"]) == (200, b"Latin1", "text/plain")
    r = client.put("/tools/default-encoding", "Utf8")
    assert (r.status, r.body) == (200, b"Utf8")
    assert client.get("/tools/default-encoding").body == b"Utf8"
    r = client.put("/tools/default-encoding", "nope")
    assert r.status == 400 and r.json()["OrthancStatus"] == 3
    assert client.get("/tools/default-encoding").body == b"Utf8"


def test_accepted_transfer_syntaxes_route(client):
    everything = client.get("/tools/accepted-transfer-syntaxes").json()
    assert len(everything) == 42 and everything[0] == "1.2.840.10008.1.2"
    r = client.put("/tools/accepted-transfer-syntaxes", ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.9?"])
    assert r.json() == ["1.2.840.10008.1.2.1", *(f"1.2.840.10008.1.2.4.9{i}" for i in range(6))]
    assert client.put("/tools/accepted-transfer-syntaxes", '"1.2.840.10008.1.2"').json() == ["1.2.840.10008.1.2"]
    assert client.put("/tools/accepted-transfer-syntaxes", "1.2.840.10008.1.2").status == 400  # not JSON
    assert client.get("/tools/accepted-transfer-syntaxes").json() == ["1.2.840.10008.1.2"]
    r = client.put("/tools/accepted-transfer-syntaxes", "12")
    assert r.status == 400 and r.json()["OrthancStatus"] == 15


def test_unknown_sop_class_route(client):
    assert client.get("/tools/unknown-sop-class-accepted").body == b"0"
    assert client.put("/tools/unknown-sop-class-accepted", "1").status == 200
    assert client.get("/tools/unknown-sop-class-accepted").body == b"1"
    assert client.put("/tools/unknown-sop-class-accepted", "false").status == 200
    assert client.get("/tools/unknown-sop-class-accepted").body == b"0"
    assert client.put("/tools/unknown-sop-class-accepted", "foo").json()["Details"] == "Boolean value expected"


def test_peers_registry(make_server):
    srv = make_server({"OrthancPeers": {"peer": ["http://127.0.0.1:5000", "alice", "secret"]}})
    c = srv.client()
    assert c.get("/peers").json() == ["peer"]
    assert c.get("/peers/peer").json() == ["configuration", "store", "store-straight", "system"]
    conf = c.get("/peers/peer/configuration").json()
    assert conf == {
        "HttpHeaders": [],
        "Password": None,
        "Pkcs11": False,
        "Timeout": 0,
        "Url": "http://127.0.0.1:5000/",
        "Username": "alice",
    }
    r = c.put("/peers/toto", {"Url": "http://h:1", "HttpHeaders": {"X-A": "b"}, "Timeout": 3})
    assert (r.status, r.body) == (200, b"")
    assert c.get("/peers?expand").json()["toto"] == {
        "HttpHeaders": ["X-A"],
        "Pkcs11": False,
        "Timeout": 3,
        "Url": "http://h:1/",
    }
    assert c.put("/peers/bad", {"Url": "ftp://h"}).json()["Details"] == "Bad URL: ftp://h"
    assert c.put("/peers/bad", {"Url": "http://h", "Password": "x"}).status == 400
    assert c.put("/peers/bad", []).status == 400
    assert c.request("DELETE", "/peers/toto").status == 200
    assert c.request("DELETE", "/peers/toto").status == 404  # Orthanc: "Unknown Orthanc peer: toto"
    assert c.get("/peers").json() == ["peer"]
    assert c.get("/peers/toto/configuration").status == 404


def test_person_name_keeps_empty_component_groups(client):
    """`Wang^XiaoDong=王^小東=` is stored as written (pydicom would drop the last, empty group)
    and QIDO-RS splits it into three groups, as Orthanc and its plugin answer."""
    placeholder = "N" * 26
    data = dicomgen.make(rows=0, patient_name=placeholder)
    name = "Wang^XiaoDong=王^小東=".encode() + b" "
    assert len(name) == 26
    data = data.replace(placeholder.encode(), name).replace(b"ISO_IR 100", b"ISO_IR 192")
    iid = client.upload(data)["ID"]
    assert client.get(f"/instances/{iid}/simplified-tags").json()["PatientName"] == "Wang^XiaoDong=王^小東="
    study = client.get(f"/instances/{iid}/study").json()
    assert study["PatientMainDicomTags"]["PatientName"] == "Wang^XiaoDong=王^小東="
    uid = study["MainDicomTags"]["StudyInstanceUID"]
    qido = client.get(f"/dicom-web/studies?0020000D={uid}").json()
    assert qido[0]["00100010"]["Value"][0] == {"Alphabetic": "Wang^XiaoDong", "Ideographic": "王^小東", "Phonetic": ""}


def test_rendered_without_pixel_representation(client):
    """A file without Pixel Representation renders (read as unsigned, as DCMTK does) instead of a
    500; WADO-RS rendered and the REST preview agree."""
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(dicomgen.make(rows=8)))
    del ds.PixelRepresentation
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    iid = client.upload(out.getvalue())["ID"]
    assert client.get(f"/instances/{iid}/preview").status == 200
    study, series, sop = (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    r = client.get(f"/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/1/rendered")
    assert r.status == 200 and r.headers["content-type"] == "image/jpeg"
