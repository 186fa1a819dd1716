"""Archive routes (Orthanc's OrthancRestArchive): ZIP archives and DICOMDIR media of resources.

GET/POST /{patients,studies,series,instances}/{id}/archive and /media (`?extended`, `?transcode`,
`?filename`), GET/POST /tools/create-archive, /tools/create-media, /tools/create-media-extended
(`resources=` or a body: a list of IDs or {"Resources": [...], "Synchronous", "Asynchronous",
"Priority", "Transcode", "Extended", "Filename"}). Synchronous: the ZIP is streamed while it is
written (chunked). Asynchronous: an "Archive"/"Media" job writes it into a temporary file, the
job's "archive" output; only the `MediaArchiveSize` newest such outputs are kept, as Orthanc
keeps them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from aiohttp import web

from ..core import archive as core_archive
from ..core.archive import ArchiveCancelled, ArchivePlan, QueueSink, WriteOptions
from ..core.context import ServerContext
from ..core.jobs import request_priority, request_synchronous
from ..errors import ErrorCode, OrthancError
from ..imaging.transcode import requested_quality
from ..web.responses import content_disposition, json_response, read_json
from .common import ctx_of

ZIP_MIME = "application/zip"
ARCHIVE_JOB_TYPES = ("Archive", "Media")
_LEVEL_ROUTES = ("patients", "studies", "series", "instances")


def _bool_member(body: dict[str, Any], key: str) -> bool:
    value = body[key]
    if not isinstance(value, bool):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f"Boolean value expected in field: {key}")
    return value


def _options(ctx: ServerContext, body: Any, default_extended: bool) -> WriteOptions:
    extended = default_extended
    transcode = None
    if isinstance(body, dict):
        if "Extended" in body:
            extended = _bool_member(body, "Extended")
        if "Transcode" in body:
            if not isinstance(body["Transcode"], str):
                raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "String value expected in field: Transcode")
            transcode = core_archive.check_transfer_syntax(body["Transcode"])
    quality = requested_quality(
        body.get("LossyQuality") if isinstance(body, dict) else None, ctx.settings.lossy_quality
    )
    return WriteOptions(transcode, extended, core_archive.setting_int(ctx, "ZipLoaderThreads", 0), quality)


def _resources_of(body: Any) -> list[str]:
    items = body
    if isinstance(body, dict):
        if "Resources" not in body:
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Missing field Resources in the JSON body")
        items = body["Resources"]
    elif not isinstance(body, list):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Expected a list of strings (Orthanc identifiers)")
    return list(items)


async def _stream(
    request: web.Request, ctx: ServerContext, archive: ArchivePlan, options: WriteOptions, filename: str
) -> web.StreamResponse:
    """Write the ZIP in a worker thread and send each chunk as it comes (chunked encoding)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(core_archive.QUEUE_CHUNKS)
    sink = QueueSink(loop, queue)
    writer = loop.run_in_executor(None, core_archive.write_zip, ctx, archive, sink, options)
    response = web.StreamResponse(
        headers={"Content-Type": ZIP_MIME, "Content-Disposition": content_disposition(filename)}
    )
    response.enable_chunked_encoding()
    try:
        await response.prepare(request)
        while True:
            get: asyncio.Future[Any] = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({get, writer}, return_when=asyncio.FIRST_COMPLETED)
            if get not in done:
                get.cancel()
                writer.result()  # the writer failed: raise its error (the answer is cut short)
                continue
            chunk = get.result()
            if chunk is None:
                break
            await response.write(chunk)
        await writer
        await response.write_eof()
        return response
    finally:
        sink.cancelled.set()
        if not writer.done():
            with contextlib.suppress(Exception):
                await writer


def _evict_old_outputs(ctx: ServerContext, keep: int) -> None:
    """MediaArchiveSize: only the `keep` newest archives of jobs stay downloadable."""
    holders = [j for j in ctx.jobs.all() if j.type in ARCHIVE_JOB_TYPES and "archive" in j.outputs]
    for job in holders[: max(0, len(holders) - keep)]:
        job.delete_output("archive")  # the jobs engine removes the temporary file


def _temp_path(ctx: ServerContext) -> Path:
    folder = ctx.settings.raw.get("TemporaryDirectory") or None
    fd, name = tempfile.mkstemp(prefix="orthanc-archive-", suffix=".zip", dir=folder)
    os.close(fd)
    return Path(name)


def _content(archive: ArchivePlan, options: WriteOptions, size: int) -> dict[str, Any]:
    mb = 1024 * 1024
    out: dict[str, Any] = {
        "Description": "REST API",
        "InstancesCount": archive.instances_count,
        "UncompressedSizeMB": archive.uncompressed_size // mb,
        "ArchiveSizeMB": size // mb,
        "UncompressedSize": str(archive.uncompressed_size),
        "ArchiveSize": str(size),
    }
    if options.transcode:
        out["Transcode"] = options.transcode
    return out


def _submit(
    ctx: ServerContext, archive: ArchivePlan, options: WriteOptions, priority: int, filename: str, user_data: Any
) -> Any:
    """An asynchronous archive: a job whose output "archive" is the ZIP (a temporary file)."""

    async def run(job: Any) -> dict[str, Any]:
        job.content.update(_content(archive, options, 0))
        path = _temp_path(ctx)
        progress = [0]
        loop = asyncio.get_running_loop()
        stop = threading.Event()

        def write() -> int:
            with open(path, "wb") as f:
                core_archive.write_zip(ctx, archive, f, options, lambda p: progress.__setitem__(0, p), stop)
            return path.stat().st_size

        task = loop.run_in_executor(None, write)
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=0.2)
                await job.checkpoint(min(progress[0], 99))
            size = task.result()
        except BaseException:
            stop.set()
            with contextlib.suppress(Exception, ArchiveCancelled):
                await task
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        job.set_output("archive", path, ZIP_MIME, filename)
        _evict_old_outputs(ctx, core_archive.setting_int(ctx, "MediaArchiveSize", 1))
        return _content(archive, options, size)

    return ctx.jobs.submit("Media" if archive.media else "Archive", run, priority, user_data=user_data)


