"""The DICOMweb client (/dicom-web/servers), as Orthanc's DICOMweb plugin 1.20 offers it: the
registry of remote servers, STOW-RS to them, WADO-RS retrieve from them into the local store,
proxied GET and QIDO-RS, remote DELETE. Remotes are real servers: a second orthanc_py, and the
real Orthanc 1.10.1 with its DICOMweb plugin."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dicomgen
import pydicom
import pytest

from tests.conftest import free_ports

PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def _upload(client: Any, patient: int, series: int, count: int) -> list[dict[str, Any]]:
    return [
        client.upload(dicomgen.make(patient=patient, series=series, instance=i, rows=8, columns=8))
        for i in range(count)
    ]


def _study_uid(client: Any, study_id: str) -> str:
    return client.get(f"/studies/{study_id}").json()["MainDicomTags"]["StudyInstanceUID"]


def _series_uid(client: Any, series_id: str) -> str:
    return client.get(f"/series/{series_id}").json()["MainDicomTags"]["SeriesInstanceUID"]


def _wait_job(client: Any, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        job = client.get(f"/jobs/{job_id}").json()
        if job["State"] in ("Success", "Failure") or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def test_registry_from_configuration_put_delete(make_server):
    srv = make_server(
        {
            "DicomWeb": {
                "Servers": {
                    "simple": ["http://127.0.0.1:1/dicom-web"],
                    "creds": ["http://127.0.0.1:1/dicom-web/", "alice", "secret"],
                    "full": {
                        "Url": "http://127.0.0.1:1/dicom-web",
                        "Username": "bob",
                        "Password": "pw",
                        "HttpHeaders": {"X-Token": "abc"},
                        "HasDelete": True,
                        "ChunkedTransfers": False,
                        "Timeout": 5,
                    },
                }
            }
        }
    )
    c = srv.client()
    assert c.get("/dicom-web/servers").json() == ["creds", "full", "simple"]
    expanded = c.get("/dicom-web/servers?expand").json()
    assert expanded["simple"] == {
        "HttpHeaders": [],
        "Pkcs11": False,
        "Timeout": 0,
        "Url": "http://127.0.0.1:1/dicom-web/",
    }
    assert expanded["creds"]["Username"] == "alice" and expanded["creds"]["Password"] is None
    full = expanded["full"]
    assert full["HttpHeaders"] == ["X-Token"] and full["Password"] is None and full["Timeout"] == 5
    assert full["HasDelete"] == "1" and full["ChunkedTransfers"] == "0"  # user properties as strings
    assert c.get("/dicom-web/servers/simple").json() == ["get", "retrieve", "stow", "wado", "qido"]
    assert c.get("/dicom-web/servers/full").json()[-1] == "delete"

    r = c.put("/dicom-web/servers/hello", {"Url": "http://localhost:8042/dicom-web/", "UserProperty": "Test"})
    assert r.status == 200 and r.json() == {}
    assert c.get("/dicom-web/servers").json() == ["creds", "full", "hello", "simple"]
    assert c.get("/dicom-web/servers?expand").json()["hello"]["UserProperty"] == "Test"
    assert c.put("/dicom-web/servers/hello", ["http://other/dicom-web/"]).status == 200  # replaced
    assert c.get("/dicom-web/servers?expand").json()["hello"]["Url"] == "http://other/dicom-web/"
    assert c.delete("/dicom-web/servers/hello").json() == {}
    assert "hello" not in c.get("/dicom-web/servers").json()

    # errors, as the plugin answers them
    missing = c.get("/dicom-web/servers/nope")
    assert missing.status == 404 and missing.json()["Details"] == "Inexistent server: nope"
    gone = c.delete("/dicom-web/servers/nope")
    assert gone.status == 400 and gone.json()["Details"] == "Unknown DICOMweb server: nope"
    for bad in ({"Username": "x"}, {"Url": "ftp://x/"}, {"Url": "http://x/", "Prop": [1]}, ["a", "b"], "x"):
        assert c.put("/dicom-web/servers/bad", bad).status == 400, bad
    assert c.put("/dicom-web/servers/bad", b"{not json").status == 400
    assert "bad" not in c.get("/dicom-web/servers").json()
    c.put("/dicom-web/servers/p11", {"Url": "http://127.0.0.1:1/dicom-web/", "Pkcs11": True})
    p11 = c.post("/dicom-web/servers/p11/get", {"Uri": "/studies"})  # Debian's Orthanc has no PKCS#11
    assert p11.status == 500 and p11.json()["OrthancStatus"] == -1
    assert c.post("/dicom-web/servers/simple").status == 405
    assert c.get("/dicom-web/servers/simple/retrieve").json()["OrthancStatus"] == 3  # ParameterOutOfRange


def test_servers_in_database_survive_a_restart(make_server, tmp_path):
    config = {"StorageDirectory": str(tmp_path / "shared"), "DicomWeb": {"ServersInDatabase": True}}
    first = make_server(config)
    c = first.client()
    assert c.get("/dicom-web/servers").json() == []
    c.put("/dicom-web/servers/kept", {"Url": "http://127.0.0.1:1/dicom-web/", "Username": "u", "Password": "p"})
    first.stop()
    again = make_server(config).client()
    assert again.get("/dicom-web/servers?expand").json()["kept"]["Username"] == "u"


def test_bad_configuration_stops_the_start(tmp_path):
    """A malformed DicomWeb.Servers stops the start, with the plugin's log line."""
    import json
    import subprocess
    import sys

    http, dicom = free_ports(2)
    config = {
        "StorageDirectory": str(tmp_path / "s"),
        "HttpPort": http,
        "DicomPort": dicom,
        "DicomWeb": {"Servers": {"x": {"Username": "u"}}},
    }
    (tmp_path / "c.json").write_text(json.dumps(config))
    done = subprocess.run(
        [sys.executable, "-m", "orthanc_py", str(tmp_path / "c.json")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert 'parsing the "DicomWeb.Servers" section' in done.stderr + done.stdout


@pytest.fixture
def pair(make_server) -> tuple[Any, Any]:
    """`local` knows `remote` (a second orthanc_py with credentials) as "remote"."""
    remote = make_server({"AuthenticationEnabled": True, "RegisteredUsers": {"alice": "secret"}})
    url = f"http://127.0.0.1:{remote.port}/dicom-web"
    local = make_server(
        {
            "DicomWeb": {
                "Servers": {
                    "remote": [url, "alice", "secret"],
                    "wrong": [url, "alice", "nope"],
                    "whole": {"Url": url, "Username": "alice", "Password": "secret", "ChunkedTransfers": False},
                    "dead": ["http://127.0.0.1:1/dicom-web/"],
                }
            }
        }
    )
    return local.client(), remote.client(auth=("alice", "secret"))


def test_stow_to_another_orthanc_py(pair):
    local, remote = pair
    a = _upload(local, 1, 0, 2)
    b = _upload(local, 1, 1, 1)
    r = local.post("/dicom-web/servers/remote/stow", {"Resources": [a[0]["ParentStudy"]]})
    assert r.status == 200, r.body
    answer = r.json()
    # the Content of plugin 1.20: the server, the study asked for and each instance sent
    resources = answer.pop("Resources")
    assert answer == {"InstancesCount": "3", "NetworkSizeMB": "0", "Server": "remote"}
    assert resources.pop("Studies") == [a[0]["ParentStudy"]]
    assert sorted(resources.pop("Instances")) == sorted(x["ID"] for x in a + b) and resources == {}
    assert sorted(remote.get("/instances").json()) == sorted(x["ID"] for x in a + b)

    # one instance, whole body (ChunkedTransfers false), asynchronous: a job of the plugin's type
    remote.delete(f"/instances/{a[0]['ID']}")
    r = local.post("/dicom-web/servers/whole/stow", {"Resources": [a[0]["ID"]], "Asynchronous": True})
    answer = r.json()
    assert answer["Path"] == f".././../jobs/{answer['ID']}"
    job = _wait_job(local, answer["ID"])
    assert job["State"] == "Success" and job["Type"] == "DicomWebStowClient"
    assert job["Content"]["InstancesCount"] == "1"
    assert job["Content"]["Resources"] == {"Instances": [a[0]["ID"]]} and job["Content"]["Server"] == "whole"
    assert a[0]["ID"] in remote.get("/instances").json()

    # resources are checked before any job starts
    assert local.post("/dicom-web/servers/remote/stow", {"Resources": ["nope"]}).status == 404
    assert local.post("/dicom-web/servers/remote/stow", {"Resources": [3]}).status == 400
    assert local.post("/dicom-web/servers/remote/stow", {"Resource": []}).status == 400
    jobs = len(local.get("/jobs").json())
    for bad in ({"Synchronous": "yes"}, {"Priority": "high"}):
        assert local.post("/dicom-web/servers/remote/stow", {"Resources": [], **bad}).status == 400
    assert len(local.get("/jobs").json()) == jobs  # refused before any job was submitted

    # a failing stow: the job fails with the plugin engine's error, the cause in its Content
    for name in ("nope", "dead", "wrong"):
        r = local.post(f"/dicom-web/servers/{name}/stow", {"Resources": [a[0]["ID"]]})
        assert r.status == 500 and r.json()["OrthancStatus"] == 1, name
    failed = [j for j in local.get("/jobs?expand").json() if j["State"] == "Failure"]
    assert sorted(j["Content"]["FunctionErrorCode"] for j in failed) == [7, 9, 9]


def test_retrieve_from_another_orthanc_py(pair):
    local, remote = pair
    a = _upload(remote, 2, 0, 2)
    b = _upload(remote, 2, 1, 1)
    study = _study_uid(remote, a[0]["ParentStudy"])
    series_a = _series_uid(remote, a[0]["ParentSeries"])
    series_b = _series_uid(remote, b[0]["ParentSeries"])

    r = local.post("/dicom-web/servers/remote/retrieve", {"Resources": [{"Study": study}]})
    assert r.status == 200, r.body
    assert r.json() == {"NetworkUsageMB": "0", "ReceivedInstancesCount": "3"}
    assert sorted(local.get("/instances").json()) == sorted(x["ID"] for x in a + b)
    origin = local.get(f"/instances/{a[0]['ID']}/metadata/Origin")
    assert origin.body == b"Plugins"

    both = [{"Study": study, "Series": series_a}, {"Study": study, "Series": series_b}]
    assert local.post("/dicom-web/servers/remote/retrieve", {"Resources": both}).json()["ReceivedInstancesCount"] == "3"
    sop = pydicom.dcmread(io.BytesIO(remote.get(f"/instances/{b[0]['ID']}/file").body)).SOPInstanceUID
    one = {"Study": study, "Series": series_b, "Instance": sop}
    assert (
        local.post("/dicom-web/servers/remote/retrieve", {"Resources": [one]}).json()["ReceivedInstancesCount"] == "1"
    )

    # the plugin's errors
    missing_study = local.post("/dicom-web/servers/remote/retrieve", {"Resources": [{"Series": series_a}]})
    assert missing_study.status == 400 and missing_study.json()["Details"] == 'Missing "Study" field in the body'
    no_series = local.post("/dicom-web/servers/remote/retrieve", {"Resources": [{"Study": study, "Instance": sop}]})
    assert no_series.status == 400
    assert local.post("/dicom-web/servers/remote/retrieve", {}).status == 400
    nope = local.post("/dicom-web/servers/remote/retrieve", {"Resources": [{"Study": "1.2.3.4"}]})
    assert nope.status == 500 and nope.json()["OrthancStatus"] == 1
    unknown = local.post("/dicom-web/servers/nope/retrieve", {"Resources": [{"Study": study}]})
    assert unknown.status == 500
    failed = [j for j in local.get("/jobs?expand").json() if j["State"] == "Failure"]
    assert {j["Type"] for j in failed} == {"DicomWebWadoRetrieveClient"}
    assert sorted(j["Content"]["FunctionErrorCode"] for j in failed) == [7, 9]
    assert "Inexistent server: nope" in [j["Content"].get("FunctionErrorDetails") for j in failed]

    # answers that are no multipart of application/dicom parts are refused, as the plugin does
    xml = 'multipart/related; type="application/dicom+xml"'
    for extra, detail in (
        ({"HttpHeaders": {"Accept": "application/dicom+json"}}, 'answers with a "application/dicom+json" Content-Type'),
        ({"HttpHeaders": {"Accept": xml}}, "but received: application/dicom+xml"),
    ):
        body = {"Uri": f"/studies/{study}/metadata", "Synchronous": True, **extra}
        r = local.post("/dicom-web/servers/remote/wado", body)
        assert r.status == 500 and r.json()["OrthancStatus"] == 1
        failed = [j for j in local.get("/jobs?expand").json() if j["State"] == "Failure"]
        assert any(detail in j["Content"].get("FunctionErrorDetails", "") for j in failed), detail

    # /wado: one URI, asynchronous by default
    for x in a + b:
        local.delete(f"/instances/{x['ID']}")
    r = local.post("/dicom-web/servers/remote/wado", {"Uri": f"/studies/{study}/series/{series_a}"})
    job = _wait_job(local, r.json()["ID"])
    assert job["State"] == "Success" and job["Content"]["ReceivedInstancesCount"] == "2"
    assert len(local.get("/instances").json()) == 2


def test_get_and_qido_through_another_orthanc_py(pair):
    local, remote = pair
    a = _upload(remote, 3, 0, 1)
    study = _study_uid(remote, a[0]["ParentStudy"])

    r = local.post("/dicom-web/servers/remote/get", {"Uri": "/studies", "Arguments": {"PatientID": "PID00003"}})
    assert r.status == 200 and r.headers["content-type"] == "application/dicom+json"
    assert [s["0020000D"]["Value"][0] for s in r.json()] == [study]
    none = local.post("/dicom-web/servers/remote/get", {"Uri": "/studies", "Arguments": {"PatientID": "nobody"}})
    assert none.json() == []
    xml = local.post(
        "/dicom-web/servers/remote/get", {"Uri": "/studies", "HttpHeaders": {"Accept": "application/dicom+xml"}}
    )
    assert xml.headers["content-type"].startswith("multipart/related") and b"NativeDicomModel" in xml.body

    q = local.post("/dicom-web/servers/remote/qido", {"Uri": "/studies"}).json()
    assert q[0]["00100020"] == {"Element": 0x20, "Group": 0x10, "Name": "PatientID", "Value": "PID00003", "vr": "LO"}
    assert q[0]["00100010"]["Value"] == "Patient^00003"  # a person name's Alphabetic

    # errors: as the plugin (and Orthanc's HTTP client) reports them
    assert local.post("/dicom-web/servers/remote/get", {}).status == 400
    explicit = local.post("/dicom-web/servers/remote/get", {"Uri": "/studies?PatientID=x"})
    assert explicit.status == 400 and "explicit" in explicit.json()["Details"]
    assert local.post("/dicom-web/servers/remote/get", {"Uri": "/nope"}).json()["OrthancStatus"] == 17
    assert local.post("/dicom-web/servers/wrong/get", {"Uri": "/studies"}).json()["OrthancStatus"] == 29
    dead = local.post("/dicom-web/servers/dead/get", {"Uri": "/studies"})
    assert dead.status == 500 and dead.json()["OrthancStatus"] == 9
    assert local.post("/dicom-web/servers/nope/get", {"Uri": "/studies"}).status == 404
    assert local.get("/dicom-web/servers/remote/get").status == 405


# --- the real Orthanc 1.10.1 with its DICOMweb plugin as the remote --------------------------------


@pytest.fixture(scope="module")
def real_orthanc(tmp_path_factory) -> Iterator[str]:
    if not (os.path.exists("/usr/sbin/Orthanc") and os.path.exists(PLUGIN)):
        pytest.skip("Orthanc with its DICOMweb plugin is not installed")
    from tests.conformance.real_orthanc import real_orthanc as start

    http, dicom = free_ports(2)
    config = {"HttpPort": http, "DicomPort": dicom, "Plugins": [PLUGIN], "DicomWeb": {"Enable": True}}
    with start(Path(tmp_path_factory.mktemp("orthanc")), config) as url:
        yield url


def test_with_the_real_orthanc_as_remote(make_server, real_orthanc):
    from tests.conftest import Client

    port = int(real_orthanc.rsplit(":", 1)[1])
    orthanc = Client("127.0.0.1", port)
    try:
        _against_real_orthanc(make_server, real_orthanc, orthanc)
    finally:
        orthanc.close()


def _against_real_orthanc(make_server: Any, real_orthanc: str, orthanc: Any) -> None:
    for pid in orthanc.get("/patients").json():
        orthanc.delete(f"/patients/{pid}")
    servers = {"orthanc": {"Url": real_orthanc + "/dicom-web/", "HasDelete": True}}
    local = make_server({"DicomWeb": {"Servers": servers}}).client()
    a = _upload(local, 4, 0, 2)
    study = _study_uid(local, a[0]["ParentStudy"])

    # stow to it
    r = local.post("/dicom-web/servers/orthanc/stow", {"Resources": [a[0]["ParentPatient"]]})
    answer = r.json()
    assert answer.pop("Resources")["Patients"] == [a[0]["ParentPatient"]]
    assert answer == {"InstancesCount": "2", "NetworkSizeMB": "0", "Server": "orthanc"}
    assert sorted(orthanc.get("/instances").json()) == sorted(x["ID"] for x in a)

    # get and qido through it
    studies = local.post("/dicom-web/servers/orthanc/get", {"Uri": "/studies"}).json()
    assert [s["0020000D"]["Value"][0] for s in studies] == [study]
    q = local.post("/dicom-web/servers/orthanc/qido", {"Uri": f"/studies/{study}/series"}).json()
    assert q[0]["00080060"]["Value"] == "CT" and q[0]["00080060"]["Name"] == "Modality"

    # retrieve from it (its WADO-RS multipart answer, universal transfer syntax asked)
    local.delete(f"/patients/{a[0]['ParentPatient']}")
    r = local.post("/dicom-web/servers/orthanc/retrieve", {"Resources": [{"Study": study}]})
    assert r.json()["ReceivedInstancesCount"] == "2"
    assert sorted(local.get("/instances").json()) == sorted(x["ID"] for x in a)
    nope = local.post("/dicom-web/servers/orthanc/retrieve", {"Resources": [{"Study": "1.2.3"}]})
    assert nope.status == 500 and nope.json()["OrthancStatus"] == 1

    # delete on it (HasDelete): the plugin's DICOMweb server has no DELETE (405), which Orthanc's
    # HTTP client reports as a network protocol error; a server without HasDelete refuses
    r = local.post("/dicom-web/servers/orthanc/delete", {"Level": "Study", "StudyInstanceUID": study})
    assert r.status == 500 and r.json()["OrthancStatus"] == 9
    patient = local.post("/dicom-web/servers/orthanc/delete", {"Level": "Patient", "StudyInstanceUID": study})
    assert patient.json()["OrthancStatus"] == 3
    local.put("/dicom-web/servers/nodelete", [real_orthanc + "/dicom-web/"])
    refused = local.post("/dicom-web/servers/nodelete/delete", {"Level": "Study", "StudyInstanceUID": study})
    assert refused.status == 400 and "HasDelete" in refused.json()["Details"]
    assert local.post("/dicom-web/servers/nope/stow", {"Resources": [a[0]["ID"]]}).status == 500


def test_http_proxy_carries_the_calls(make_server):
    """HttpProxy: calls go to the proxy (here an orthanc_py, which answers the proxied request
    with a 404), so a server whose host cannot be resolved is still reached over HTTP."""
    remote = make_server()
    servers = {"DicomWeb": {"Servers": {"far": ["http://unreachable.invalid:9/dicom-web/"]}}}
    direct = make_server(servers).client()
    assert direct.post("/dicom-web/servers/far/get", {"Uri": "/studies"}).json()["OrthancStatus"] == 9
    proxied = make_server({"HttpProxy": f"127.0.0.1:{remote.port}", **servers}).client()
    r = proxied.post("/dicom-web/servers/far/get", {"Uri": "/studies"})
    assert r.status == 404 and r.json()["OrthancStatus"] == 17  # an HTTP answer came back
