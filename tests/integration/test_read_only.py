"""'ReadOnly': true (Orthanc 1.12.5): a second server serves the index and storage of a first
one and never modifies them; every change is refused with Orthanc's ReadOnly error."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dicomgen


def _files(folder: Path) -> set[str]:
    return {str(p) for p in folder.rglob("*") if p.is_file()}


def test_read_only_server_serves_and_refuses_every_change(make_server: Any, tmp_path: Path) -> None:
    storage = tmp_path / "shared"
    first = make_server({"StorageDirectory": str(storage), "IndexDirectory": str(storage)})
    c = first.client()
    up = c.upload(dicomgen.make(patient=1, rows=8, columns=8))
    c.put(f"/patients/{up['ParentPatient']}/labels/kept")
    first.stop()
    before = _files(storage)
    mtimes = {p: os.stat(p).st_mtime_ns for p in before if not p.endswith(("-wal", "-shm"))}

    ro = make_server(
        {"StorageDirectory": str(storage), "IndexDirectory": str(storage), "ReadOnly": True, "StableAge": 1}
    )
    r = ro.client()
    assert r.get("/system").json()["ReadOnly"] is True
    # reads as usual
    assert r.get("/instances").json() == [up["ID"]]
    assert r.get(f"/instances/{up['ID']}/file").status == 200
    assert r.get(f"/patients/{up['ParentPatient']}").json()["Labels"] == ["kept"]
    tags = r.get(f"/instances/{up['ID']}/simplified-tags").json()
    assert r.get(f"/dicom-web/studies/{tags['StudyInstanceUID']}/metadata").status == 200
    # every change refused, nothing written
    for response in (
        r.post("/instances", dicomgen.make(patient=2, rows=8, columns=8)),
        r.delete(f"/instances/{up['ID']}"),
        r.delete(f"/patients/{up['ParentPatient']}"),
        r.put(f"/studies/{up['ParentStudy']}/labels/new"),
        r.put(f"/instances/{up['ID']}/metadata/1024", b"x"),
        r.post(f"/studies/{up['ParentStudy']}/modify", {"Replace": {"StudyDescription": "x"}}),
    ):
        body = response.json()
        assert response.status == 500 and body["OrthancError"] == "Cannot modify a read-only data structure", body
    assert r.get("/instances").json() == [up["ID"]]
    ro.stop()
    assert _files(storage) - before <= {p for p in _files(storage) if p.endswith(("-wal", "-shm"))}
    assert all(os.stat(p).st_mtime_ns == m for p, m in mtimes.items() if os.path.exists(p))
