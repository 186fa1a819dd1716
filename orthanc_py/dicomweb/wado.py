"""WADO-RS (PS3.18 10.4): studies, series and instances as multipart/related application/dicom
(as stored), one instance as single-part application/dicom, and metadata in DICOM JSON."""

from __future__ import annotations

import io
import uuid
from typing import Any

import orjson
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


def _request_for(study: str | None, series: str | None, instance: str | None) -> FindRequest:
    """The instances named by UIDs (any of them may be omitted)."""
    req = FindRequest(level=ResourceType.INSTANCE)
    for uid, tag in ((study, mt.STUDY_INSTANCE_UID), (series, mt.SERIES_INSTANCE_UID), (instance, mt.SOP_INSTANCE_UID)):
        if uid:
            req.constraints.append(TagConstraint(tag, mt.LEVEL_OF_TAG[tag], MatchKind.EQUAL, (uid,), True))
    return req


def _url_request(request: web.Request) -> FindRequest:
    m = request.match_info
    return _request_for(m.get("study"), m.get("series"), m.get("instance"))


async def _files(request: web.Request) -> list[str]:
    """File uuids of the instances named by the URL (404 when there is none)."""
    return [u for _pid, u in await _instance_ids(request)]


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
        """GET .../metadata: every instance in DICOM JSON, large binary values as BulkDataURI.
        Study and series requests are answered from per-series summaries kept until the series
        changes; only the first request reads the files."""
        _wants(request, "application/dicom+json", "application/json")
        ctx = ctx_of(request)
        base = f"{request.scheme}://{request.host}{prefix}"
        if "instance" in request.match_info:
            uuids = await _files(request)

            def render() -> bytes:
                return json_bytes([_metadata_of(ctx.storage.read(u, FileContentType.DICOM), base) for u in uuids])

            return web.Response(body=await ctx.run(render), content_type="application/dicom+json")
        req = FindRequest(level=ResourceType.SERIES)
        for key, tag in (("study", mt.STUDY_INSTANCE_UID), ("series", mt.SERIES_INSTANCE_UID)):
            uid = request.match_info.get(key)
            if uid is not None:
                req.constraints.append(TagConstraint(tag, mt.LEVEL_OF_TAG[tag], MatchKind.EQUAL, (uid,), True))

        def plan(txn: Transaction) -> list[tuple[str, list[str]]]:
            out = []
            for sid in find_ids(ctx, txn, req):
                pub = txn.resources([sid])[0].public_id
                ids = txn.descendants(sid, ResourceType.INSTANCE)
                atts = txn.attachments(ids)
                out.append((pub, [a.uuid for i in ids for a in atts[i] if a.content_type == FileContentType.DICOM]))
            return out

        series = await ctx.index.read(plan)
        if not series:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, "No such DICOM resource", http_status=404)
        variant = ("dicomweb-metadata", base)

        def render_series(uuids: list[str]) -> bytes:
            return b",".join(
                orjson.dumps(_metadata_of(ctx.storage.read(u, FileContentType.DICOM), base)) for u in uuids
            )

        blobs = []
        for pub, uuids in series:
            blob = ctx.series_cache.get(pub, variant)
            if blob is None:
                blob = await ctx.run(render_series, uuids)
                ctx.series_cache.put(pub, variant, blob)
            if blob:
                blobs.append(blob)
        return web.Response(body=b"[" + b",".join(blobs) + b"]", content_type="application/dicom+json")

    return handler


def setup(router: web.UrlDispatcher, prefix: str) -> None:
    study = prefix + "/studies/{study}"
    series = study + "/series/{series}"
    instance = series + "/instances/{instance}"
    for path in (study, series, instance):
        router.add_get(path, retrieve)
        router.add_get(path + "/metadata", _metadata(prefix))


async def _instance_ids(request: web.Request, req: FindRequest | None = None) -> list[tuple[str, str]]:
    """(public id, file uuid) of the instances named by the URL (or `req`); 404 when none."""
    ctx = ctx_of(request)
    find = req or _url_request(request)

    def run(txn: Transaction) -> list[tuple[str, str]]:
        ids = find_ids(ctx, txn, find)
        rows = {r.id: r.public_id for r in txn.resources(ids)}
        atts = txn.attachments(ids)
        return [(rows[i], a.uuid) for i in ids for a in atts[i] if a.content_type == FileContentType.DICOM]

    found = await ctx.index.read(run)
    if not found:
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, "No such DICOM resource", http_status=404)
    return found


async def rendered(request: web.Request) -> web.StreamResponse:
    """/rendered and /thumbnail of an instance or a frame: PNG (default) or JPEG."""
    from ..imaging import render

    ctx = ctx_of(request)
    accept = request.headers.get("Accept", "image/png").lower()
    fmt = "JPEG" if "image/jpeg" in accept and "image/png" not in accept else "PNG"
    frame = int(request.match_info.get("frames", "1").split(",")[0] or 1) - 1
    (_pid, uuid_), *_ = await _instance_ids(request)
    data = await ctx.run(ctx.storage.read, uuid_, FileContentType.DICOM)
    try:
        image = await ctx.run(render.render_image, data, frame, fmt, "thumbnail" in request.path)
    except (IndexError, ValueError) as exc:
        raise OrthancError(ErrorCode.BAD_REQUEST, f"Cannot render this frame: {exc}") from exc
    return web.Response(body=image, content_type="image/jpeg" if fmt == "JPEG" else "image/png")


