"""POST /tools/create-dicom (core/createdicom.py)."""

from __future__ import annotations

from aiohttp import web

from ..web.responses import json_response, read_json
from .common import ctx_of, origin_of


async def create_dicom(request: web.Request) -> web.StreamResponse:
    from ..core import createdicom

    ctx = ctx_of(request)
    body = await read_json(request)
    return json_response(await createdicom.create(ctx, body, origin_of(request)))


def setup(router: web.UrlDispatcher) -> None:
    router.add_post("/tools/create-dicom", create_dicom)
