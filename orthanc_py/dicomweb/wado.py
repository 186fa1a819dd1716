"""WADO-RS (PS3.18 10.4) instances, studies and series as multipart/related application/dicom
(as stored or transcoded), one instance as single-part application/dicom; DELETE by UID (the
Azure DICOM service's extension); WADO-URI. Registers the metadata and frames routes too."""

from __future__ import annotations

import uuid

from aiohttp import web

from ..core import files as core_files
from ..core import resources as core_res
from ..errors import ErrorCode, OrthancError
from ..imaging import transcode as ts
from ..model.enums import ResourceType
from ..web.appkeys import ctx_of
from . import frames as frame_routes
from .headers import bad_accept, parse_accept
from .metadata import metadata_handler
from .targets import part_head, request_for, stored_syntax, url_files, url_files_blocking


def _retrieve_plan(request: web.Request, single: bool) -> tuple[bool, str | None, bool]:
    """(multipart?, target syntax or None for "as stored", whether the client named the syntax).

    Without a transfer-syntax parameter the answer is Explicit VR Little Endian, as PS3.18 and
    Orthanc's DICOMweb plugin do; a file that cannot be decoded then goes as stored."""
    header = request.headers.get("Accept")
    for r in parse_accept(header):
        if r.media == "multipart/related" and r.type in (None, "application/dicom", "*/*"):
            multipart = True
        elif r.media == "application/dicom" and single:
            multipart = False
        elif r.any or r.media == "multipart/*":
            multipart = True
        else:
            continue
        if r.syntax is None:
            return multipart, ts.EXPLICIT_LE, False
        if r.syntax != "*" and not ts.is_known_syntax(r.syntax):
            raise bad_accept(header, f"unknown transfer syntax {r.syntax}")
        return multipart, None if r.syntax == "*" else r.syntax, True
    raise bad_accept(header, 'WADO-RS gives multipart/related; type="application/dicom"')


def _target_for(stored: str, target: str | None, strict: bool) -> str | None:
    """The syntax one file is sent in (None: as stored); 406 when `strict` and impossible."""
    if target is None or stored == target:
        return None
    if target in ts.ENCODABLE and ts.can_decode(stored):
        return target  # encoded when the image allows it, else 406 or as stored
    if strict:
        raise OrthancError(ErrorCode.NOT_ACCEPTABLE, f"Cannot transcode from {stored} to {target}", http_status=406)
    return None


BATCH_BYTES = 4 << 20
"""Files read per worker-thread hop (and written per socket write) of a multipart answer: a
study of small files is read in one hop and sent in one write, instead of one hop and three
writes per file (a third of the time of a 10-file study went to those round trips)."""


def _batches(
    plan: list[tuple[core_files.InstanceFile, str | None]],
) -> list[list[tuple[core_files.InstanceFile, str | None]]]:
    """`plan` cut into runs of at most BATCH_BYTES (by the sizes the index records), at least
    one file each."""
    out: list[list[tuple[core_files.InstanceFile, str | None]]] = []
    size = BATCH_BYTES
    for item in plan:
        if size + item[0].size > BATCH_BYTES:
            out.append([])
            size = 0
        out[-1].append(item)
        size += item[0].size
    return out


async def retrieve(request: web.Request) -> web.StreamResponse:
    """Instances (multipart/related, or application/dicom for a single instance), as stored or
    transcoded to the uncompressed syntax the Accept header names."""
    ctx = ctx_of(request)
    multipart, target, strict = _retrieve_plan(request, "instance" in request.match_info)
    boundary = uuid.uuid4().hex

    def load(f: core_files.InstanceFile, to: str | None) -> bytes:
        data = core_files.read(ctx, f)
        if to is None:
            return data
        try:
            return ts.transcode(data, to)
        except ts.CannotTranscode:
            if strict:
                raise
            return data

    def chunk(batch: list[tuple[core_files.InstanceFile, str | None]]) -> tuple[bytes, bool]:
        """Worker thread: the parts of `batch` as one buffer, and whether every file could be
        given (a strict transcoding that fails ends the answer there)."""
        pieces: list[bytes] = []
        for f, to in batch:
            try:
                data = load(f, to)
            except ts.CannotTranscode:
                if not pieces:
                    raise
                return b"".join(pieces), False
            pieces += (part_head(boundary, "application/dicom", len(data)), data, b"\r\n")
        return b"".join(pieces), True

    def start() -> tuple[list[list[tuple[core_files.InstanceFile, str | None]]], bytes, bool]:
        """Worker thread: the files (404 when none), then the single part, or the first batch of
        parts (a syntax the first file cannot be given in is a 406 before any header is sent)."""
        plan = [(f, _target_for(stored_syntax(f), target, strict)) for f in url_files_blocking(request)]
        if not multipart:
            return [plan[:1]], load(*plan[0]), True
        batches = _batches(plan)
        return (batches, *chunk(batches[0]))

    try:  # index, files and the first batch in one worker-thread hop
        batches, first, complete = await ctx.run(start)
    except ts.CannotTranscode as exc:
        raise OrthancError(ErrorCode.NOT_ACCEPTABLE, str(exc), http_status=406) from exc
    if not multipart:
        return web.Response(body=first, content_type="application/dicom")
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    closing = f"--{boundary}--\r\n".encode()
    if len(batches) <= 1 or not complete:  # all in memory already: one answer with its length
        return web.Response(body=first + closing, headers={"Content-Type": content_type})
    response = web.StreamResponse(headers={"Content-Type": content_type})
    await response.prepare(request)
    await response.write(first)
    for batch in batches[1:]:
        try:
            body, complete = await ctx.run(chunk, batch)
        except ts.CannotTranscode:  # headers are gone: end the stream short
            break
        await response.write(body)
        if not complete:
            break
    await response.write(closing)
    await response.write_eof()
    return response


