"""HTTP reader processes: the fast lane (web/fastlane.py) answered by more than one core.

One event loop answers a fast-lane request in ~45 us of CPU; at 4 clients it is saturated while
Orthanc spreads its requests over threads. Python threads share the GIL, so the lane runs in
more processes: readers, fresh interpreters (orthanc_py.readers) that open the same SQLite index
read-only (WAL: a write the main process committed is seen by the next read transaction) and
the same storage folder, and answer only what depends on nothing but these: the instance-level
routes (/instances/{id}, /file, /tags, /simplified-tags, /preview). /patients|studies|series/{id}
answer IsStable from the main process's memory: those stay there.

Sockets move between processes with SCM_RIGHTS over a Unix SOCK_SEQPACKET pair per reader:
- the main process hands a connection to the reader with the fewest when nothing is pending on
  it (a new one, or one whose last request the lane just answered; `FastLaneHandler._fl_move`);
- a reader hands a connection back, with the bytes it read from the first request it does not
  answer on (any other request, a route answering None: file not in the page cache, unknown
  resource, refused credentials...); the main process frames them before reading more, and the
  connection stays there for a while (`fastlane.STAY`).
Answers already written are flushed before a socket moves, so they keep their order.

Readers are lazy: `ReaderPool` starts them once the main process's lane answers more than
`load` requests in a second, and stops one after `idle` seconds without connections, so an idle
server has none (memory, start-up). A reader exits when its socket to the main process closes
(main stopped or killed: the kernel closes it); the main process reaps them; a reader that dies
loses only its connections.

Messages (SEQPACKET keeps their bounds): to a reader `C` + a socket; from a reader `R` (ready),
`E` (one of its connections ended), `H` + total length (8 bytes) + data + a socket (handed back),
`D` + data (the rest of the bytes of the last `H`). The shared memory (a memfd both map) holds
what the main process changes at run time that the lane's answers depend on: byte 0 a
generation, bytes 1-63 the default encoding (/tools/default-encoding); then the settings.
"""

from __future__ import annotations

import asyncio
import json
import logging
import mmap
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .fastlane import FastLane, FastLaneHandler, LaneFraming

if TYPE_CHECKING:
    from ..core.context import ServerContext

log = logging.getLogger("orthanc_py.readers")

CHUNK = 32 * 1024
"""Bytes per message of a handed-back connection's data (far below the socket's buffer)."""
STATE = 64
"""Bytes of the shared memory that change at run time; the settings follow."""


