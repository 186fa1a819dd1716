"""Storage commitment (Push Model) on real associations: our SCU asking a second orthanc_py
server, a pynetdicom modality asking us and receiving our report, the REST API's checks and
messages (those of Orthanc 1.10.1), permissions, malformed messages and the reports' LRU."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import dicomgen
import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt

SC = "1.2.840.10008.1.20.1"
SC_INSTANCE = "1.2.840.10008.1.20.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
NO_SUCH = "One or more of the elements in the Referenced SOP Instance Sequence was not available"
CONFLICT = (
    "The SOP Class of an element in the Referenced SOP Instance Sequence did not correspond "
    "to the SOP class registered for this SOP Instance at the SCP"
)


def dicom_server(make_server: Any, aet: str, extra: dict[str, Any] | None = None) -> Any:
    srv = make_server({"DicomServerEnabled": True, "DicomPort": 0, "DicomAet": aet, **(extra or {})})
    assert srv.ctx is not None and srv.ctx.dicom_port
    return srv


def wait_report(c: Any, uid: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r = c.get(f"/storage-commitment/{uid}")
        assert r.status == 200, r.body
        if r.json()["Status"] != "Pending":
            return dict(r.json())
        time.sleep(0.02)
    raise AssertionError(f"no report for {uid}")


def wait_job(c: Any, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        job = c.get(f"/jobs/{job_id}").json()
        if job["State"] in ("Success", "Failure"):
            return dict(job)
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not end")


def uids(raw: bytes) -> tuple[str, str]:
    import io

    ds = pydicom.dcmread(io.BytesIO(raw))
    return str(ds.SOPClassUID), str(ds.SOPInstanceUID)


@pytest.fixture
def pair(make_server: Any) -> tuple[Any, Any]:
    """Two servers, A (AET ORTHANCA) and B (ORTHANCB), each a modality of the other."""
    a = dicom_server(make_server, "ORTHANCA")
    b = dicom_server(make_server, "ORTHANCB")
    assert a.client().put("/modalities/b", ["ORTHANCB", "127.0.0.1", b.ctx.dicom_port]).status == 200
    assert b.client().put("/modalities/a", ["ORTHANCA", "127.0.0.1", a.ctx.dicom_port]).status == 200
    return a, b


def test_our_scu_asks_our_scp(pair: tuple[Any, Any]) -> None:
    """A asks B about an instance B has, one it lacks and one under the wrong class: B's
    StorageCommitmentScp job reports to A, whose report then lists each with Orthanc's reasons."""
    a, b = pair
    ca, cb = a.client(), b.client()
    raw = dicomgen.make(patient=1, rows=4, columns=4)
    cb.upload(raw)
    sop_class, sop_instance = uids(raw)
    r = ca.post(
        "/modalities/b/storage-commitment",
        {
            "DicomInstances": [
                [sop_class, sop_instance],
                {"SOPClassUID": "1.2.3", "SOPInstanceUID": "1.2.3.4"},
                ["1.2.840.10008.5.1.4.1.1.4", sop_instance],
            ]
        },
    )
    assert r.status == 200, r.body
    uid = r.json()["ID"]
    assert uid.startswith("2.25.") and len(uid) <= 64 and r.json()["Path"] == f"/storage-commitment/{uid}"
    report = wait_report(ca, uid)
    assert report == {
        "RemoteAET": "ORTHANCB",
        "Status": "Failure",
        "Success": [{"SOPClassUID": sop_class, "SOPInstanceUID": sop_instance}],
        "Failures": [
            {"Description": NO_SUCH, "FailureReason": 274, "SOPClassUID": "1.2.3", "SOPInstanceUID": "1.2.3.4"},
            {
                "Description": CONFLICT,
                "FailureReason": 281,
                "SOPClassUID": "1.2.840.10008.5.1.4.1.1.4",
                "SOPInstanceUID": sop_instance,
            },
        ],
    }
    jobs = [j for j in cb.get("/jobs?expand").json() if j["Type"] == "StorageCommitmentScp"]
    assert len(jobs) == 1
    job = wait_job(cb, jobs[0]["ID"])
    assert job["State"] == "Success" and job["Progress"] == 100
    assert job["Content"] == {
        "CalledAet": "ORTHANCB",
        "Description": "",
        "RemoteAet": "ORTHANCA",
        "TransactionUid": uid,
    }
    # a failed transaction's instances cannot be removed (Orthanc: BadSequenceOfCalls)
    r = ca.post(f"/storage-commitment/{uid}/remove", "")
    assert r.status == 500 and r.json()["OrthancError"] == "Bad sequence of calls"
    assert (
        r.json()["Details"] == f"Cannot remove DICOM instances after failure in storage commitment transaction: {uid}"
    )
    r = ca.post("/modalities/nope/storage-commitment", {"DicomInstances": [["1.2", "1.3"]]})
    assert r.status == 404 and r.json()["Details"] == "No modality with symbolic name: nope"
    for method, path in (("GET", "/storage-commitment/2.25.1"), ("POST", "/storage-commitment/2.25.1/remove")):
        r = ca.request(method, path, b"" if method == "POST" else None)
        assert r.status == 404
        assert r.json()["Details"] == "No storage commitment transaction with UID: 2.25.1"
    # an empty request still goes out, and comes back Success with nothing in it
    r = ca.post("/modalities/b/storage-commitment", {"DicomInstances": []})
    assert wait_report(ca, r.json()["ID"]) == {
        "Failures": [],
        "RemoteAET": "ORTHANCB",
        "Status": "Success",
        "Success": [],
    }


