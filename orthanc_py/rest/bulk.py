"""Operations on many resources in one call: /tools/bulk-content, /tools/bulk-delete, and
reconstruction (/tools/reconstruct, /{level}/{id}/reconstruct)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..core import bulk, reconstruct
from ..errors import ErrorCode, OrthancError
from ..model.enums import ResourceType
from ..web.responses import json_response, read_json, text_response
from .common import ctx_of
from .render import metadata_json, resource_json


async def _body(request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise OrthancError(ErrorCode.BAD_REQUEST, "The body must contain a JSON object")
    return body


def _resources(body: dict[str, Any]) -> list[str]:
    ids = body.get("Resources")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, 'The field "Resources" must be a list of strings')
    return ids


def _flag(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f'The field "{key}" must be a Boolean')
    return value


async def bulk_content(request: web.Request) -> web.StreamResponse:
    """POST /tools/bulk-content {"Resources": [...], "Level"?, "Metadata"? (default true)}: the
    resources as GET /{level}/{id} gives them (with their metadata), each at its own level or
    all moved up/down the hierarchy to "Level"."""
    body = await _body(request)
    ids = _resources(body)
    level = None
    if "Level" in body:
        try:
            level = ResourceType.parse(str(body["Level"]))
        except ValueError as exc:
            raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Unknown resource type: {body['Level']}") from exc
    with_metadata = _flag(body, "Metadata", True)
    fmt = "short" if _flag(body, "Short", False) else "full" if _flag(body, "Full", False) else "human"
    infos = await bulk.content(ctx_of(request), ids, level, with_metadata)
    answer = []
    for info in infos:
        item = resource_json(info, fmt)
        if with_metadata:
            item["Metadata"] = metadata_json(info.metadata, info.metadata_names)
        answer.append(item)
    return json_response(answer)


async def bulk_delete(request: web.Request) -> web.StreamResponse:
    """POST /tools/bulk-delete {"Resources": [...]}: delete each (unknown IDs are skipped)."""
    await bulk.delete_many(ctx_of(request), _resources(await _body(request)))
    return text_response("")


async def _reconstruct_flags(request: web.Request) -> tuple[bool, bool]:
    """("ReconstructFiles", "LimitToThisLevelMainDicomTags") of the body. As in Orthanc, a body
    that is empty or not JSON means the defaults; a field present must be a Boolean."""
    body = await read_json(request)
    if not isinstance(body, dict):
        return False, False
    return _flag(body, "ReconstructFiles", False), _flag(body, "LimitToThisLevelMainDicomTags", False)


async def reconstruct_all(request: web.Request) -> web.StreamResponse:
    files, _this_level_only = await _reconstruct_flags(request)
    await reconstruct.reconstruct(ctx_of(request), None, None, files=files)
    return text_response("")


def _reconstruct_one(level: ResourceType) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        files, this_level_only = await _reconstruct_flags(request)
        await reconstruct.reconstruct(ctx_of(request), request.match_info["id"], level, this_level_only, files)
        return text_response("")

    return handler


def setup(router: web.UrlDispatcher) -> None:
    router.add_post("/tools/bulk-content", bulk_content)
    router.add_post("/tools/bulk-delete", bulk_delete)
    router.add_post("/tools/reconstruct", reconstruct_all)
    for level in ResourceType:
        router.add_post(f"/{level.plural}/{{id}}/reconstruct", _reconstruct_one(level))