async def delete(request: web.Request) -> web.StreamResponse:
    """DELETE a study, series or instance by UID (the Azure DICOM service's extension): 204."""
    ctx = ctx_of(request)
    level = (
        ResourceType.INSTANCE
        if "instance" in request.match_info
        else ResourceType.SERIES
        if "series" in request.match_info
        else ResourceType.STUDY
    )
    found = await url_files(request)
    for pid in await core_res.ancestors_at(ctx, [f.public_id for f in found], level):
        try:
            await core_res.delete(ctx, pid, level)
        except OrthancError as err:
            if err.code is not ErrorCode.UNKNOWN_RESOURCE:
                raise
    return web.Response(status=204)


async def wado_uri(request: web.Request) -> web.StreamResponse:
    """WADO-URI (PS3.18 9): ?requestType=WADO&studyUID&seriesUID&objectUID&contentType=..."""
    ctx = ctx_of(request)
    q = request.query
    if q.get("requestType") != "WADO" or not q.get("objectUID"):
        raise OrthancError(ErrorCode.BAD_REQUEST, "WADO-URI needs requestType=WADO and objectUID")
    req = request_for(q.get("studyUID"), q.get("seriesUID"), q.get("objectUID"))
    first, *_ = await url_files(request, req)
    data = await ctx.run(core_files.read, ctx, first)
    content_type = q.get("contentType", "image/jpeg")
    if content_type == "application/dicom":
        return web.Response(body=data, content_type="application/dicom")
    if content_type == "image/jpg":  # a common misspelling Orthanc's plugin takes as JPEG
        content_type = "image/jpeg"
    if content_type not in ("image/jpeg", "image/png"):
        raise OrthancError(ErrorCode.NOT_ACCEPTABLE, f"Unsupported contentType {content_type}", http_status=406)
    mime = content_type

    def draw() -> bytes:  # Orthanc's plugin asks Orthanc for /instances/{id}/rendered
        from ..imaging import pixels, render

        ds = pixels.read_dataset(data)
        decoded = pixels.decode_dataset(ds, 0)
        return render.image_answer(decoded, render.FrameTags.of(ds, 0), "rendered", render.RenderArgs(), mime)

    try:
        image = await ctx.run(draw)
    except OrthancError as exc:
        raise OrthancError(ErrorCode.PLUGIN, "WADO-URI: Unable to generate a preview image") from exc
    return web.Response(body=image, content_type="image/png")  # what the plugin says, even for JPEG


def setup(router: web.UrlDispatcher, prefix: str) -> None:
    study = prefix + "/studies/{study}"
    series = study + "/series/{series}"
    instance = series + "/instances/{instance}"
    for path in (study, series, instance):
        router.add_get(path, retrieve)
        router.add_get(path + "/metadata", metadata_handler(prefix))


def setup_extras(router: web.UrlDispatcher, prefix: str) -> None:
    study = prefix + "/studies/{study}"
    series = study + "/series/{series}"
    instance = series + "/instances/{instance}"
    router.add_delete(study, delete)
    router.add_delete(series, delete)
    router.add_delete(instance, delete)
    for name in ("rendered", "thumbnail"):
        for path in (study, series, instance):
            router.add_get(f"{path}/{name}", frame_routes.rendered)
        router.add_get(instance + "/frames/{frames}/" + name, frame_routes.rendered)
    router.add_get(instance + "/frames/{frames}", frame_routes.frames)
    router.add_get(instance + "/bulk/{tail:.+}", frame_routes.bulk)