def test_store_with_storage_commitment_then_remove(pair: tuple[Any, Any]) -> None:
    """POST /modalities/{id}/store with StorageCommitment: the C-STOREs, then an N-ACTION for
    what was sent; once B commits, /remove deletes the instances here."""
    a, b = pair
    ca, cb = a.client(), b.client()
    raws = [dicomgen.make(patient=2, instance=i, rows=4, columns=4) for i in range(2)]
    ids = [ca.upload(raw) for raw in raws]
    study = ids[0]["ParentStudy"]
    r = ca.post("/modalities/b/store", {"Resources": [study], "StorageCommitment": True})
    assert r.status == 200, r.body
    body = r.json()
    uid = body["StorageCommitmentTransactionUID"]
    assert uid.startswith("2.25.") and body["InstancesCount"] == 2 and body["RemoteAet"] == "ORTHANCB"
    report = wait_report(ca, uid)
    assert report["Status"] == "Success" and report["Failures"] == []
    assert sorted(x["SOPInstanceUID"] for x in report["Success"]) == sorted(uids(raw)[1] for raw in raws)
    assert len(cb.get("/instances").json()) == 2
    # the "Resources" form asks about the instances under any level
    r = ca.post("/modalities/b/storage-commitment", {"Resources": [ids[0]["ParentPatient"]], "Timeout": 5})
    assert wait_report(ca, r.json()["ID"])["Status"] == "Success"

    r = ca.post(f"/storage-commitment/{uid}/remove", "")
    assert r.status == 200 and r.body == b"{}"
    assert ca.get("/instances").json() == []
    assert len(cb.get("/instances").json()) == 2  # only here

    # asynchronous: the job shows the transaction from its start
    r = cb.post("/modalities/a/store", {"Resources": [study], "StorageCommitment": True, "Asynchronous": True})
    job = wait_job(cb, r.json()["ID"])
    assert job["State"] == "Success", job
    uid = job["Content"]["StorageCommitmentTransactionUID"]
    assert wait_report(cb, uid)["RemoteAET"] == "ORTHANCA"
    # without StorageCommitment, no transaction
    r = cb.post("/modalities/a/store", {"Resources": [study], "StorageCommitment": False})
    assert "StorageCommitmentTransactionUID" not in r.json()
    r = cb.post("/modalities/a/store", {"Resources": [study], "StorageCommitment": 1})
    assert r.status == 400 and r.json()["OrthancError"] == "Bad type for a parameter"


