"""The HTTP side of Lua scripting: the REST calls of scripts, and IncomingHttpRequestFilter.

Scripts call our REST API over loopback with a secret header (core/lua/api.py): those requests
skip authentication and the filter, and store instances with origin "Lua", as Orthanc's
in-process calls do. Every other request goes through `IncomingHttpRequestFilter(method, uri,
ip, username, headers)` when a script defines it; false is a bare 403."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING
from urllib.parse import unquote

from aiohttp import web
from aiohttp.typedefs import Middleware

from ..errors import OrthancError
from .middleware import FROM_LUA, USERNAME, Handler, error_response

if TYPE_CHECKING:
    from ..core.lua import LuaScripting

log = logging.getLogger("orthanc_py.http")


_URI: web.RequestKey[str] = web.RequestKey("orthanc_lua_uri", str)
_FILTER_METHOD = {
    **dict.fromkeys(("OPTIONS", "PROPFIND", "HEAD"), "GET"),
    **dict.fromkeys(("PROPPATCH", "LOCK", "UNLOCK", "MKCOL"), "PUT"),
}
"""The method the filter is told for WebDAV requests: reads as GET, writes as PUT (Orthanc 1.10.1)."""


def lua_origin_middleware(token: str) -> Middleware:
    """Outermost: marks the requests that come from a Lua script, and keeps the path as the
    client sent it for the filter (a request whose path is normalized is dispatched again)."""
    from ..core.lua.api import LUA_HEADER

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.headers.get(LUA_HEADER) == token:
            request[FROM_LUA] = True
        elif _URI not in request:
            request[_URI] = request.raw_path
        return await handler(request)

    return middleware


def lua_filter_middleware(lua: LuaScripting) -> Middleware:
    """Inside access control (the filter is told the user name)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if "IncomingHttpRequestFilter" not in lua.events.defined or request.get(FROM_LUA):
            return await handler(request)
        method = _FILTER_METHOD.get(request.method, request.method)
        if method not in ("GET", "POST", "PUT", "DELETE"):
            return await handler(request)
        headers = {k.lower(): v for k, v in request.headers.items()}
        # Orthanc 1.10.1 gives the decoded path with repeated slashes merged (a trailing one kept)
        uri = re.sub(r"/{2,}", "/", unquote(request.get(_URI, request.raw_path).partition("?")[0]))
        try:
            allowed = await lua.http_allowed(method, uri, request.remote or "", request.get(USERNAME, ""), headers)
        except OrthancError as err:
            return error_response(request, err)
        if not allowed:
            log.info("An incoming HTTP request has been discarded by the filter")
            return web.Response(status=403)
        return await handler(request)

    return middleware
