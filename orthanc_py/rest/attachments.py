"""Attachments of resources (`/{level}/{id}/attachments/...`): the DICOM file and user files."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..core import resources as core_res
from ..errors import ErrorCode, OrthancError
from ..index.base import Attachment, Transaction
from ..model.enums import ATTACHMENT_NAMES, ResourceType
from ..web.responses import json_response, text_response
from .common import ctx_of
from .render import attachment_json

SUBROUTES = [
    "compress",
    "compressed-data",
    "compressed-md5",
    "compressed-size",
    "data",
    "info",
    "is-compressed",
    "md5",
    "size",
    "uncompress",
    "verify-md5",
    "uuid",
]
_BY_NAME = {v: k for k, v in ATTACHMENT_NAMES.items()}


def _content_type(name: str) -> int:
    if name in _BY_NAME:
        return _BY_NAME[name]
    if name.isdigit() and int(name) >= 1024:
        return int(name)
    raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)


async def _find(request: web.Request, level: ResourceType) -> Attachment:
    ctx = ctx_of(request)
    pid = request.match_info["id"]
    ctype = _content_type(request.match_info["name"])

    def run(txn: Transaction) -> Attachment:
        rid, _ = core_res.lookup_in(txn, pid, level)
        for a in txn.attachments([rid])[rid]:
            if a.content_type == ctype:
                return a
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)

    return await ctx.index.read(run)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _handlers(level: ResourceType) -> dict[str, Handler]:
    async def list_names(request: web.Request) -> web.StreamResponse:
        ctx = ctx_of(request)
        pid = request.match_info["id"]

        def run(txn: Transaction) -> list[int]:
            rid, _ = core_res.lookup_in(txn, pid, level)
            return [a.content_type for a in txn.attachments([rid])[rid]]

        types = await ctx.index.read(run)
        return json_response([ATTACHMENT_NAMES.get(t, str(t)) for t in types])

    async def operations(request: web.Request) -> web.StreamResponse:
        await _find(request, level)
        return json_response(SUBROUTES)

    async def data(request: web.Request) -> web.StreamResponse:
        a = await _find(request, level)
        ctx = ctx_of(request)
        body = await ctx.run(ctx.storage.read, a.uuid, a.content_type)
        return web.Response(body=body, content_type="application/octet-stream")

    async def size(request: web.Request) -> web.StreamResponse:
        return text_response(str((await _find(request, level)).uncompressed_size))

    async def md5(request: web.Request) -> web.StreamResponse:
        return text_response(await _md5(request, await _find(request, level)))

    async def is_compressed(request: web.Request) -> web.StreamResponse:
        return text_response("1" if (await _find(request, level)).compression != 1 else "0")

    async def info(request: web.Request) -> web.StreamResponse:
        a = await _find(request, level)
        digest = await _md5(request, a)
        out = attachment_json(a)
        out["CompressedMD5"] = out["UncompressedMD5"] = digest
        out.pop("Revision", None)  # Orthanc 1.10.1 does not report revisions here
        return json_response(out)

    async def uuid(request: web.Request) -> web.StreamResponse:
        return text_response((await _find(request, level)).uuid)

    async def verify_md5(request: web.Request) -> web.StreamResponse:
        a = await _find(request, level)
        ctx = ctx_of(request)
        body = await ctx.run(ctx.storage.read, a.uuid, a.content_type)
        if a.uncompressed_md5 and hashlib.md5(body, usedforsecurity=False).hexdigest() != a.uncompressed_md5:
            raise OrthancError(ErrorCode.CORRUPTED_FILE)
        return json_response({})

    return {
        "list": list_names,
        "ops": operations,
        "data": data,
        "size": size,
        "md5": md5,
        "is-compressed": is_compressed,
        "info": info,
        "uuid": uuid,
        "verify-md5": verify_md5,
    }


async def _md5(request: web.Request, a: Attachment) -> str:
    """The recorded MD5, or computed from the file when ingest skipped it (computed lazily)."""
    if a.uncompressed_md5:
        return a.uncompressed_md5
    ctx = ctx_of(request)
    body = await ctx.run(ctx.storage.read, a.uuid, a.content_type)
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def setup(router: web.UrlDispatcher) -> None:
    for level in ResourceType:
        base = f"/{level.plural}/{{id}}/attachments"
        h = _handlers(level)
        router.add_get(base, h["list"])
        router.add_get(base + "/{name}", h["ops"])
        router.add_get(base + "/{name}/data", h["data"])
        router.add_get(base + "/{name}/compressed-data", h["data"])
        router.add_get(base + "/{name}/size", h["size"])
        router.add_get(base + "/{name}/compressed-size", h["size"])
        router.add_get(base + "/{name}/md5", h["md5"])
        router.add_get(base + "/{name}/compressed-md5", h["md5"])
        router.add_get(base + "/{name}/is-compressed", h["is-compressed"])
        router.add_get(base + "/{name}/info", h["info"])
        router.add_get(base + "/{name}/uuid", h["uuid"])
        router.add_post(base + "/{name}/verify-md5", h["verify-md5"])