CHECKS = [
    ("", 400, "Must provide a JSON object with a list of resources"),
    ([], 400, "Must provide a JSON object with a list of resources"),
    (
        {},
        400,
        'Empty storage commitment request, one of these fields is mandatory: "Resources" or "DicomInstances"',
    ),
    ({"Resources": "x"}, 400, 'The "Resources" field must provide an array of Orthanc resources'),
    ({"Resources": [1]}, 400, 'The "Resources" field must provide an array of strings, found: 1\n'),
    ({"Resources": ["nope"]}, 404, None),
    ({"DicomInstances": "x"}, 400, 'The "DicomInstances" field must provide an array of DICOM instances'),
    (
        {"DicomInstances": [1]},
        400,
        "JSON array or object is expected to specify one instance to be queried, found: 1\n",
    ),
    (
        {"DicomInstances": [["a"]]},
        400,
        "An instance entry must provide an array with 2 strings: SOP Class UID and SOP Instance UID",
    ),
    (
        {"DicomInstances": [{"SOPClassUID": "a"}]},
        400,
        'An instance entry must provide an object with 2 string fiels: "SOPClassUID" and "SOPInstanceUID',
    ),
    ({"DicomInstances": [["", ""]]}, 400, 'The SOP class/instance UIDs cannot be empty, found: "" / ""'),
    ({"DicomInstances": [], "Timeout": -1}, 400, "Unsigned integer value expected in field: Timeout"),
    ({"DicomInstances": [], "Timeout": "a"}, 400, "Integer value expected in field: Timeout"),
]


def test_request_checks(make_server: Any) -> None:
    """Orthanc 1.10.1's answers to malformed requests (captured from it), and to a peer that
    cannot be reached."""
    from tests.conftest import free_port

    srv = dicom_server(make_server, "ORTHANCA", {"DicomModalities": {"gone": ["GONE", "127.0.0.1", free_port()]}})
    c = srv.client()
    for body, status, details in CHECKS:
        r = c.post("/modalities/gone/storage-commitment", body)
        assert r.status == status, (body, r.body)
        assert r.json().get("Details") == details, body
    r = c.post("/modalities/gone/storage-commitment", {"DicomInstances": [["1.2", "1.3"]]})
    assert r.status == 500 and r.json()["OrthancError"] == "Error in the network protocol"
    assert (
        r.json()["Details"]
        == 'DicomAssociation - connecting to AET "GONE": TCP Initialization Error: Connection refused'
    )


# --- a pynetdicom modality --------------------------------------------------------------------


class Modality:
    """A storage commitment SCU/SCP: sends N-ACTIONs, records the N-EVENT-REPORTs it receives."""

    def __init__(self, aet: str, status: int = 0x0000) -> None:
        self.aet = aet
        self.status = status
        self.reports: list[dict[str, Any]] = []
        self.received = threading.Event()
        ae = AE(ae_title=aet)
        ae.add_supported_context(SC, scu_role=True, scp_role=True)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10

        def on_report(event: Any) -> tuple[int, None]:
            roles = [(cx.as_scu, cx.as_scp) for cx in event.assoc.accepted_contexts]
            self.reports.append(
                {
                    "calling": str(event.assoc.requestor.ae_title).strip(),
                    "called": str(event.assoc.acceptor.ae_title).strip(),
                    "roles": roles,
                    "type": event.event_type,
                    "dataset": event.event_information,
                }
            )
            self.received.set()
            return self.status, None

        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
        self.port = self.server.server_address[1]

    def associate(self, port: int, called: str) -> Any:
        ae = AE(ae_title=self.aet)
        ae.add_requested_context(SC)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
        return ae.associate("127.0.0.1", port, ae_title=called)

    def n_action(self, port: int, called: str, uid: str, pairs: list[tuple[str, str]]) -> Any:
        ds = Dataset()
        ds.TransactionUID = uid
        ds.ReferencedSOPSequence = [_item(c, i) for c, i in pairs]
        assoc = self.associate(port, called)
        assert assoc.is_established
        status, _ = assoc.send_n_action(ds, 1, SC, SC_INSTANCE)
        if assoc.is_established:
            assoc.release()
        return status

    def stop(self) -> None:
        self.server.shutdown()


