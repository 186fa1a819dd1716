"""The HTTP fast lane (web/fastlane.py): what it answers is byte for byte what aiohttp answers
(apart from Date), in request order, whatever the requests around it and however the bytes
arrive; what it must not answer goes to aiohttp; keep-alive timing stays aiohttp's."""

from __future__ import annotations

import http.client
import re
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import dicomgen
import pytest

from orthanc_py.web import fastlane
from tests.conftest import SQLITE_ONLY, self_signed_certificates

pytestmark = SQLITE_ONLY

DATE = re.compile(rb"Date: [^\r]*\r\n")


class Lane:
    """Records the requests the fast lane answered (FastLane.answer, wrapped for the test)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.served: list[bytes] = []
        original = fastlane.FastLane.answer

        def answer(lane: fastlane.FastLane, method: bytes, target: bytes, fields: dict[bytes, bytes]) -> bytes | None:
            found = original(lane, method, target, fields)
            if found is not None:
                self.served.append(target)
            return found

        monkeypatch.setattr(fastlane.FastLane, "answer", answer)


def _responses(data: bytes, heads: Sequence[bool]) -> list[tuple[bytes, bytes]]:
    """The responses in `data` (status line and headers without Date, body); `heads[i]`: the
    i-th request was a HEAD (no body follows)."""
    out = []
    pos = 0
    for head_only in heads:
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            break
        head = data[pos : end + 4]
        match = re.search(rb"Content-Length: (\d+)", head)
        length = 0 if head_only or match is None else int(match[1])
        body = data[end + 4 : end + 4 + length]
        if len(body) < length:
            break
        out.append((DATE.sub(b"", head), body))
        pos = end + 4 + length
    return out


def exchange(
    port: int,
    chunks: Sequence[bytes],
    heads: Sequence[bool],
    pause: float = 0.0,
    closing: bool = False,
    unread: float = 0.0,
    wait: float = 10.0,
) -> tuple[list[tuple[bytes, bytes]], bool]:
    """Send `chunks` on one connection (`pause` between them), read the answers to the
    requests (`heads` as for _responses); also whether the server closed the connection (when
    `closing`: waits a little for it). `unread`: the chunks are sent by a thread of their own
    while nothing is read for that many seconds (the sending may block meanwhile)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def send() -> None:
            for chunk in chunks:
                sock.sendall(chunk)
                if pause:
                    time.sleep(pause)

        sender = threading.Thread(target=send) if unread else None
        if sender is not None:
            sender.start()
            time.sleep(unread)
        else:
            send()
        data = b""
        closed = False
        sock.settimeout(0.5)
        deadline = time.monotonic() + wait
        while len(_responses(data, heads)) < len(heads) and time.monotonic() < deadline:
            try:
                got = sock.recv(1 << 20)
            except TimeoutError:
                continue
            if not got:
                closed = True
                break
            data += got
        if sender is not None:
            sender.join(10)
        if closing and not closed:
            sock.settimeout(0.5)
            try:
                closed = sock.recv(1) == b""
            except TimeoutError:
                pass
    answers = _responses(data, heads)
    assert len(answers) == len(heads), data[-300:]
    return answers, closed


def get(path: str, *headers: str, method: str = "GET", version: str = "1.1") -> bytes:
    lines = "".join(f"{h}\r\n" for h in headers)
    return f"{method} {path} HTTP/{version}\r\nHost: test\r\n{lines}\r\n".encode()


def post(path: str, body: bytes) -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


