"""Orthanc peers as Orthanc 1.10.1 has them: the registry, POST /peers/{id}/store (an
OrthancPeerStore job, synchronous or not, Transcode, Compress, Permissive), store-straight,
/system and the errors of an unreachable or refusing peer, between two real orthanc_py servers,
and with the real Orthanc both ways (when installed)."""

from __future__ import annotations

import gzip
import io
import os
import socket
import time
from pathlib import Path
from typing import Any

import dicomgen
import pydicom
import pytest

from tests.conformance.real_orthanc import ORTHANC, real_orthanc
from tests.conftest import free_ports

AUTH = {"AuthenticationEnabled": True, "RegisteredUsers": {"alice": "secret"}}
IMPLICIT = "1.2.840.10008.1.2"


def wait_job(c: Any, job_id: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = c.get(f"/jobs/{job_id}").json()
        if job["State"] in ("Success", "Failure"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.02)


def dead_port() -> int:
    """A loopback port where nobody listens (connections are refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


@pytest.fixture
def pair(make_server: Any) -> tuple[Any, Any, Any]:
    """Server A (LogExportedResources) with peers: "b" (server B, with credentials),
    "dead" (refused), "badauth" (B with a wrong password); and B's client."""
    b = make_server(AUTH)
    url = f"http://127.0.0.1:{b.port}/"
    a = make_server(
        {
            "LogExportedResources": True,
            "OrthancPeers": {
                "b": [url, "alice", "secret"],
                "dead": [f"http://127.0.0.1:{dead_port()}/"],
                "badauth": {"Url": url, "Username": "alice", "Password": "wrong"},
            },
        }
    )
    return a, a.client(), b.client(("alice", "secret"))


def test_store_synchronous_as_orthanc(pair: Any) -> None:
    _a, ca, cb = pair
    instance = ca.upload(dicomgen.make(patient=1, instance=0))
    r = ca.post("/peers/b/store", instance["ID"], headers={"Content-Type": "text/plain"})  # a bare ID
    assert r.status == 200, r.body
    size = len(ca.get(f"/instances/{instance['ID']}/file").body)
    assert r.json() == {
        "Compress": False,
        "Description": "REST API",
        "FailedInstancesCount": 0,
        "InstancesCount": 1,
        "ParentResources": [instance["ID"]],
        "Peer": [f"http://127.0.0.1:{cb.port}/", "alice", ""],  # no password shown
        "Size": str(size),
        "SizeMB": 0,
    }
    assert cb.get("/instances").json() == [instance["ID"]]
    assert cb.get(f"/instances/{instance['ID']}/file").body == ca.get(f"/instances/{instance['ID']}/file").body
    exports = ca.get("/exports").json()["Exports"]
    assert [(e["ResourceType"], e["ID"], e["RemoteModality"]) for e in exports] == [("Instance", instance["ID"], "b")]
    jobs = ca.get("/jobs?expand").json()
    assert [(j["Type"], j["State"]) for j in jobs] == [("OrthancPeerStore", "Success")]  # as Orthanc: a job


def test_store_asynchronous_with_progress_and_user_data(pair: Any) -> None:
    _a, ca, cb = pair
    for i in range(24):
        ca.upload(dicomgen.make(patient=2, instance=i))
    study = ca.get("/studies").json()[0]
    r = ca.post("/peers/b/store", {"Resources": [study], "Asynchronous": True, "Priority": 4, "UserData": {"k": 1}})
    assert r.status == 200, r.body
    job_id = r.json()["ID"]
    assert r.json()["Path"] == f"/jobs/{job_id}"
    seen = {ca.get(f"/jobs/{job_id}").json()["Progress"]}
    job = wait_job(ca, job_id)
    seen.add(job["Progress"])
    assert job["State"] == "Success" and job["Progress"] == 100 and job["Priority"] == 4
    assert job["Type"] == "OrthancPeerStore" and job["UserData"] == {"k": 1}
    assert job["Content"]["InstancesCount"] == 24 and job["Content"]["ParentResources"] == [study]
    assert int(job["Content"]["Size"]) > 24 * 100
    assert len(cb.get("/instances").json()) == 24


def test_store_transcoded_and_compressed(pair: Any) -> None:
    _a, ca, cb = pair
    instance = ca.upload(dicomgen.make(patient=3, instance=0))["ID"]
    stored = ca.get(f"/instances/{instance}/file").body
    r = ca.post("/peers/b/store", {"Resources": [instance], "Transcode": IMPLICIT, "Compress": True})
    assert r.status == 200, r.body
    content = r.json()
    assert content["Transcode"] == IMPLICIT and content["Compress"] is True
    assert int(content["Size"]) < len(stored)  # what went on the wire: gzipped
    received = cb.get(f"/instances/{instance}/file").body
    assert pydicom.dcmread(io.BytesIO(received)).file_meta.TransferSyntaxUID == IMPLICIT
    assert cb.get(f"/instances/{instance}/metadata/TransferSyntax").body.decode() == IMPLICIT
    # Orthanc's options, read as it reads them
    bad = ca.post("/peers/b/store", {"Resources": [instance], "Transcode": "1.2.3"})
    assert (bad.status, bad.json()["Details"]) == (400, "Unknown transfer syntax UID: 1.2.3")
    bad = ca.post("/peers/b/store", {"Resources": [instance], "Transcode": 5})
    assert bad.json()["Details"] == "String value expected in field: Transcode"
    bad = ca.post("/peers/b/store", {"Resources": [instance], "Compress": "yes"})
    assert bad.json()["Details"] == "Boolean value expected in field: Compress"


def test_request_errors_as_orthanc(pair: Any) -> None:
    _a, ca, _cb = pair
    instance = ca.upload(dicomgen.make(patient=4, instance=0))["ID"]
    r = ca.post("/peers/nope/store", [instance])
    assert r.status == 404 and r.json()["OrthancStatus"] == 17
    assert r.json()["Details"] == "No peer with symbolic name: nope"
    for path in ("/peers/nope/system", "/peers/nope/configuration"):
        assert ca.get(path).json()["Details"] == "No peer with symbolic name: nope"
    assert ca.post("/peers/nope/store-straight", b"x").status == 404
    assert (ca.get("/peers/nope").status, ca.get("/peers/nope").body) == (404, b"")
    unknown = "0000000a-7430e543-bad44d47-0dc5a943-ec7a538d"
    assert ca.post("/peers/b/store", [unknown]).status == 404
    assert ca.post("/peers/b/store", ["abc"]).json()["Details"] == "This string is not a valid Orthanc identifier: abc"
    assert ca.post("/peers/b/store", {"Foo": 1}).json()["Details"] == 'Missing field in JSON: "Resources"'
    assert ca.post("/peers/b/store", "{").json()["Details"] == "Must provide a JSON value"
    assert ca.post("/peers/b/store", {"Resources": [instance], "Synchronous": "no"}).status == 400
    empty = ca.post("/peers/b/store", {"Resources": []}).json()
    assert empty["InstancesCount"] == 0 and "ParentResources" not in empty


def test_unreachable_or_refusing_peer(pair: Any) -> None:
    _a, ca, _cb = pair
    instance = ca.upload(dicomgen.make(patient=5, instance=0))["ID"]
    refused = {"Details": "libCURL error: Couldn't connect to server", "OrthancStatus": 9, "HttpStatus": 500}
    for r in (ca.post("/peers/dead/store", [instance]), ca.get("/peers/dead/system")):
        assert r.status == 500 and {k: r.json().get(k) for k in refused} == refused
    r = ca.post("/peers/dead/store-straight", ca.get(f"/instances/{instance}/file").body)
    assert r.json()["Details"] == refused["Details"]
    # the peer answers 401: Orthanc's NetworkProtocol without details, BadHttpStatusInRest for /system
    r = ca.post("/peers/badauth/store", [instance])
    assert (r.status, r.json()["OrthancStatus"], r.json().get("Details")) == (500, 9, None)
    assert ca.get("/peers/badauth/system").json()["OrthancStatus"] == 2005
    r = ca.post("/peers/badauth/store-straight", ca.get(f"/instances/{instance}/file").body)
    assert r.json()["Details"] == "Cannot send DICOM to remote peer: badauth"
    # asynchronous: the job fails with the error; permissive: it succeeds
    job = wait_job(ca, ca.post("/peers/dead/store", {"Resources": [instance], "Synchronous": False}).json()["ID"])
    assert (job["State"], job["ErrorCode"], job["ErrorDetails"]) == ("Failure", 9, refused["Details"])
    r = ca.post("/peers/dead/store", {"Resources": [instance], "Permissive": True})
    assert r.status == 200 and r.json()["FailedInstancesCount"] == 0


def test_store_straight_and_system(pair: Any) -> None:
    _a, ca, cb = pair
    data = dicomgen.make(patient=6, instance=0)
    r = ca.post("/peers/b/store-straight", data, headers={"Content-Type": "application/dicom"})
    assert r.status == 200, r.body
    answer = r.json()
    assert set(answer) == {"ID", "ParentPatient", "ParentSeries", "ParentStudy", "Path", "Status"}
    assert answer["Status"] == "Success" and cb.get("/instances").json() == [answer["ID"]]
    assert ca.get("/instances").json() == []  # not stored here
    system = ca.get("/peers/b/system")
    assert system.status == 200 and system.json() == cb.get("/system").json()


def test_registry_as_orthanc(make_server: Any, tmp_path: Path) -> None:
    c = make_server().client()
    r = c.put("/peers/tata", {"Url": "http://h:8042", "Username": "u", "Password": "p", "RemoteSelf": "self", "N": 3})
    assert (r.status, r.body) == (200, b"")
    assert c.get("/peers/tata/configuration").json() == {
        "HttpHeaders": [],
        "N": "3",
        "Password": None,
        "Pkcs11": False,
        "RemoteSelf": "self",
        "Timeout": 0,
        "Url": "http://h:8042/",
        "Username": "u",
    }
    assert c.put("/peers/to.to", ["http://h/"]).json()["Details"].startswith("Only alphanumeric")
    assert c.put("/peers/x", {"Url": "http://h", "Foo": [1]}).status == 400
    assert c.put("/peers/x", {"Url": "http://h", "Timeout": -1}).json()["Details"] == (
        "Unsigned integer value expected in field: Timeout"
    )
    r = c.put("/peers/x", {"Url": "http://h", "CertificateFile": "/nonexistent"})
    assert (r.status, r.json()["Details"]) == (404, "Cannot open certificate file: /nonexistent")
    assert (c.put("/peers/x", "not json").status, c.get("/peers/x").status) == (404, 404)
    assert c.put("/peers/pk", {"Url": "http://127.0.0.1:1/", "Pkcs11": True}).status == 200
    r = c.get("/peers/pk/system")  # as Debian's Orthanc 1.10.1, built without PKCS#11
    assert (r.status, r.json()["Details"]) == (500, "This version of Orthanc is compiled without support for PKCS#11")
    assert c.delete("/peers/tata").status == 200
    r = c.delete("/peers/tata")
    assert (r.status, r.json()["Details"]) == (404, "Unknown Orthanc peer: tata")


def test_peers_in_database_survive_a_restart(make_server: Any, tmp_path: Path) -> None:
    config = {
        "StorageDirectory": str(tmp_path / "db"),
        "OrthancPeersInDatabase": True,
        "OrthancPeers": {"ignored": ["http://h/"]},  # Orthanc reads the database's instead
    }
    first = make_server(config)
    c = first.client()
    assert c.get("/peers").json() == []
    assert c.put("/peers/kept", {"Url": "http://h:1", "HttpHeaders": {"X": "y"}}).status == 200
    first.stop()
    again = make_server(config).client()
    assert again.get("/peers").json() == ["kept"]
    assert again.get("/peers/kept/configuration").json()["HttpHeaders"] == ["X"]


def test_lua_send_to_peer_autorouting(make_server: Any, tmp_path: Path) -> None:
    b = make_server(AUTH)
    script = tmp_path / "route.lua"
    script.write_text("function OnStoredInstance(instanceId) Delete(SendToPeer(instanceId, 'b')) end\n")
    a = make_server(
        {"LuaScripts": [str(script)], "OrthancPeers": {"b": [f"http://127.0.0.1:{b.port}/", "alice", "secret"]}}
    )
    ca, cb = a.client(), b.client(("alice", "secret"))
    for i in range(3):
        ca.upload(dicomgen.make(patient=7, instance=i))
    deadline = time.monotonic() + 15
    while len(cb.get("/instances").json()) < 3 or ca.get("/instances").json():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_peer_receives_gzip_from_us(make_server: Any) -> None:
    """Our /instances takes a gzipped body (Content-Encoding), as Orthanc >= 1.6.0 does."""
    c = make_server().client()
    data = dicomgen.make(patient=8, instance=0)
    r = c.post("/instances", gzip.compress(data), headers={"Content-Encoding": "gzip"})
    assert r.status == 200 and r.json()["Status"] == "Success"


@pytest.mark.skipif(not os.path.exists(ORTHANC), reason="the real Orthanc is not installed")
def test_with_the_real_orthanc_both_ways(make_server: Any, tmp_path: Path) -> None:
    http, dicom = free_ports(2)
    ours = make_server(AUTH)
    config = {
        "HttpPort": http,
        "DicomPort": dicom,
        "RemoteAccessAllowed": True,
        "AuthenticationEnabled": False,
        "OrthancPeers": {"py": [f"http://127.0.0.1:{ours.port}/", "alice", "secret"]},
    }
    with real_orthanc(tmp_path, config) as url:
        a = make_server({"OrthancPeers": {"orthanc": [url]}})
        ca, cb = a.client(), ours.client(("alice", "secret"))
        for i in range(5):
            ca.upload(dicomgen.make(patient=9, instance=i))
        study = ca.get("/studies").json()[0]
        # we store to Orthanc, synchronous, then compressed and transcoded as a job
        assert ca.post("/peers/orthanc/store", [study]).json()["InstancesCount"] == 5
        job = wait_job(
            ca,
            ca.post(
                "/peers/orthanc/store",
                {"Resources": [study], "Compress": True, "Transcode": IMPLICIT, "Asynchronous": True},
            ).json()["ID"],
        )
        assert job["State"] == "Success", (job, (tmp_path / "orthanc.log").read_text()[-3000:])
        assert ca.get("/peers/orthanc/system").json()["Version"] == "1.10.1"
        from urllib.request import Request, urlopen

        def orthanc(path: str, body: bytes | None = None) -> Any:
            import json

            return json.loads(urlopen(Request(url + path, data=body, method="POST" if body else "GET")).read())

        assert len(orthanc("/instances")) == 5
        # Orthanc stores to us through its own /peers (gzip too)
        answer = orthanc("/peers/py/store", f'{{"Resources": ["{study}"], "Compress": true}}'.encode())
        assert answer["InstancesCount"] == 5 and answer["FailedInstancesCount"] == 0
        assert len(cb.get("/instances").json()) == 5
        assert orthanc("/peers/py/system")["Name"] == "MyOrthanc"


class _FlakyPeer:
    """A minimal HTTP peer: POST /instances answers 500 until `accept` is set, then 200 with
    what it received kept (for the resubmit of a failed job)."""

    def __init__(self, accept: bool = False, delay: float = 0.0) -> None:
        import http.server
        import threading

        owner = self
        self.accept = accept
        self.delay = delay
        self.received: list[bytes] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                time.sleep(owner.delay)
                ok = owner.accept
                if ok:
                    owner.received.append(body)
                try:
                    self.send_response(200 if ok else 500)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                except OSError:  # the sender stopped meanwhile
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_failed_job_resubmitted_from_its_spec(make_server: Any) -> None:
    """The job type is registered: a resubmitted job is rebuilt from its spec (as after a
    restart with SaveJobs) and sends everything again."""
    peer = _FlakyPeer()
    try:
        c = make_server({"OrthancPeers": {"flaky": [f"http://127.0.0.1:{peer.port}/"]}}).client()
        for i in range(3):
            c.upload(dicomgen.make(patient=10, instance=i, rows=8, columns=8))
        study = c.get("/studies").json()[0]
        job_id = c.post("/peers/flaky/store", {"Resources": [study], "Asynchronous": True}).json()["ID"]
        job = wait_job(c, job_id)
        assert (job["State"], job["ErrorCode"]) == ("Failure", 9)
        peer.accept = True
        assert c.post(f"/jobs/{job_id}/resubmit", {}).status == 200
        job = wait_job(c, job_id)
        assert job["State"] == "Success" and job["Content"]["InstancesCount"] == 3
        # an upload of the failed run still in flight when `accept` flipped may be kept too:
        # what matters is that the three instances arrived, whatever the duplicates
        distinct = set(peer.received)
        assert len(distinct) == 3
        assert int(job["Content"]["Size"]) == sum(len(b) for b in distinct)
    finally:
        peer.stop()


def test_timeouts_and_proxy(make_server: Any) -> None:
    """A peer that never answers: the peer's Timeout, else HttpTimeout, then Orthanc's
    'Timeout was reached'; HttpProxy is where requests go (here a proxy that refuses)."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
    try:
        c = make_server({"HttpTimeout": 1, "OrthancPeers": {"p": {"Url": url, "Timeout": 1}, "q": [url]}}).client()
        for name in ("p", "q"):
            started = time.monotonic()
            r = c.get(f"/peers/{name}/system")
            assert (r.status, r.json()["Details"]) == (500, "libCURL error: Timeout was reached")
            assert time.monotonic() - started < 5
    finally:
        silent.close()
    target = make_server()
    c = make_server(
        {
            "HttpProxy": f"127.0.0.1:{dead_port()}",
            "OrthancPeers": {"b": [f"http://127.0.0.1:{target.port}/"]},
        }
    ).client()
    assert c.get("/peers/b/system").json()["Details"] == "libCURL error: Couldn't connect to server"


@pytest.mark.skipif(not os.path.exists("/usr/bin/openssl"), reason="openssl is not installed")
def test_https_peer_verification(make_server: Any, tmp_path: Path) -> None:
    """An HTTPS peer with a self-signed certificate: refused as Orthanc refuses it (curl's
    words), taken with HttpsVerifyPeers false, or with the certificate as HttpsCACertificates."""
    import http.server
    import json
    import ssl
    import subprocess
    import threading

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"Name": "tls"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    peers = {"OrthancPeers": {"tls": {"Url": f"https://127.0.0.1:{server.server_address[1]}/"}}}
    try:
        r = make_server(peers).client().get("/peers/tls/system")
        assert r.json()["Details"] == "libCURL error: SSL peer certificate or SSH remote key was not OK"
        for extra in ({"HttpsVerifyPeers": False}, {"HttpsCACertificates": str(cert)}):
            assert make_server({**peers, **extra}).client().get("/peers/tls/system").json() == {"Name": "tls"}
    finally:
        server.shutdown()
        server.server_close()


def test_pause_resume_and_cancel_between_instances(make_server: Any) -> None:
    """A job stops at its checkpoints (one per instance): paused, it sends no more until
    resumed; cancelled, it ends as CanceledJob with the rest not sent."""
    peer = _FlakyPeer(accept=True, delay=0.05)
    try:
        c = make_server({"OrthancPeers": {"slow": [f"http://127.0.0.1:{peer.port}/"]}}).client()
        for i in range(30):
            c.upload(dicomgen.make(patient=11, instance=i, rows=8, columns=8))
        study = c.get("/studies").json()[0]
        body = {"Resources": [study], "Asynchronous": True}
        job_id = c.post("/peers/slow/store", body).json()["ID"]
        deadline = time.monotonic() + 10
        while not peer.received:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert c.post(f"/jobs/{job_id}/pause", {}).status == 200
        while c.get(f"/jobs/{job_id}").json()["State"] != "Paused":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.15)  # the uploads in flight end; no new one starts
        held = len(peer.received)
        time.sleep(0.2)
        assert len(peer.received) == held < 30
        assert c.post(f"/jobs/{job_id}/resume", {}).status == 200
        assert wait_job(c, job_id)["State"] == "Success" and len(peer.received) == 30

        peer.received.clear()
        job_id = c.post("/peers/slow/store", body).json()["ID"]
        while not peer.received:
            assert time.monotonic() < deadline + 10
            time.sleep(0.01)
        assert c.post(f"/jobs/{job_id}/cancel", {}).status == 200
        job = wait_job(c, job_id)
        assert (job["State"], job["ErrorCode"]) == ("Failure", 37)  # CanceledJob
        time.sleep(0.2)
        assert len(peer.received) < 30
    finally:
        peer.stop()


def test_job_taken_up_after_a_restart(make_server: Any, tmp_path: Path) -> None:
    """SaveJobs: a peer store cut by a stop is saved with its spec and sent again after the
    restart (the job type is registered before saved jobs are taken up)."""
    peer = _FlakyPeer(accept=True, delay=0.1)
    try:
        config = {
            "StorageDirectory": str(tmp_path / "db"),
            "OrthancPeers": {"slow": [f"http://127.0.0.1:{peer.port}/"]},
        }
        first = make_server(config)
        c = first.client()
        for i in range(40):
            c.upload(dicomgen.make(patient=12, instance=i, rows=8, columns=8))
        study = c.get("/studies").json()[0]
        job_id = c.post("/peers/slow/store", {"Resources": [study], "Asynchronous": True}).json()["ID"]
        deadline = time.monotonic() + 10
        while not peer.received:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        first.stop()
        assert len(peer.received) < 40
        peer.received.clear()
        c = make_server(config).client()
        job = wait_job(c, job_id)
        assert job["State"] == "Success" and job["Type"] == "OrthancPeerStore"
        # all sent again (uploads in flight at the stop may land too)
        assert job["Content"]["InstancesCount"] == 40 and len(set(peer.received)) == 40
    finally:
        peer.stop()
