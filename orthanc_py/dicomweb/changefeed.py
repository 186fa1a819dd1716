"""The Azure DICOM service's change feed: every instance creation and deletion, in order."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..core import changefeed as core_feed
from ..core import files as core_files
from ..errors import ErrorCode, OrthancError
from ..web.appkeys import ctx_of
from ..web.responses import json_bytes

MAX_LIMIT = 200


def _entry(row: tuple[Any, ...]) -> dict[str, Any]:
    seq, action, state, study, series, sop, _instance, timestamp = row
    return {
        "Sequence": seq,
        "StudyInstanceUid": study,
        "SeriesInstanceUid": series,
        "SopInstanceUid": sop,
        "Action": action,
        "Timestamp": timestamp,
        "State": state,
    }


def _param(request: web.Request, name: str, default: int) -> int:
    try:
        value = int(request.query.get(name, default))
    except ValueError:
        raise OrthancError(ErrorCode.BAD_REQUEST, f"{name} must be an integer") from None
    if value < 0:
        raise OrthancError(ErrorCode.BAD_REQUEST, f"{name} must be positive")
    return value


async def _with_metadata(request: web.Request, rows: list[tuple[Any, ...]], include: bool) -> list[dict[str, Any]]:
    ctx = ctx_of(request)
    out = [_entry(r) for r in rows]
    if not include:
        return out
    from ..model import webjson

    current = [(i, r[6]) for i, r in enumerate(rows) if r[2] == "current"]
    files = await core_files.files_by_public_id(ctx, [pid for _i, pid in current])

    def metadata() -> None:
        for i, pid in current:
            if pid in files:
                ds = core_files.dataset(ctx, files[pid], with_pixels=False)
                out[i]["Metadata"] = webjson.to_json_dict(ds, lambda _e, _p: "", 1024)

    await ctx.run(metadata)
    return out


async def changefeed(request: web.Request) -> web.StreamResponse:
    """GET /changefeed?offset=&limit=&includeMetadata= (offset: the last Sequence already seen)."""
    ctx = ctx_of(request)
    offset = _param(request, "offset", 0)
    limit = min(_param(request, "limit", 10), MAX_LIMIT)
    include = request.query.get("includeMetadata", "true").lower() != "false"
    rows = await core_feed.page(ctx, offset, limit)
    return web.Response(body=json_bytes(await _with_metadata(request, rows, include)), content_type="application/json")


async def latest(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    include = request.query.get("includeMetadata", "true").lower() != "false"
    row = await core_feed.latest(ctx)
    if row is None:
        return web.Response(body=json_bytes({}), content_type="application/json")
    return web.Response(
        body=json_bytes((await _with_metadata(request, [row], include))[0]), content_type="application/json"
    )


def setup(router: web.UrlDispatcher, prefix: str) -> None:
    router.add_get(prefix + "/changefeed", changefeed)
    router.add_get(prefix + "/changefeed/latest", latest)
