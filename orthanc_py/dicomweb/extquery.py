"""The Azure DICOM service's extended query tags and operations API, under the DICOMweb
prefixes (/dicom-web, /v1, /v2): JSON in camelCase without null fields, as Azure answers."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from ..core import extquery, extquery_admin
from ..errors import ErrorCode, OrthancError
from ..web.appkeys import ctx_of
from ..web.responses import json_response
from .headers import public_base


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise OrthancError(ErrorCode.BAD_REQUEST, "The request body is not valid JSON.") from None


def _paging(request: web.Request) -> tuple[int, int]:
    """limit (1..200, default 100) and offset (>= 0), as the Azure service checks them."""
    out = []
    for name, default, low, high in (("limit", 100, 1, 200), ("offset", 0, 0, 2**31 - 1)):
        text = request.query.get(name)
        try:
            value = default if text is None else int(text)
        except ValueError:
            value = -1
        if not low <= value <= high:
            raise OrthancError(ErrorCode.BAD_REQUEST, f"The following query parameter is invalid: {name}.")
        out.append(value)
    return out[0], out[1]


def _routes(prefix: str) -> list[web.RouteDef]:
    def base(request: web.Request) -> str:
        return public_base(request, prefix)

    def operation_ref(request: web.Request, job_id: str) -> tuple[dict[str, str], str]:
        op = job_id.replace("-", "")
        href = f"{base(request)}/operations/{op}"
        return {"id": op, "href": href}, href

    async def add(request: web.Request) -> web.StreamResponse:
        ctx = ctx_of(request)
        job = await extquery_admin.add(ctx, await _body(request))
        ref, href = operation_ref(request, job.id)
        return json_response(ref, status=202, headers={"Location": href})

    async def list_tags(request: web.Request) -> web.StreamResponse:
        ctx = ctx_of(request)
        limit, offset = _paging(request)
        rows = ctx.ext_tags.rows[offset : offset + limit]
        return json_response([extquery.entry_json(r, base(request)) for r in rows])

    async def get_tag(request: web.Request) -> web.StreamResponse:
        row = extquery.lookup(ctx_of(request), request.match_info["path"])
        return json_response(extquery.entry_json(row, base(request)))

    async def delete_tag(request: web.Request) -> web.StreamResponse:
        await extquery_admin.delete(ctx_of(request), request.match_info["path"])
        return web.Response(status=204)

    async def patch_tag(request: web.Request) -> web.StreamResponse:
        row = await extquery_admin.update(ctx_of(request), request.match_info["path"], await _body(request))
        return json_response(extquery.entry_json(row, base(request)))

    async def tag_errors(request: web.Request) -> web.StreamResponse:
        limit, offset = _paging(request)
        return json_response(await extquery_admin.errors(ctx_of(request), request.match_info["path"], offset, limit))

    async def operation(request: web.Request) -> web.StreamResponse:
        ctx = ctx_of(request)
        wanted = request.match_info["id"].replace("-", "").lower()
        job = next((j for j in ctx.jobs.all() if j.id.replace("-", "") == wanted), None)
        if job is None:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"No operation {wanted}", http_status=404)
        running = job.state in ("Pending", "Running")
        done = {"Success": "Succeeded" if prefix.endswith("/v2") else "Completed", "Failure": "Failed"}
        status = "NotStarted" if job.state == "Pending" else "Running" if running else done.get(job.state, "Failed")
        _ref, href = operation_ref(request, job.id)
        tags = job.content.get("Tags", [])
        body = {
            "operationId": wanted,
            "type": "Reindex",
            "createdTime": _iso(job.creation_time),
            "lastUpdatedTime": _iso(job.completion_time or job.creation_time),
            "status": status,
            "percentComplete": 100 if job.state == "Success" else job.progress,
            "resources": [f"{base(request)}/extendedquerytags/{t}" for t in tags],
        }
        return json_response(body, status=202 if running else 200, headers={"Location": href} if running else None)

    tags = prefix + "/extendedquerytags"
    return [
        web.post(tags, add),
        web.get(tags, list_tags),
        web.get(tags + "/{path}", get_tag),
        web.delete(tags + "/{path}", delete_tag),
        web.patch(tags + "/{path}", patch_tag),
        web.get(tags + "/{path}/errors", tag_errors),
        web.get(prefix + "/operations/{id}", operation),
    ]


def _iso(orthanc_time: str) -> str:
    """Orthanc's 20261123T134501 as ISO 8601 UTC."""
    t = orthanc_time
    if len(t) >= 15 and t[8] == "T":
        return f"{t[0:4]}-{t[4:6]}-{t[6:8]}T{t[9:11]}:{t[11:13]}:{t[13:15]}Z"
    return t


def setup(router: web.UrlDispatcher, prefix: str) -> None:
    router.add_routes(_routes(prefix))
