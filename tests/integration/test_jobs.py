"""The jobs engine through the REST API, with jobs that really run: C-STOREs to a storage SCP
that takes its time per instance, so a job can be caught while Running, paused, resumed,
cancelled and resubmitted. Answers checked against Orthanc 1.10.1/1.12 (OrthancRestSystem.cpp,
JobsRegistry.cpp)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dicomgen
import pytest
from pynetdicom import AE, AllStoragePresentationContexts, evt

from tests.conftest import Client


class SlowSCP:
    """A storage SCP that sleeps `delay` seconds per C-STORE, and records what it stored."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.received: list[str] = []
        self._lock = threading.Lock()
        ae = AE(ae_title="SLOW")
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax)
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)])
        self.port = self.server.server_address[1]

    def _store(self, event: Any) -> int:
        time.sleep(self.delay)
        with self._lock:
            self.received.append(str(event.request.AffectedSOPInstanceUID))
        return 0

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def slow() -> Iterator[SlowSCP]:
    scp = SlowSCP(0.05)
    yield scp
    scp.stop()


def wait_for(predicate: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


def upload_study(c: Client, count: int, patient: int = 1) -> str:
    for i in range(count):
        study = c.upload(dicomgen.make(patient=patient, instance=i, rows=8, columns=8))["ParentStudy"]
    return str(study)


def submit_store(c: Client, resources: list[str], modality: str = "slow", **options: Any) -> str:
    r = c.post(f"/modalities/{modality}/store", {"Resources": resources, "Asynchronous": True, **options})
    assert r.status == 200, r.body
    assert r.json()["Path"] == f"/jobs/{r.json()['ID']}"
    return str(r.json()["ID"])


def job(c: Client, job_id: str) -> dict[str, Any]:
    r = c.get(f"/jobs/{job_id}")
    assert r.status == 200, r.body
    return dict(r.json())


def state_is(c: Client, job_id: str, *states: str) -> dict[str, Any] | None:
    info = job(c, job_id)
    return info if info["State"] in states else None


def modalities(scp: SlowSCP, fast: Any = None) -> dict[str, Any]:
    config: dict[str, Any] = {"slow": ["SLOW", "127.0.0.1", scp.port], "dead": ["DEAD", "127.0.0.1", 1]}
    if fast is not None:
        config["fast"] = ["STORESCP", "127.0.0.1", fast.port]
    return {"DicomModalities": config}


def test_pause_resume_cancel_resubmit_a_running_store(make_server: Any, slow: SlowSCP) -> None:
    c = make_server(modalities(slow)).client()
    study = upload_study(c, 24)
    job_id = submit_store(c, [study], UserData={"who": "test"})

    running = wait_for(lambda: (lambda j: j if j["State"] == "Running" and j["Progress"] > 0 else None)(job(c, job_id)))
    assert running["Type"] == "DicomModalityStore"
    assert running["Content"]["InstancesCount"] == 24 and running["Content"]["RemoteAet"] == "SLOW"
    assert running["UserData"] == {"who": "test"}  # Orthanc 1.12.9
    assert "CompletionTime" not in running and "EstimatedTimeOfArrival" in running
    assert len(running["CreationTime"]) == 22 and running["CreationTime"][8] == "T"  # 20261207T103504.631225

    # pause: takes effect between two batches of C-STOREs; nothing is sent while paused
    assert c.post(f"/jobs/{job_id}/pause").json() == {}
    paused = wait_for(lambda: state_is(c, job_id, "Paused"))
    sent = slow.count()
    assert 0 < sent < 24
    time.sleep(0.3)
    assert slow.count() == sent
    again = job(c, job_id)
    assert again["EffectiveRuntime"] == paused["EffectiveRuntime"]  # counted while Running only
    assert "CompletionTime" not in again and "EstimatedTimeOfArrival" not in again
    assert c.post(f"/jobs/{job_id}/pause").json() == {}  # pausing a paused job: fine
    for verb in ("resubmit",):  # only a failed job can be resubmitted
        r = c.post(f"/jobs/{job_id}/{verb}")
        assert (r.status, r.body) == (400, b"")
    r = c.delete(f"/jobs/{job_id}")  # a job not finished cannot be deleted (cancel it first)
    assert r.status == 404 and r.json()["Details"] == f"No job found with this id: {job_id}"

    # resume: it goes on where it stopped
    assert c.post(f"/jobs/{job_id}/resume").json() == {}
    wait_for(lambda: slow.count() > sent)
    r = c.post(f"/jobs/{job_id}/resume")  # not paused any more
    assert (r.status, r.body) == (400, b"")

    # cancel: Failure with Orthanc's CanceledJob error, no more C-STORE
    assert c.post(f"/jobs/{job_id}/cancel").json() == {}
    failed = wait_for(lambda: state_is(c, job_id, "Failure"))
    assert (failed["ErrorCode"], failed["ErrorDescription"]) == (37, "This job was canceled")
    assert failed["CompletionTime"] >= failed["CreationTime"]
    stopped = slow.count()
    assert stopped < 24
    time.sleep(0.2)
    assert slow.count() == stopped
    assert c.post(f"/jobs/{job_id}/cancel").json() == {}  # cancelling a finished job: fine

    # resubmit: the job runs again from its start, and this time completes
    assert c.post(f"/jobs/{job_id}/resubmit").json() == {}
    done = wait_for(lambda: state_is(c, job_id, "Success"))
    assert done["Progress"] == 100 and done["ErrorCode"] == 0 and done["ErrorDescription"] == "Success"
    assert done["Content"]["FailedInstancesCount"] == 0 and done["Content"]["ParentResources"] == [study]
    assert slow.count() == stopped + 24
    assert done["CreationTime"] == running["CreationTime"]
    for verb in ("resume", "resubmit"):
        r = c.post(f"/jobs/{job_id}/{verb}")
        assert (r.status, r.body) == (400, b"")

    # a finished job leaves the history with DELETE (Orthanc 1.12.2)
    r = c.delete(f"/jobs/{job_id}")
    assert (r.status, r.body) == (200, b"")
    r = c.get(f"/jobs/{job_id}")
    assert (r.status, r.body) == (404, b"")
    assert job_id not in c.get("/jobs").json()


def test_unknown_jobs_and_bad_actions(make_server: Any, slow: SlowSCP) -> None:
    c = make_server(modalities(slow)).client()
    r = c.get("/jobs/nope")
    assert (r.status, r.body) == (404, b"")  # Orthanc answers nothing
    for verb in ("pause", "resume", "cancel", "resubmit"):
        r = c.post(f"/jobs/nope/{verb}")
        assert (r.status, r.body) == (400, b"")
    r = c.delete("/jobs/nope")
    assert r.status == 404
    assert r.json() == {
        "Details": "No job found with this id: nope",
        "HttpError": "Not Found",
        "HttpStatus": 404,
        "Message": "Accessing an inexistent item",
        "Method": "DELETE",
        "OrthancError": "Accessing an inexistent item",
        "OrthancStatus": 7,
        "Uri": "/jobs/nope",
    }
    r = c.get("/jobs/nope/archive")
    assert r.status == 404 and r.json()["Details"] == "Job has no such output: archive"
    assert r.json()["OrthancStatus"] == 7
    r = c.post("/jobs/nope/archive")
    assert r.status == 405

    # Orthanc reads "Priority" as an integer, synchronous or not (SerializationToolbox::ReadInteger)
    study = upload_study(c, 1)
    for priority in ("3", 1.5, True):
        for asynchronous in (True, False):
            body = {"Resources": [study], "Priority": priority, "Asynchronous": asynchronous}
            r = c.post("/modalities/slow/store", body)
            assert r.status == 400, r.body
            assert (r.json()["OrthancStatus"], r.json()["Details"]) == (15, "Integer value expected in field: Priority")
        body = {"Level": "Study", "Resources": [{"StudyInstanceUID": "1.2"}], "Priority": priority}
        assert c.post("/modalities/slow/move", body).status == 400
    assert c.post("/modalities/slow/store", {"Resources": [study], "Priority": 2.0}).status == 200


def test_failed_job_shows_its_error_and_can_be_resubmitted(make_server: Any, slow: SlowSCP) -> None:
    srv = make_server(modalities(slow))
    c = srv.client()
    study = upload_study(c, 2)
    job_id = submit_store(c, [study], modality="dead")
    failed = wait_for(lambda: state_is(c, job_id, "Failure"))
    assert failed["ErrorCode"] == 9 and failed["ErrorDescription"] == "Error in the network protocol"
    assert "DEAD" in failed["ErrorDetails"]
    assert failed["Content"]["InstancesCount"] == 2
    assert "UserData" not in failed  # only when the request gave one
    assert c.post(f"/jobs/{job_id}/resubmit").json() == {}
    again = wait_for(lambda: state_is(c, job_id, "Failure"))
    assert again["ErrorCode"] == 9

    # C-MOVE and C-GET jobs carry the request's UserData too (Orthanc 1.12.9), failed or not
    for verb, job_type in (("move", "DicomMoveScu"), ("get", "DicomGetScu")):
        body = {"Level": "Study", "Asynchronous": True, "UserData": "simple-string", "Priority": 2}
        body["Resources"] = [{"StudyInstanceUID": "1.2.3"}]
        r = c.post(f"/modalities/dead/{verb}", body)
        assert r.status == 200, r.body
        info = wait_for(lambda r=r: state_is(c, r.json()["ID"], "Failure"))
        assert (info["Type"], info["UserData"], info["Priority"]) == (job_type, "simple-string", 2)
        assert info["Content"]["RemoteAet"] == "DEAD" and info["ErrorCode"] != 0


def test_priorities_with_one_worker(make_server: Any, slow: SlowSCP, scp: Any) -> None:
    """ConcurrentJobs 1: while a job runs the others wait (Pending), then run highest priority
    first, oldest first among equals."""
    c = make_server({"ConcurrentJobs": 1, **modalities(slow, scp)}).client()
    study = upload_study(c, 10)
    blocker = submit_store(c, [study])
    wait_for(lambda: state_is(c, blocker, "Running"))
    low = submit_store(c, [study], modality="fast", Priority=-5)
    normal = submit_store(c, [study], modality="fast")
    high = submit_store(c, [study], modality="fast", Priority=10)
    normal2 = submit_store(c, [study], modality="fast")
    for j in (low, normal, high, normal2):
        info = job(c, j)
        assert info["State"] == "Pending" and info["Progress"] == 0 and info["EffectiveRuntime"] == 0
    assert job(c, high)["Priority"] == 10 and job(c, low)["Priority"] == -5
    done = [wait_for(lambda j=j: state_is(c, j, "Success")) for j in (blocker, low, normal, high, normal2)]
    order = sorted(done, key=lambda info: info["CompletionTime"])
    assert [info["ID"] for info in order] == [blocker, high, normal, normal2, low]
    listed = c.get("/jobs").json()
    assert listed == sorted(listed) and set(listed) == {blocker, low, normal, high, normal2}  # Orthanc: by ID
    expanded = c.get("/jobs?expand").json()
    assert [e["ID"] for e in expanded] == listed


def test_pause_and_cancel_pending_jobs(make_server: Any, slow: SlowSCP) -> None:
    c = make_server({"ConcurrentJobs": 1, **modalities(slow)}).client()
    study = upload_study(c, 6)
    blocker = submit_store(c, [study])
    wait_for(lambda: state_is(c, blocker, "Running"))
    waiting = submit_store(c, [study])
    other = submit_store(c, [study])
    assert c.post(f"/jobs/{waiting}/pause").json() == {}
    assert job(c, waiting)["State"] == "Paused"
    assert c.post(f"/jobs/{other}/cancel").json() == {}
    cancelled = job(c, other)
    assert (cancelled["State"], cancelled["ErrorCode"]) == ("Failure", 37)
    wait_for(lambda: state_is(c, blocker, "Success"))
    time.sleep(0.2)
    assert job(c, waiting)["State"] == "Paused"  # a paused job waits for resume
    assert c.post(f"/jobs/{waiting}/resume").json() == {}
    wait_for(lambda: state_is(c, waiting, "Success"))
    assert slow.count() == 12


def test_history_size(make_server: Any, scp: Any, slow: SlowSCP) -> None:
    c = make_server({"JobsHistorySize": 2, **modalities(slow, scp)}).client()
    study = upload_study(c, 1)
    ids = []
    for _ in range(4):
        ids.append(submit_store(c, [study], modality="fast"))
        wait_for(lambda: state_is(c, ids[-1], "Success"))
    assert sorted(c.get("/jobs").json()) == sorted(ids[2:])  # the oldest finished ones are forgotten
    assert c.get(f"/jobs/{ids[0]}").status == 404


def test_outputs(make_server: Any, tmp_path: Path) -> None:
    """/jobs/{id}/{key}: what a job published with set_output, for a successful job; a temporary
    file output is removed with DELETE of the output, of the job, or when the history forgets it."""
    srv = make_server({"JobsHistorySize": 3})
    c = srv.client()
    files = [tmp_path / f"out{i}.zip" for i in range(3)]

    def submit(fail: bool = False, n: int = 0) -> str:
        async def run(job: Any) -> dict[str, Any]:
            await job.checkpoint(50)
            job.set_output("archive", files[n], "application/zip", "archive.zip")
            job.set_output("report", b'{"a": 1}', "application/json")
            if fail:
                raise RuntimeError("boom")
            return {"Description": "test"}

        async def make() -> str:
            return str(srv.ctx.jobs.submit("Test", run).id)

        return asyncio.run_coroutine_threadsafe(make(), srv._loop).result(5)

    files[0].write_bytes(b"PK zip")
    job_id = submit()
    done = wait_for(lambda: state_is(c, job_id, "Success"))
    assert done["Content"] == {"Description": "test"}
    r = c.get(f"/jobs/{job_id}/archive")
    assert (r.status, r.body) == (200, b"PK zip")
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"] == 'filename="archive.zip"'
    r = c.get(f"/jobs/{job_id}/report")
    assert (r.status, r.body, r.headers["content-type"]) == (200, b'{"a": 1}', "application/json")
    assert "content-disposition" not in r.headers
    r = c.delete(f"/jobs/{job_id}/archive")  # Orthanc 1.12.1
    assert (r.status, r.body) == (200, b"")
    assert not files[0].exists()
    r = c.get(f"/jobs/{job_id}/archive")
    assert r.status == 404 and r.json()["Details"] == "Job has no such output: archive"
    r = c.delete(f"/jobs/{job_id}/archive")
    assert r.status == 404 and r.json()["Details"] == "Job has no such output: archive"
    assert c.get(f"/jobs/{job_id}").status == 200  # the job stays

    files[1].write_bytes(b"second")
    job_id = submit(n=1)
    wait_for(lambda: state_is(c, job_id, "Success"))
    assert c.delete(f"/jobs/{job_id}").status == 200
    assert not files[1].exists()  # deleting the job deletes its outputs
    assert c.get(f"/jobs/{job_id}/report").status == 404

    files[2].write_bytes(b"failed")
    job_id = submit(fail=True, n=2)
    failed = wait_for(lambda: state_is(c, job_id, "Failure"))
    assert failed["ErrorCode"] == -1 and failed["ErrorDetails"] == "boom"
    assert c.get(f"/jobs/{job_id}/archive").status == 404  # outputs of successful jobs only

    first = job_id
    assert files[2].exists()
    for _ in range(3):
        later = submit()
        wait_for(lambda j=later: state_is(c, j, "Success"))
    assert c.get(f"/jobs/{first}").status == 404
    assert not files[2].exists()  # forgotten by the history: its temporary file with it


def test_synchronous_and_asynchronous_must_be_booleans(client: Client) -> None:
    """Every route that submits a job reads "Synchronous"/"Asynchronous" as Orthanc's
    IsSynchronousJobRequest does: anything but a Boolean is a 400 Bad file format naming the field."""
    stored = client.upload(dicomgen.make(patient=1, study=0, series=0, instance=0))
    sid = stored["ParentStudy"]
    routes = {
        "/tools/create-archive": {"Resources": [sid]},
        "/tools/bulk-modify": {"Resources": [sid], "Replace": {"PatientName": "X"}},
        f"/studies/{sid}/modify": {"Replace": {"PatientName": "X"}},
        f"/studies/{sid}/anonymize": {},
        f"/studies/{sid}/split": {"Series": [stored["ParentSeries"]]},
        f"/studies/{sid}/merge": {"Resources": []},
    }
    for route, body in routes.items():
        for key in ("Synchronous", "Asynchronous"):
            r = client.post(route, {key: 1, **body})
            assert r.status == 400, (route, key, r.status, r.body)
            answer = r.json()
            assert answer["OrthancStatus"] == 15, (route, answer)
            assert answer["Details"] == f"Boolean value expected in field: {key}", (route, answer)
