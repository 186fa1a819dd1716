"""Composition root: Settings -> backends -> ServerContext -> aiohttp app (the only place that names
concrete backends)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .config import Settings

if TYPE_CHECKING:
    from .core.context import ServerContext

# The services, backends and interfaces are imported by the functions that build them, after
# `configure_libraries` (which decides how pydicom is loaded and makes the imports faster).

log = logging.getLogger("orthanc_py")

MAX_BODY = 1 << 34


def build_context(settings: Settings) -> ServerContext:
    """Open the storage area and the index the settings ask for (index/registry.py and
    storage/registry.py map configuration sections to backends), and wire the services (blocking
    I/O: run it off the event loop)."""
    from .core.context import ServerContext
    from .core.extquery import ExtQueryTags
    from .core.jobs import JobsEngine
    from .core.modalities import ModalityRegistry
    from .core.peers import PeerRegistry
    from .core.queries import QueryRegistry
    from .core.seriescache import SeriesCache
    from .index.registry import open_index
    from .storage.registry import open_storage

    index = open_index(settings)
    return ServerContext(
        settings,
        index,
        open_storage(settings),
        jobs=JobsEngine(settings.concurrent_jobs, settings.jobs_history_size),
        series_cache=SeriesCache(),
        modalities=ModalityRegistry(
            dict(settings.dicom_modalities),
            index if settings.raw.get("DicomModalitiesInDatabase") is True else None,
            settings.raw.get("StrictAetComparison") is True,
        ),
        queries=QueryRegistry(int(settings.raw.get("QueryRetrieveSize") or 100)),
        peers=PeerRegistry(dict(settings.orthanc_peers), settings, index),
        ext_tags=ExtQueryTags(),
    )


def build_app(ctx: ServerContext) -> web.Application:
    """The aiohttp application serving Orthanc's REST API."""
    from aiohttp.typedefs import Middleware

    from . import dicomweb, rest
    from .web.forms import form_middleware
    from .web.luafilter import lua_filter_middleware, lua_origin_middleware
    from .web.middleware import (
        access_middleware,
        errors_middleware,
        paths_middleware,
        security_headers,
        silent_errors_middleware,
        xml_middleware,
    )
    from .web.responses import BIG_READ
    from .web.router import application

    s = ctx.settings
    middlewares: list[Middleware] = [
        xml_middleware((*dicomweb.PREFIXES, "/wado", "/webdav")),  # plugins and WebDAV: as they are
        errors_middleware,
        form_middleware(),
    ]
    if s.raw.get("HttpDescribeErrors") is False:
        middlewares.insert(1, silent_errors_middleware)  # outside errors_middleware, inside XML
    if ctx.lua is not None:  # the HTTP filter sees who was authenticated
        middlewares.insert(0, lua_filter_middleware(ctx.lua))
    if s.authentication_enabled or not s.remote_access_allowed:
        middlewares.insert(0, access_middleware(s.remote_access_allowed, s.authentication_enabled, s.registered_users))
    middlewares.insert(0, paths_middleware)
    if ctx.lua is not None:  # the REST calls of Lua scripts: no authentication, origin "Lua"
        middlewares.insert(0, lua_origin_middleware(ctx.lua.token))
    # Each request's body buffer may hold 1-2 MiB before aiohttp pauses the socket. With its
    # 64 KiB default every upload paused and resumed reading once (two epoll_ctl calls, each
    # giving up the GIL on the event loop, which then waited to win it back from the ingest
    # threads).
    app = application(client_max_size=MAX_BODY, middlewares=middlewares, handler_args={"read_bufsize": BIG_READ})
    app.on_response_prepare.append(security_headers)
    rest.setup(app, ctx)
    dicomweb.setup(app)
    return app


def make_runner(ctx: ServerContext, app: web.Application) -> web.AppRunner:
    """aiohttp's runner for `app`, with the HTTP fast lane in front of it (web/fastlane.py)
    unless ORTHANC_PY_FAST_LANE=0 or Lua scripts are loaded (their IncomingHttpRequestFilter
    sees every request)."""
    s = ctx.settings
    kwargs: dict[str, Any] = {"access_log": None, "handle_signals": False, "keepalive_timeout": s.http_timeout}
    if os.environ.get("ORTHANC_PY_FAST_LANE", "1") == "0" or ctx.lua is not None:
        return web.AppRunner(app, **kwargs)
    from . import rest
    from .web.fastlane import FastLane, FastLaneRunner
    from .web.middleware import basic_credentials

    credentials = basic_credentials(s.registered_users) if s.authentication_enabled else None
    lane = FastLane(rest.fast_routes(ctx), credentials, s.remote_access_allowed)
    return FastLaneRunner(app, lane, **kwargs)


