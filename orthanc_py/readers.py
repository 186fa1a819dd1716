"""An HTTP reader process (web/readerlane.py): `python -m orthanc_py.readers CONTROL_FD SHARED_FD`,
started by the main process with its socket and the shared memory holding the settings.

It opens the index read-only and the storage area as the main process does, and serves the
instance-level routes of the fast lane; nothing else of the server is built (no aiohttp
application, no jobs, no DICOM; pydicom and numpy are not imported)."""

from __future__ import annotations

import asyncio
import json
import logging
import mmap
import socket
import sys
from pathlib import Path
from typing import Any, cast


class ReadOnlySqlite:
    """The part of the SQLite index the fast lane uses (`read_now`, `read_now_cached`): the
    main process's inline reads (index.sqlite.InlineReads), on one read-only connection that
    never waits for a lock, with their cache checked against every commit."""

    def __init__(self, path: Path) -> None:
        from .index.sqlite import InlineReads, summary_statement

        if not path.exists():  # never create it: the main process owns the index
            raise FileNotFoundError(path)
        self._reads = InlineReads(str(path))
        self._reads.read_now(lambda txn: None)  # the connection opens now
        self.read_now = self._reads.read_now
        self.read_now_cached = self._reads.read_now_cached
        self.inline_connection = self._reads.connection_now
        self.summary_statement = summary_statement


async def _serve(control: socket.socket, shared: mmap.mmap) -> None:
    from . import rest
    from .config import from_raw
    from .core.context import ServerContext
    from .index.registry import INDEX_FILENAME
    from .storage.registry import open_storage
    from .web.fastlane import FastLane
    from .web.middleware import basic_credentials
    from .web.readerlane import STATE, ReaderServer

    size = int.from_bytes(shared[STATE : STATE + 8], "big")
    config = json.loads(shared[STATE + 8 : STATE + 8 + size])
    settings = from_raw(config["raw"])
    index = ReadOnlySqlite(Path(settings.index_directory) / INDEX_FILENAME)
    none = cast(Any, None)  # the services the fast routes never call
    ctx = ServerContext(
        settings,
        cast(Any, index),
        open_storage(settings),
        jobs=none,
        series_cache=none,
        modalities=none,
        queries=none,
        peers=none,
        ext_tags=none,
    )
    routes = {key: route for key, route in rest.fast_routes(ctx).items() if key[0] == "instances"}
    credentials = basic_credentials(settings.registered_users) if settings.authentication_enabled else None
    lane = FastLane(routes, credentials, settings.remote_access_allowed)
    await ReaderServer(ctx, lane, control, shared, float(config["keepalive"])).run()


def main(argv: list[str]) -> int:
    from .app import configure_libraries, event_loop_factory, freeze_startup_objects, pause_collector

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    control = socket.socket(fileno=int(argv[1]))
    fd = int(argv[2])
    shared = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
    pause_collector()
    configure_libraries()
    factory = event_loop_factory()
    loop = factory() if factory is not None else asyncio.new_event_loop()

    async def run() -> None:
        task = asyncio.ensure_future(_serve(control, shared))
        await asyncio.sleep(0)
        freeze_startup_objects()
        await task

    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
