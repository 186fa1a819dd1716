"""Fast-lane routes answered in one C call (web/_lane.c, web/lanec.py). GET /instances/{id}/file:
on a SQLite index and a filesystem storage it answers the plain case, byte for byte as aiohttp
does (Date apart); every other case (unknown id, another level, compressed file, missing or
changed file) is left to the Python route or aiohttp, which answer as before. GET /{level}/{id}
of patients, studies and instances: the JSON is Python's, byte for byte, whatever the values
(escapes, other scripts, labels, modified and anonymized copies); what the C renderer does not
write exactly is rendered by Python."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import dicomgen
import pytest

from orthanc_py.web import lanec
from tests.conftest import SQLITE_ONLY
from tests.integration.test_fastlane import exchange, get

pytestmark = [
    SQLITE_ONLY,
    pytest.mark.skipif(lanec.c_module() is None, reason="the C module _lane is not built"),
]


class Recorder:
    """Wraps the C route's `answer` of every server started meanwhile: what it answered."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.answers: list[tuple[bytes, bool]] = []
        self.built = 0
        original = lanec.file_route

        def file_route(source: Any, closers: Any, *head: bytes) -> Any:
            answer = original(source, closers, *head)
            if answer is None:
                return None
            self.built += 1

            def recorded(public_id: bytes, head_end: bytes) -> bytes | None:
                out = answer(public_id, head_end)
                self.answers.append((public_id, out is not None))
                return out

            return recorded

        monkeypatch.setattr(lanec, "file_route", file_route)


def _answers(port: int, paths: list[str]) -> list[tuple[bytes, bytes]]:
    out = []
    for path in paths:
        out += exchange(port, [get(path)], [False])[0]
    return out