READERS_CAP = 4
"""Most reader processes started by default."""


def reader_count() -> int:
    """ORTHANC_PY_HTTP_READERS (0: none); by default one per usable CPU but one (the main
    process's), at most READERS_CAP: on one CPU there is nothing to spread the requests over."""
    value = os.environ.get("ORTHANC_PY_HTTP_READERS", "")
    if value.strip():
        return max(0, int(value))
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(0, min(cpus - 1, READERS_CAP))


class Readers:
    """The HTTP reader processes (web/readerlane.py), when the fast lane serves plain HTTP from a
    SQLite index on Linux. Until the lane answers ORTHANC_PY_HTTP_READERS_LOAD requests in a
    second (default 500; 0: at once) this is a timer reading its count once a second: the
    pool's module and shared memory are not loaded on an idle server (memory, start-up). The
    pool then starts the readers, and stops one after ORTHANC_PY_HTTP_READERS_IDLE seconds
    without connections (default 30)."""

    def __init__(self, ctx: ServerContext, runner: Any, count: int) -> None:
        self.ctx = ctx
        self.runner = runner
        self.count = count
        self.pool: Any = None
        self.load = int(os.environ.get("ORTHANC_PY_HTTP_READERS_LOAD", "500"))
        self.idle = float(os.environ.get("ORTHANC_PY_HTTP_READERS_IDLE", "30"))
        self._answered = runner.lane.answered
        self._loop = asyncio.get_running_loop()
        self._timer = self._loop.call_later(1.0 if self.load > 0 else 0.0, self._check)

    @staticmethod
    def wanted(ctx: ServerContext, runner: web.AppRunner, https: Any) -> Readers | None:
        from .web.fastlane import FastLaneRunner

        count = reader_count()
        if count <= 0 or https is not None or not isinstance(runner, FastLaneRunner) or not hasattr(os, "memfd_create"):
            return None
        from .index.registry import select

        return Readers(ctx, runner, count) if select(ctx.settings).name == "sqlite" else None

    def _check(self) -> None:
        answered = self.runner.lane.answered
        if answered - self._answered < self.load:
            self._answered = answered
            self._timer = self._loop.call_later(1.0, self._check)
            return
        from .web.readerlane import ReaderPool

        self.pool = ReaderPool(
            self.ctx,
            self.runner.lane,
            self.runner.server,  # FastLaneServer: a FastLaneHandler per call
            self.count,
            self.load,
            self.idle,
            self.ctx.settings.http_timeout,
        )
        self.pool.start()

    async def close(self) -> None:
        self._timer.cancel()
        if self.pool is not None:
            await self.pool.close()


def _lua_port(settings: Settings, sock: socket.socket | None, unix: str | None) -> int | str | None:
    """Where the REST calls of Lua scripts go (None: the REST API is not served): the HTTP
    port, or the private Unix socket when the port speaks HTTPS."""
    if unix is not None:
        return unix
    if sock is not None:
        return int(sock.getsockname()[1])
    return settings.http_port if settings.http_server_enabled else None


async def _start_lua(ctx: ServerContext) -> None:
    """The Lua engine, when scripts may run (LuaScripts, or ExecuteLuaEnabled)."""
    s = ctx.settings
    if not s.lua_scripts and not s.execute_lua_enabled:
        return
    from .core.lua import LuaScripting

    lua = LuaScripting(ctx)
    await asyncio.get_running_loop().run_in_executor(None, lua.load)
    ctx.lua = lua
    ctx.jobs.listener = lua.job_event


def _start_dicom(ctx: ServerContext, loop: asyncio.AbstractEventLoop) -> Any:
    """DicomPort listens now; pynetdicom loads on the first association (dimse/server.py)."""
    from .dimse.server import DicomServer
    from .remote.dicomnet import tune_pynetdicom

    server = DicomServer(ctx, loop, prepare=tune_pynetdicom)  # tuned before the first association
    server.start()
    return server


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop (libuv, in C) when it is installed, else asyncio's (None).

    Every HTTP request crosses the loop several times (read, dispatch, write): with uvloop a
    minimal aiohttp answer costs ~35 us less on this class of machine (0.18 -> 0.14 ms at p50),
    which is most of what separated our simple reads from Orthanc's. ORTHANC_PY_EVENT_LOOP=asyncio
    in the environment selects asyncio's loop (to rule the loop out when chasing a problem)."""
    if os.environ.get("ORTHANC_PY_EVENT_LOOP", "").lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def configure_libraries() -> None:
    """Every library-wide setting, in one place (called at start-up, before the services are
    imported; idempotent).

    - Fewer cyclic-GC passes: answers like GET /studies?expand build tens of thousands of
      containers, and with the default threshold (700) collections cost 10-15% of such a request
      and made its latency bimodal. Our objects are freed by reference counting; cycles are rare.
      Set first, it also spares the start-up imports ~20 ms of collections;
      `freeze_startup_objects` then takes what start-up built out of the collector's scans.
    - pydicom is configured when it is first imported (`model.libraries`: without `requests`,
      reading values without validating them); the server starts without it, nor numpy.
    - pynetdicom's sockets are tuned by `remote.dicomnet.tune_pynetdicom`, called before the
      first association (the DICOM server's first connection, the SCU): pynetdicom loads then."""
    from .model.libraries import install_pydicom_setup

    gc.set_threshold(20_000, 20, 20)
    install_pydicom_setup()


