"""Instance routes: upload (raw DICOM, ZIP, gzip), the file, tags, header, content walk, frames."""

from __future__ import annotations

import functools
import io
from typing import TYPE_CHECKING

from aiohttp import web

from ..core import files as core_files
from ..core import resources as core_res
from ..core.context import ServerContext
from ..errors import ErrorCode, OrthancError
from ..imaging import transcode
from ..model.enums import ResourceType
from ..model.tagtext import TagsOptions
from ..web import lanec
from ..web.fastlane import FastAnswer, FastRoute, WholeRoute, header_lines
from ..web.responses import JSON_HEAD, content_disposition, json_bytes, json_response, read_body
from .common import ctx_of, empty_404, origin_of
from .tags import dicom_format, plain_tags_options, tags_options

if TYPE_CHECKING:
    import pydicom


async def upload(request: web.Request) -> web.StreamResponse:
    """POST /instances: one DICOM file, or a ZIP of them (answer: an array)."""
    from ..core import ingest, zipinput

    ctx = ctx_of(request)
    data = await read_body(request)
    origin = origin_of(request)
    if zipinput.is_zip(data):  # a ZIP of DICOM files, stored within bounds (core.zipinput)
        return json_response([r.to_json() for r in await zipinput.store_zip(ctx, data, origin)])
    return json_response((await ingest.store(ctx, data, origin)).to_json())


SENDFILE_THRESHOLD = 16 << 20
DICOM_JSON = "application/dicom+json"


def _write_file(path: str, data: bytes) -> None:
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise OrthancError(ErrorCode.CANNOT_WRITE_FILE) from exc


async def export_file(request: web.Request) -> web.StreamResponse:
    """POST /instances/{id}/export (body: a path): write the DICOM file on this host. Only with
    RestApiWriteToFileSystemEnabled; otherwise Orthanc 1.12 answers a bare 403."""
    ctx = ctx_of(request)
    if not ctx.settings.rest_api_write_to_file_system:
        raise OrthancError(ErrorCode.FORBIDDEN_ACCESS, "RestApiWriteToFileSystemEnabled is off")
    data = await core_files.read_dicom(ctx, request.match_info["id"])
    target = (await read_body(request)).decode("utf-8", "replace")
    if not target:
        raise OrthancError(ErrorCode.CANNOT_WRITE_FILE)
    await ctx.run(_write_file, target, data)
    return json_response({})


async def get_file(request: web.Request) -> web.StreamResponse:
    """GET /instances/{id}/file: the stored bytes (sendfile for large files on disk; a plain read
    is faster for the usual few-megabyte instance)."""
    ctx = ctx_of(request)
    if request.headers.get("Accept", "").strip().lower() == DICOM_JSON:
        from ..model import webjson

        ds = await _dataset(request, with_pixels=True)
        body = json_bytes(await ctx.run(webjson.dicomweb_json, ds, tags_options(request)))
        return web.Response(body=body, headers={"Content-Type": "application/dicom+json"})
    att, data = await core_files.dicom_file(ctx, request.match_info["id"], SENDFILE_THRESHOLD)
    headers = _file_headers(att.uuid)
    if "filename" in request.query:
        headers["Content-Disposition"] = content_disposition(request.query["filename"])
    if "transcode" in request.query:  # Orthanc 1.12.2 (lossy-quality: 1.12.7)
        target = transcode.checked_target(request.query["transcode"])
        quality = transcode.requested_quality(request.query.get("lossy-quality"), ctx.settings.lossy_quality)
        if data is None:
            data = await ctx.run(core_files.read_attachment_blocking, ctx, att)
        body = await ctx.run(functools.partial(transcode.transcode_or_error, data, target, quality=quality))
        return web.Response(body=body, headers=headers)
    if data is None:
        path = core_files.attachment_path(ctx, att)
        if path is not None:
            return web.FileResponse(path, headers=headers)
        data = await ctx.run(core_files.read_attachment_blocking, ctx, att)
    return web.Response(body=data, headers=headers)


