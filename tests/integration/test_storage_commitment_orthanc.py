"""Storage commitment against the real Orthanc 1.10.1, both ways: it asks us (our SCP's job
reports to it), we ask it (its report reaches our SCP), and C-STORE chained with storage
commitment in both directions. The same questions get the same reports on both sides."""

from __future__ import annotations

import io
import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

import dicomgen
import pydicom
import pytest

from tests.conformance.real_orthanc import ORTHANC, real_orthanc
from tests.conftest import free_ports

pytestmark = pytest.mark.skipif(not os.path.exists(ORTHANC), reason="the real Orthanc is not installed")


def _call(url: str, path: str, body: Any = None, method: str | None = None) -> Any:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url + path, data=data, method=method or ("POST" if data is not None else "GET"))
    with urllib.request.urlopen(req, timeout=30) as answer:
        return json.loads(answer.read())


def _wait(get: Any, uid: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        report = get(f"/storage-commitment/{uid}")
        if report["Status"] != "Pending":
            return dict(report)
        time.sleep(0.02)
    raise AssertionError(f"no report for {uid}")


def _uids(raw: bytes) -> tuple[str, str]:
    ds = pydicom.dcmread(io.BytesIO(raw))
    return str(ds.SOPClassUID), str(ds.SOPInstanceUID)


def test_storage_commitment_with_the_real_orthanc(make_server: Any, tmp_path: Path) -> None:
    srv = make_server({"DicomServerEnabled": True, "DicomPort": 0, "DicomAet": "ORTHANCPY"})
    c = srv.client()
    http, dicom = free_ports(2)
    config = {
        "HttpPort": http,
        "DicomPort": dicom,
        "DicomAet": "REAL",
        "RemoteAccessAllowed": True,
        "AuthenticationEnabled": False,
        "DicomAssociationCloseDelay": 0,
        "DicomModalities": {"py": ["ORTHANCPY", "127.0.0.1", srv.ctx.dicom_port]},
    }
    assert c.put("/modalities/real", ["REAL", "127.0.0.1", dicom]).status == 200
    with real_orthanc(tmp_path, config) as url:

        def real(path: str, body: Any = None) -> Any:
            return _call(url, path, body)

        def ours(path: str) -> Any:
            r = c.get(path)
            assert r.status == 200, r.body
            return r.json()

        both = dicomgen.make(patient=1, instance=0, rows=4, columns=4)
        only_ours = dicomgen.make(patient=1, instance=1, rows=4, columns=4)
        only_real = dicomgen.make(patient=1, instance=2, rows=4, columns=4)
        c.upload(both)
        c.upload(only_ours)
        real("/instances", both)
        real("/instances", only_real)
        question = {
            "DicomInstances": [
                list(_uids(both)),
                list(_uids(only_ours)),
                list(_uids(only_real)),
                ["1.2.840.10008.5.1.4.1.1.4", _uids(both)[1]],
            ]
        }

        # the real Orthanc asks us: our StorageCommitmentScp job reports to it
        asked_us = _wait(real, real("/modalities/py/storage-commitment", question)["ID"])
        assert asked_us["RemoteAET"] == "ORTHANCPY" and asked_us["Status"] == "Failure"
        assert asked_us["Success"] == [
            {"SOPClassUID": _uids(both)[0], "SOPInstanceUID": _uids(both)[1]},
            {"SOPClassUID": _uids(only_ours)[0], "SOPInstanceUID": _uids(only_ours)[1]},
        ]
        assert [f["FailureReason"] for f in asked_us["Failures"]] == [274, 281]
        jobs = [j for j in ours("/jobs?expand") if j["Type"] == "StorageCommitmentScp"]
        assert len(jobs) == 1 and jobs[0]["Content"]["RemoteAet"] == "REAL"
        assert jobs[0]["Content"]["CalledAet"] == "ORTHANCPY"

        # we ask the real Orthanc: its report reaches our SCP; the same question, the same
        # report but for the sides
        r = c.post("/modalities/real/storage-commitment", question)
        assert r.status == 200, r.body
        asked_real = _wait(ours, r.json()["ID"])
        assert asked_real["RemoteAET"] == "REAL"
        mirrored = [
            {"SOPClassUID": _uids(both)[0], "SOPInstanceUID": _uids(both)[1]},
            {"SOPClassUID": _uids(only_real)[0], "SOPInstanceUID": _uids(only_real)[1]},
        ]
        assert asked_real["Success"] == mirrored
        assert asked_real["Failures"] == [
            {**asked_us["Failures"][0], "SOPClassUID": _uids(only_ours)[0], "SOPInstanceUID": _uids(only_ours)[1]},
            asked_us["Failures"][1],
        ]

        # C-STORE chained with storage commitment, from us to it, then the removal here
        study = c.upload(only_ours)["ParentStudy"]
        r = c.post("/modalities/real/store", {"Resources": [study], "StorageCommitment": True})
        assert r.status == 200, r.body
        report = _wait(ours, r.json()["StorageCommitmentTransactionUID"])
        assert report["Status"] == "Success" and len(report["Success"]) == 2
        assert c.post(f"/storage-commitment/{r.json()['StorageCommitmentTransactionUID']}/remove", "").status == 200
        assert ours("/instances") == []

        # and from it to us
        real_study = real("/instances", only_real)["ParentStudy"]
        sent = real("/modalities/py/store", {"Resources": [real_study], "StorageCommitment": True})
        report = _wait(real, sent["StorageCommitmentTransactionUID"])
        assert report["Status"] == "Success" and report["RemoteAET"] == "ORTHANCPY" and len(report["Success"]) == 3
        assert len(ours("/instances")) == 3