def pause_collector() -> None:
    """No cyclic garbage collection while the server starts: start-up builds long-lived objects
    (modules, pydicom's dictionaries, the route table), and the collections only scanned them
    again (60-80 ms of each start, measured with the raised threshold). `freeze_startup_objects`
    resumes the collector when the server is up."""
    gc.disable()


def freeze_startup_objects() -> None:
    """Move what exists once the server is up (modules, dictionaries, tables) out of the cyclic
    collector's scans, and resume the collector (`pause_collector`). Called once the HTTP and
    DICOM ports listen. No collection first: with the collector paused during start-up, a full
    collection here took 80-110 ms (on the loop, delaying the first requests) and found ~160
    unreachable objects, which stay frozen instead."""
    gc.freeze()
    gc.enable()
    release_free_heap()


def release_free_heap() -> None:
    """Hand the heap pages that start-up used and freed back to the system (glibc's malloc_trim;
    elsewhere a no-op): ~2 MB of an idle server's RSS, which `cli.tune_malloc`'s trim threshold
    would otherwise keep for good. Uploads grow the heap again as they need it."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


async def serve(
    settings: Settings,
    stop: asyncio.Event | None = None,
    sock: socket.socket | None = None,
    ready: Callable[[ServerContext], None] | None = None,
) -> None:
    """Run the server until `stop` is set (or SIGINT/SIGTERM).

    `sock` is an already bound listening socket (tests bind port 0 to get a free port without
    races); `ready` is called once the server accepts connections.
    """
    if settings.unknown_keys:
        log.warning("configuration keys not used by orthanc_py: %s", ", ".join(settings.unknown_keys))
    pause_collector()
    try:
        await _serve(settings, stop, sock, ready)
    finally:
        gc.enable()  # also when start-up failed before freeze_startup_objects


async def _serve(
    settings: Settings,
    stop: asyncio.Event | None,
    sock: socket.socket | None,
    ready: Callable[[ServerContext], None] | None,
) -> None:
    loop = asyncio.get_running_loop()
    configure_libraries()
    ctx = await loop.run_in_executor(None, build_context, settings)  # opens files: off the loop
    from .core import startup

    await startup.start(ctx)
    await _start_lua(ctx)
    stop = stop or asyncio.Event()
    ctx.shutdown_requested = stop.set
    app = build_app(ctx)
    runner = make_runner(ctx, app)
    await runner.setup()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (uvloop: ValueError)
            pass
    dicom: Any = None
    readers: Readers | None = None
    private: tempfile.TemporaryDirectory[str] | None = None
    unix: str | None = None
    try:
        https = settings.https.server_context() if settings.https is not None else None
        if sock is not None:
            await web.SockSite(runner, sock, ssl_context=https).start()
        elif settings.http_server_enabled:
            host = settings.http_bind_address or "0.0.0.0"
            site = web.TCPSite(runner, host, settings.http_port, reuse_address=True, ssl_context=https)
            await site.start()
            log.info("HTTP%s server listening on port %d", "S" if https else "", settings.http_port)
        if sock is not None or settings.http_server_enabled:
            readers = Readers.wanted(ctx, runner, https)
        if ctx.lua is not None and https is not None:  # Lua's REST calls: plain HTTP, privately
            private = tempfile.TemporaryDirectory(prefix="orthanc-py-")
            unix = os.path.join(private.name, "rest.sock")
            await web.UnixSite(runner, unix).start()
        if ctx.lua is not None:
            ctx.lua.start(loop, _lua_port(settings, sock, unix))
        if settings.dicom_server_enabled:
            dicom = _start_dicom(ctx, loop)
            ctx.dicom_port = dicom.port
        freeze_startup_objects()
        if ready is not None:
            ready(ctx)
        await stop.wait()
    finally:
        if dicom is not None:
            dicom.stop()
        if ctx.lua is not None:
            await ctx.lua.stop()
        if readers is not None:
            await readers.close()
        await runner.cleanup()
        await ctx.close()
        if private is not None:
            private.cleanup()
