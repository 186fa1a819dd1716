"""HTTP reader processes (web/readerlane.py): fast requests answered by another process, byte for
byte as the main process answers them; any other request handed back with the connection;
readers that die, or whose main process dies, lose nothing else."""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dicomgen
import pytest

from tests.conftest import SQLITE_ONLY
from tests.integration.test_fastlane import exchange, get, post
from tests.integration.test_fastlane import stored as stored  # the fixture

pytestmark = [pytest.mark.skipif(not sys.platform.startswith("linux"), reason="readers need Linux"), SQLITE_ONLY]


def reader_pids(parent: int) -> set[int]:
    """The reader processes `parent` started (any of its threads)."""
    found = set()
    for task in os.listdir(f"/proc/{parent}/task"):
        try:
            children = Path(f"/proc/{parent}/task/{task}/children").read_text().split()
        except OSError:
            continue
        for pid in children:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if b"orthanc_py.readers" in cmdline and state != "Z":
                found.add(int(pid))
    return found


def owner(sock: socket.socket, pids: set[int]) -> int | None:
    """Which of `pids` holds the server's end of the connection `sock` (through /proc)."""
    client_port = sock.getsockname()[1]
    server_port = sock.getpeername()[1]
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{server_port:04X}") and fields[2].endswith(f":{client_port:04X}"):
            inode = fields[9]
    if inode is None:
        return None
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    return None


def answer(sock: socket.socket, request: bytes) -> tuple[int, bytes]:
    """Send one request, read its answer (status, body) from the keep-alive connection."""
    sock.sendall(request)
    return read_answer(sock)