def _item(sop_class: str, sop_instance: str, reason: int | None = None) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_instance
    if reason is not None:
        item.FailureReason = reason
    return item


@pytest.fixture
def modality() -> Any:
    m = Modality("PYMOD")
    yield m
    m.stop()


def test_pynetdicom_modality_asks_us(make_server: Any, modality: Modality) -> None:
    """The report comes on a new association, to the modality's configured port, calling it from
    the AET it called us with, proposing the SCP role; failures in the Failed SOP Sequence."""
    srv = dicom_server(make_server, "ORTHANCPY", {"DicomModalities": {"m": ["PYMOD", "127.0.0.1", modality.port]}})
    c = srv.client()
    raw = dicomgen.make(patient=3, rows=4, columns=4)
    c.upload(raw)
    sop_class, sop_instance = uids(raw)
    status = modality.n_action(srv.ctx.dicom_port, "CALLEDME", "2.25.42", [(sop_class, sop_instance), ("1.2", "1.3")])
    assert status.Status == 0x0000
    assert modality.received.wait(10)
    (got,) = modality.reports
    assert got["calling"] == "CALLEDME" and got["called"] == "PYMOD" and got["type"] == 2
    assert got["roles"] == [(False, True)] or got["roles"] == [(True, False)]  # the requestor is the SCP
    ds = got["dataset"]
    assert ds.TransactionUID == "2.25.42"
    assert [(x.ReferencedSOPClassUID, x.ReferencedSOPInstanceUID) for x in ds.ReferencedSOPSequence] == [
        (sop_class, sop_instance)
    ]
    assert [(x.ReferencedSOPClassUID, x.ReferencedSOPInstanceUID, x.FailureReason) for x in ds.FailedSOPSequence] == [
        ("1.2", "1.3", 274)
    ]
    # all committed: event type 1, no Failed SOP Sequence
    modality.received.clear()
    modality.n_action(srv.ctx.dicom_port, "ORTHANCPY", "2.25.43", [(sop_class, sop_instance)])
    assert modality.received.wait(10)
    last = modality.reports[-1]
    assert last["type"] == 1 and "FailedSOPSequence" not in last["dataset"]
    # no instance asked about: event type 1, an empty Referenced SOP Sequence
    modality.received.clear()
    assert modality.n_action(srv.ctx.dicom_port, "ORTHANCPY", "2.25.50", []).Status == 0
    assert modality.received.wait(10)
    last = modality.reports[-1]
    assert last["type"] == 1 and list(last["dataset"].ReferencedSOPSequence) == []


def test_report_refused_by_the_modality_fails_the_job(make_server: Any) -> None:
    m = Modality("PYMOD", status=0x0110)
    try:
        srv = dicom_server(make_server, "ORTHANCPY", {"DicomModalities": {"m": ["PYMOD", "127.0.0.1", m.port]}})
        c = srv.client()
        assert m.n_action(srv.ctx.dicom_port, "ORTHANCPY", "2.25.44", [("1.2", "1.3")]).Status == 0
        assert m.received.wait(10)
        (job,) = [j for j in c.get("/jobs?expand").json() if j["Type"] == "StorageCommitmentScp"]
        job = wait_job(c, job["ID"])
        assert job["State"] == "Failure" and job["ErrorCode"] == 9
        assert job["ErrorDetails"] == "Storage commitment - The request cannot be handled by remote AET: PYMOD"
        assert job["Progress"] == 67  # set-up and one lookup of three commands, as Orthanc counts
        # resubmitted, the job is rebuilt from its spec (as after a restart with SaveJobs) and
        # reports the same transaction again
        m.status, m.received = 0x0000, threading.Event()
        assert c.post(f"/jobs/{job['ID']}/resubmit", "").status == 200
        assert m.received.wait(10)
        deadline = time.monotonic() + 10
        while (job := c.get(f"/jobs/{job['ID']}").json())["State"] != "Success":
            assert time.monotonic() < deadline, job
            time.sleep(0.02)
        assert job["Content"]["TransactionUid"] == "2.25.44" and m.reports[-1]["dataset"].TransactionUID == "2.25.44"
    finally:
        m.stop()


