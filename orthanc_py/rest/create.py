"""POST /tools/create-dicom (core/createdicom.py)."""

from __future__ import annotations

from aiohttp import web

from ..core import createdicom
from ..core.ingest import Origin
from ..web.middleware import FROM_LUA, USERNAME
from ..web.responses import json_response, read_json
from .common import ctx_of


async def create_dicom(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    body = await read_json(request)
    if request.get(FROM_LUA):
        origin = Origin("Lua")
    else:
        origin = Origin("RestApi", remote_ip=request.remote or "", http_username=request.get(USERNAME, ""))
    return json_response(await createdicom.create(ctx, body, origin))


def setup(router: web.UrlDispatcher) -> None:
    router.add_post("/tools/create-dicom", create_dicom)
