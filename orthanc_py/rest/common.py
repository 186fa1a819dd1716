"""Helpers shared by the REST handlers: the context key and argument parsing."""

from __future__ import annotations

from aiohttp import web

from ..core.ingest import Origin
from ..errors import ErrorCode, OrthancError
from ..web.appkeys import CTX, ctx_of
from ..web.middleware import FROM_LUA, USERNAME
from ..web.responses import bool_arg

__all__ = ["CTX", "ctx_of", "empty_404", "int_arg", "origin_of", "since_limit", "tag_format"]


def tag_format(request: web.Request) -> str:
    """`?short` -> "short", `?full` -> "full", default "human" (keywords)."""
    if bool_arg(request, "short"):
        return "short"
    if bool_arg(request, "full"):
        return "full"
    return "human"


def empty_404() -> web.Response:
    """Orthanc answers some misses (unknown ID on a resource route, absent tag or metadata) with
    a bare 404 and no body."""
    return web.Response(status=404)


def since_limit(request: web.Request) -> tuple[int, int]:
    """`since` and `limit` go together on GET lists (Orthanc: 400 when only one is given)."""
    has_since, has_limit = "since" in request.query, "limit" in request.query
    if has_since != has_limit:
        missing = "since" if has_limit else "limit"
        raise OrthancError(
            ErrorCode.BAD_REQUEST, f'Missing "{missing}" argument for GET request against: {request.path}/'
        )
    return int_arg(request, "since"), int_arg(request, "limit")


def int_arg(request: web.Request, name: str, default: int = 0) -> int:
    text = request.query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError as exc:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Argument {name} must be an integer") from exc
    if value < 0:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Argument {name} must be positive")
    return value


def origin_of(request: web.Request) -> Origin:
    """Where an instance sent over REST comes from (its Origin metadata): Lua's RestApi calls
    are "Lua", other requests "RestApi" with the caller's address and user name."""
    if request.get(FROM_LUA):
        return Origin("Lua")
    return Origin("RestApi", remote_ip=request.remote or "", http_username=request.get(USERNAME, ""))