def test_permissions(make_server: Any, modality: Modality) -> None:
    """Unknown AET, or AllowStorageCommitment false (both permissions): the association is
    aborted, no answer (no DicomAlwaysAllow* exists for storage commitment). AllowNAction and
    AllowEventReport apply separately."""
    srv = dicom_server(
        make_server,
        "ORTHANCPY",
        {
            "DicomModalities": {
                "no": {"AET": "PYMOD", "Host": "127.0.0.1", "Port": modality.port, "AllowStorageCommitment": False}
            }
        },
    )
    c = srv.client()
    config = c.get("/modalities/no/configuration").json()
    assert config["AllowNAction"] is False and config["AllowEventReport"] is False
    assert "AllowStorageCommitment" not in config
    status = modality.n_action(srv.ctx.dicom_port, "ORTHANCPY", "2.25.45", [("1.2", "1.3")])
    assert "Status" not in status  # aborted: no response
    other = Modality("STRANGER")
    try:
        assert "Status" not in other.n_action(srv.ctx.dicom_port, "ORTHANCPY", "2.25.46", [("1.2", "1.3")])
    finally:
        other.stop()
    assert [j for j in c.get("/jobs").json()] == []
    # AllowNAction alone: the request is taken, the report is not accepted from that AET
    c.put("/modalities/no", {"AET": "PYMOD", "Host": "127.0.0.1", "Port": modality.port, "AllowEventReport": False})
    assert modality.n_action(srv.ctx.dicom_port, "ORTHANCPY", "2.25.47", [("1.2", "1.3")]).Status == 0
    assert modality.received.wait(10)
    assoc = modality.associate(srv.ctx.dicom_port, "ORTHANCPY")
    ds = Dataset()
    ds.TransactionUID = "2.25.48"
    ds.ReferencedSOPSequence = []
    status, _ = assoc.send_n_event_report(ds, 1, SC, SC_INSTANCE)
    assert "Status" not in status
    assert c.get("/storage-commitment/2.25.48").status == 404


def test_incoming_reports_and_lru(make_server: Any, modality: Modality) -> None:
    """Reports are kept even for transactions we did not start (as Orthanc), at most
    StorageCommitmentReportsSize, the least recently read or written going first; a report
    without its Failure Reason is dropped with the association."""
    srv = dicom_server(
        make_server,
        "ORTHANCPY",
        {"StorageCommitmentReportsSize": 2, "DicomModalities": {"m": ["PYMOD", "127.0.0.1", modality.port]}},
    )
    c = srv.client()

    def report(uid: str, failures: list[Dataset] | None = None, event_type: int | None = None) -> Any:
        ds = Dataset()
        ds.TransactionUID = uid
        ds.ReferencedSOPSequence = [_item("1.2", "1.3")]
        if failures is not None:
            ds.FailedSOPSequence = failures
        assoc = modality.associate(srv.ctx.dicom_port, "ORTHANCPY")
        status, _ = assoc.send_n_event_report(ds, event_type or (2 if failures else 1), SC, SC_INSTANCE)
        if assoc.is_established:
            assoc.release()
        return status

    assert report("2.25.1").Status == 0
    assert report("2.25.2", [_item("1.4", "1.5", 0x0999)]).Status == 0
    assert c.get("/storage-commitment/2.25.2").json()["Failures"] == [
        {"Description": "Unknown failure reason", "FailureReason": 2457, "SOPClassUID": "1.4", "SOPInstanceUID": "1.5"}
    ]
    assert c.get("/storage-commitment/2.25.1").json()["Status"] == "Success"  # now the most recent
    assert report("2.25.3").Status == 0
    assert c.get("/storage-commitment/2.25.2").status == 404
    assert c.get("/storage-commitment/2.25.1").status == 200
    assert c.get("/storage-commitment/2.25.3").json()["RemoteAET"] == "PYMOD"
    # malformed: no Failure Reason, or an unknown event type
    assert "Status" not in report("2.25.4", [_item("1.4", "1.5")])
    assert "Status" not in report("2.25.5", event_type=7)
    assert c.get("/storage-commitment/2.25.4").status == 404
    assert c.get("/storage-commitment/2.25.5").status == 404


