"""POST /tools/execute-script: run Lua in the server (core/lua), answer what it printed."""

from __future__ import annotations

from aiohttp import web

from ..errors import ErrorCode, OrthancError
from ..web.responses import read_body
from .common import ctx_of


async def execute_script(request: web.Request) -> web.StreamResponse:
    """Orthanc answers the output of `print` as text/plain; a Lua error is CannotExecuteLua
    (500) with Lua's message; with ExecuteLuaEnabled off, a bare 403."""
    lua = ctx_of(request).lua
    if lua is None:
        raise OrthancError(ErrorCode.FORBIDDEN_ACCESS, "ExecuteLuaEnabled is off")
    output = await lua.execute(await read_body(request))
    return web.Response(body=output, content_type="text/plain")


def setup(router: web.UrlDispatcher) -> None:
    router.add_post("/tools/execute-script", execute_script)
