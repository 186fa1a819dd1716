"""read_body on a real aiohttp server: large bodies widen the connection's socket reads."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web

from orthanc_py.web.responses import BIG_READ, read_body


async def _post(bodies: list[bytes]) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    async def handler(request: web.Request) -> web.Response:
        body = await read_body(request)
        seen.append({"same": body == bodies[len(seen)], "max_size": getattr(request.transport, "max_size", None)})
        return web.Response(text="ok")

    app = web.Application(client_max_size=8 << 20)
    app.router.add_post("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as session:
            for body in bodies:  # one connection, kept alive
                async with session.post(f"http://127.0.0.1:{port}/", data=body) as r:
                    assert r.status == 200
    finally:
        await runner.cleanup()
    return seen


def test_a_large_body_is_read_whole_with_wider_reads() -> None:
    small, large = b"s" * 1000, bytes(range(256)) * 4000  # 1 kB, then 1 MB
    seen = asyncio.run(_post([small, large]))
    assert all(s["same"] for s in seen)
    default = seen[0]["max_size"]
    assert isinstance(default, int) and default < BIG_READ  # a small body leaves asyncio's default
    assert seen[1]["max_size"] == BIG_READ