async def frames(request: web.Request) -> web.StreamResponse:
    """/frames/{list}: uncompressed frames as multipart/related application/octet-stream."""
    ctx = ctx_of(request)
    (_pid, uuid_), *_ = await _instance_ids(request)
    data = await ctx.run(ctx.storage.read, uuid_, FileContentType.DICOM)
    try:
        numbers = [int(n) for n in request.match_info["frames"].split(",") if n.strip()]
    except ValueError as exc:
        raise OrthancError(ErrorCode.BAD_REQUEST, "Frame numbers must be integers") from exc

    def extract() -> list[bytes]:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        if "PixelData" not in ds:
            raise OrthancError(ErrorCode.BAD_REQUEST, "The instance has no pixel data")
        count = int(getattr(ds, "NumberOfFrames", 1) or 1)
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            from pydicom.encaps import generate_frames

            all_frames = list(generate_frames(ds.PixelData, number_of_frames=count))
        else:
            size = len(ds.PixelData) // count
            all_frames = [ds.PixelData[i * size : (i + 1) * size] for i in range(count)]
        out = []
        for n in numbers:
            if not 1 <= n <= count:
                raise OrthancError(ErrorCode.BAD_REQUEST, f"No frame {n} (the instance has {count})", http_status=404)
            out.append(bytes(all_frames[n - 1]))
        return out

    parts = await ctx.run(extract)
    boundary = uuid.uuid4().hex
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n".encode() + p + b"\r\n" for p in parts
        )
        + f"--{boundary}--\r\n".encode()
    )
    return web.Response(
        body=body,
        headers={"Content-Type": f'multipart/related; type="application/octet-stream"; boundary={boundary}'},
    )


async def delete(request: web.Request) -> web.StreamResponse:
    """DELETE a study, series or instance by UID (the Azure DICOM service's extension): 204."""
    from ..core import resources as core_res

    ctx = ctx_of(request)
    level = (
        ResourceType.INSTANCE
        if "instance" in request.match_info
        else ResourceType.SERIES
        if "series" in request.match_info
        else ResourceType.STUDY
    )
    found = await _instance_ids(request)

    def targets(txn: Transaction) -> list[str]:
        out: list[str] = []
        for pid, _u in found:
            hit = txn.lookup(pid)
            if hit is None:
                continue
            rid = hit[0] if level is ResourceType.INSTANCE else txn.ancestor(hit[0], level)
            if rid is not None:
                out += [r.public_id for r in txn.resources([rid])]
        return list(dict.fromkeys(out))

    for pid in await ctx.index.read(targets):
        try:
            await core_res.delete(ctx, pid, level)
        except OrthancError as err:
            if err.code is not ErrorCode.UNKNOWN_RESOURCE:
                raise
    return web.Response(status=204)


async def wado_uri(request: web.Request) -> web.StreamResponse:
    """WADO-URI (PS3.18 9): ?requestType=WADO&studyUID&seriesUID&objectUID&contentType=..."""
    from ..imaging import render

    ctx = ctx_of(request)
    q = request.query
    if q.get("requestType") != "WADO" or not q.get("objectUID"):
        raise OrthancError(ErrorCode.BAD_REQUEST, "WADO-URI needs requestType=WADO and objectUID")
    req = _request_for(q.get("studyUID"), q.get("seriesUID"), q.get("objectUID"))
    (_pid, file_uuid), *_ = await _instance_ids(request, req)
    data = await ctx.run(ctx.storage.read, file_uuid, FileContentType.DICOM)
    content_type = q.get("contentType", "image/jpeg")
    if content_type == "application/dicom":
        return web.Response(body=data, content_type="application/dicom")
    if content_type not in ("image/jpeg", "image/png"):
        raise OrthancError(ErrorCode.NOT_ACCEPTABLE, f"Unsupported contentType {content_type}", http_status=406)
    fmt = "PNG" if content_type == "image/png" else "JPEG"
    image = await ctx.run(render.render_image, data, 0, fmt, False)
    return web.Response(body=image, content_type=content_type)


def setup_extras(router: web.UrlDispatcher, prefix: str) -> None:
    study = prefix + "/studies/{study}"
    series = study + "/series/{series}"
    instance = series + "/instances/{instance}"
    router.add_delete(study, delete)
    router.add_delete(series, delete)
    router.add_delete(instance, delete)
    for name in ("rendered", "thumbnail"):
        router.add_get(f"{instance}/{name}", rendered)
        router.add_get(instance + "/frames/{frames}/" + name, rendered)
    router.add_get(instance + "/frames/{frames}", frames)
