"""/changes (paging, stability) and /exports."""

from __future__ import annotations

import time

import dicomgen


def test_changes_paging(client):
    first = client.upload(dicomgen.make(patient=0, instance=0, rows=0))
    second = client.upload(dicomgen.make(patient=0, instance=1, rows=0))
    all_changes = client.get("/changes").json()
    kinds = [(c["ChangeType"], c["ResourceType"], c["ID"]) for c in all_changes["Changes"]]
    assert kinds == [
        ("NewInstance", "Instance", first["ID"]),
        ("NewSeries", "Series", first["ParentSeries"]),
        ("NewStudy", "Study", first["ParentStudy"]),
        ("NewPatient", "Patient", first["ParentPatient"]),
        ("NewInstance", "Instance", second["ID"]),
    ]
    assert all_changes["Done"] is True and all_changes["Last"] == 5
    c0 = all_changes["Changes"][0]
    assert c0["Path"] == f"/instances/{first['ID']}" and c0["Seq"] == 1 and len(c0["Date"]) == 15
    page = client.get("/changes?since=1&limit=2").json()
    assert [c["Seq"] for c in page["Changes"]] == [2, 3] and page["Done"] is False and page["Last"] == 3
    end = client.get("/changes?since=5&limit=10").json()
    assert end == {"Changes": [], "Done": True, "Last": 5}
    last = client.get("/changes?last").json()
    assert [c["Seq"] for c in last["Changes"]] == [5] and last["Last"] == 5
    # Deleting removes the change rows of deleted resources (Orthanc's cascade)
    client.delete(f"/instances/{second['ID']}")
    assert [c["Seq"] for c in client.get("/changes").json()["Changes"]] == [1, 2, 3, 4]
    assert client.delete("/changes").status == 200
    # Orthanc keeps counting: Last is the last sequence number handed out (5), and `?last`
    # names the newest change left, or that number when none is left
    assert client.get("/changes").json() == {"Changes": [], "Done": True, "Last": 5}
    assert client.get("/changes?last").json() == {"Changes": [], "Done": True, "Last": 5}


def test_stable_events(make_server):
    srv = make_server({"StableAge": 1})
    c = srv.client()
    up = c.upload(dicomgen.make(patient=1, rows=0))
    assert c.get(f"/series/{up['ParentSeries']}").json()["IsStable"] is False
    deadline = time.monotonic() + 10
    kinds: list[str] = []
    while time.monotonic() < deadline:
        kinds = [ch["ChangeType"] for ch in c.get("/changes").json()["Changes"]]
        if "StablePatient" in kinds:
            break
        time.sleep(0.1)
    assert kinds[-3:] == ["StableSeries", "StableStudy", "StablePatient"]
    assert c.get(f"/series/{up['ParentSeries']}").json()["IsStable"] is True
    assert c.get(f"/patients/{up['ParentPatient']}").json()["IsStable"] is True


def test_exports_empty(client):
    assert client.get("/exports").json() == {"Done": True, "Exports": [], "Last": 0}
