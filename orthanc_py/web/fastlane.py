"""The HTTP fast lane: a few hot GETs answered inside the connection's protocol, without aiohttp's
request and response objects; every other request goes to aiohttp unchanged.

With the small raw-socket client of scripts/bench_http.py, a bare aiohttp application on uvloop
(one route, fixed answer) takes 77-86 us per request: as long as Orthanc's whole answer. That
time is aiohttp's machinery (the handler task woken through a future, BaseRequest, middlewares,
router, StreamResponse.prepare, header rendering). Here the bytes a connection receives are
framed first: a complete `GET /instances/{id}` (and the other routes of `FastLane.routes`) with
nothing unusual about it, arriving while aiohttp has nothing to do on the connection, is answered
on the spot with the bytes aiohttp would have written (apart from the Date header); anything
else is fed to aiohttp exactly as received, and the connection stays framed (a request with a
Content-Length body is counted through) so that later requests may take the lane again. What
the lane cannot frame (Transfer-Encoding, Upgrade, HTTP/1.0, malformed headers) turns it off
for the rest of the connection.

A route answers `None` for anything but the plain case (unknown resource, file not in the page
cache, an index read that would wait): aiohttp then serves the request, so errors and edge cases
keep one implementation. ORTHANC_PY_FAST_LANE=0 turns the lane off (app.py).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE
from aiohttp.web_protocol import RequestHandler

from .middleware import basic_user, is_loopback
from .xml import wants_xml

FastAnswer = tuple[bytes, bytes]
"""The answer of a fast route: its header lines (`Name: value\\r\\n` each: Content-Type and the
like) and its body. The lane adds the status line, Content-Length, Date, Server and
X-Content-Type-Options, in aiohttp's order."""

FastRoute = Callable[[str, str | None], FastAnswer | None]
"""(resource id, Accept header or None) -> answer, or None to leave the request to aiohttp."""

Mover = Callable[[asyncio.BaseTransport, bytes], bool]
"""(connection, bytes read from it not answered yet) -> whether the connection's socket was sent
to the other process (the caller then closes its own copy)."""

RouteKey = tuple[str, str | None]
"""("instances", "file") for /instances/{id}/file, ("studies", None) for /studies/{id}."""

MAX_HEAD = 8190
"""Header blocks the lane reads itself (aiohttp's own line limit; longer blocks go to aiohttp,
which answers them as it does)."""

_REQUEST_LINE = re.compile(rb"([A-Z]{1,20}) (/[!-~]*) HTTP/1\.1")
_FIELDS = re.compile(rb"(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\x00-\x08\x0a-\x1f\x7f]*\r\n)*\r\n")
"""Header lines as llhttp accepts them (token, colon, value without control characters)."""
_REQUEST_START = re.compile(rb"[A-Z]{0,20}(?: |$)")
"""What a request that is still arriving starts with; anything else is aiohttp's to refuse."""
_CONNECTION_REFUSED = frozenset((b"transfer-encoding", b"upgrade"))
"""Framing the lane does not follow: aiohttp has the connection from then on."""
_NOT_FAST = frozenset((b"expect", b"x-http-method-override", b"range", b"if-none-match", b"if-match"))
"""Requests the lane leaves to aiohttp (framed as usual)."""


WholeAnswer = Callable[[str, str | None, bytes], bytes | None]
"""(resource id, Accept header or None, the head's end) -> the whole answer, or None (aiohttp
answers). The head's end follows Content-Length: `\r\nDate: ...` to the blank line."""


class WholeRoute:
    """A fast route whose answers are written whole by `whole` (status line and head included,
    web/lanec.py); `plain` is the same route as a FastRoute (the reference, and what the
    tests compare with)."""

    __slots__ = ("plain", "whole")

    def __init__(self, plain: FastRoute, whole: WholeAnswer) -> None:
        self.plain = plain
        self.whole = whole

    def __call__(self, public_id: str, accept: str | None) -> FastAnswer | None:
        return self.plain(public_id, accept)


def header_lines(headers: Mapping[str, str]) -> bytes:
    """`Name: value\\r\\n` lines, as aiohttp writes the given headers of a response."""
    return "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("utf-8")