def _file_headers(uuid: str) -> dict[str, str]:
    return {"Content-Type": "application/dicom", "Content-Disposition": f'filename="{uuid}.dcm"'}


_BEFORE_UUID, _AFTER_UUID = header_lines(_file_headers("\0")).split(b"\0")
"""`_file_headers`' lines around the UUID: the fast lane writes them without a dict each time."""


def fast_file(ctx: ServerContext) -> FastRoute:
    """GET /instances/{id}/file in the HTTP fast lane: a small file in the page cache, as
    `get_file` answers it (any other file: sent by get_file, with sendfile when it is large)."""

    def route(public_id: str, accept: str | None) -> FastAnswer | None:
        if accept is not None and accept.strip().lower() == DICOM_JSON:
            return None
        try:
            att, data = core_files.dicom_file_now(ctx, public_id)
        except (OrthancError, BlockingIOError):
            return None
        if data is None:
            return None
        return b"".join((_BEFORE_UUID, att.uuid.encode(), _AFTER_UUID)), data

    closers = lanec.Closers()
    answer = lanec.file_route(
        core_files.lane_file_source(ctx, closers), closers, b"HTTP/1.1 200 OK\r\n" + _BEFORE_UUID, _AFTER_UUID
    )
    if answer is None:
        return route

    def whole(public_id: str, accept: str | None, head_end: bytes) -> bytes | None:
        if accept is not None and accept.strip().lower() == DICOM_JSON:
            return None
        return answer(public_id.encode("ascii"), head_end)

    return WholeRoute(route, whole)


async def _dataset(request: web.Request, with_pixels: bool = False) -> pydicom.Dataset:
    import pydicom

    ctx = ctx_of(request)
    data = await core_files.read_dicom(ctx, request.match_info["id"])

    def parse() -> pydicom.Dataset:
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=not with_pixels, force=True)

    return await ctx.run(parse)


TAGS_ON_LOOP_ELEMENTS = 150
"""The tags of a small file already in the page cache are rendered on the event loop when the
fast walk reads it with at most this many elements (sequence items included): a 64x64 CT of 40
elements costs ~45 us, less than the hop to a worker thread and back (p50 of /simplified-tags
0.34 ms with the hop, 0.26 ms without); the bound, 150 elements in 50 items, ~0.2 ms. Any other
file in one hop (the rendering holds the GIL either way: the hop only adds latency)."""


def _tags_blocking(ctx: ServerContext, public_id: str, data: bytes | None, fmt: str, options: TagsOptions) -> bytes:
    """Worker thread: the file looked up and read (unless `data` is given), its tags rendered and
    written as JSON, in one hop."""
    from ..model import fasttags

    if data is None:
        _att, data = core_files.dicom_file_blocking(ctx, public_id)
        assert data is not None
    return json_bytes(fasttags.file_tags(data, fmt, options))


async def _tags(request: web.Request, fmt: str) -> web.StreamResponse:
    ctx = ctx_of(request)
    public_id = request.match_info["id"]
    try:
        options = tags_options(request)
    except OrthancError:
        await core_files.read_dicom(ctx, public_id)  # an unknown instance is 404 first
        raise
    _att, data = await core_files.dicom_file(ctx, public_id, max_size=0)  # no hop: page cache or None
    body = None if data is None else _tags_on_loop(data, fmt, options)
    if body is None:
        body = await ctx.run(_tags_blocking, ctx, public_id, data, fmt, options)
    return web.Response(body=body, content_type="application/json", charset="utf-8")


def _tags_on_loop(data: bytes, fmt: str, options: TagsOptions) -> bytes | None:
    """The tags of a small file as JSON, when the fast walk reads them here (None: too many
    elements, or a file it does not read: the worker thread renders it)."""
    from ..model import fasttags

    tags = fasttags.tags_fast(data, fmt, options, max_elements=TAGS_ON_LOOP_ELEMENTS)
    return None if tags is None else json_bytes(tags)


