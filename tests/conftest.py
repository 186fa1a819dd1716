"""Test harness: the real server on a free port, and a small synchronous HTTP client.

The server runs in a background thread with its own event loop (same code as `orthanc-py`),
listening on a socket bound to port 0, so tests never race for ports and never sleep.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from orthanc_py.app import configure_libraries, event_loop_factory, serve  # noqa: E402
from orthanc_py.config import from_raw  # noqa: E402
from orthanc_py.core.context import ServerContext  # noqa: E402

configure_libraries()  # as the server does at start: unit tests parse files the same way


def free_port() -> int:
    """A TCP port nobody listens on right now (for servers started as subprocesses)."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports: all are held until each is picked (two calls of
    `free_port` in a row may give the same port, and a server asked to listen twice on it
    fails, or answers HTTP on its DICOM port)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Client:
    """Blocking HTTP client with keep-alive, enough for REST tests."""

    host: str
    port: int
    auth: tuple[str, str] | None = None
    _conn: http.client.HTTPConnection | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def request(
        self, method: str, path: str, body: bytes | str | Any = None, headers: dict[str, str] | None = None
    ) -> Response:
        hdrs = dict(headers or {})
        if body is not None and not isinstance(body, bytes | str):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        if self.auth is not None:
            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            hdrs["Authorization"] = f"Basic {token}"
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                self._conn.request(method, path, body=body, headers=hdrs)
                r = self._conn.getresponse()
                data = r.read()
                return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self._conn.close()
                self._conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Response:
        return self.request("POST", path, body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> Response:
        return self.request("PUT", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> Response:
        return self.request("DELETE", path, **kw)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def upload(self, data: bytes) -> dict[str, Any]:
        r = self.post("/instances", data)
        assert r.status == 200, r.body
        return r.json()


class RunningServer:
    """A server started in a thread; `stop()` shuts it down cleanly."""

    def __init__(self, raw_config: dict[str, Any], base: Path) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        config = {
            "StorageDirectory": str(base / "storage"),
            "HttpPort": self.port,
            "DicomServerEnabled": False,
            **raw_config,
        }
        self.settings = from_raw(config, base)
        self.ctx: ServerContext | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._clients: list[Client] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("server did not start")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()

            def ready(ctx: ServerContext) -> None:
                self.ctx = ctx
                self._ready.set()

            await serve(self.settings, self._stop, sock=self.sock, ready=ready)

        try:
            with asyncio.Runner(loop_factory=event_loop_factory()) as runner:  # the loop the server runs on
                runner.run(main())
        except BaseException as exc:  # surfaced to the test
            self._error = exc
            self._ready.set()

    def client(self, auth: tuple[str, str] | None = None) -> Client:
        c = Client("127.0.0.1", self.port, auth)
        self._clients.append(c)
        return c

    def stop(self) -> None:
        for c in self._clients:
            c.close()
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


SQLITE_ONLY = pytest.mark.skipif(
    os.environ.get("ORTHANC_PY_TEST_INDEX") == "postgresql",
    reason="the HTTP fast lane and its reader processes read only SQLite indexes",
)
"""For tests of what the fast lane answers: with ORTHANC_PY_TEST_INDEX=postgresql the lane is off."""


def self_signed_certificates(folder: Path, names: tuple[str, ...]) -> Path:
    """`<name>.crt` and `<name>.key` in `folder` for each name: self-signed, CN=localhost, made
    by the openssl command (the TLS tests skip without it)."""
    for name in names:
        files = ["-keyout", str(folder / f"{name}.key"), "-out", str(folder / f"{name}.crt")]
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-nodes",
                "-days",
                "2",
                "-newkey",
                "rsa:2048",
                "-subj",
                "/CN=localhost",
                *files,
            ],
            check=True,
            capture_output=True,
        )
    return folder


@pytest.fixture(scope="session")
def postgresql() -> Iterator[Any]:
    """A throwaway PostgreSQL cluster for the session (tests/pgcluster.py); `.section()` is a
    "PostgreSQL" configuration section on a fresh schema. Skipped only without PostgreSQL
    binaries (.ci/run installs them) or without the psycopg driver (the `test` extra)."""
    from tests import pgcluster

    bin_dir = pgcluster.binaries()
    if bin_dir is None:
        pytest.skip("no PostgreSQL binaries under /usr/lib/postgresql (apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="the psycopg driver is not installed (pip install '.[postgresql]')")
    cluster = pgcluster.Cluster(bin_dir, free_port())
    yield cluster
    cluster.stop()


@pytest.fixture
def make_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Factory: `make_server({"StableAge": 1})` -> RunningServer (stopped at teardown).

    With ORTHANC_PY_TEST_INDEX=postgresql, servers get a PostgreSQL index: the whole integration
    suite then runs on the PostgreSQL backend. Each server has a fresh schema, except servers
    given the same index or storage folder (a restart), which share it as SQLite's file."""
    servers: list[RunningServer] = []
    cluster = None
    if os.environ.get("ORTHANC_PY_TEST_INDEX") == "postgresql":
        cluster = request.getfixturevalue("postgresql")
    sections: dict[str, dict[str, Any]] = {}

    def factory(config: dict[str, Any] | None = None) -> RunningServer:
        if cluster is not None and "PostgreSQL" not in (config or {}):
            where = str((config or {}).get("IndexDirectory") or (config or {}).get("StorageDirectory") or "")
            section = sections.get(where) if where else None
            if section is None:
                section = cluster.section()
                if where:
                    sections[where] = section
            config = {"PostgreSQL": section, **(config or {})}
        server = RunningServer(config or {}, tmp_path / f"s{len(servers)}")
        servers.append(server)
        return server

    yield factory
    for s in servers:
        s.stop()


@pytest.fixture
def server(make_server: Any) -> RunningServer:
    return make_server()


@pytest.fixture
def client(server: RunningServer) -> Client:
    return server.client()