class FastLane:
    """What the protocol needs to answer fast routes: the table, and the access rules of
    web.middleware.access_middleware (Basic credentials; loopback only when remote access is
    not allowed)."""

    def __init__(
        self,
        routes: Mapping[RouteKey, FastRoute],
        authentication: Mapping[str, str] | None,
        remote_access_allowed: bool,
    ) -> None:
        self.routes = dict(routes)
        self.wholes = {key: route.whole for key, route in self.routes.items() if isinstance(route, WholeRoute)}
        self.credentials = authentication
        self.remote_access_allowed = remote_access_allowed
        self._date = ""
        self._end = b""
        self.answered = 0
        """Requests answered so far (the load that starts reader processes, app.py)."""
        self.mover: Mover | None = None
        """Hands a connection to another process (a reader, or from a reader back to the main
        process), or None: set while there is one (web/readerlane.py)."""

    def peer_allowed(self, peername: Any) -> bool:
        """RemoteAccessAllowed, for the connection's peer (as request.remote reads it)."""
        if self.remote_access_allowed:
            return True
        remote = str(peername[0]) if isinstance(peername, list | tuple) else None if peername is None else str(peername)
        return is_loopback(remote)

    def answer(self, method: bytes, target: bytes, fields: dict[bytes, bytes]) -> bytes | None:
        """The whole response to a parsed GET, or None (aiohttp answers it)."""
        if method != b"GET" or b"?" in target:
            return None
        parts = target.split(b"/")
        n = len(parts)
        if n == 3:
            key: RouteKey = (parts[1].decode("ascii"), None)
        elif n == 4:
            key = (parts[1].decode("ascii"), parts[3].decode("ascii"))
        else:
            return None
        route = self.routes.get(key)
        if route is None:
            return None
        raw_accept = fields.get(b"accept")
        accept = None if raw_accept is None else raw_accept.decode("utf-8", "surrogateescape")
        if accept and wants_xml(accept):
            return None
        if self.credentials is not None:
            auth = fields.get(b"authorization")
            if auth is None or basic_user(auth.decode("utf-8", "surrogateescape"), self.credentials) is None:
                return None
        whole = self.wholes.get(key)
        try:
            if whole is not None:
                out = whole(parts[2].decode("ascii"), accept, self._head_end())
                if out is not None:
                    self.answered += 1
                return out
            found = route(parts[2].decode("ascii"), accept)
        except Exception:  # anything unusual: aiohttp's handler answers it, errors included
            return None
        if found is None:
            return None
        head, body = found
        self.answered += 1
        return b"".join((b"HTTP/1.1 200 OK\r\n", head, b"Content-Length: %d" % len(body), self._head_end(), body))

    def _head_end(self) -> bytes:
        """What follows Content-Length in every answer: Date (as aiohttp keeps it, renewed each
        second), Server, X-Content-Type-Options and the blank line."""
        date = rfc822_formatted_time()
        if date is not self._date:
            self._date = date
            self._end = b"".join((b"\r\nDate: ", date.encode("ascii"), _TRAILER))
        return self._end


_TRAILER = f"\r\nServer: {SERVER_SOFTWARE}\r\nX-Content-Type-Options: nosniff\r\n\r\n".encode()


class LaneFraming:
    """The framing of a connection's bytes, shared by the protocol of aiohttp's connections
    (FastLaneHandler) and that of the reader processes (web/readerlane.py): complete requests the
    lane answers are answered by `_fl_answered`; the bytes of any other request go to `_fl_pass`
    in order (its body counted through, so that later requests may take the lane again); what
    cannot be framed goes to `_fl_give_up`, and the lane is off for the rest of the connection.
    (No __slots__ here: the subclasses name the attributes in theirs.)"""

    _fl_lane: FastLane
    _fl_buf: bytes
    _fl_body: int
    _fl_off: bool
    _fl_peer_ok: bool

    def _fl_pass(self, data: bytes) -> None:
        """Bytes of a request the lane does not answer."""
        raise NotImplementedError

    def _fl_idle(self) -> bool:
        """Whether an answer may be written now (nothing before it is still being answered)."""
        raise NotImplementedError

    def _fl_answered(self, answer: bytes) -> None:
        raise NotImplementedError

    def _fl_give_up(self, data: bytes) -> None:
        self._fl_off = True
        self._fl_buf = b""
        self._fl_pass(data)

    def _fl_feed(self, data: bytes) -> None:
        """Frame `data` (not empty, the lane on)."""
        if self._fl_body:  # the rest of a body the slow path is reading
            if len(data) <= self._fl_body:
                self._fl_body -= len(data)
                self._fl_pass(data)
                return
            self._fl_pass(data[: self._fl_body])
            data = data[self._fl_body :]
            self._fl_body = 0
        buf = self._fl_buf + data if self._fl_buf else data
        self._fl_buf = b""
        pos = 0
        size = len(buf)
        while pos < size:
            end = buf.find(b"\r\n\r\n", pos)
            if end < 0:
                break
            end += 4
            if end - pos > MAX_HEAD:
                self._fl_give_up(buf[pos:])
                return
            line_end = buf.index(b"\r\n", pos)
            request = _REQUEST_LINE.fullmatch(buf, pos, line_end)
            if request is None or _FIELDS.fullmatch(buf, line_end + 2, end) is None:
                self._fl_give_up(buf[pos:])
                return
            fields: dict[bytes, bytes] = {}
            lines = buf[line_end + 2 : end - 4].split(b"\r\n") if end - 4 > line_end else []
            for line in lines:
                name, _, value = line.partition(b":")
                fields[name.lower()] = value.strip(b" \t")
            length = fields.get(b"content-length")
            if len(fields) != len(lines) or not _CONNECTION_REFUSED.isdisjoint(fields):
                self._fl_give_up(buf[pos:])
                return
            if length is not None and not length.isdigit():
                self._fl_give_up(buf[pos:])
                return
            body = int(length) if length else 0
            answer = None
            if (
                not body
                and self._fl_peer_ok
                and fields.get(b"connection", b"keep-alive").lower() == b"keep-alive"
                and _NOT_FAST.isdisjoint(fields)
                and self._fl_idle()
            ):
                answer = self._fl_lane.answer(request[1], request[2], fields)
            if answer is not None:
                self._fl_answered(answer)
                pos = end
                continue
            stop = end + body
            if stop > size:  # the body is still arriving
                self._fl_body = stop - size
                stop = size
            self._fl_pass(buf[pos:stop])
            pos = stop
        if pos < size:
            rest = buf[pos:]
            if len(rest) > MAX_HEAD or _REQUEST_START.match(rest) is None:
                self._fl_give_up(rest)
                return
            self._fl_buf = rest


