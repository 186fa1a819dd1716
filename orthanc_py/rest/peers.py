"""/peers: the registry of Orthanc peers (list, ?expand, get, configuration, put, delete)."""

from __future__ import annotations

from aiohttp import web

from ..errors import ErrorCode, OrthancError
from ..web.responses import bool_arg, json_response, read_json, text_response
from .common import ctx_of

PEER_OPERATIONS = ["configuration", "store", "store-straight", "system"]


async def list_peers(request: web.Request) -> web.StreamResponse:
    reg = ctx_of(request).peers
    if bool_arg(request, "expand"):
        return json_response({n: reg.get(n).to_json() for n in reg.names()})
    return json_response(reg.names())


async def get_peer(request: web.Request) -> web.StreamResponse:
    ctx_of(request).peers.get(request.match_info["id"])
    return json_response(PEER_OPERATIONS)


async def get_configuration(request: web.Request) -> web.StreamResponse:
    return json_response(ctx_of(request).peers.get(request.match_info["id"]).to_json())


async def put_peer(request: web.Request) -> web.StreamResponse:
    body = await read_json(request)
    if body is None:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "The body must be a JSON array or object")
    ctx_of(request).peers.put(request.match_info["id"], body)
    return text_response("")


async def delete_peer(request: web.Request) -> web.StreamResponse:
    ctx_of(request).peers.delete(request.match_info["id"])
    return text_response("")


def setup(router: web.UrlDispatcher) -> None:
    router.add_get("/peers", list_peers)
    router.add_get("/peers/{id}", get_peer)
    router.add_put("/peers/{id}", put_peer)
    router.add_delete("/peers/{id}", delete_peer)
    router.add_get("/peers/{id}/configuration", get_configuration)
