"""Modification routes: POST /instances/{id}/modify (the modified file, nothing stored)."""

from __future__ import annotations

from aiohttp import web

from ..core import modify as core_modify
from ..web.responses import read_json
from .common import ctx_of


async def modify_instance(request: web.Request) -> web.StreamResponse:
    data = await core_modify.modify_instance(ctx_of(request), request.match_info["id"], await read_json(request))
    return web.Response(body=data, headers={"Content-Type": "application/dicom"})


def setup(router: web.UrlDispatcher) -> None:
    router.add_post("/instances/{id}/modify", modify_instance)
