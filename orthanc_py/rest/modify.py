"""Modification and anonymization routes (Orthanc's OrthancRestAnonymizeModify):
POST /instances/{id}/modify|anonymize answer the modified file (nothing stored);
POST /{patients,studies,series}/{id}/modify|anonymize and /tools/bulk-modify|bulk-anonymize run
a ResourceModification job (synchronous unless "Asynchronous")."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from ..core import modifyjob
from ..errors import ErrorCode, OrthancError
from ..model.enums import ResourceType
from ..web.responses import json_response, read_body
from .common import ctx_of


async def read_json(request: web.Request) -> Any:
    """The JSON body; an empty body is an empty request (Orthanc accepts a bare POST)."""
    body = await read_body(request)
    if not body.strip():
        return {}
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT) from None


async def _instance(request: web.Request, anonymize: bool) -> web.StreamResponse:
    data = await modifyjob.modify_instance(
        ctx_of(request), request.match_info["id"], await read_json(request), anonymize
    )
    return web.Response(body=data, headers={"Content-Type": "application/dicom"})


async def modify_instance(request: web.Request) -> web.StreamResponse:
    return await _instance(request, False)


async def anonymize_instance(request: web.Request) -> web.StreamResponse:
    return await _instance(request, True)


async def _resource(request: web.Request, level: ResourceType, anonymize: bool) -> web.StreamResponse:
    ctx = ctx_of(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
    plan = await modifyjob.prepare(ctx, anonymize, body, [request.match_info["id"]], level)
    return json_response(await modifyjob.run_sync_or_submit(ctx, plan))


def _resource_route(level: ResourceType, anonymize: bool) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await _resource(request, level, anonymize)

    return handler


async def _bulk(request: web.Request, anonymize: bool) -> web.StreamResponse:
    ctx = ctx_of(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
    resources = body.get("Resources")
    if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, 'The "Resources" field must be a list of strings')
    plan = await modifyjob.prepare(ctx, anonymize, body, list(dict.fromkeys(resources)), None)
    return json_response(await modifyjob.run_sync_or_submit(ctx, plan))


async def bulk_modify(request: web.Request) -> web.StreamResponse:
    return await _bulk(request, False)


async def bulk_anonymize(request: web.Request) -> web.StreamResponse:
    return await _bulk(request, True)


def setup(router: web.UrlDispatcher) -> None:
    router.add_post("/instances/{id}/modify", modify_instance)
    router.add_post("/instances/{id}/anonymize", anonymize_instance)
    for level in (ResourceType.PATIENT, ResourceType.STUDY, ResourceType.SERIES):
        router.add_post(f"/{level.plural}/{{id}}/modify", _resource_route(level, False))
        router.add_post(f"/{level.plural}/{{id}}/anonymize", _resource_route(level, True))
    router.add_post("/tools/bulk-modify", bulk_modify)
    router.add_post("/tools/bulk-anonymize", bulk_anonymize)
