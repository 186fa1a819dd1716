"""Metadata and labels of resources at every level (`/{level}/{id}/metadata`, `/labels`).

GET of a metadata answers its ETag and a 304 to a matching `If-None-Match`; PUT and DELETE take
`If-Match` (core/content.py holds the revision rules). Orthanc answers a bare 403 to a write of
a system metadata, and an empty 404 for a metadata the resource does not have.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from ..core import content
from ..core.content import Revision
from ..errors import ErrorCode, OrthancError
from ..model.enums import ResourceType
from ..web.middleware import error_response
from ..web.responses import bool_arg, json_response, read_body, text_response
from .common import ctx_of, empty_404

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _metadata_handlers(level: ResourceType) -> dict[str, Handler]:
    async def list_meta(request: web.Request) -> web.StreamResponse:
        ctx = ctx_of(request)
        meta = await content.list_metadata(ctx, request.match_info["id"], level)
        numeric = "numeric" in request.query
        items = sorted(meta.items())
        if bool_arg(request, "expand"):
            if numeric:
                return json_response({str(t): v for t, v in items})
            return json_response({content.metadata_name(ctx, t): v for t, v in items})
        if numeric:
            return json_response([t for t, _ in items])
        return json_response([content.metadata_name(ctx, t) for t, _ in items])

    async def get_meta(request: web.Request) -> web.StreamResponse:
        ctx = ctx_of(request)
        mtype = content.metadata_type(ctx, request.match_info["name"])
        entry = await content.get_metadata(ctx, request.match_info["id"], level, mtype)
        if entry is None:
            return empty_404()
        value, revision = entry
        tag = content.body_etag(revision, value)
        try:
            wanted = Revision.parse(request.headers.get("If-None-Match"), "If-None-Match")
        except OrthancError as err:  # Orthanc has set the ETag before it reads the header
            response = error_response(request, err)
            response.headers["ETag"] = tag
            return response
        if wanted is not None and tag == content.etag(wanted.number, wanted.md5):
            return web.Response(status=304, headers={"ETag": tag})
        response = text_response(value)
        response.headers["ETag"] = tag
        return response

    async def put_meta(request: web.Request) -> web.StreamResponse:
        ctx = ctx_of(request)
        mtype = content.metadata_type(ctx, request.match_info["name"])
        expected = Revision.parse(request.headers.get("If-Match"), "if-match")
        value = (await read_body(request)).decode("utf-8", "replace")
        revision = await content.set_metadata(ctx, request.match_info["id"], level, mtype, value, expected)
        response = text_response("")
        response.headers["ETag"] = content.body_etag(revision, value)
        return response

    async def delete_meta(request: web.Request) -> web.StreamResponse:
        ctx = ctx_of(request)
        mtype = content.metadata_type(ctx, request.match_info["name"])
        expected = Revision.parse(request.headers.get("If-Match"), "if-match")
        found = await content.delete_metadata(ctx, request.match_info["id"], level, mtype, expected)
        if not found:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
        return text_response("")

    return {"list": list_meta, "get": get_meta, "put": put_meta, "delete": delete_meta}


def _label_handlers(level: ResourceType) -> dict[str, Handler]:
    async def list_labels(request: web.Request) -> web.StreamResponse:
        return json_response(await content.list_labels(ctx_of(request), request.match_info["id"], level))

    async def has_label(request: web.Request) -> web.StreamResponse:
        labels = await content.list_labels(ctx_of(request), request.match_info["id"], level)
        if request.match_info["label"] not in labels:
            return empty_404()
        return text_response("")

    async def put_label(request: web.Request) -> web.StreamResponse:
        await content.modify_label(ctx_of(request), request.match_info["id"], level, request.match_info["label"], True)
        return text_response("")

    async def delete_label(request: web.Request) -> web.StreamResponse:
        await content.modify_label(ctx_of(request), request.match_info["id"], level, request.match_info["label"], False)
        return text_response("")

    return {"list": list_labels, "get": has_label, "put": put_label, "delete": delete_label}


def setup(router: web.UrlDispatcher) -> None:
    for level in ResourceType:
        base = f"/{level.plural}/{{id}}"
        m = _metadata_handlers(level)
        router.add_get(base + "/metadata", m["list"])
        router.add_get(base + "/metadata/{name}", m["get"])
        router.add_put(base + "/metadata/{name}", m["put"])
        router.add_delete(base + "/metadata/{name}", m["delete"])
        lab = _label_handlers(level)
        router.add_get(base + "/labels", lab["list"])
        router.add_get(base + "/labels/{label}", lab["get"])
        router.add_put(base + "/labels/{label}", lab["put"])
        router.add_delete(base + "/labels/{label}", lab["delete"])
