"""The Azure DICOM service's change feed: every instance creation and deletion, in order."""

from __future__ import annotations

import io
from typing import Any

import pydicom
from aiohttp import web

from ..errors import ErrorCode, OrthancError
from ..index.base import Transaction
from ..model import webjson
from ..model.enums import FileContentType
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
    current = [(i, r[6]) for i, r in enumerate(rows) if r[2] == "current"]

    def uuids(txn: Transaction) -> dict[str, str]:
        found: dict[str, str] = {}
        for _i, pid in current:
            hit = txn.lookup(pid)
            if hit is not None:
                for a in txn.attachments([hit[0]])[hit[0]]:
                    if a.content_type == FileContentType.DICOM:
                        found[pid] = a.uuid
        return found

    files = await ctx.index.read(uuids)

    def metadata() -> None:
        for i, pid in current:
            if pid in files:
                ds = pydicom.dcmread(io.BytesIO(ctx.storage.read(files[pid], 1)), stop_before_pixels=True, force=True)
                out[i]["Metadata"] = webjson.to_json_dict(ds, lambda _e, _p: "", 1024)

    await ctx.run(metadata)
    return out


async def changefeed(request: web.Request) -> web.StreamResponse:
    """GET /changefeed?offset=&limit=&includeMetadata= (offset: the last Sequence already seen)."""
    ctx = ctx_of(request)
    offset = _param(request, "offset", 0)
    limit = min(_param(request, "limit", 10), MAX_LIMIT)
    include = request.query.get("includeMetadata", "true").lower() != "false"
    rows = await ctx.index.read(lambda txn: txn.feed(offset, limit))
    return web.Response(body=json_bytes(await _with_metadata(request, rows, include)), content_type="application/json")


async def latest(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    include = request.query.get("includeMetadata", "true").lower() != "false"
    row = await ctx.index.read(lambda txn: txn.feed_latest())
    if row is None:
        return web.Response(body=json_bytes({}), content_type="application/json")
    return web.Response(
        body=json_bytes((await _with_metadata(request, [row], include))[0]), content_type="application/json"
    )


def setup(router: web.UrlDispatcher, prefix: str) -> None:
    router.add_get(prefix + "/changefeed", changefeed)
    router.add_get(prefix + "/changefeed/latest", latest)