STAY = 200
"""Fast answers a connection handed back by a reader process gets from this process before it
may move to a reader again (a client mixing other requests in does not bounce between them)."""


class FastLaneHandler(LaneFraming, RequestHandler):
    """aiohttp's connection protocol with the fast lane in front of its parser. With reader
    processes running (`FastLane.mover` set, app.py), a connection whose requests the lane
    answers moves to one of them when nothing is pending on it (web/readerlane.py)."""

    __slots__ = ("_fl_body", "_fl_buf", "_fl_initial", "_fl_lane", "_fl_off", "_fl_peer_ok", "_fl_stay")

    def __init__(self, manager: Any, *, lane: FastLane, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._fl_lane = lane
        self._fl_buf = b""
        self._fl_body = 0  # bytes still to come of the body of a request given to aiohttp
        self._fl_off = False  # the lane has given the connection up: everything goes to aiohttp
        self._fl_peer_ok = False
        self._fl_stay = 0
        self._fl_initial: bytes | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._fl_peer_ok = self._fl_lane.peer_allowed(transport.get_extra_info("peername"))
        initial = self._fl_initial
        if initial is not None:  # handed back by a reader: its bytes first, before any read
            self._fl_initial = None
            if initial:
                self.data_received(initial)
        elif self._fl_lane.mover is not None and self._fl_peer_ok:  # a new connection: to a reader
            self._fl_move()

    def handed_back(self, data: bytes) -> None:
        """This protocol takes over a connection a reader process handed back, with the bytes
        the reader had read (framed here before any new byte is read). Called before
        `connection_made`."""
        self._fl_stay = STAY
        self._fl_initial = data

    def _fl_pass(self, data: bytes) -> None:
        RequestHandler.data_received(self, data)

    def _fl_idle(self) -> bool:
        """aiohttp waits for a request on this connection, with nothing queued or running (or
        its task has not started yet, and was never given a request), and the client reads
        its answers (when the transport's buffer is full, aiohttp's handler waits for it to
        drain, and reading stops once its queue is full)."""
        waiter = self._waiter
        return (
            (not waiter.done() if waiter is not None else self._request_count == 0 and self._current_request is None)
            and not self._paused
            and not self._messages
            and not self._upgraded
            and self._payload_parser is None
            and not self._close
            and not self._force_close
            and self.transport is not None
        )

    def data_received(self, data: bytes) -> None:
        if self._fl_off or not data:
            RequestHandler.data_received(self, data)
            return
        self._fl_feed(data)
        if self._fl_lane.mover is not None and not self._fl_buf and not self._fl_body and not self._fl_off:
            self._fl_move()

    def _fl_move(self) -> None:
        """Hand the connection to a reader process when nothing is pending on it here."""
        if self._fl_stay > 0 or not self._fl_peer_ok or not self._fl_idle():
            return
        transport = self.transport
        mover = self._fl_lane.mover
        if transport is None or mover is None or transport.get_write_buffer_size():
            return
        if mover(transport, b""):
            transport.abort()  # our copy of the socket only: the reader has its own

    def _fl_answered(self, answer: bytes) -> None:
        """Write the answer, and count the request as aiohttp does after each one (the
        keep-alive timer restarts from now)."""
        assert self.transport is not None
        self.transport.write(answer)
        if self._fl_stay:
            self._fl_stay -= 1
        manager = self._manager
        if manager is not None:
            manager.requests_count += 1
        self._next_keepalive_close_time = self._loop.time() + self._keepalive_timeout
        if self._keepalive_handle is None:
            self._keepalive_handle = self._loop.call_at(self._next_keepalive_close_time, self._process_keepalive)


class FastLaneServer(web.Server):
    """aiohttp's low-level server, whose connections run the fast lane."""

    def __init__(self, handler: Any, *, lane: FastLane, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.lane = lane

    def __call__(self) -> RequestHandler:
        return FastLaneHandler(self, lane=self.lane, loop=self._loop, **self._kwargs)


class FastLaneRunner(web.AppRunner):
    """web.AppRunner whose server is a FastLaneServer (the same arguments aiohttp gives its own)."""

    def __init__(self, app: web.Application, lane: FastLane, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.lane = lane

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return FastLaneServer(
            plain.request_handler,
            lane=self.lane,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            **plain._kwargs,
        )
