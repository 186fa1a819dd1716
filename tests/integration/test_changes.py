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


def _stable_studies(c, study: str, after: int) -> list[int]:
    """Seq of the StableStudy changes of `study`, once one newer than `after` is there."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        seqs = [
            ch["Seq"]
            for ch in c.get("/changes?limit=1000").json()["Changes"]
            if ch["ChangeType"] == "StableStudy" and ch["ID"] == study
        ]
        if seqs and seqs[-1] > after:
            return seqs
        time.sleep(0.05)
    raise AssertionError("no StableStudy")


def test_overwrite_makes_the_study_stable_again(make_server):
    """OverwriteInstances: the replaced instance goes with its emptied parents and their changes,
    the new one is new again (NewInstance ... then a new StableStudy); another instance of the
    study later gives a second StableStudy next to the first (Orthanc 1.5.7 to 1.12)."""
    c = make_server({"StableAge": 0.2, "OverwriteInstances": True}).client()
    data = dicomgen.make(patient=1, rows=0)
    up = c.upload(data)
    first = _stable_studies(c, up["ParentStudy"], 0)
    assert len(first) == 1
    last = c.get("/changes").json()["Last"]
    again = c.upload(data)
    assert again["ID"] == up["ID"]
    kinds = [ch["ChangeType"] for ch in c.get(f"/changes?since={last}").json()["Changes"]]
    assert kinds[:4] == ["NewInstance", "NewSeries", "NewStudy", "NewPatient"]
    second = _stable_studies(c, up["ParentStudy"], first[0])
    assert len(second) == 1 and second[0] != first[0]  # the first one went with the old study
    other = c.upload(dicomgen.make(patient=1, rows=0, instance=1))
    third = _stable_studies(c, other["ParentStudy"], second[0])
    assert third[0] == second[0] and len(third) == 2
