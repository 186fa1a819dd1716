"""A minimal blocking HTTP/1.1 keep-alive client and a load generator for scripts/bench.

The read scenarios time requests that a server answers in a fraction of a millisecond, so the
client's own cost per request must stay far below that: aiohttp spends about 0.1-0.2 ms of
Python per request, this client sends one pre-built request line and parses just the status,
Content-Length or chunked framing (a few tens of microseconds). Clients run as threads (socket
calls release the GIL), each with its own connection, so "4 clients" means 4 requests in flight.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

Check = Callable[[int, dict[str, str], bytes], str | None]  # returns an error text or None


class HttpError(RuntimeError):
    """The server answered something that is not HTTP/1.1 as expected, or closed early."""


class Connection:
    """One keep-alive connection to a server on 127.0.0.1; reconnects when the server closes."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buf = bytearray()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.buf = sock, bytearray()
        return sock

    def close(self) -> None:
        """Close the socket (a later request reconnects)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _fill(self) -> None:
        assert self.sock is not None
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise HttpError("connection closed by the server")
        self.buf += chunk

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _read_line(self) -> bytes:
        while (i := self.buf.find(b"\r\n")) < 0:
            self._fill()
        line = bytes(self.buf[:i])
        del self.buf[: i + 2]
        return line

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """GET `path`; returns (status, lower-cased headers, body). One retry on a stale connection."""
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        request = f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{extra}\r\n".encode()
        for attempt in (0, 1):
            fresh = self.sock is None
            sock = self.sock or self._connect()
            try:
                sock.sendall(request)
                return self._response()
            except (HttpError, ConnectionError) as exc:
                self.close()
                if attempt or fresh:
                    raise HttpError(f"GET {path}: {exc}") from exc
        raise AssertionError("unreachable")

    def _response(self) -> tuple[int, dict[str, str], bytes]:
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            self._fill()
        head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        del self.buf[: end + 4]
        try:
            status = int(head[0].split(" ", 2)[1])
        except (IndexError, ValueError) as exc:
            raise HttpError(f"bad status line {head[0]!r}") from exc
        hdrs: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            hdrs[name.strip().lower()] = value.strip()
        if "content-length" in hdrs:
            body = self._read_exact(int(hdrs["content-length"]))
        elif "chunked" in hdrs.get("transfer-encoding", "").lower():
            parts = []
            while True:
                size = int(self._read_line().split(b";", 1)[0], 16)
                if size == 0:
                    while self._read_line():  # trailers, then the empty line
                        pass
                    break
                parts.append(self._read_exact(size))
                self._read_exact(2)
            body = b"".join(parts)
        elif status in (204, 304) or 100 <= status < 200:
            body = b""
        else:  # body until the server closes
            assert self.sock is not None
            while chunk := self.sock.recv(1 << 20):
                self.buf += chunk
            body = bytes(self.buf)
            self.close()
            return status, hdrs, body
        if hdrs.get("connection", "").lower() == "close":
            self.close()
        return status, hdrs, body


@dataclass
class LoadResult:
    """What `run_load` measured: requests done, wall seconds, body bytes, per-request latencies."""

    count: int = 0
    seconds: float = 0.0
    nbytes: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    server_cpu_s: float | None = None
    """CPU seconds (user + system) the server's processes spent meanwhile, when it is known."""

    @property
    def server_cpu_us(self) -> float | None:
        """Server CPU per answered request, in microseconds."""
        if self.server_cpu_s is None or not self.count:
            return None
        return self.server_cpu_s / self.count * 1e6

    @property
    def rate(self) -> float:
        """Requests per second over the wall time."""
        return self.count / self.seconds if self.seconds > 0 else 0.0


def run_load(
    url: str,
    paths: Sequence[str],
    clients: int = 1,
    check: Check | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
    warmup: int = 1,
) -> LoadResult:
    """GET every path once, shared among `clients` threads each on its own keep-alive connection.

    Each client first sends `warmup` untimed requests (connection set up, first-use costs out of
    the figure). The wall time runs from the moment all clients are ready to the last answer.
    Answers failing `check` (or not 200 without a check) are counted as errors, not as done.
    """
    result = LoadResult()
    lock = threading.Lock()
    it = iter(paths)
    ready = threading.Barrier(clients + 1)

    def take() -> str | None:
        with lock:
            return next(it, None)

    def client() -> None:
        conn = Connection(url, timeout)
        latencies: list[float] = []
        nbytes, errors = 0, []
        try:
            try:
                for first in paths[:warmup]:
                    conn.get(first, headers)
            finally:
                ready.wait()
            while (path := take()) is not None:
                t0 = time.perf_counter()
                try:
                    status, hdrs, body = conn.get(path, headers)
                except (HttpError, OSError) as exc:
                    errors.append(f"{path}: {exc}")
                    continue
                dt = time.perf_counter() - t0
                problem = check(status, hdrs, body) if check else (None if status == 200 else f"HTTP {status}")
                if problem:
                    errors.append(f"{path}: {problem}")
                    continue
                latencies.append(dt * 1000)
                nbytes += len(body)
        except (HttpError, OSError, threading.BrokenBarrierError) as exc:
            errors.append(f"client: {exc}")
        finally:
            conn.close()
            with lock:
                result.latencies_ms.extend(latencies)
                result.count += len(latencies)
                result.nbytes += nbytes
                result.errors.extend(errors)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for th in threads:
        th.start()
    ready.wait()
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    result.seconds = time.perf_counter() - t0
    return result
