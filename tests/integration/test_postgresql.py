"""A server whose index is PostgreSQL ("PostgreSQL": {"EnableIndex": true}), on the session's
throwaway cluster (tests/pgcluster.py): the same answers as with SQLite, data kept across a
restart, recycling, and two server processes sharing one index and one storage folder while
they ingest overlapping studies at the same time.

(The whole integration suite also runs on PostgreSQL with ORTHANC_PY_TEST_INDEX=postgresql.)
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import dicomgen
import pytest

from tests.conftest import free_ports
from tests.integration.test_durability import start

STUDY_DESCRIPTION = 0x00081030


def _instance(patient: int, study: int = 0, series: int = 0, number: int = 0, **kw: Any) -> bytes:
    return dicomgen.make(
        patient=patient, study=study, series=series, instance=number, patient_name=f"P{patient}^X", **kw
    )


@pytest.fixture
def pg_server(make_server, postgresql):
    """make_server with a fresh PostgreSQL index (same section for every server it starts)."""
    section = postgresql.section()

    def factory(config: dict[str, Any] | None = None) -> Any:
        return make_server({"PostgreSQL": section, **(config or {})})

    factory.section = section  # type: ignore[attr-defined]
    return factory


def test_upload_navigation_find_changes_and_delete(pg_server):
    c = pg_server().client()
    ups = [c.upload(_instance(p, s, 0, n)) for p in (1, 2) for s in (0, 1) for n in (0, 1)]
    assert all(u["Status"] == "Success" for u in ups)
    assert c.upload(_instance(1, 0, 0, 0))["Status"] == "AlreadyStored"
    assert len(c.get("/patients").json()) == 2
    assert len(c.get("/studies").json()) == 4 and len(c.get("/instances").json()) == 8
    study = c.get(f"/studies/{ups[0]['ParentStudy']}").json()
    assert study["ParentPatient"] == ups[0]["ParentPatient"] and len(study["Series"]) == 1
    series = c.get(f"/series/{ups[0]['ParentSeries']}").json()
    assert series["Instances"] == [ups[0]["ID"], ups[1]["ID"]]  # creation order
    assert c.get(f"/instances/{ups[0]['ID']}/simplified-tags").json()["PatientName"] == "P1^X"
    stats = c.get("/statistics").json()
    assert stats["CountInstances"] == 8 and int(stats["TotalDiskSize"]) > 0
    # /tools/find: case-insensitive wildcard on PatientName, and paging
    found = c.post("/tools/find", {"Level": "Patient", "Query": {"PatientName": "p1*"}}).json()
    assert found == [ups[0]["ParentPatient"]]
    found = c.post("/tools/find", {"Level": "Study", "Query": {"PatientName": "P*"}, "Limit": 3}).json()
    assert len(found) == 3
    assert c.post("/tools/find", {"Level": "Instance", "Query": {"SOPInstanceUID": "nope"}}).json() == []
    changes = c.get("/changes?limit=100").json()
    assert changes["Done"] and len(changes["Changes"]) >= 8 + 4 + 2
    assert changes["Last"] == c.get("/changes?last").json()["Last"]
    # delete a study: its patient stays (it has another study), its files go
    r = c.delete(f"/studies/{ups[0]['ParentStudy']}")
    assert r.status == 200 and r.json()["RemainingAncestor"]["ID"] == ups[0]["ParentPatient"]
    assert c.get(f"/studies/{ups[0]['ParentStudy']}").status == 404
    assert c.get(f"/instances/{ups[0]['ID']}/file").status == 404
    assert len(c.get("/instances").json()) == 6
    assert c.get("/statistics").json()["TotalDiskSize"] < stats["TotalDiskSize"]
    # the change feed keeps the deleted instances' entries
    feed = c.get("/dicom-web/changefeed?includeDeleted=true")
    assert feed.status in (200, 404)  # (the change feed route may be under its plugin's name)


def test_metadata_attachments_labels_and_a_modify_job(pg_server):
    c = pg_server().client()
    u = c.upload(_instance(1))
    iid, study = u["ID"], u["ParentStudy"]
    assert c.put(f"/instances/{iid}/metadata/1024", b"hello").status == 200
    assert c.get(f"/instances/{iid}/metadata/1024").body == b"hello"
    assert "1024" in c.get(f"/instances/{iid}/metadata").json()
    assert c.put(f"/instances/{iid}/attachments/1025", b"x" * 100).status == 200
    assert c.get(f"/instances/{iid}/attachments/1025/data").body == b"x" * 100
    assert c.get(f"/instances/{iid}/attachments/1025/size").json() == 100
    assert c.put(f"/studies/{study}/labels/urgent", b"").status == 200
    assert c.get(f"/studies/{study}/labels").json() == ["urgent"]
    assert c.get("/tools/labels").json() == ["urgent"]
    found = c.post("/tools/find", {"Level": "Study", "Query": {}, "Labels": ["urgent"], "LabelsConstraint": "All"})
    assert found.json() == [study]
    assert c.delete(f"/studies/{study}/labels/urgent").status == 200
    assert c.get(f"/studies/{study}/labels").json() == []
    job = c.post(f"/studies/{study}/modify", {"Replace": {"StudyDescription": "Changed"}, "Asynchronous": True})
    job_id = job.json()["ID"]
    deadline = time.monotonic() + 30
    while (info := c.get(f"/jobs/{job_id}").json())["State"] not in ("Success", "Failure"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert info["State"] == "Success", info
    new_study = info["Content"]["ID"]
    assert c.get(f"/studies/{new_study}").json()["MainDicomTags"]["StudyDescription"] == "Changed"
    assert len(c.get("/studies").json()) == 2


def test_a_restart_keeps_the_index(pg_server, tmp_path):
    storage = str(tmp_path / "shared-storage")
    first = pg_server({"StorageDirectory": storage})
    c = first.client()
    u = c.upload(_instance(3))
    c.put(f"/patients/{u['ParentPatient']}/protected", b"1")
    last = c.get("/changes?last").json()["Last"]
    first.stop()
    again = pg_server({"StorageDirectory": storage}).client()
    assert again.get("/instances").json() == [u["ID"]]
    assert again.get(f"/instances/{u['ID']}/file").body == _instance(3)
    assert again.get(f"/patients/{u['ParentPatient']}/protected").body == b"1"
    assert again.get("/changes?last").json()["Last"] == last
    assert again.upload(_instance(3, 1))["Status"] == "Success"
    assert again.get("/changes?last").json()["Last"] > last


def test_recycling_by_patient_count(pg_server):
    c = pg_server({"MaximumPatientCount": 2}).client()
    ids = {p: c.upload(_instance(p))["ParentPatient"] for p in (1, 2, 3)}
    names = lambda: sorted(p["MainDicomTags"]["PatientName"] for p in c.get("/patients?expand").json())  # noqa: E731
    assert names() == ["P2^X", "P3^X"]
    c.upload(_instance(2, 1))  # P2 is now more recent than P3
    c.upload(_instance(4))
    assert names() == ["P2^X", "P4^X"]
    assert c.put(f"/patients/{ids[2]}/protected", b"1").status == 200
    c.upload(_instance(5))
    assert names() == ["P2^X", "P5^X"]
    assert c.get("/statistics").json()["CountInstances"] == 3


# --------------------------------------------------------------- several servers, one index
def _config(tmp_path: Path, name: str, section: dict[str, Any], port: int, storage: Path) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(
        json.dumps(
            {
                "HttpPort": port,
                "DicomServerEnabled": False,
                "StorageDirectory": str(storage),
                "IndexDirectory": str(tmp_path / name),
                "PostgreSQL": section,
            }
        )
    )
    return path


async def _upload_all(url: str, files: list[bytes]) -> list[str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        sem = asyncio.Semaphore(4)

        async def one(data: bytes) -> str:
            async with sem, s.post(url + "/instances", data=data) as r:
                assert r.status == 200, await r.text()
                return str((await r.json())["ID"])

        return await asyncio.gather(*(one(f) for f in files))


@pytest.mark.parametrize("mode", ["ReadCommitted", "Serializable"])
def test_two_servers_share_one_index(postgresql, tmp_path, mode):
    """Two processes, one index, one storage folder, the same patients and studies stored by
    both at once (each instance by both, in different orders): every resource exists once."""
    section = postgresql.section(TransactionMode=mode)
    storage = tmp_path / "storage"
    ports = free_ports(2)
    procs = [start(_config(tmp_path, f"s{i}", section, port, storage), port) for i, port in enumerate(ports)]
    try:
        files = [_instance(p, s, e, n) for p in range(3) for s in range(2) for e in range(2) for n in range(5)]
        urls = [f"http://127.0.0.1:{port}" for port in ports]

        async def both() -> tuple[list[str], list[str]]:
            a, b = await asyncio.gather(_upload_all(urls[0], files), _upload_all(urls[1], files[::-1]))
            return a, b

        a, b = asyncio.run(both())
        assert a == b[::-1]  # the same public ids, whichever server stored the instance

        async def check(url: str) -> None:
            async with aiohttp.ClientSession() as s:
                for level, count in (("patients", 3), ("studies", 6), ("series", 12), ("instances", 60)):
                    async with s.get(f"{url}/{level}") as r:
                        listed = await r.json()
                    assert len(listed) == len(set(listed)) == count, (level, listed)
                async with s.get(f"{url}/statistics") as r:
                    stats = await r.json()
                assert stats["CountInstances"] == 60 and stats["CountPatients"] == 3
                for iid in a[::7]:
                    async with s.get(f"{url}/instances/{iid}/file") as r:
                        assert r.status == 200 and await r.read() == files[a.index(iid)]
                async with s.get(f"{url}/studies?expand") as r:
                    for study in await r.json():
                        assert len(study["Series"]) == 2

        for url in urls:
            asyncio.run(check(url))
        # only one file per instance on the disk: the second store of each was "AlreadyStored"
        stored = [p for p in storage.rglob("*") if p.is_file() and "index" not in p.name]
        assert len(stored) == 60

        # a delete on one server is seen by the other, and each may store again
        async def delete_and_restore() -> None:
            async with aiohttp.ClientSession() as s:
                async with s.delete(f"{urls[0]}/patients/{(await _patient_of(s, urls[0], a[0]))}") as r:
                    assert r.status == 200
                async with s.get(f"{urls[1]}/patients") as r:
                    assert len(await r.json()) == 2
                await asyncio.gather(_upload_all(urls[1], files[:20]), _upload_all(urls[0], files[:20]))
                async with s.get(f"{urls[0]}/instances") as r:
                    assert len(await r.json()) == 60

        asyncio.run(delete_and_restore())
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


async def _patient_of(s: aiohttp.ClientSession, url: str, instance: str) -> str:
    async with s.get(f"{url}/instances/{instance}/patient") as r:
        return str((await r.json())["ID"])


def test_a_locked_index_refuses_a_second_server(postgresql, tmp_path):
    """ "Lock": true (Orthanc's default) keeps the database to one server."""
    section = postgresql.section(Lock=True)
    storage = tmp_path / "storage"
    ports = free_ports(2)
    first = start(_config(tmp_path, "s0", section, ports[0], storage), ports[0])
    try:
        second = subprocess.run(
            [sys.executable, "-m", "orthanc_py", str(_config(tmp_path, "s1", section, ports[1], storage))],
            capture_output=True,
            timeout=60,
        )
        assert second.returncode != 0
        assert b"used by another server" in second.stderr
    finally:
        first.terminate()
        first.wait(10)


def test_the_sqlite_index_does_not_load_the_postgresql_driver(tmp_path):
    """Start-up time and idle memory of the default index stay as they were."""
    code = (
        "import sys, asyncio\n"
        "from orthanc_py.config import from_raw\n"
        "from orthanc_py.app import build_context\n"
        f"ctx = build_context(from_raw({{'StorageDirectory': {str(tmp_path)!r}}}))\n"
        "asyncio.run(ctx.index.close())\n"
        "assert not any(m.startswith('psycopg') for m in sys.modules), 'psycopg imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_connections_dropped_by_the_database_are_reopened(make_server, postgresql):
    """A database restart (here: every connection of the server terminated) costs no request:
    reads and writes reconnect and run again."""
    import psycopg

    c = make_server({"PostgreSQL": postgresql.section(ApplicationName="reopened")}).client()
    first = c.upload(_instance(1))
    assert c.get(f"/instances/{first['ID']}").status == 200
    with psycopg.connect(postgresql.conninfo(), autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'reopened'"
        ).fetchone()[0]
    assert killed >= 2  # the write connection and at least one reader
    assert c.get(f"/instances/{first['ID']}").status == 200
    assert c.upload(_instance(2))["Status"] == "Success"
    assert len(c.get("/patients").json()) == 2
