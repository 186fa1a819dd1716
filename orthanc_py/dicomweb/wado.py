"""WADO-RS (PS3.18 10.4): studies, series and instances as multipart/related application/dicom
(as stored), one instance as single-part application/dicom, and metadata in DICOM JSON."""

from __future__ import annotations

import io
import uuid
from typing import Any

import pydicom
from aiohttp import web

from ..core.query import FindRequest, find_ids
from ..errors import ErrorCode, OrthancError
from ..index.base import Transaction
from ..model import maintags as mt
from ..model.enums import FileContentType, ResourceType
from ..model.lookup import MatchKind, TagConstraint
from ..web.appkeys import ctx_of
from ..web.responses import json_bytes


def _request_for(request: web.Request) -> FindRequest:
    """The instances named by the URL (study, series, instance UIDs)."""
    req = FindRequest(level=ResourceType.INSTANCE)
    for key, tag in (
        ("study", mt.STUDY_INSTANCE_UID),
        ("series", mt.SERIES_INSTANCE_UID),
        ("instance", mt.SOP_INSTANCE_UID),
    ):
        uid = request.match_info.get(key)
        if uid is not None:
            req.constraints.append(TagConstraint(tag, mt.LEVEL_OF_TAG[tag], MatchKind.EQUAL, (uid,), True))
    return req


async def _files(request: web.Request) -> list[str]:
    ctx = ctx_of(request)
    req = _request_for(request)

    def run(txn: Transaction) -> list[str]:
        ids = find_ids(ctx, txn, req)
        atts = txn.attachments(ids)
        return [a.uuid for i in ids for a in atts[i] if a.content_type == FileContentType.DICOM]

    uuids = await ctx.index.read(run)
    if not uuids:
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, "No such DICOM resource", http_status=404)
    return uuids


def _wants(request: web.Request, *types: str) -> str:
    accept = request.headers.get("Accept", "*/*")
    for item in accept.split(","):
        media = item.split(";")[0].strip().lower()
        if media in types or media in ("*/*", "multipart/*"):
            return media if media in types else types[0]
    raise OrthancError(ErrorCode.NOT_ACCEPTABLE, f"Cannot answer {accept}", http_status=406)


async def retrieve(request: web.Request) -> web.StreamResponse:
    """Instances as stored: multipart/related (or application/dicom for a single instance)."""
    ctx = ctx_of(request)
    single = "instance" in request.match_info
    kinds = ("multipart/related", "application/dicom") if single else ("multipart/related",)
    media = _wants(request, *kinds)
    uuids = await _files(request)
    if media == "application/dicom":
        data = await ctx.run(ctx.storage.read, uuids[0], FileContentType.DICOM)
        return web.Response(body=data, content_type="application/dicom")
    boundary = uuid.uuid4().hex
    response = web.StreamResponse(
        headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'}
    )
    await response.prepare(request)
    for u in uuids:
        data = await ctx.run(ctx.storage.read, u, FileContentType.DICOM)
        await response.write(
            f"--{boundary}\r\nContent-Type: application/dicom\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        )
        await response.write(data)
        await response.write(b"\r\n")
    await response.write(f"--{boundary}--\r\n".encode())
    await response.write_eof()
    return response


def _metadata_of(data: bytes, base: str) -> dict[str, Any]:
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    study, series, sop = (str(ds.get(k, "")) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"))
    url = f"{base}/studies/{study}/series/{series}/instances/{sop}"

    def bulk(elem: Any) -> str:
        return f"{url}/bulk/{elem.tag:08X}"

    out: dict[str, Any] = ds.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=bulk)
    pixels = out.get("7FE00010")
    if pixels is not None and "InlineBinary" in pixels:  # pixel data always by reference
        out["7FE00010"] = {"vr": pixels["vr"], "BulkDataURI": f"{url}/bulk/7FE00010"}
    return out


def _metadata(prefix: str) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        """GET .../metadata: every instance in DICOM JSON, large binary values as BulkDataURI."""
        _wants(request, "application/dicom+json", "application/json")
        ctx = ctx_of(request)
        base = f"{request.scheme}://{request.host}{prefix}"
        uuids = await _files(request)

        def render() -> bytes:
            return json_bytes([_metadata_of(ctx.storage.read(u, FileContentType.DICOM), base) for u in uuids])

        return web.Response(body=await ctx.run(render), content_type="application/dicom+json")

    return handler


def setup(router: web.UrlDispatcher, prefix: str) -> None:
    study = prefix + "/studies/{study}"
    series = study + "/series/{series}"
    instance = series + "/instances/{instance}"
    for path in (study, series, instance):
        router.add_get(path, retrieve)
        router.add_get(path + "/metadata", _metadata(prefix))