def _send_back(control: socket.socket, transport: asyncio.BaseTransport, data: bytes) -> bool:
    """Send a connection's socket (and the bytes read from it) over `control` (blocking)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        socket.send_fds(control, [b"H" + len(data).to_bytes(8, "big") + data[:CHUNK]], [sock.fileno()])
        for at in range(CHUNK, len(data), CHUNK):
            control.sendall(b"D" + data[at : at + CHUNK])
    except OSError:
        return False
    return True


class ReaderProtocol(LaneFraming, asyncio.Protocol):
    """A connection in a reader process: fast requests answered here; at the first other one,
    the connection goes back to the main process with the bytes from that request on."""

    __slots__ = (
        "_fl_body",
        "_fl_buf",
        "_fl_lane",
        "_fl_off",
        "_fl_peer_ok",
        "_handed",
        "_last",
        "_moving",
        "_pending",
        "_server",
        "transport",
    )

    def __init__(self, server: ReaderServer) -> None:
        self._server = server
        self._fl_lane = server.lane
        self._fl_buf = b""
        self._fl_body = 0
        self._fl_off = False
        self._fl_peer_ok = False
        self._moving = False
        self._handed = False
        self._pending: list[bytes] = []
        self._last = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._fl_peer_ok = self._fl_lane.peer_allowed(transport.get_extra_info("peername"))
        self._last = self._server.loop.time()
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._server.connections.discard(self)
        if not self._handed:  # the main process counts this reader's connections
            self._server.ended()

    def data_received(self, data: bytes) -> None:
        if self._moving:  # read before reading paused
            self._pending.append(data)
            return
        self._server.sync()
        if self._fl_off:
            self._fl_pass(data)
        else:
            self._fl_feed(data)
        if self._moving:
            self._pending.append(self._fl_buf)
            self._fl_buf = b""
            assert self.transport is not None
            self.transport.pause_reading()
            self._move()
        else:
            self._last = self._server.loop.time()

    def _fl_pass(self, data: bytes) -> None:
        self._moving = True
        self._pending.append(data)

    def _fl_idle(self) -> bool:
        return not self._moving

    def _fl_answered(self, answer: bytes) -> None:
        assert self.transport is not None
        self.transport.write(answer)

    def _move(self) -> None:
        """Hand the connection back once what was written is flushed (answers keep their order)."""
        transport = self.transport
        if transport is None:
            return
        if transport.get_write_buffer_size():
            self._server.loop.call_later(0.001, self._move)
            return
        data = b"".join(self._pending)
        self._pending = []
        self._handed = _send_back(self._server.control, transport, data)
        if not self._handed:
            log.warning("a connection could not be handed back to the main process")
        transport.abort()  # this process's copy of the socket only

    def idle_since(self) -> float | None:
        """When the connection last answered, while it waits for a request."""
        return None if self._moving else self._last


class ReaderServer:
    """A reader process's loop: connections from the main process, answered by the lane."""

    def __init__(
        self, ctx: ServerContext, lane: FastLane, control: socket.socket, shared: mmap.mmap, keepalive: float
    ) -> None:
        self.ctx = ctx
        self.lane = lane
        self.control = control
        self.shared = shared
        self.keepalive = keepalive
        self.connections: set[ReaderProtocol] = set()
        self.loop = asyncio.get_event_loop()
        self._generation = -1
        self._done = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.sync()

    def sync(self) -> None:
        """Follow what the main process changed at run time (the default encoding)."""
        generation = self.shared[0]
        if generation != self._generation:
            self._generation = generation
            self.ctx.default_encoding = self.shared[1:STATE].rstrip(b"\0").decode("ascii")

    def ended(self) -> None:
        try:
            self.control.send(b"E")
        except OSError:
            pass

    def _receive(self) -> None:
        while True:
            try:
                msg, fds, _flags, _addr = socket.recv_fds(self.control, 16, 4, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                msg, fds = b"", []
            if not msg and not fds:  # the main process is gone
                self._done.set()
                self.loop.remove_reader(self.control.fileno())
                return
            for fd in fds:
                sock = socket.socket(fileno=fd)
                sock.setblocking(False)
                task = self.loop.create_task(self.loop.connect_accepted_socket(lambda: ReaderProtocol(self), sock))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def _sweep(self) -> None:
        """Close connections idle longer than the keep-alive timeout (as aiohttp does)."""
        now = self.loop.time()
        for conn in list(self.connections):
            since = conn.idle_since()
            if since is not None and now - since > self.keepalive and conn.transport is not None:
                conn.transport.close()
        self.loop.call_later(1.0, self._sweep)

    async def run(self) -> None:
        self.loop.add_reader(self.control.fileno(), self._receive)
        self.loop.call_later(1.0, self._sweep)
        self.control.send(b"R")
        await self._done.wait()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()


class _Reader:
    """The main process's view of one reader process."""

    __slots__ = ("connections", "handback", "idle_since", "proc", "ready", "sock")

    def __init__(self, proc: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.proc = proc
        self.sock = sock
        self.ready = False
        self.connections = 0
        self.idle_since = 0.0
        self.handback: tuple[int, int, list[bytes]] | None = None  # socket, total, parts


class ReaderPool:
    """The main process's side: starts readers under load, hands them connections, adopts the
    connections they hand back, stops idle ones, reaps them all."""

    def __init__(
        self,
        ctx: ServerContext,
        lane: FastLane,
        protocol: Callable[[], FastLaneHandler],
        count: int,
        load: int,
        idle: float,
        keepalive: float,
    ) -> None:
        self.ctx = ctx
        self.lane = lane
        self.protocol = protocol
        self.count = count
        self.load = load
        self.idle = idle
        self.loop = asyncio.get_running_loop()
        self.readers: list[_Reader] = []
        self._answered = lane.answered
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._exiting: set[subprocess.Popen[bytes]] = set()
        s = ctx.settings
        raw = {
            **s.raw,
            "StorageDirectory": str(s.storage_directory.absolute()),
            "IndexDirectory": str(s.index_directory.absolute()),
        }
        config = json.dumps({"raw": raw, "keepalive": keepalive}, default=str).encode()
        self._memfd = os.memfd_create("orthanc-py-readers")
        os.ftruncate(self._memfd, STATE + 8 + len(config))
        self.shared = mmap.mmap(self._memfd, STATE + 8 + len(config))
        self.shared[STATE : STATE + 8] = len(config).to_bytes(8, "big")
        self.shared[STATE + 8 :] = config
        self.publish()
        ctx.settings_changed = self.publish
        root = str(Path(__file__).resolve().parents[2])  # this orthanc_py, wherever it came from
        self._env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))}

    def publish(self) -> None:
        """Write what the lane's answers depend on that may change at run time."""
        self.shared[1:STATE] = self.ctx.default_encoding.encode("ascii")[: STATE - 1].ljust(STATE - 1, b"\0")
        self.shared[0] = (self.shared[0] + 1) % 256

    def start(self) -> None:
        """Start the readers now (the pool is made under load), then watch the load."""
        self._spawn()
        self._timer = self.loop.call_later(1.0, self._tick)

    def _tick(self) -> None:
        """Once a second: start readers under load, stop those idle too long."""
        answered = self.lane.answered
        rate = answered - self._answered
        self._answered = answered
        if rate >= self.load:
            self._spawn()
        elif self.load > 0:
            now = self.loop.time()
            for reader in list(self.readers):
                if reader.ready and reader.connections <= 0 and now - reader.idle_since > self.idle:
                    self._retire(reader)
        self._timer = self.loop.call_later(1.0, self._tick)

    def _spawn(self) -> None:
        while len(self.readers) < self.count:
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "orthanc_py.readers", str(theirs.fileno()), str(self._memfd)],
                    pass_fds=(theirs.fileno(), self._memfd),
                    stdin=subprocess.DEVNULL,
                    env=self._env,
                )
            except OSError:
                log.exception("could not start an HTTP reader process")
                mine.close()
                return
            finally:
                theirs.close()
            mine.setblocking(False)
            reader = _Reader(proc, mine)
            self.readers.append(reader)
            self.loop.add_reader(mine.fileno(), self._receive, reader)
            log.info("HTTP reader process %d started", proc.pid)

    def _update_mover(self) -> None:
        self.lane.mover = self.hand_over if any(r.ready for r in self.readers) else None

    def hand_over(self, transport: asyncio.BaseTransport, data: bytes) -> bool:
        """`FastLane.mover` of the main process: the connection to the reader with the fewest."""
        sock = transport.get_extra_info("socket")
        best = None
        for reader in self.readers:
            if reader.ready and (best is None or reader.connections < best.connections):
                best = reader
        if best is None or sock is None:
            return False
        try:
            socket.send_fds(best.sock, [b"C"], [sock.fileno()])
        except OSError:
            return False
        best.connections += 1
        return True

    def _receive(self, reader: _Reader) -> None:
        while True:
            try:
                msg, fds, _flags, _addr = socket.recv_fds(reader.sock, CHUNK + 16, 1)
            except BlockingIOError:
                return
            except OSError:
                msg, fds = b"", []
            if not msg and not fds:
                self._gone(reader)
                return
            kind = msg[:1]
            if kind == b"H" and fds:
                total = int.from_bytes(msg[1:9], "big")
                reader.handback = (fds[0], total, [msg[9:]])
                self._connection_ended(reader)
            elif kind == b"D" and reader.handback is not None:
                reader.handback[2].append(msg[1:])
            elif kind == b"E":
                self._connection_ended(reader)
            elif kind == b"R":
                reader.ready = True
                reader.idle_since = self.loop.time()
                self._update_mover()
            else:
                for fd in fds:
                    os.close(fd)
            handback = reader.handback
            if handback is not None and sum(map(len, handback[2])) >= handback[1]:
                reader.handback = None
                self._adopt(handback[0], b"".join(handback[2]))

    def _connection_ended(self, reader: _Reader) -> None:
        reader.connections -= 1
        if reader.connections <= 0:
            reader.idle_since = self.loop.time()

    def _adopt(self, fd: int, data: bytes) -> None:
        """Serve a handed-back connection here: `data` first, then what the socket brings."""
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)

        def protocol() -> FastLaneHandler:
            handler = self.protocol()
            handler.handed_back(data)
            return handler

        task = self.loop.create_task(self.loop.connect_accepted_socket(protocol, sock))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _retire(self, reader: _Reader) -> None:
        log.info("HTTP reader process %d stopped (idle)", reader.proc.pid)
        self._gone(reader)

    def _gone(self, reader: _Reader) -> None:
        """A reader stops (or stopped): its socket closed (it exits at once), then reaped."""
        if reader not in self.readers:
            return
        self.readers.remove(reader)
        self._update_mover()
        self.loop.remove_reader(reader.sock.fileno())
        reader.sock.close()
        if reader.handback is not None:
            os.close(reader.handback[0])
        self._reap(reader.proc, 0)

    def _reap(self, proc: subprocess.Popen[bytes], tries: int) -> None:
        if proc.poll() is not None:
            self._exiting.discard(proc)
            return
        self._exiting.add(proc)
        if tries == 50:
            proc.kill()
        self.loop.call_later(0.1, self._reap, proc, tries + 1)

    async def close(self) -> None:
        """Stop every reader and wait for them (no zombie left)."""
        if self._timer is not None:
            self._timer.cancel()
        self.ctx.settings_changed = lambda: None
        procs = [r.proc for r in self.readers] + list(self._exiting)
        for reader in list(self.readers):
            self._gone(reader)

        def wait() -> None:
            for proc in procs:
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

        await self.loop.run_in_executor(None, wait)
        self.shared.close()
        os.close(self._memfd)