def fast_tags(ctx: ServerContext, fmt: str) -> FastRoute:
    """GET /instances/{id}/tags and /simplified-tags in the HTTP fast lane (`_tags` without
    arguments, when the file is in the page cache and small enough to render here)."""

    def route(public_id: str, accept: str | None) -> FastAnswer | None:
        try:
            _att, data = core_files.dicom_file_now(ctx, public_id)
        except (OrthancError, BlockingIOError):
            return None
        body = None if data is None else _tags_on_loop(data, fmt, plain_tags_options(ctx))
        return None if body is None else (JSON_HEAD, body)

    return route


async def get_tags(request: web.Request) -> web.StreamResponse:
    """GET /instances/{id}/tags[?simplify|?short]."""
    return await _tags(request, dicom_format(request))


async def get_simplified_tags(request: web.Request) -> web.StreamResponse:
    return await _tags(request, "simplify")


async def get_header(request: web.Request) -> web.StreamResponse:
    import pydicom

    from ..model import orthancjson

    ds = await _dataset(request)
    meta = getattr(ds, "file_meta", None) or pydicom.Dataset()
    return json_response(orthancjson.orthanc_header(meta, dicom_format(request), ctx_of(request).dictionary))


async def get_content(request: web.Request) -> web.StreamResponse:
    """GET /instances/{id}/content/{path}: tag lists, sequence items, or a raw value."""
    from ..model import orthancjson

    ds = await _dataset(request, with_pixels=True)
    parts = [p for p in request.match_info.get("path", "").split("/") if p]
    try:
        result = orthancjson.content_walk(ds, parts, ctx_of(request).dictionary)
    except LookupError:
        return empty_404()
    except ValueError as exc:  # Orthanc 1.10.1 answers 500 for an unparsable tag
        raise OrthancError(ErrorCode.UNKNOWN_DICOM_TAG) from exc
    if result.kind == "json":
        return json_response(result.items)
    return web.Response(body=result.data, content_type="application/octet-stream")


async def get_frames(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    info = await core_res.get(ctx, request.match_info["id"], ResourceType.INSTANCE)
    frames = info.main_tags.get(0x00280008)
    try:
        count = int(frames) if frames else 1
    except ValueError:
        count = 1
    return json_response(list(range(count)))


RENDERINGS = ["image-int16", "image-uint16", "image-uint8", "matlab", "numpy", "preview", "raw", "raw.gz", "rendered"]


async def frame_renderings(request: web.Request) -> web.StreamResponse:
    """GET /instances/{id}/frames/{n}: the list of renderings of a frame. Orthanc answers it as an
    "auto-directory" (the children of this URI in its route tree), without looking the instance
    up: an unknown instance gets the list too."""
    return json_response(RENDERINGS)


async def pdf(request: web.Request) -> web.StreamResponse:
    """GET /instances/{id}/pdf: the document of an Encapsulated PDF instance (Orthanc's
    ExtractPdf: SOP class and MIME type must say PDF), a bare 404 for any other instance."""
    from ..core import createdicom

    ctx = ctx_of(request)
    data = await core_files.read_dicom(ctx, request.match_info["id"])
    body = await ctx.run(createdicom.extract_pdf, data)
    if body is None:
        return empty_404()
    return web.Response(body=body, content_type="application/pdf")


def setup(router: web.UrlDispatcher) -> None:
    router.add_post("/instances", upload)
    router.add_get("/instances/{id}/file", get_file)
    router.add_post("/instances/{id}/export", export_file)
    router.add_get("/instances/{id}/tags", get_tags)
    router.add_get("/instances/{id}/simplified-tags", get_simplified_tags)
    router.add_get("/instances/{id}/header", get_header)
    router.add_get("/instances/{id}/content", get_content)
    router.add_get("/instances/{id}/content/{path:.*}", get_content)
    router.add_get("/instances/{id}/frames", get_frames)
    router.add_get("/instances/{id}/frames/{frame}", frame_renderings)
    router.add_get("/instances/{id}/pdf", pdf)
