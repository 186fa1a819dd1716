"""/modalities: registry, C-ECHO and C-STORE SCU (association pool), /exports, auto-routing."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import time

import dicomgen
import pydicom
import pytest
from pynetdicom import AE, AllStoragePresentationContexts, evt

from orthanc_py.model.parsing import _dataset_start
from tests.conftest import free_port


@pytest.fixture
def server_with_peer(make_server, scp):
    return make_server(
        {
            "DicomModalities": {
                "peer": ["STORESCP", "127.0.0.1", scp.port],
                "other": {"AET": "X", "Host": "127.0.0.1", "Port": 1, "AllowMove": False},
            },
            "LogExportedResources": True,
            "DicomScuTimeout": 3,
            "DicomAssociationCloseDelay": 2,
        }
    )


def test_registry(server_with_peer, scp):
    c = server_with_peer.client()
    assert c.get("/modalities").json() == ["other", "peer"]
    expanded = c.get("/modalities?expand").json()
    assert expanded["peer"]["AET"] == "STORESCP" and expanded["peer"]["Port"] == scp.port
    assert expanded["other"]["AllowMove"] is False and expanded["other"]["AllowEcho"] is True
    assert c.get("/modalities/peer/configuration").json()["Host"] == "127.0.0.1"
    assert c.put("/modalities/new", ["NEWAET", "localhost", 104]).status == 200
    assert c.get("/modalities/new/configuration").json()["AET"] == "NEWAET"
    assert c.put("/modalities/new2", {"AET": "B", "Host": "h", "Port": 105, "AllowStore": False}).status == 200
    assert c.get("/modalities/new2/configuration").json()["AllowStore"] is False
    assert c.delete("/modalities/new").status == 200
    assert c.get("/modalities/new/configuration").status == 404
    assert c.put("/modalities/bad", {"AET": "B"}).status == 400


def test_echo(server_with_peer):
    c = server_with_peer.client()
    assert c.post("/modalities/peer/echo", "").status == 200
    t = time.monotonic()
    r = c.post("/modalities/other/echo", "")
    assert r.status == 500 and r.json()["OrthancStatus"] == 9
    assert time.monotonic() - t < 10
    assert (
        c.post(
            "/tools/dicom-echo",
            {"AET": "STORESCP", "Host": "127.0.0.1", "Port": server_with_peer.settings.dicom_modalities["peer"][2]},
        ).status
        == 200
    )
    closed = c.post("/tools/dicom-echo", {"AET": "NOBODY", "Host": "127.0.0.1", "Port": free_port(), "Timeout": 2})
    assert closed.status == 500


def test_store_study_and_exports(server_with_peer, scp):
    c = server_with_peer.client()
    files = [dicomgen.make(patient=5, instance=i, rows=32, columns=32) for i in range(4)]
    ups = [c.upload(f) for f in files]
    study = ups[0]["ParentStudy"]
    r = c.post("/modalities/peer/store", {"Resources": [study], "Synchronous": True})
    assert r.status == 200, r.body
    body = r.json()
    assert body["InstancesCount"] == 4 and body["FailedInstancesCount"] == 0
    assert body["RemoteAet"] == "STORESCP" and body["ParentResources"] == [study]
    assert body["Resources"] == [{"ID": study, "Type": "Study"}]  # Orthanc 1.12.10
    assert len(scp.received) == 4
    for f in files:
        sop = pydicom.dcmread(io.BytesIO(f)).SOPInstanceUID
        got = scp.received[sop]
        assert got[_dataset_start(got)[0] :] == f[_dataset_start(f)[0] :]  # sent as stored
    exports = c.get("/exports").json()["Exports"]
    assert exports[0]["ID"] == study and exports[0]["RemoteModality"] == "peer"
    assert exports[0]["StudyInstanceUID"] == dicomgen.uid("study", 5, 0)
    # plain-text body with one ID, and a JSON list
    assert c.post("/modalities/peer/store", ups[0]["ID"]).status == 200
    assert c.post("/modalities/peer/store", [ups[1]["ID"]]).status == 200
    assert c.post("/modalities/nope/store", [ups[1]["ID"]]).status == 404
    assert c.post("/modalities/peer/store", ["unknown"]).status == 400  # not an Orthanc identifier
    assert c.post("/modalities/peer/store", ["0" * 8 + "-00000000" * 4]).status == 404  # no such resource


def test_auto_routing_reuses_one_association(server_with_peer, scp):
    """Poll /changes and forward each new instance as it arrives (Orthanc's auto-routing recipe)."""
    c = server_with_peer.client()
    files = [dicomgen.make(patient=6, instance=i, rows=32, columns=32) for i in range(12)]
    since = 0
    forwarded = 0
    for f in files:
        c.upload(f)
        page = c.get(f"/changes?since={since}&limit=100").json()
        for change in page["Changes"]:
            if change["ChangeType"] == "NewInstance":
                assert c.post("/modalities/peer/store", change["ID"]).status == 200
                forwarded += 1
        since = page["Last"]
    assert forwarded == 12 and len(scp.received) == 12
    assert scp.associations == 1  # the pool kept one association open


@pytest.mark.skipif(not os.path.exists("/usr/bin/storescp"), reason="DCMTK not installed (apt-get install dcmtk)")
def test_store_and_auto_routing_to_dcmtk_storescp(make_server, tmp_path):
    port = free_port()
    out = tmp_path / "received"
    out.mkdir()
    proc = subprocess.Popen(
        ["/usr/bin/storescp", "-aet", "DCMTKSCP", "-od", str(out), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        srv = make_server({"DicomModalities": {"dcmtk": ["DCMTKSCP", "127.0.0.1", port]}})
        c = srv.client()
        files = [dicomgen.make(patient=7, instance=i, rows=32, columns=32) for i in range(5)]
        ids = [c.upload(f)["ID"] for f in files]
        r = c.post("/modalities/dcmtk/store", {"Resources": ids[:2]})
        assert r.status == 200 and r.json()["InstancesCount"] == 2
        # auto-routing: follow /changes and forward each remaining new instance on its own
        since = 0
        while True:
            page = c.get(f"/changes?since={since}&limit=2").json()
            for change in page["Changes"]:
                if change["ChangeType"] == "NewInstance" and change["ID"] not in ids[:2]:
                    assert c.post("/modalities/dcmtk/store", change["ID"]).status == 200
            since = page["Last"]
            if page["Done"]:
                break
        stored = sorted(out.iterdir())
        assert len(stored) == 5
        originals = {pydicom.dcmread(io.BytesIO(f)).SOPInstanceUID: f for f in files}
        for path in stored:
            got = path.read_bytes()
            f = originals[pydicom.dcmread(path).SOPInstanceUID]
            assert got[_dataset_start(got)[0] :] == f[_dataset_start(f)[0] :]
    finally:
        proc.terminate()
        proc.wait(10)


def test_asynchronous_store_runs_as_a_job(server_with_peer, scp):
    c = server_with_peer.client()
    ids = [c.upload(dicomgen.make(patient=8, instance=i, rows=16, columns=16))["ID"] for i in range(3)]
    r = c.post("/modalities/peer/store", {"Resources": ids, "Asynchronous": True})
    assert r.status == 200
    job_id = r.json()["ID"]
    assert r.json()["Path"] == f"/jobs/{job_id}"
    deadline = time.monotonic() + 20
    job = {}
    while time.monotonic() < deadline:
        job = c.get(f"/jobs/{job_id}").json()
        if job["State"] in ("Success", "Failure"):
            break
        time.sleep(0.05)
    assert job["State"] == "Success" and job["Progress"] == 100 and job["Type"] == "DicomModalityStore"
    assert job["Content"]["InstancesCount"] == 3
    assert job_id in c.get("/jobs").json()
    assert len(scp.received) == 3
    assert c.get("/jobs/unknown").status == 404


def test_store_transcodes_when_the_peer_wants_implicit_vr(make_server):
    received: dict[str, str] = {}

    def on_store(event) -> int:
        received[str(event.request.AffectedSOPInstanceUID)] = str(event.context.transfer_syntax)
        return 0

    ae = AE(ae_title="IMPLICIT")
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, ["1.2.840.10008.1.2"])
    scp_server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        srv = make_server({"DicomModalities": {"old": ["IMPLICIT", "127.0.0.1", scp_server.server_address[1]]}})
        c = srv.client()
        iid = c.upload(dicomgen.make(patient=9, rows=16, columns=16))["ID"]  # stored explicit VR LE
        r = c.post("/modalities/old/store", iid)
        assert r.status == 200 and r.json()["FailedInstancesCount"] == 0
        assert list(received.values()) == ["1.2.840.10008.1.2"]
    finally:
        scp_server.shutdown()


def test_modalities_in_database_survive_a_restart(make_server, tmp_path):
    """DicomModalitiesInDatabase: the configuration's modalities are ignored, and those PUT
    through the REST API are kept in the index (as Orthanc)."""
    config = {
        "StorageDirectory": str(tmp_path / "db"),
        "DicomModalitiesInDatabase": True,
        "DicomModalities": {"ignored": ["IGNORED", "127.0.0.1", 104]},
    }
    first = make_server(config)
    c = first.client()
    assert c.get("/modalities").json() == []
    entry = {"AET": "KEPT", "Host": "10.0.0.7", "Port": 11112, "AllowStore": False, "Manufacturer": "GE"}
    assert c.put("/modalities/kept", entry).status == 200
    assert c.put("/modalities/gone", ["GONE", "10.0.0.8", 104]).status == 200
    assert c.delete("/modalities/gone").status == 200
    before = c.get("/modalities/kept/configuration").json()
    first.stop()
    second = make_server(config)
    c = second.client()
    assert c.get("/modalities").json() == ["kept"]
    assert c.get("/modalities/kept/configuration").json() == before
    assert before["AllowStore"] is False and before["Manufacturer"] == "GE"


def test_aet_comparison_is_case_insensitive_unless_strict(make_server):
    def c_echo_allowed(strict: bool) -> bool:
        srv = make_server(
            {
                "DicomServerEnabled": True,
                "DicomPort": 0,
                "DicomAet": "ORTHANCPY",
                "DicomAlwaysAllowEcho": False,
                "StrictAetComparison": strict,
                "DicomModalities": {"scu": ["SCU", "127.0.0.1", 104]},
            }
        )
        ae = AE(ae_title="scu")  # the modality is declared as "SCU"
        ae.add_requested_context("1.2.840.10008.1.1")
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
        assoc = ae.associate("127.0.0.1", srv.ctx.dicom_port, ae_title="ORTHANCPY")
        try:
            return assoc.is_established and getattr(assoc.send_c_echo(), "Status", None) == 0x0000
        finally:
            if assoc.is_established:
                assoc.release()

    assert c_echo_allowed(strict=False)
    assert not c_echo_allowed(strict=True)
