"""Query/retrieve as SCU between two orthanc_py servers: C-FIND from B to A, then C-MOVE A -> B."""

from __future__ import annotations

import dicomgen
import pytest


@pytest.fixture
def pair(make_server):
    pacs = make_server({"DicomServerEnabled": True, "DicomPort": 0, "DicomAet": "PACS"})
    assert pacs.ctx is not None
    viewer = make_server(
        {
            "DicomServerEnabled": True,
            "DicomPort": 0,
            "DicomAet": "VIEWER",
            "DicomModalities": {"pacs": ["PACS", "127.0.0.1", pacs.ctx.dicom_port]},
        }
    )
    assert viewer.ctx is not None
    # the PACS must know where VIEWER lives to C-MOVE to it
    pacs.client().put("/modalities/viewer", ["VIEWER", "127.0.0.1", viewer.ctx.dicom_port])
    c = pacs.client()
    for i in range(3):
        c.upload(dicomgen.make(patient=1, instance=i, rows=16, columns=16, patient_name="Query^One"))
    c.upload(dicomgen.make(patient=2, rows=16, columns=16, patient_name="Other^Two"))
    return pacs, viewer


def test_query_answers_and_retrieve(pair):
    _pacs, viewer = pair
    v = viewer.client()
    r = v.post("/modalities/pacs/query", {"Level": "Study", "Query": {"PatientName": "QUERY*", "StudyDate": ""}})
    assert r.status == 200, r.body
    qid = r.json()["ID"]
    assert r.json()["Path"] == f"/queries/{qid}"
    assert qid in v.get("/queries").json()
    assert v.get(f"/queries/{qid}/answers").json() == ["0"]
    content = v.get(f"/queries/{qid}/answers/0/content?simplify").json()
    assert content["StudyInstanceUID"] == dicomgen.uid("study", 1, 0) and content["PatientName"] == "Query^One"
    assert v.get(f"/queries/{qid}/level").body == b"Study"
    assert v.get(f"/queries/{qid}/modality").body == b"pacs"
    assert v.get(f"/queries/{qid}/query?simplify").json()["PatientName"] == "QUERY*"
    expanded = v.get(f"/queries/{qid}/answers?expand&simplify").json()
    assert expanded[0]["StudyInstanceUID"] == content["StudyInstanceUID"]
    # retrieve: the PACS C-MOVEs the study to us
    r = v.post(f"/queries/{qid}/retrieve", "")
    assert r.status == 200, r.body
    assert r.json()["RemoteAet"] == "PACS" and r.json()["TargetAet"] == "VIEWER"  # as Orthanc 1.12.10
    assert len(v.get("/instances").json()) == 3
    # child query from an answer
    child = v.post(f"/queries/{qid}/answers/0/query-series", {}).json()
    assert v.get(f"/queries/{child['ID']}/answers").json() == ["0"]
    assert v.delete(f"/queries/{qid}").status == 200
    assert v.get(f"/queries/{qid}/answers").status == 404


def test_find_and_move_routes(pair):
    _pacs, viewer = pair
    v = viewer.client()
    found = v.post("/modalities/pacs/find-patient", {"PatientName": "*", "PatientID": ""}).json()
    assert sorted(p["PatientID"] for p in found) == ["PID00001", "PID00002"]
    studies = v.post("/modalities/pacs/find-study", {"PatientID": "PID00002", "StudyInstanceUID": ""}).json()
    assert [s["StudyInstanceUID"] for s in studies] == [dicomgen.uid("study", 2, 0)]
    r = v.post(
        "/modalities/pacs/move",
        {"Level": "Study", "Resources": [{"StudyInstanceUID": dicomgen.uid("study", 2, 0)}], "TargetAet": "VIEWER"},
    )
    assert r.status == 200, r.body
    assert len(v.get("/instances").json()) == 1
    bad = v.post("/modalities/pacs/query", {"Level": "Nonsense", "Query": {}})
    assert bad.status == 400
    # the same move as a job
    resources = [{"StudyInstanceUID": dicomgen.uid("study", 1, 0)}]
    job = v.post(
        "/modalities/pacs/move", {"Level": "Study", "Resources": resources, "TargetAet": "VIEWER", "Asynchronous": True}
    ).json()
    import time

    deadline = time.monotonic() + 20
    state = ""
    while time.monotonic() < deadline:
        state = v.get(f"/jobs/{job['ID']}").json()["State"]
        if state in ("Success", "Failure"):
            break
        time.sleep(0.05)
    assert state == "Success"
    assert len(v.get("/instances").json()) == 4


def test_move_reports_what_each_resource_brought(pair):
    """Orthanc 1.12.10's "Details": per resource, its DIMSE status and the instances it brought
    here (the C-STOREs the PACS sends carry our C-MOVE's message ID); "Permissive" goes on
    after a failed resource."""
    _pacs, viewer = pair
    v = viewer.client()
    study1, study2 = dicomgen.uid("study", 1, 0), dicomgen.uid("study", 2, 0)
    r = v.post(
        "/modalities/pacs/move", {"Level": "Study", "Resources": [{"StudyInstanceUID": study2}], "TargetAet": "VIEWER"}
    )
    assert r.status == 200, r.body
    answer = r.json()
    assert list(answer) == ["Description", "Details", "LocalAet", "Query", "RemoteAet", "TargetAet"]
    (detail,) = answer["Details"]
    assert detail["DimseErrorStatus"] == 0 and detail["Query"] == answer["Query"][0]
    assert detail["ReceivedInstancesIds"] == v.get("/instances").json()
    # permissive: the missing study is reported, the next one still comes
    body = {
        "Level": "Study",
        "Resources": [{"StudyInstanceUID": "1.2.3.4"}, {"StudyInstanceUID": study1}],
        "TargetAet": "VIEWER",
        "Permissive": True,
    }
    r = v.post("/modalities/pacs/move", body)
    assert r.status == 200, r.body
    missing, found = r.json()["Details"]
    assert missing["DimseErrorStatus"] != 0 and missing["ReceivedInstancesIds"] == []
    assert found["DimseErrorStatus"] == 0 and len(found["ReceivedInstancesIds"]) == 3
    assert set(found["ReceivedInstancesIds"]) <= set(v.get("/instances").json())
    # not permissive: the move fails
    body["Permissive"] = False
    r = v.post("/modalities/pacs/move", body)
    assert r.status != 200
    payload = r.json()["ErrorPayload"]  # Orthanc 1.12.10: the details of the retrieve so far
    assert payload["Type"] == "RetrieveJob" and payload["Content"][0]["DimseErrorStatus"] != 0
    assert payload["Content"][1] == {"DimseErrorStatus": 0, "Query": found["Query"], "ReceivedInstancesIds": []}
    # /queries/{id}/retrieve reports the same way
    qid = v.post("/modalities/pacs/query", {"Level": "Study", "Query": {"StudyInstanceUID": study1}}).json()["ID"]
    r = v.post(f"/queries/{qid}/retrieve", {"TargetAet": "VIEWER"})
    assert r.status == 200, r.body
    (detail,) = r.json()["Details"]
    assert detail["Query"]["0020,000d"] == study1 and sorted(detail["ReceivedInstancesIds"]) == sorted(
        found["ReceivedInstancesIds"]
    )