def test_the_c_route_answers_as_aiohttp_does(make_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    storage = tmp_path / "shared"
    recorder = Recorder(monkeypatch)
    server = make_server({"StorageDirectory": str(storage)})
    client = server.client()
    a = client.upload(dicomgen.make(rows=64, columns=64, instance=1))
    b = client.upload(dicomgen.make(rows=64, columns=64, instance=2))
    paths = [
        f"/instances/{a['ID']}/file",
        f"/instances/{b['ID']}/file",
        f"/instances/{a['ParentSeries']}/file",  # another level: aiohttp's 404
        "/instances/0000000a-00000000-00000000-00000000-00000000/file",  # unknown
    ]
    with_c = _answers(server.port, paths)
    assert recorder.built == 1
    served = {pid.decode() for pid, answered in recorder.answers if answered}
    assert served == {a["ID"], b["ID"]}
    assert not [pid for pid, answered in recorder.answers if not answered and pid.decode() in (a["ID"], b["ID"])]
    server.stop()

    monkeypatch.setenv("ORTHANC_PY_FAST_LANE", "0")
    plain = make_server({"StorageDirectory": str(storage)})
    without = _answers(plain.port, paths)
    assert with_c == without
    assert with_c[0][0].startswith(b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom\r\n")
    assert with_c[0][1] == plain.client().get(f"/instances/{a['ID']}/file").body
    assert [h[:12] for h, _ in with_c[2:]] == [b"HTTP/1.1 404"] * 2


def _get(port: int, path: str) -> tuple[int, bytes]:
    """GET on a connection of its own: nothing else is pending on it, so the fast lane may
    answer (a GET right behind a POST on one connection may reach aiohttp first)."""
    head, body = _answers(port, [path])[0]
    return int(head.split(b" ", 2)[1]), body


def test_what_the_c_route_leaves_is_answered_as_before(
    make_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    recorder = Recorder(monkeypatch)
    server = make_server({"StorageCompression": True})
    data = dicomgen.make(rows=64, columns=64, instance=1)
    packed = server.client().upload(data)["ID"]
    assert _get(server.port, f"/instances/{packed}/file") == (200, data)
    assert recorder.answers[-1] == (packed.encode(), False)  # compressed: not the C route's

    second = make_server()
    plain = second.client()
    data2 = dicomgen.make(rows=64, columns=64, instance=2)
    pid = plain.upload(data2)["ID"]
    assert _get(second.port, f"/instances/{pid}/file") == (200, data2)
    assert recorder.answers[-1] == (pid.encode(), True)
    uuid = plain.get(f"/instances/{pid}/attachments/dicom/info").json()["Uuid"]
    root = Path(second.settings.storage_directory)
    path = root / uuid[0:2] / uuid[2:4] / uuid
    # a file that changed size under the index: not served from it
    path.write_bytes(data2 + b"\0\0")
    assert _get(second.port, f"/instances/{pid}/file") == (200, data2 + b"\0\0")  # aiohttp's, as it is
    assert recorder.answers[-1] == (pid.encode(), False)
    # a missing file: Orthanc's error, as without the C route
    os.unlink(path)
    status, _body = _get(second.port, f"/instances/{pid}/file")
    assert recorder.answers[-1] == (pid.encode(), False)
    assert status >= 400
    # a deleted instance: 404
    pid2 = plain.upload(dicomgen.make(rows=64, columns=64, instance=3))["ID"]
    assert _get(second.port, f"/instances/{pid2}/file")[0] == 200
    assert plain.delete(f"/instances/{pid2}").status == 200
    assert _get(second.port, f"/instances/{pid2}/file")[0] == 404


def test_the_route_refuses_a_connection_of_another_database(tmp_path: Path) -> None:
    module = lanec.c_module()
    conn = sqlite3.connect(tmp_path / "other.sqlite")
    conn.execute("CREATE TABLE resources (id INTEGER PRIMARY KEY, level INTEGER, public_id TEXT)")
    conn.execute("CREATE TABLE attachments (resource_id, content_type, uuid, compressed_size, compression)")
    rest = (os.fsencode(tmp_path), 1, 4, 1, 65536, b"", b"")  # root, content type, level, plain, max, head
    with pytest.raises(ValueError):
        module.FileRoute(conn, os.fsencode(tmp_path / "index.sqlite"), *rest)
    with pytest.raises(TypeError):
        module.FileRoute(object(), os.fsencode(tmp_path / "other.sqlite"), *rest)
    database = os.fsencode(os.path.realpath(tmp_path / "other.sqlite"))
    route = module.FileRoute(conn, database, *rest)
    assert route.answer(b"nope", b"\r\n\r\n") is None
    route.close()
    assert route.answer(b"nope", b"\r\n\r\n") is None  # closed: nothing, and no crash
    conn.close()


class Renders:
    """Wraps the C renderers of every server started meanwhile: (level, id, rendered by C)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[int, str, bool]] = []
        original = lanec.resource_route

        def resource_route(source: Any, closers: Any, level: int, names: Any) -> Any:
            fast = original(source, closers, level, names)
            if fast is None:
                return None

            def recorded(public_id: str, stable: bool) -> bytes | None:
                out = fast(public_id, stable)
                self.calls.append((level, public_id, out is not None))
                return out

            return recorded

        monkeypatch.setattr(lanec, "resource_route", resource_route)


ODD_NAMES = [
    'Quote"And\\Backslash',  # a quote, and a backslash (a value separator)
    "Ünïcødé^名前^Имя",
    "Tab\tAnd\x01Control",
    "Plain^Name",
]


def test_resources_render_in_c_as_in_python(make_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    storage = tmp_path / "shared"
    renders = Renders(monkeypatch)
    server = make_server({"StorageDirectory": str(storage)})
    client = server.client()
    uploaded = []
    for n, name in enumerate(ODD_NAMES):
        spec = dicomgen.Spec(patient=n, instance=0, rows=8, columns=8, patient_name=name)
        spec.extra["SpecificCharacterSet"] = "ISO_IR 192"
        uploaded.append(client.upload(dicomgen.make(spec)))
    first = uploaded[0]
    assert client.put(f"/studies/{first['ParentStudy']}/labels/zeta", b"").status == 200
    assert client.put(f"/studies/{first['ParentStudy']}/labels/alpha", b"").status == 200
    assert client.put(f"/instances/{first['ID']}/labels/one", b"").status == 200
    modified = client.post(
        f"/studies/{uploaded[1]['ParentStudy']}/modify", {"Replace": {"StudyDescription": 'New "one"'}}
    ).json()
    anonymized = client.post(f"/patients/{uploaded[3]['ParentPatient']}/anonymize", {}).json()
    client.put(f"/patients/{uploaded[2]['ParentPatient']}/protected", b"1")
    paths = []
    for level in ("patients", "studies", "instances"):
        for pid in client.get(f"/{level}").json():
            paths.append(f"/{level}/{pid}")
    assert modified["ID"] and anonymized["ID"]
    server.stop()  # both servers below start on the same storage: every resource stable alike

    server = make_server({"StorageDirectory": str(storage)})
    with_c = _answers(server.port, paths)
    rendered = {(level, pid) for level, pid, by_c in renders.calls if by_c}
    assert {level for level, _pid in rendered} == {1, 2, 4}
    assert len(rendered) == len(paths), [c for c in renders.calls if not c[2]]
    server.stop()

    monkeypatch.setenv("ORTHANC_PY_FAST_LANE", "0")
    plain = make_server({"StorageDirectory": str(storage)})
    without = _answers(plain.port, paths)
    assert with_c == without
    bodies = b"".join(body for _head, body in with_c)
    for needle in (
        b'"ModifiedFrom"',
        b'"AnonymizedFrom"',
        b'"alpha",\n    "zeta"',
        b'"IsProtected": true',
        "名前".encode(),
    ):
        assert needle in bodies
