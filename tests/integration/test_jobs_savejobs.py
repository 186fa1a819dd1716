"""SaveJobs: the jobs survive a kill -9 of the server. As Orthanc after a restart: a job that was
running or pending runs (again), a paused one stays paused, finished ones are back in the
history; same IDs, priorities and creation times. With SaveJobs false nothing is taken up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import dicomgen

from tests.conftest import Client, free_ports
from tests.integration.test_durability import start
from tests.integration.test_jobs import SlowSCP, job, state_is, submit_store, upload_study, wait_for


def test_jobs_taken_up_after_kill_9(tmp_path: Path) -> None:
    slow = SlowSCP(0.03)
    (http_port,) = free_ports(1)
    config = {
        "StorageDirectory": str(tmp_path / "db"),
        "HttpPort": http_port,
        "DicomServerEnabled": False,
        "ConcurrentJobs": 1,
        "DicomModalities": {"slow": ["SLOW", "127.0.0.1", slow.port]},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    proc: subprocess.Popen[bytes] | None = start(path, http_port)
    try:
        c = Client("127.0.0.1", http_port)
        small = c.upload(dicomgen.make(patient=2, instance=0, rows=8, columns=8))["ParentStudy"]
        finished = submit_store(c, [small])
        done_before = wait_for(lambda: state_is(c, finished, "Success"))
        study = upload_study(c, 40)
        running = submit_store(c, [study], Priority=1, UserData="kept")
        wait_for(lambda: (lambda j: j if j["Progress"] > 0 else None)(job(c, running)))
        paused = submit_store(c, [small])
        assert c.post(f"/jobs/{paused}/pause").json() == {}
        pending = submit_store(c, [small], Priority=5)
        before = {j["ID"]: j for j in c.get("/jobs?expand").json()}
        assert [before[i]["State"] for i in (finished, running, paused, pending)] == [
            "Success",
            "Running",
            "Paused",
            "Pending",
        ]
        sent_before_kill = slow.count()
        assert sent_before_kill < 41
        time.sleep(0.2)  # Orthanc saves a new job within 100 ms
        c.close()
        assert proc is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc = None

        proc = start(path, http_port)
        c = Client("127.0.0.1", http_port)
        after = {j["ID"]: j for j in c.get("/jobs?expand").json()}
        assert set(after) == {finished, running, paused, pending}
        for job_id in after:
            for key in ("CreationTime", "Priority", "Type"):
                assert after[job_id][key] == before[job_id][key]
        assert after[finished]["State"] == "Success" and after[finished]["Content"] == done_before["Content"]
        assert after[finished]["CompletionTime"] == done_before["CompletionTime"]
        assert after[paused]["State"] == "Paused"
        assert after[running]["UserData"] == "kept"
        assert after[running]["State"] in ("Pending", "Running")

        # the running job runs again (from its start), then the pending one
        done = wait_for(lambda: state_is(c, running, "Success"), timeout=30)
        assert done["Content"]["InstancesCount"] == 40 and done["Content"]["ParentResources"] == [study]
        wait_for(lambda: state_is(c, pending, "Success"))
        time.sleep(0.1)
        assert job(c, paused)["State"] == "Paused"
        assert c.post(f"/jobs/{paused}/resume").json() == {}
        wait_for(lambda: state_is(c, paused, "Success"))
        sops = {dicomgen.uid("sop", 1, 0, 0, i) for i in range(40)}
        assert sops <= set(slow.received)  # every instance of the interrupted job was sent

        # a clean stop saves them too; SaveJobs false: nothing is taken up
        c.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        proc = None
        config["SaveJobs"] = False
        path.write_text(json.dumps(config))
        proc = start(path, http_port)
        c = Client("127.0.0.1", http_port)
        assert c.get("/jobs").json() == []
        c.close()
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        slow.stop()