def test_malformed_requests_drop_the_association(make_server: Any, modality: Modality) -> None:
    srv = dicom_server(make_server, "ORTHANCPY", {"DicomModalities": {"m": ["PYMOD", "127.0.0.1", modality.port]}})
    assoc = modality.associate(srv.ctx.dicom_port, "ORTHANCPY")
    ds = Dataset()
    ds.ReferencedSOPSequence = []  # no Transaction UID
    status, _ = assoc.send_n_action(ds, 1, SC, SC_INSTANCE)
    assert "Status" not in status  # aborted
    assoc = modality.associate(srv.ctx.dicom_port, "ORTHANCPY")
    ds.TransactionUID = "2.25.9"
    status, _ = assoc.send_n_action(ds, 2, SC, SC_INSTANCE)  # another action type
    assert "Status" not in status
    assert srv.client().get("/jobs").json() == []


STORESCP = "/usr/bin/storescp"


@pytest.mark.skipif(not os.path.exists(STORESCP), reason="DCMTK's storescp is not installed")
def test_peer_without_storage_commitment(make_server: Any, tmp_path: Path) -> None:
    """DCMTK's storescp takes C-STOREs but no storage commitment: Orthanc's NoPresentationContext
    (2015), also for a store chained with commitment once its instances went."""
    from tests.conftest import free_port

    port = free_port()
    received = tmp_path / "received"
    received.mkdir()
    proc = subprocess.Popen(
        [STORESCP, "-aet", "DCMTKSCP", "-od", str(received), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "storescp did not start"
            time.sleep(0.05)
        srv = dicom_server(make_server, "ORTHANCA", {"DicomModalities": {"dcmtk": ["DCMTKSCP", "127.0.0.1", port]}})
        c = srv.client()
        words = 'Unable to negotiate a presentation context with AET "DCMTKSCP"'
        r = c.post("/modalities/dcmtk/storage-commitment", {"DicomInstances": [["1.2", "1.3"]]})
        assert r.status == 500 and (r.json()["OrthancStatus"], r.json()["Details"]) == (2015, words)
        study = c.upload(dicomgen.make(patient=4, rows=4, columns=4))["ParentStudy"]
        r = c.post("/modalities/dcmtk/store", {"Resources": [study], "StorageCommitment": True})
        assert r.status == 500 and (r.json()["OrthancStatus"], r.json()["Details"]) == (2015, words)
        assert len(list(received.iterdir())) == 1  # the instance went before the N-ACTION failed
        r = c.post("/modalities/dcmtk/store", {"Resources": [study], "StorageCommitment": True, "Asynchronous": True})
        job = wait_job(c, r.json()["ID"])
        assert (job["State"], job["ErrorCode"], job["ErrorDetails"]) == ("Failure", 2015, words)
        first = job["Content"]["StorageCommitmentTransactionUID"]
        assert first.startswith("2.25.")
        # resubmitted, the job asks under a new transaction UID
        assert c.post(f"/jobs/{job['ID']}/resubmit", "").status == 200
        deadline = time.monotonic() + 20
        while (
            c.get(f"/jobs/{job['ID']}").json()["State"] != "Failure"
            or c.get(f"/jobs/{job['ID']}").json()["Content"]["StorageCommitmentTransactionUID"] == first
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        again = c.get(f"/jobs/{job['ID']}").json()
        assert again["ErrorCode"] == 2015 and again["Content"]["StorageCommitmentTransactionUID"] != first
        assert c.get(f"/storage-commitment/{first}").json()["Status"] == "Pending"  # never answered
    finally:
        proc.terminate()
        proc.wait(10)
