"""Orthanc's error bodies, methods, unknown routes; HTTP Basic auth and remote access."""

from __future__ import annotations

import dicomgen


def test_error_shapes(client):
    r = client.get("/studies/0123/statistics")
    assert r.status == 404
    assert r.json() == {
        "HttpError": "Not Found",
        "HttpStatus": 404,
        "Message": "Unknown resource",
        "Method": "GET",
        "OrthancError": "Unknown resource",
        "OrthancStatus": 17,
        "Uri": "/studies/0123/statistics",
    }
    assert client.get("/patients/unknown").status == 404
    assert client.get("/patients/unknown").body == b""
    assert client.get("/nonexistent").json()["OrthancStatus"] == 17
    r = client.put("/patients")
    assert r.status == 405 and r.headers["allow"] == "GET" and r.body == b""
    assert client.put("/instances").headers["allow"] == "GET,POST"
    iid = client.upload(dicomgen.make(rows=0))["ID"]
    assert client.post(f"/patients/{client.get('/patients').json()[0]}").headers["allow"] == "GET,DELETE"
    assert client.request("PATCH", f"/instances/{iid}").status == 400
    assert client.get("/tools/generate-uid?level=study").body.startswith(b"1.2.276.0.7230010.3.1.2.")
    assert client.get("/tools/generate-uid?level=nope").status == 404
    assert len(client.get("/tools/now").body) == 15
    assert client.get("/tools/now-local").headers["content-type"] == "text/plain"


def test_system(client, server):
    s = client.get("/system").json()
    assert s["DicomAet"] == "ORTHANC" and s["HttpPort"] == server.port and s["DatabaseVersion"] == 6
    # ApiVersion >= 26: clients (and Orthanc's suites) expect DS values as strings in DICOM JSON
    assert s["Version"].startswith("1.12.") and s["ApiVersion"] == 29
    assert s["MainDicomTags"]["Patient"] == "0010,0010;0010,0020;0010,0030;0010,0040;0010,1000"


def test_basic_auth(make_server):
    srv = make_server({"AuthenticationEnabled": True, "RegisteredUsers": {"alice": "secret"}})
    anon = srv.client()
    r = anon.get("/system")
    assert r.status == 401 and r.headers["www-authenticate"] == 'Basic realm="Orthanc Secure Area"'
    assert r.body == b"" and "content-type" not in r.headers  # as Orthanc: no body
    assert srv.client(("alice", "wrong")).get("/system").status == 401
    alice = srv.client(("alice", "secret"))
    assert alice.get("/system").status == 200
    iid = alice.upload(dicomgen.make(rows=0))["ID"]
    assert alice.get(f"/instances/{iid}/metadata/HttpUsername").body == b"alice"


def test_remote_access_defaults_auth(make_server):
    srv = make_server({"RemoteAccessAllowed": True, "RegisteredUsers": {"u": "p"}})
    assert srv.settings.authentication_enabled  # Orthanc: on by default once remote access is on
    assert srv.client().get("/system").status == 401


def test_tools_shutdown_stops_the_server(make_server):
    srv = make_server()
    c = srv.client()
    assert c.post("/tools/shutdown").json() == {}
    srv._thread.join(10)
    assert not srv._thread.is_alive()


def test_http_describe_errors_off_answers_the_status_alone(make_server):
    c = make_server({"HttpDescribeErrors": False}).client()
    r = c.get("/no-such-route")
    assert r.status == 404 and r.body == b""
    r = c.post("/tools/find", b"{not json")
    assert r.status == 400 and r.body == b""
    assert c.get("/system").status == 200  # answers that are not errors keep their body
    r = make_server().client().get("/no-such-route")
    assert r.status == 404 and r.json()["Message"] == "Unknown resource"
