"""/peers: the registry of Orthanc peers (list, ?expand, get, configuration, put, delete), and
sending to a peer (store as an OrthancPeerStore job, store-straight), its /system."""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

from ..core import peers as core_peers
from ..core.jobs import request_priority, request_synchronous
from ..errors import ErrorCode, OrthancError
from ..web.responses import bool_arg, json_response, read_body, read_json, text_response
from .common import ctx_of

PEER_OPERATIONS = ["configuration", "store", "store-straight", "system"]

# Orthanc's Toolbox::IsSHA1: five groups of eight hexadecimal digits
_SHA1 = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{8}){4}$")


async def list_peers(request: web.Request) -> web.StreamResponse:
    reg = ctx_of(request).peers
    if bool_arg(request, "expand") or request.query.get("expand") == "":
        return json_response({n: reg.get(n).to_json() for n in reg.names()})
    return json_response(reg.names())


async def get_peer(request: web.Request) -> web.StreamResponse:
    if request.match_info["id"] not in ctx_of(request).peers:
        return web.Response(status=404)  # Orthanc: an empty 404, as for an unknown route
    return json_response(PEER_OPERATIONS)


async def get_configuration(request: web.Request) -> web.StreamResponse:
    return json_response(ctx_of(request).peers.get(request.match_info["id"]).to_json())


async def put_peer(request: web.Request) -> web.StreamResponse:
    body = await read_json(request)
    if body is None:
        return web.Response(status=404)  # Orthanc answers nothing to a body that is not JSON
    await ctx_of(request).peers.put(request.match_info["id"], body)
    return text_response("")


async def delete_peer(request: web.Request) -> web.StreamResponse:
    await ctx_of(request).peers.delete(request.match_info["id"])
    return text_response("")


def resources_of(raw: bytes) -> tuple[list[str], dict[str, Any]]:
    """The resources of a store request and its other fields, read as Orthanc's
    GetInstancesToExport: a bare identifier, a JSON string, a list, or {"Resources": [...]}."""
    if _SHA1.match(raw.decode("latin-1").strip()):
        return [raw.decode("latin-1").strip()], {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Must provide a JSON value") from None
    options: dict[str, Any] = {}
    if isinstance(body, str):
        body = [body]
    elif not isinstance(body, list | dict):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Must provide a JSON object, or a JSON array of strings")
    if isinstance(body, dict):
        if "Resources" not in body:
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, 'Missing field in JSON: "Resources"')
        options = body
        body = body["Resources"]
        if not isinstance(body, list):
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, 'JSON field "Resources" must contain an array')
    out = []
    for item in body:
        if not isinstance(item, str):
            raise OrthancError(
                ErrorCode.BAD_FILE_FORMAT, "Resources to be exported must be specified as a JSON array of strings"
            )
        stripped = item.strip()
        if not _SHA1.match(stripped):
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f"This string is not a valid Orthanc identifier: {stripped}")
        out.append(stripped)
    return out, options


async def store(request: web.Request) -> web.StreamResponse:
    """POST /peers/{id}/store: an OrthancPeerStore job (synchronous unless asked otherwise)."""
    ctx = ctx_of(request)
    name = request.match_info["id"]
    resources, options = resources_of(await read_body(request))
    spec = await core_peers.prepare_store(ctx, name, resources, options)
    synchronous = request_synchronous(options)
    priority = request_priority(options)
    answer = await core_peers.submit_store(ctx, spec, priority, options.get("UserData"), synchronous)
    return json_response(answer)


async def store_straight(request: web.Request) -> web.StreamResponse:
    """POST /peers/{id}/store-straight: the body (a DICOM file) goes to the peer as it is."""
    ctx = ctx_of(request)
    name = request.match_info["id"]
    ctx.peers.get(name)
    return json_response(await core_peers.store_straight(ctx, name, await read_body(request)))


async def system(request: web.Request) -> web.StreamResponse:
    """GET /peers/{id}/system: the peer's /system, as it answers it."""
    status, body = await core_peers.system(ctx_of(request), request.match_info["id"])
    if status != 200:
        return web.Response(status=status)
    return web.Response(body=body, content_type="application/json")


def setup(router: web.UrlDispatcher) -> None:
    router.add_get("/peers", list_peers)
    router.add_get("/peers/{id}", get_peer)
    router.add_put("/peers/{id}", put_peer)
    router.add_delete("/peers/{id}", delete_peer)
    router.add_get("/peers/{id}/configuration", get_configuration)
    router.add_post("/peers/{id}/store", store)
    router.add_post("/peers/{id}/store-straight", store_straight)
    router.add_get("/peers/{id}/system", system)