def read_answer(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        got = sock.recv(65536)
        assert got, data
        data += got
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        got = sock.recv(65536)
        assert got
        body += got
    assert len(body) == length  # nothing more was sent
    return int(head.split(b" ")[1]), body


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def settle(sock: socket.socket, pids: set[int], expected: set[int]) -> int | None:
    """The owner of the connection once it is one of `expected` (a move takes a moment)."""
    deadline = time.monotonic() + 5
    found = owner(sock, pids)
    while found not in expected and time.monotonic() < deadline:
        time.sleep(0.01)
        found = owner(sock, pids)
    return found


def wait_for_reader(port: int, path: str, parent: int | None = None) -> set[int]:
    """Readers of the server (in this process, or `parent`), once one answers on a new
    connection."""
    parent = os.getpid() if parent is None else parent
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        readers = reader_pids(parent)
        if readers:
            with connect(port) as sock:
                status, _ = answer(sock, get(path))
                assert status == 200
                if owner(sock, readers | {parent}) in readers:
                    return readers
        time.sleep(0.05)
    raise AssertionError("no reader process answered")


@pytest.fixture
def readers_on(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("ORTHANC_PY_HTTP_READERS", "1")
    monkeypatch.setenv("ORTHANC_PY_HTTP_READERS_LOAD", "0")  # at once, whatever the load
    return monkeypatch


def test_readers_answer_byte_for_byte_as_the_main_process(make_server, monkeypatch, stored):
    ids, storage = stored
    i = ids["instance"]
    fast = [f"/instances/{i}{suffix}" for suffix in ("", "/file", "/tags", "/simplified-tags", "/preview")]
    requests = [get(p) for p in fast]
    requests += [get(p, "Accept: */*") for p in fast]
    requests += [
        get(f"/studies/{ids['study']}"),  # another level: the main process's
        get(f"/studies/{i}"),
        get("/instances/0000000a-00000000-00000000-00000000-00000000"),  # unknown: handed back
        get(f"/instances/{i}?short"),
        get(f"/instances/{i}", "Accept: application/xml"),
        get(f"/instances/{i}", method="HEAD"),
        get(f"/instances/{i}", "Connection: close"),
    ]
    heads = [r.startswith(b"HEAD") for r in requests]

    def run(port: int) -> list[tuple[bytes, bytes]]:
        answers = []
        for request, head in zip(requests, heads, strict=True):
            answers += exchange(port, [request], [head])[0]  # on a connection of its own
        # all on one connection, one after the other: the connection moves back and forth
        answers += exchange(port, requests, heads, pause=0.01)[0]
        answers += exchange(port, [b"".join(requests)], heads)[0]  # pipelined
        return answers

    results = []
    for count in ("1", "0"):
        monkeypatch.setenv("ORTHANC_PY_HTTP_READERS", count)
        monkeypatch.setenv("ORTHANC_PY_HTTP_READERS_LOAD", "0")
        server = make_server({"StorageDirectory": str(storage)})
        try:
            if count == "1":
                readers = wait_for_reader(server.port, fast[0])
                with connect(server.port) as sock:
                    for path in fast:
                        assert answer(sock, get(path))[0] == 200
                    assert owner(sock, readers | {os.getpid()}) in readers
            results.append(run(server.port))
        finally:
            server.stop()
    assert results[0] == results[1]
    assert results[0][0][0].startswith(b"HTTP/1.1 200 OK\r\n")


def test_other_requests_are_handed_back_with_their_bytes(make_server, readers_on):
    server = make_server()
    client = server.client()
    first = client.upload(dicomgen.make(rows=16, columns=16, instance=1))
    path = f"/instances/{first['ID']}"
    readers = wait_for_reader(server.port, path)
    main = os.getpid()
    with connect(server.port) as sock:
        assert answer(sock, get(path))[0] == 200
        assert settle(sock, readers | {main}, readers) in readers
        status, body = answer(sock, get("/system"))  # not fast: handed back
        assert status == 200 and b'"ApiVersion"' in body
        assert settle(sock, readers | {main}, {main}) == main
        assert answer(sock, get(f"{path}/file"))[0] == 200  # the main process's lane
    second = dicomgen.make(rows=16, columns=16, instance=2)
    with connect(server.port) as sock:  # a POST whose body arrives in pieces, around the move
        assert answer(sock, get(path))[0] == 200
        assert settle(sock, readers | {main}, readers) in readers
        request = post("/instances", second)
        cuts = [0, 40, len(request) - len(second) + 100, len(request) // 2, len(request)]
        for start, stop in itertools.pairwise(cuts):
            sock.sendall(request[start:stop])
            time.sleep(0.05)
        status, body = read_answer(sock)
        assert status == 200 and b'"Status" : "Success"' in body.replace(b'": "', b'" : "'), body
        assert answer(sock, get(path))[0] == 200
    assert len(client.get("/instances").json()) == 2
    with connect(server.port) as sock:  # deleted: the reader hands back, the main process answers
        assert answer(sock, get(path))[0] == 200
        client.delete(path)
        status, body = answer(sock, get(path))
        assert status == 404
        assert answer(sock, get(f"{path}/file"))[0] == 404


def test_access_rules_in_readers(make_server, readers_on):
    server = make_server({"AuthenticationEnabled": True, "RegisteredUsers": {"alice": "secret"}})
    client = server.client(auth=("alice", "secret"))
    path = f"/instances/{client.upload(dicomgen.make(rows=16, columns=16))['ID']}"
    good = "Authorization: Basic " + base64.b64encode(b"alice:secret").decode()
    bad = "Authorization: Basic " + base64.b64encode(b"alice:wrong").decode()
    deadline = time.monotonic() + 20
    while not reader_pids(os.getpid()) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1)  # ready
    readers = reader_pids(os.getpid())
    answers = exchange(server.port, [get(path, good), get(path, bad), get(path)], [False] * 3)[0]
    statuses = [a[0].split(b"\r\n")[0] for a in answers]
    assert statuses == [b"HTTP/1.1 200 OK", b"HTTP/1.1 401 Unauthorized", b"HTTP/1.1 401 Unauthorized"]
    with connect(server.port) as sock:
        assert answer(sock, get(path, good))[0] == 200
        assert owner(sock, readers | {os.getpid()}) in readers


def test_a_reader_that_dies_loses_only_its_connections(make_server, readers_on):
    server = make_server()
    stop = server.stop
    path = f"/instances/{server.client().upload(dicomgen.make(rows=16, columns=16))['ID']}"
    (reader,) = wait_for_reader(server.port, path)
    os.kill(reader, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while os.path.exists(f"/proc/{reader}") and time.monotonic() < deadline:  # until reaped
        time.sleep(0.05)
    with connect(server.port) as sock:
        assert answer(sock, get(path))[0] == 200
        assert answer(sock, get("/system"))[0] == 200
    (again,) = wait_for_reader(server.port, path)  # a new one is started
    assert again != reader
    stop()
    assert not reader_pids(os.getpid()), "stopping the server stops the readers"
    assert not any(  # and reaps them: no zombie left
        Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        for pid in (reader, again)
        if Path(f"/proc/{pid}/stat").exists()
    )


def test_readers_exit_when_the_main_process_is_killed(tmp_path: Path):
    from tests.conftest import free_port

    port = free_port()
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps({"HttpPort": port, "DicomServerEnabled": False, "StorageDirectory": str(tmp_path / "s")})
    )
    env = {**os.environ, "ORTHANC_PY_HTTP_READERS": "2", "ORTHANC_PY_HTTP_READERS_LOAD": "0"}
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    main = subprocess.Popen([sys.executable, "-m", "orthanc_py", str(config)], env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 20
        readers: set[int] = set()
        while len(readers) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            readers = reader_pids(main.pid)
        assert len(readers) == 2
        main.send_signal(signal.SIGKILL)
        main.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(pid) for pid in readers):
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in readers)
    finally:
        if main.poll() is None:
            main.kill()
            main.wait()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make certificates")
def test_off_with_https_and_with_the_setting(make_server, monkeypatch: Any, readers_on, tmp_path):
    from tests.conftest import self_signed_certificates

    monkeypatch.setenv("ORTHANC_PY_HTTP_READERS", "0")
    server = make_server()
    time.sleep(0.5)
    assert not reader_pids(os.getpid())
    server.stop()
    monkeypatch.setenv("ORTHANC_PY_HTTP_READERS", "1")
    self_signed_certificates(tmp_path, ("server",))
    pem = tmp_path / "server.pem"
    pem.write_text((tmp_path / "server.crt").read_text() + (tmp_path / "server.key").read_text())
    server = make_server({"SslEnabled": True, "SslCertificate": str(pem)})
    time.sleep(0.5)
    assert not reader_pids(os.getpid())


def test_readers_start_under_load_follow_the_default_encoding_and_stop_when_idle(make_server, monkeypatch):
    monkeypatch.setenv("ORTHANC_PY_HTTP_READERS", "1")
    monkeypatch.setenv("ORTHANC_PY_HTTP_READERS_LOAD", "50")  # fast answers a second
    monkeypatch.setenv("ORTHANC_PY_HTTP_READERS_IDLE", "1")
    server = make_server()
    ds = dicomgen.make_dataset(dicomgen.Spec(rows=16, columns=16))
    del ds.SpecificCharacterSet  # the name's bytes are read with the default encoding
    ds.PatientName = b"Jos\xe9"
    path = f"/instances/{server.client().upload(dicomgen.to_bytes(ds))['ID']}/simplified-tags"
    main = os.getpid()
    with connect(server.port) as sock:
        assert answer(sock, get(path))[0] == 200
        assert not reader_pids(main), "no reader while idle"
        deadline = time.monotonic() + 20
        while not reader_pids(main) and time.monotonic() < deadline:
            for _ in range(20):
                assert answer(sock, get(path))[0] == 200
            time.sleep(0.01)
    readers = wait_for_reader(server.port, path)
    client = server.client()
    for encoding in ("Utf8", "Latin1"):
        assert client.put("/tools/default-encoding", encoding).status == 200
        with connect(server.port) as sock:
            status, body = answer(sock, get(path))
            assert status == 200
            assert owner(sock, readers | {main}) in readers
            assert body == client.get(path.replace("/simplified-tags", "/tags?simplify")).body  # main's
            assert ("José" in body.decode()) == (encoding == "Latin1")
    deadline = time.monotonic() + 20
    while reader_pids(main) and time.monotonic() < deadline:  # idle: stopped, and reaped
        time.sleep(0.1)
    assert not reader_pids(main)
