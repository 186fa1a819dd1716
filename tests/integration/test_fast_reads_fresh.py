"""The fast lane's reads are kept until the index changes (index.nowcache): every change, by
this server or by another process writing the same SQLite file, shows in the next answer."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from typing import Any

import dicomgen
import pytest

from tests.conftest import SQLITE_ONLY
from tests.integration.test_fastlane import Lane, exchange, get

pytestmark = SQLITE_ONLY


class Answer:
    def __init__(self, head: bytes, body: bytes) -> None:
        self.head, self.body = head, body

    def json(self) -> Any:
        return json.loads(self.body)


def _cached(client: Any, lane: Lane, path: str) -> Answer:
    """GET `path` three times, each on a connection of its own (the lane's case): computed,
    computed and kept, then found in the cache (index.nowcache keeps a value the second time).
    All the same, all answered by the lane; the answer."""
    served = len(lane.served)
    answers = [exchange(client.port, [get(path)], [False])[0][0] for _ in range(3)]
    assert answers[0][0].startswith(b"HTTP/1.1 200 OK"), answers[0]
    assert answers[0] == answers[1] == answers[2]
    assert lane.served[served:] == [path.encode()] * 3
    return Answer(*answers[2])


@pytest.fixture
def lane(monkeypatch: pytest.MonkeyPatch) -> Lane:
    monkeypatch.setenv("ORTHANC_PY_FAST_LANE", "1")
    return Lane(monkeypatch)


def test_deleted_and_added_instances_show_at_once(make_server, lane):
    client = make_server().client()
    a = client.upload(dicomgen.make(rows=8, columns=8, instance=1))
    b = client.upload(dicomgen.make(rows=8, columns=8, instance=2))
    study, series = a["ParentStudy"], a["ParentSeries"]
    _cached(client, lane, f"/instances/{a['ID']}")
    _cached(client, lane, f"/instances/{a['ID']}/file")
    assert sorted(_cached(client, lane, f"/series/{series}").json()["Instances"]) == sorted([a["ID"], b["ID"]])
    before = _cached(client, lane, f"/studies/{study}").json()

    assert client.delete(f"/instances/{a['ID']}").status == 200
    assert client.get(f"/instances/{a['ID']}").status == 404
    assert client.get(f"/instances/{a['ID']}/file").status == 404
    assert _cached(client, lane, f"/series/{series}").json()["Instances"] == [b["ID"]]

    time.sleep(1.1)  # LastUpdate has a resolution of one second
    c = client.upload(dicomgen.make(rows=8, columns=8, series=1, instance=1))
    after = _cached(client, lane, f"/studies/{study}").json()
    assert after["Series"] == [*before["Series"], c["ParentSeries"]]
    assert after["LastUpdate"] > before["LastUpdate"]


def test_labels_protection_and_modification_show_at_once(make_server, lane):
    client = make_server().client()
    a = client.upload(dicomgen.make(rows=8, columns=8))
    patient, study = a["ParentPatient"], a["ParentStudy"]
    assert _cached(client, lane, f"/studies/{study}").json()["Labels"] == []
    assert _cached(client, lane, f"/patients/{patient}").json()["IsProtected"] is False

    assert client.put(f"/studies/{study}/labels/reviewed", b"").status == 200
    assert _cached(client, lane, f"/studies/{study}").json()["Labels"] == ["reviewed"]
    assert client.put(f"/patients/{patient}/protected", b"1").status == 200
    assert _cached(client, lane, f"/patients/{patient}").json()["IsProtected"] is True

    modified = client.post(
        f"/studies/{study}/modify",
        {"Replace": {"StudyDescription": "CHANGED"}, "Keep": ["StudyInstanceUID"], "KeepSource": False, "Force": True},
    )
    assert modified.status == 200, modified.body
    assert modified.json()["ID"] == study
    assert _cached(client, lane, f"/studies/{study}").json()["MainDicomTags"]["StudyDescription"] == "CHANGED"


def test_is_stable_flips_as_before(make_server, lane):
    client = make_server({"StableAge": 1}).client()
    a = client.upload(dicomgen.make(rows=8, columns=8))
    study = a["ParentStudy"]
    assert _cached(client, lane, f"/studies/{study}").json()["IsStable"] is False
    deadline = time.monotonic() + 10
    while _cached(client, lane, f"/studies/{study}").json()["IsStable"] is False:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert _cached(client, lane, f"/studies/{study}").json()["IsStable"] is True
    client.upload(dicomgen.make(rows=8, columns=8, instance=1))
    assert _cached(client, lane, f"/studies/{study}").json()["IsStable"] is False


def test_an_overwritten_instance_serves_its_new_file(make_server, lane):
    client = make_server({"OverwriteInstances": True}).client()
    first = dicomgen.make(rows=8, columns=8)
    second = dicomgen.make(rows=8, columns=8, extra={"ImageComments": "second version"})
    a = client.upload(first)
    assert _cached(client, lane, f"/instances/{a['ID']}/file").body == first
    uuid = _cached(client, lane, f"/instances/{a['ID']}").json()["FileUuid"]
    assert client.upload(second)["ID"] == a["ID"]
    assert _cached(client, lane, f"/instances/{a['ID']}/file").body == second
    assert _cached(client, lane, f"/instances/{a['ID']}").json()["FileUuid"] != uuid


def test_a_commit_by_another_process_shows_at_once(make_server, lane):
    server = make_server()
    client = server.client()
    a = client.upload(dicomgen.make(rows=8, columns=8))
    study = a["ParentStudy"]
    assert _cached(client, lane, f"/studies/{study}").json()["Labels"] == []
    script = (
        "import sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1], timeout=30)\n"
        "c.execute(\"INSERT INTO labels SELECT id, 'outside' FROM resources WHERE public_id = ?\", (sys.argv[2],))\n"
        "c.commit()\n"
    )
    subprocess.run([sys.executable, "-c", script, server.ctx.index.path, study], check=True, timeout=60)
    assert _cached(client, lane, f"/studies/{study}").json()["Labels"] == ["outside"]
    with sqlite3.connect(server.ctx.index.path, timeout=30) as other:  # another connection of this process
        other.execute("DELETE FROM labels WHERE label = 'outside'")
    assert _cached(client, lane, f"/studies/{study}").json()["Labels"] == []


def test_a_reader_process_sees_the_main_process_commits_at_once(make_server, monkeypatch):
    """A reader process (web/readerlane.py) keeps what it read until the main process commits."""
    from tests.integration.test_readers import answer, connect, owner, settle, wait_for_reader

    if not sys.platform.startswith("linux"):
        pytest.skip("readers need Linux")
    monkeypatch.setenv("ORTHANC_PY_HTTP_READERS", "1")
    monkeypatch.setenv("ORTHANC_PY_HTTP_READERS_LOAD", "0")
    server = make_server({"OverwriteInstances": True})
    client = server.client()
    first = dicomgen.make(rows=8, columns=8)
    second = dicomgen.make(rows=8, columns=8, extra={"ImageComments": "second version"})
    a = client.upload(first)
    b = client.upload(dicomgen.make(rows=8, columns=8, instance=1))
    readers = wait_for_reader(server.port, f"/instances/{b['ID']}")
    with connect(server.port) as sock:
        for _ in range(3):  # computed, kept, found
            assert answer(sock, get(f"/instances/{a['ID']}/file")) == (200, first)
            status, body = answer(sock, get(f"/instances/{a['ID']}"))
            assert status == 200
        assert settle(sock, readers | {os.getpid()}, readers) in readers
        uuid = json.loads(body)["FileUuid"]
        assert client.upload(second)["ID"] == a["ID"]  # committed by the main process
        assert answer(sock, get(f"/instances/{a['ID']}/file")) == (200, second)
        status, body = answer(sock, get(f"/instances/{a['ID']}"))
        assert status == 200 and json.loads(body)["FileUuid"] != uuid
        assert owner(sock, readers | {os.getpid()}) in readers  # still the reader's
        assert client.delete(f"/instances/{a['ID']}").status == 200
        assert answer(sock, get(f"/instances/{a['ID']}"))[0] == 404  # (handed back to the main process)