@pytest.fixture
def stored(make_server: Any, tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """A storage area holding two small instances (and their ids); servers on it are started
    with the lane on and off, one after the other, so that both hold the same bytes."""
    storage = tmp_path / "shared"
    server = make_server({"StorageDirectory": str(storage)})
    client = server.client()
    first = client.upload(dicomgen.make(rows=64, columns=64, instance=1))
    client.upload(dicomgen.make(rows=64, columns=64, instance=2))
    server.stop()
    ids = {
        "patient": first["ParentPatient"],
        "study": first["ParentStudy"],
        "series": first["ParentSeries"],
        "instance": first["ID"],
    }
    yield ids, storage


def both_lanes(
    make_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    storage: Path,
    run: Any,
    config: dict[str, Any] | None = None,
) -> tuple[Any, Any, Lane]:
    """`run(port)` on a server with the fast lane, then on one without: both results, and what
    the lane answered."""
    lane = Lane(monkeypatch)
    results = []
    for enabled in ("1", "0"):
        monkeypatch.setenv("ORTHANC_PY_FAST_LANE", enabled)
        server = make_server({"StorageDirectory": str(storage), **(config or {})})
        try:
            results.append(run(server.port))
        finally:
            server.stop()
    return results[0], results[1], lane


def test_each_route_and_its_edge_cases_answer_as_aiohttp_does(make_server, monkeypatch, stored):
    ids, storage = stored
    i = ids["instance"]
    fast = [
        f"/patients/{ids['patient']}",
        f"/studies/{ids['study']}",
        f"/series/{ids['series']}",
        f"/instances/{i}",
        f"/instances/{i}/file",
        f"/instances/{i}/tags",
        f"/instances/{i}/simplified-tags",
        f"/instances/{i}/preview",
    ]
    requests = [get(p) for p in fast]
    requests.append(get(fast[4], "Accept-Encoding: gzip, deflate"))  # aiohttp does not compress either
    requests.append(get(fast[3], "Connection: Keep-Alive", "Accept: application/json"))
    requests += [get(p, "Accept: */*") for p in fast]
    slow = [
        get(f"/studies/{i}"),  # another level: a bare 404
        get("/instances/0000000a-00000000-00000000-00000000-00000000"),
        get("/instances/nope/file"),
        get(f"/instances/{i}?short"),
        get(f"/instances/{i}/tags?simplify"),
        get(f"/instances/{i}/preview?quality=50"),
        get(f"//instances/{i}"),
        get(f"/instances/{i}/"),
        get(f"/instances/{i}", "Accept: application/xml"),
        get(f"/instances/{i}/file", "Accept: application/dicom+json"),
        get(f"/instances/{i}/preview", "Accept: image/jpeg"),
        get(f"/instances/{i}", "X-HTTP-Method-Override: GET"),  # a bare 400
        get(f"/instances/{i}", method="HEAD"),
        get("/patients"),
    ]
    requests += slow
    heads = [r.startswith(b"HEAD") for r in requests]

    def run(port: int) -> list[tuple[bytes, bytes]]:
        answers = []
        for request, head in zip(requests, heads, strict=True):
            answers += exchange(port, [request], [head])[0]  # on a connection of its own...
        pair = [get(fast[0]), get(fast[3])]
        for request in pair:  # ...and one after the other on one connection (the lane's case)
            answers += exchange(port, [request, *pair], [False] * 3, pause=0.05)[0]
        return answers

    with_lane, without, lane = both_lanes(make_server, monkeypatch, storage, run)
    assert with_lane == without
    assert with_lane[3][0].startswith(b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n")
    assert with_lane[-1][1] == with_lane[-3][1] != with_lane[-2][1]  # instance, patient, instance
    # the plain requests were answered by the lane (at least once each), the others never
    assert {t.decode() for t in lane.served} == set(fast)


def test_pipelined_requests_mixing_lanes_come_back_in_order(make_server, monkeypatch, stored):
    ids, storage = stored
    i = ids["instance"]
    find = b'{"Level": "Instance", "Query": {}}'
    burst = [
        get(f"/instances/{i}"),
        post("/tools/find", find),
        get(f"/instances/{i}/file"),
        get(f"/studies/{ids['study']}", method="HEAD"),
        get("/patients"),
        get(f"/instances/{i}/simplified-tags"),
        get(f"/instances/{i}?short"),
        get(f"/instances/{i}/preview"),
        get(f"/instances/{i}", "Content-Length: 3")[:-2] + b"\r\nabc",  # a GET with a body
        get(f"/instances/{i}/tags"),
        get(f"/series/{ids['series']}", "Connection: close"),
    ]
    heads = [r.startswith(b"HEAD") for r in burst]

    def run(port: int) -> tuple[list[tuple[bytes, bytes]], ...]:
        whole = exchange(port, [b"".join(burst)], heads, closing=True)
        assert whole[1], "Connection: close closes the connection"
        # a POST whose body comes in two writes, then a GET the lane may answer
        body = post("/tools/find", find)
        split = exchange(port, [body[:-10], body[-10:] + get(f"/instances/{i}")], [False, False], pause=0.1)
        # a body sent later than its headers, the GET behind it in the same write as its end
        late = exchange(
            port,
            [body[: body.index(b"\r\n\r\n") + 4], body[body.index(b"\r\n\r\n") + 4 :] + get(f"/instances/{i}/file")],
            [False, False],
            pause=0.1,
        )
        # every byte in a write of its own
        raw = get(f"/instances/{i}") + get(f"/studies/{ids['study']}") + get(f"/instances/{i}/tags")
        bytewise = exchange(port, [raw[k : k + 1] for k in range(len(raw))], [False] * 3)
        return whole[0], split[0], late[0], bytewise[0]

    with_lane, without, lane = both_lanes(make_server, monkeypatch, storage, run)
    assert with_lane == without
    whole = with_lane[0]
    assert [json_kind(a) for a in whole[:2]] == ["instance", "list"]
    assert whole[2][0].startswith(b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom\r\n")
    assert whole[8][1] == whole[0][1]
    assert b"\r\nConnection: close\r\n" in whole[-1][0]
    assert len(lane.served) >= 4  # the lane took its share of the mixed connection


def test_a_client_that_does_not_read_is_held_back_by_aiohttp(make_server, monkeypatch, stored):
    """Pipelined requests whose answers are not read: the lane stops once the transport's
    buffer is full (writing paused), aiohttp takes the rest and waits for the client."""
    ids, storage = stored
    lane = Lane(monkeypatch)
    server = make_server({"StorageDirectory": str(storage)})
    request = get(f"/instances/{ids['instance']}/file")
    one = exchange(server.port, [request], [False])[0][0]
    # (aiohttp answers a deep pipeline slowly, a few hundred a second: not too many requests)
    flood, _ = exchange(server.port, [request * 1200], [False] * 1200, unread=1.0, wait=60)
    assert set(flood) == {one}
    assert 1 < len(lane.served) < 1201


def json_kind(answer: tuple[bytes, bytes]) -> str:
    body = answer[1]
    return "list" if body.startswith(b"[") else "instance" if b'"FileUuid"' in body else "other"


def test_http_10_and_garbage_go_to_aiohttp(make_server, monkeypatch, stored):
    ids, storage = stored
    i = ids["instance"]

    def run(port: int) -> tuple[Any, ...]:
        old = exchange(port, [get(f"/instances/{i}", version="1.0")], [False], closing=True)
        old_kept = exchange(port, [get(f"/instances/{i}", "Connection: keep-alive", version="1.0")] * 2, [False] * 2)
        bad = exchange(port, [b"GET /system HTTP/1.1\r\nBad Header: x\r\n\r\n"], [False])
        junk = exchange(port, [b"\x16\x03\x01 hello\r\n\r\n"], [False])
        body = b'{"Level": "Study", "Query": {}}'
        chunked = b"POST /tools/find HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        chunked += b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        then = exchange(port, [chunked[:-7], chunked[-7:] + get(f"/instances/{i}")], [False, False], pause=0.1)
        return old, old_kept, bad, junk, then

    with_lane, without, lane = both_lanes(make_server, monkeypatch, storage, run)
    assert with_lane == without
    assert with_lane[0][1] is True  # HTTP/1.0 without keep-alive: closed after the answer
    assert b" 400 Bad Request\r\n" in with_lane[2][0][0][0]
    assert with_lane[4][0][0][1].startswith(b'[\n  "') and b'"FileUuid"' in with_lane[4][0][1][1]
    assert lane.served == []


@pytest.mark.parametrize("config", [{"RemoteAccessAllowed": False}, {"AuthenticationEnabled": True}])
def test_access_rules_are_those_of_aiohttp(make_server, monkeypatch, stored, config):
    ids, storage = stored
    config = {**config, "RegisteredUsers": {"alice": "secret"}}
    path = f"/instances/{ids['instance']}"

    def run(port: int) -> list[tuple[bytes, bytes]]:
        answers = []
        for auth in ("YWxpY2U6c2VjcmV0", "YWxpY2U6d3Jvbmc=", None):  # alice:secret, alice:wrong, none
            headers = [f"Authorization: Basic {auth}"] if auth else []
            answers += exchange(port, [get(path, *headers)] * 2, [False, False])[0]
        return answers

    with_lane, without, lane = both_lanes(make_server, monkeypatch, storage, run, config)
    assert with_lane == without
    statuses = [a[0].split(b"\r\n")[0] for a in with_lane]
    if config.get("AuthenticationEnabled"):
        assert statuses == [b"HTTP/1.1 200 OK"] * 2 + [b"HTTP/1.1 401 Unauthorized"] * 4
    else:  # RemoteAccessAllowed false: loopback is allowed, with or without credentials
        assert statuses == [b"HTTP/1.1 200 OK"] * 6
    assert lane.served, "the lane answered the allowed requests"


def test_keep_alive_timeout_still_closes_an_idle_connection(make_server, monkeypatch, stored):
    ids, storage = stored
    lane = Lane(monkeypatch)
    server = make_server({"StorageDirectory": str(storage), "HttpTimeout": 1})
    request = get(f"/instances/{ids['instance']}")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        for _ in range(8):  # busy with fast-lane requests for longer than the timeout
            sock.sendall(request)
            data = b""
            while not _responses(data, [False]):
                got = sock.recv(1 << 16)
                assert got, "closed while busy"
                data += got
            time.sleep(0.25)
        assert len(lane.served) == 8
        started = time.monotonic()
        sock.settimeout(5)
        assert sock.recv(1) == b""  # idle: closed by the keep-alive timer
        assert 0.5 < time.monotonic() - started < 3


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make certificates")
def test_the_lane_serves_https_connections_too(make_server, monkeypatch, stored, tmp_path):
    ids, storage = stored
    self_signed_certificates(tmp_path, ("server",))
    pem = tmp_path / "server.pem"
    pem.write_text((tmp_path / "server.crt").read_text() + (tmp_path / "server.key").read_text())
    paths = [f"/instances/{ids['instance']}", f"/instances/{ids['instance']}/file", f"/studies/{ids['study']}"]

    def run(port: int) -> list[tuple[int, list[tuple[str, str]], bytes]]:
        context = ssl.create_default_context(cafile=str(tmp_path / "server.crt"))
        context.check_hostname = False
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
        answers = []
        try:
            for path in paths * 2:  # one keep-alive connection
                conn.request("GET", path)
                r = conn.getresponse()
                headers = [(k, v) for k, v in r.getheaders() if k != "Date"]
                answers.append((r.status, headers, r.read()))
        finally:
            conn.close()
        return answers

    config = {"SslEnabled": True, "SslCertificate": str(pem)}
    with_lane, without, lane = both_lanes(make_server, monkeypatch, storage, run, config)
    assert with_lane == without
    assert [a[0] for a in with_lane] == [200] * 6
    assert len(lane.served) >= 5
