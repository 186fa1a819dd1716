"""POST /studies/{id}/split and /studies/{id}/merge: jobs (core/mergesplit.py)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..core import mergesplit
from ..core.context import ServerContext
from ..errors import ErrorCode, OrthancError
from ..web.middleware import USERNAME
from ..web.responses import json_response, read_json
from .common import ctx_of


async def _body(request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
    return body


def _origin(request: web.Request) -> dict[str, str]:
    return {"RemoteIP": request.remote or "", "Username": request.get(USERNAME, "")}


async def split(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    body = await _body(request)
    spec = await mergesplit.split_spec(ctx, request.match_info["id"], body)
    spec.update(_origin(request))
    return json_response(await mergesplit.submit(ctx, mergesplit.SPLIT_JOB, spec, body))


async def merge(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    body = await _body(request)
    spec = await mergesplit.merge_spec(ctx, request.match_info["id"], body)
    spec.update(_origin(request))
    return json_response(await mergesplit.submit(ctx, mergesplit.MERGE_JOB, spec, body))


def register_jobs(ctx: ServerContext) -> None:
    """Declare the SplitStudy and MergeStudy job types to the jobs engine."""
    mergesplit.register_jobs(ctx)


def setup(router: web.UrlDispatcher) -> None:
    router.add_post("/studies/{id}/split", split)
    router.add_post("/studies/{id}/merge", merge)