async def _answer(
    request: web.Request,
    public_ids: list[str],
    media: bool,
    options: WriteOptions,
    synchronous: bool,
    priority: int,
    filename: str,
    async_filename: str,
    user_data: Any = None,
) -> web.StreamResponse:
    ctx = ctx_of(request)
    archive = await core_archive.plan(ctx, public_ids, media)
    if synchronous:
        return await _stream(request, ctx, archive, options, filename)
    job = _submit(ctx, archive, options, priority, async_filename, user_data)
    return json_response({"ID": job.id, "Path": f"/jobs/{job.id}"})


def _get_transcode(request: web.Request) -> str | None:
    if "transcode" in request.query:
        return core_archive.check_transfer_syntax(request.query["transcode"])
    return None


def _get_quality(request: web.Request) -> int:
    return requested_quality(request.query.get("lossy-quality"), ctx_of(request).settings.lossy_quality)


async def single_get(request: web.Request) -> web.StreamResponse:
    """GET /{level}/{id}/archive|media: synchronous, `?transcode`, `?extended` (media),
    `?filename` (default "{id}.zip")."""
    ctx = ctx_of(request)
    media = request.path.rstrip("/").endswith("/media")
    rid = request.match_info["id"]
    options = WriteOptions(
        _get_transcode(request),
        media and "extended" in request.query,
        core_archive.setting_int(ctx, "ZipLoaderThreads", 0),
        _get_quality(request),
    )
    filename = request.query.get("filename") or f"{rid}.zip"
    await _check_level(request, rid)
    return await _answer(request, [rid], media, options, True, 0, filename, filename)


async def _check_level(request: web.Request, rid: str) -> None:
    """The resource must exist at the level of the route."""
    from ..core import resources as core_res
    from ..model.enums import ResourceType

    level = {
        "patients": ResourceType.PATIENT,
        "studies": ResourceType.STUDY,
        "series": ResourceType.SERIES,
        "instances": ResourceType.INSTANCE,
    }[request.path.strip("/").split("/")[0]]
    await ctx_of(request).index.read(lambda txn: core_res.lookup_in(txn, rid, level))


async def single_post(request: web.Request) -> web.StreamResponse:
    """POST /{level}/{id}/archive|media (body: Synchronous/Asynchronous, Priority, Transcode,
    Extended, Filename)."""
    ctx = ctx_of(request)
    media = request.path.rstrip("/").endswith("/media")
    rid = request.match_info["id"]
    body = await read_json(request)
    if not isinstance(body, (dict, list)):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
    options = _options(ctx, body, False)
    if not media:
        options.extended = False
    await _check_level(request, rid)
    filename = _filename_member(body) or f"{rid}.zip"
    return await _answer(
        request,
        [rid],
        media,
        options,
        request_synchronous(body),
        request_priority(body),
        filename,
        _filename_member(body) or "archive.zip",
        body.get("UserData") if isinstance(body, dict) else None,
    )


def _filename_member(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("Filename"), str):
        return str(body["Filename"])
    return ""


def _batch_kind(request: web.Request) -> tuple[bool, bool]:
    """(media, extended by default) of /tools/create-{archive,media,media-extended}."""
    name = request.path.rstrip("/").rsplit("/", 1)[-1]
    return name != "create-archive", name == "create-media-extended"


async def batch_post(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    media, extended = _batch_kind(request)
    body = await read_json(request)
    if body is None:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Expected a list of resources to archive in the body")
    options = _options(ctx, body, extended)
    if not media:
        options.extended = False
    resources = _resources_of(body)
    filename = _filename_member(body)
    return await _answer(
        request,
        resources,
        media,
        options,
        request_synchronous(body),
        request_priority(body),
        filename or "Archive.zip",
        filename or "archive.zip",
        body.get("UserData") if isinstance(body, dict) else None,
    )


async def batch_get(request: web.Request) -> web.StreamResponse:
    """GET /tools/create-archive?resources=a,b (Orthanc 1.12.2+)."""
    ctx = ctx_of(request)
    media, extended = _batch_kind(request)
    if "resources" not in request.query:
        raise OrthancError(ErrorCode.BAD_REQUEST, "Missing resources argument")
    resources = sorted({r for r in request.query["resources"].split(",") if r})
    options = WriteOptions(
        _get_transcode(request), extended, core_archive.setting_int(ctx, "ZipLoaderThreads", 0), _get_quality(request)
    )
    filename = request.query.get("filename") or "Archive.zip"
    return await _answer(request, resources, media, options, True, 0, filename, filename)


def setup(router: web.UrlDispatcher) -> None:
    for level in _LEVEL_ROUTES:
        for kind in ("archive", "media"):
            path = f"/{level}/{{id}}/{kind}"
            router.add_get(path, single_get)
            router.add_post(path, single_post)
    for name in ("create-archive", "create-media", "create-media-extended"):
        router.add_get(f"/tools/{name}", batch_get)
        router.add_post(f"/tools/{name}", batch_post)
