"""WADO-RS (PS3.18 10.4): studies, series and instances as multipart/related application/dicom
(as stored), one instance as single-part application/dicom, and metadata in DICOM JSON."""

from __future__ import annotations

import io
import uuid
from typing import Any

import orjson
import pydicom
from aiohttp import web

from ..core import files as core_files
from ..core import resources as core_res
from ..core.query import FindRequest
from ..errors import ErrorCode, OrthancError
from ..imaging import jpeg_encode
from ..imaging import transcode as ts
from ..model import maintags as mt
from ..model import webjson
from ..model.enums import ResourceType
from ..model.lookup import MatchKind, TagConstraint
from ..web.appkeys import ctx_of
from ..web.responses import json_bytes
from .headers import DICOM_JSON, MediaRange, not_acceptable, parse_accept, public_base


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
        return multipart, None if r.syntax == "*" else r.syntax, True
    raise not_acceptable(header, 'WADO-RS gives multipart/related; type="application/dicom"')


def _target_for(stored: str, target: str | None, strict: bool) -> str | None:
    """The syntax one file is sent in (None: as stored); 406 when `strict` and impossible."""
    if target is None or stored == target:
        return None
    if target in (ts.EXPLICIT_LE, ts.IMPLICIT_LE) and stored != ts.EXPLICIT_BE and ts.can_decode(stored):
        return target
    if target in jpeg_encode.SYNTAXES and stored != ts.EXPLICIT_BE and ts.can_decode(stored):
        return target  # encoded when the image allows it (8-bit), else 406 or as stored
    if strict:
        raise OrthancError(ErrorCode.NOT_ACCEPTABLE, f"Cannot transcode from {stored} to {target}", http_status=406)
    return None


async def retrieve(request: web.Request) -> web.StreamResponse:
    """Instances (multipart/related, or application/dicom for a single instance), as stored or
    transcoded to the uncompressed syntax the Accept header names."""
    ctx = ctx_of(request)
    multipart, target, strict = _retrieve_plan(request, "instance" in request.match_info)
    found = await _instance_files(request)
    plan = [(f, _target_for(_syntax(f), target, strict)) for f in found]

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

    if not multipart:
        try:
            data = await ctx.run(load, *plan[0])
        except ts.CannotTranscode as exc:
            raise OrthancError(ErrorCode.NOT_ACCEPTABLE, str(exc), http_status=406) from exc
        return web.Response(body=data, content_type="application/dicom")
    try:  # the first file before the headers: a syntax it cannot be given in is still a 406
        first = await ctx.run(load, *plan[0]) if plan else b""
    except ts.CannotTranscode as exc:
        raise OrthancError(ErrorCode.NOT_ACCEPTABLE, str(exc), http_status=406) from exc
    boundary = uuid.uuid4().hex
    response = web.StreamResponse(
        headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'}
    )
    await response.prepare(request)
    for i, (f, to) in enumerate(plan):
        try:
            data = first if i == 0 else await ctx.run(load, f, to)
        except ts.CannotTranscode:  # headers are gone: end the stream short
            break
        await response.write(_part_head(boundary, "application/dicom", len(data)))
        await response.write(data)
        await response.write(b"\r\n")
    await response.write(f"--{boundary}--\r\n".encode())
    await response.write_eof()
    return response


def _metadata_of(data: bytes, base: str, pixel_vr: str | None = None) -> dict[str, Any]:
    """DICOM JSON of one instance as Orthanc's plugin writes it: every non-empty binary value
    by BulkDataURI (lowercase tag, nested ones with their item path). `data` may stop right
    before the pixel data element, whose VR is then `pixel_vr` (reading only the header is what
    makes a cold /metadata fast)."""
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    study, series, sop = (str(ds.get(k, "")) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"))
    url = f"{base}/studies/{study}/series/{series}/instances/{sop}"

    def bulk(elem: Any, path: str) -> str:
        return f"{url}/bulk/{path}{elem.tag:08x}"

    out: dict[str, Any] = webjson.to_json_dict(ds, bulk, 0)
    if "7FE00010" not in out and pixel_vr is not None:
        out["7FE00010"] = {"vr": pixel_vr, "BulkDataURI": f"{url}/bulk/7fe00010"}
    return out


_LONG_VRS = frozenset(("OB", "OW", "OF", "OD", "OL", "OV", "UN", "SQ", "UT", "UC", "UR"))


def _instance_metadata(ctx: Any, f: core_files.InstanceFile, base: str) -> dict[str, Any]:
    """Metadata of one stored instance, reading its header only when the index knows where the
    pixel data starts and nothing follows it (elements after the pixel data, such as private
    groups 7FE1, make the whole file read: Orthanc lists them too)."""
    pixel_offset, syntax, size = f.pixel_offset, _syntax(f), f.size
    if pixel_offset is None or syntax in (ts.DEFLATED_LE, ts.EXPLICIT_BE):  # offsets not usable as is
        return _metadata_of(core_files.read(ctx, f), base)
    head = core_files.read_head(ctx, f, pixel_offset + 12)
    # Implicit VR: pixel data is OW (PS3.5 A.1); explicit: the VR written in the element header
    written = head[pixel_offset + 4 : pixel_offset + 6].decode("ascii", "replace")
    if syntax == ts.IMPLICIT_LE:
        header, length = 8, int.from_bytes(head[pixel_offset + 4 : pixel_offset + 8], "little")
    elif written in _LONG_VRS:
        header, length = 12, int.from_bytes(head[pixel_offset + 8 : pixel_offset + 12], "little")
    else:
        header, length = 8, int.from_bytes(head[pixel_offset + 6 : pixel_offset + 8], "little")
    if length != 0xFFFFFFFF and pixel_offset + header + length < size:
        return _metadata_of(core_files.read(ctx, f), base)
    pixel_vr = "OW" if syntax == ts.IMPLICIT_LE else written
    return _metadata_of(head[:pixel_offset], base, pixel_vr)


def _metadata(prefix: str) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        """GET .../metadata: every instance in DICOM JSON, large binary values as BulkDataURI.
        Study and series requests are answered from per-series summaries kept until the series
        changes; only the first request reads the files."""
        xml = _metadata_wants_xml(request.headers.get("Accept"))
        ctx = ctx_of(request)
        base = public_base(request, prefix)
        if "instance" in request.match_info:
            found = await _instance_files(request)

            def render() -> bytes:
                return json_bytes([_metadata_of(core_files.read(ctx, f), base) for f in found])

            if xml:
                return _xml_parts(orjson.loads(await ctx.run(render)))
            return web.Response(body=await ctx.run(render), content_type="application/dicom+json")
        req = FindRequest(level=ResourceType.SERIES)
        for key, tag in (("study", mt.STUDY_INSTANCE_UID), ("series", mt.SERIES_INSTANCE_UID)):
            uid = request.match_info.get(key)
            if uid is not None:
                req.constraints.append(TagConstraint(tag, mt.LEVEL_OF_TAG[tag], MatchKind.EQUAL, (uid,), True))

        series = await core_files.series_files(ctx, req)
        if not series:
            raise _not_found(request)
        variant = ("dicomweb-metadata", base)

        def render_series(files: list[core_files.InstanceFile]) -> bytes:
            return b",".join(orjson.dumps(_instance_metadata(ctx, f, base)) for f in files)

        blobs = []
        for pub, files in series:
            blob = ctx.series_cache.get(pub, variant)
            if blob is None:
                blob = await ctx.run(render_series, files)
                ctx.series_cache.put(pub, variant, blob)
            if blob:
                blobs.append(blob)
        body = b"[" + b",".join(blobs) + b"]"
        if xml:
            return _xml_parts(orjson.loads(body))
        return web.Response(body=body, content_type="application/dicom+json")

    return handler


def _metadata_wants_xml(header: str | None) -> bool:
    """Whether a metadata request asks for DICOM XML, as Orthanc's plugin reads Accept: JSON
    when any of the listed media types is DICOM JSON (or */*), XML for multipart/related with
    type application/dicom+xml, 400 for anything else."""
    if header is None or not header.strip():
        return False
    ranges = [r.strip() for r in header.split(",")]
    if any(r.split(";")[0].strip().lower() in (*DICOM_JSON, "*/*") for r in ranges):
        return False
    (only,) = parse_accept(header)[:1] or [MediaRange("")]
    if len(ranges) == 1 and only.media == "multipart/related" and only.type == "application/dicom+xml":
        if only.syntax is not None:
            raise OrthancError(ErrorCode.BAD_REQUEST, f"Cannot change the transfer syntax of metadata: {header}")
        return True
    raise OrthancError(ErrorCode.BAD_REQUEST, f"Cannot generate this content type for metadata: {header}")


def _xml_parts(datasets: list[dict[str, Any]]) -> web.Response:
    """Each instance's metadata as one application/dicom+xml part."""
    from .webxml import to_xml

    return _multipart([to_xml(d) for d in datasets], "application/dicom+xml")


def setup(router: web.UrlDispatcher, prefix: str) -> None:
    study = prefix + "/studies/{study}"
    series = study + "/series/{series}"
    instance = series + "/instances/{instance}"
    for path in (study, series, instance):
        router.add_get(path, retrieve)
        router.add_get(path + "/metadata", _metadata(prefix))


def _syntax(f: core_files.InstanceFile) -> str:
    """The transfer syntax a file is stored in (Explicit VR Little Endian when not recorded)."""
    return f.transfer_syntax or ts.EXPLICIT_LE


async def _instance_files(request: web.Request, req: FindRequest | None = None) -> list[core_files.InstanceFile]:
    """The files of the instances named by the URL (or `req`); 404 when there is none."""
    found = await core_files.matched_files(ctx_of(request), req or _url_request(request), meta=True)
    if not found:
        if req is None:
            raise _not_found(request)
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, "No such DICOM resource", http_status=404)
    return found


def _not_found(request: web.Request) -> OrthancError:
    """Orthanc's plugin's 404: the deepest level the URL names."""
    m = request.match_info
    level, uid = next(((k, m[k]) for k in ("instance", "series", "study") if k in m), ("study", ""))
    return OrthancError(ErrorCode.INEXISTENT_ITEM, f"Accessing an inexistent {level} with WADO-RS: {uid}")


async def rendered(request: web.Request) -> web.StreamResponse:
    """/rendered and /thumbnail of an instance or a frame: PNG (default) or JPEG."""
    from ..imaging import render

    ctx = ctx_of(request)
    accept = (request.headers.get("Accept") or "*/*").split(";")[0].strip().lower()
    formats = {"*/*": "JPEG", "image/*": "JPEG", "image/jpeg": "JPEG", "image/png": "PNG"}
    if accept not in formats:  # Orthanc's plugin: one media type, JPEG by default
        raise OrthancError(ErrorCode.BAD_REQUEST, f"Cannot render as {accept}: image/jpeg or image/png")
    fmt = formats[accept]
    frame = int(request.match_info.get("frames", "1").split(",")[0] or 1) - 1
    first, *_ = await _instance_files(request)
    data = await ctx.run(core_files.read, ctx, first)
    try:
        image = await ctx.run(render.render_image, data, frame, fmt, "thumbnail" in request.path)
    except (IndexError, ValueError) as exc:
        raise OrthancError(ErrorCode.BAD_REQUEST, f"Cannot render this frame: {exc}") from exc
    return web.Response(body=image, content_type="image/jpeg" if fmt == "JPEG" else "image/png")


def _frames_plan(header: str | None, stored: str, count: int) -> tuple[bool, str]:
    """(multipart?, target syntax or ts.AS_STORED) for frames stored in `stored`, from the
    Accept header (406 when nothing it accepts can be given). Uncompressed unless the client
    takes the stored syntax or names a JPEG syntax to encode in."""
    for r in parse_accept(header):
        if r.media == "multipart/related" or r.any or r.media == "multipart/*":
            multipart, kind = True, r.type or "application/octet-stream"
        elif r.media == "application/octet-stream" and count == 1:
            multipart, kind = False, r.media
        elif r.media in ts.MEDIA_TYPES and count == 1:
            multipart, kind = False, r.media
        else:
            continue
        target = _frames_target(r, kind, stored)
        if target is not None:
            return multipart, target
    raise not_acceptable(header, f"frames are stored in {stored}")


def _frames_target(r: MediaRange, kind: str, stored: str) -> str | None:
    """The syntax frames are sent in to satisfy `r` (None: `r` cannot be satisfied)."""
    if kind in ("application/octet-stream", "*/*"):
        if r.syntax == "*" or r.syntax == stored:
            return ts.AS_STORED
        if r.syntax in (None, ts.EXPLICIT_LE, ts.IMPLICIT_LE):
            if stored in ts.UNCOMPRESSED or ts.can_decode(stored):
                return r.syntax or ts.EXPLICIT_LE
        return None
    if stored in ts.syntaxes_of_media(kind) and r.syntax in (None, "*", stored):
        return ts.AS_STORED
    wanted = r.syntax or (jpeg_encode.BASELINE if kind == "image/jpeg" else None)
    if kind == "image/jpeg" and wanted in jpeg_encode.SYNTAXES:
        if stored in ts.UNCOMPRESSED or ts.can_decode(stored):
            return wanted
    return None


def _frame_numbers(text: str) -> list[int]:
    try:
        numbers = [int(n) for n in text.split(",") if n.strip()]
    except ValueError as exc:
        raise OrthancError(ErrorCode.BAD_REQUEST, "Frame numbers must be integers") from exc
    if not numbers:
        raise OrthancError(ErrorCode.BAD_REQUEST, "No frame number")
    return numbers


async def frames(request: web.Request) -> web.StreamResponse:
    """/frames/{list}: uncompressed (decoded when needed), as stored when the client takes it,
    or encoded in the JPEG syntax it names; multipart/related, or a single part for one frame."""
    ctx = ctx_of(request)
    first, *_ = await _instance_files(request)
    stored = _syntax(first)
    numbers = _frame_numbers(request.match_info["frames"])
    multipart, target = _frames_plan(request.headers.get("Accept"), stored, len(numbers))

    def extract() -> tuple[list[bytes], str]:
        data = core_files.read(ctx, first)
        return ts.frames_in(data, numbers, target)

    try:
        parts, syntax = await ctx.run(extract)
    except LookupError as exc:  # IndexError (no such frame) is a LookupError too
        status = 404 if isinstance(exc, IndexError) else 400
        raise OrthancError(ErrorCode.BAD_REQUEST, str(exc).strip("'\""), http_status=status) from exc
    except ts.CannotTranscode as exc:
        raise OrthancError(ErrorCode.NOT_ACCEPTABLE, str(exc), http_status=406) from exc
    part_type = f"{ts.frame_media(syntax)}; transfer-syntax={syntax}"
    if not multipart:
        return web.Response(body=parts[0], headers={"Content-Type": part_type})
    base = public_base(request, request.path.rsplit("/frames/", 1)[0]) + "/frames/"
    return _multipart(parts, part_type, [base + str(n) for n in numbers])


def _part_head(boundary: str, part_type: str, length: int, location: str | None = None) -> bytes:
    """The delimiter and headers of one part of a multipart/related answer."""
    where = f"Content-Location: {location}\r\n" if location else ""
    return f"--{boundary}\r\nContent-Type: {part_type}\r\n{where}Content-Length: {length}\r\n\r\n".encode()


def _multipart(parts: list[bytes], part_type: str, locations: list[str] | None = None) -> web.Response:
    boundary = uuid.uuid4().hex
    chunks = []
    for i, p in enumerate(parts):
        chunks.append(_part_head(boundary, part_type, len(p), locations[i] if locations else None))
        chunks.append(p)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return web.Response(
        body=b"".join(chunks),
        headers={"Content-Type": f'multipart/related; type="{part_type}"; boundary={boundary}'},
    )


def _bulk_tag(text: str) -> int:
    """A tag of a bulk data URI: "7fe00010", "7FE00010" or "7fe0,0010"."""
    digits = text.replace(",", "") if len(text) == 9 and text[4] == "," else text
    if len(digits) != 8:
        raise ValueError(text)
    return int(digits, 16)


def _bulk_path(tail: str) -> tuple[int, tuple[tuple[int, int], ...]]:
    """The tag and item path of a bulk data URI's tail ("60031010/1/60031011": the element
    (6003,1011) of the first item of (6003,1010)); 400 when malformed."""
    tokens = tail.split("/")
    try:
        if len(tokens) % 2 != 1:
            raise ValueError(tail)
        path = tuple((_bulk_tag(tokens[i]), int(tokens[i + 1]) - 1) for i in range(0, len(tokens) - 1, 2))
        if any(index < 0 for _t, index in path):
            raise ValueError(tail)
        return _bulk_tag(tokens[-1]), path
    except ValueError as exc:
        raise OrthancError(ErrorCode.BAD_REQUEST, f"Bad bulk data URI: {tail}") from exc


async def bulk(request: web.Request) -> web.StreamResponse:
    """The BulkDataURI of a metadata answer: the value of one element, as
    multipart/related application/octet-stream (or single part); pixel data gives its frames."""
    ctx = ctx_of(request)
    header = request.headers.get("Accept")
    ranges = parse_accept(header)
    multipart = next(
        (
            r.media != "application/octet-stream"
            for r in ranges
            if r.any
            or r.media == "application/octet-stream"
            or (r.media in ("multipart/related", "multipart/*") and r.type in (None, "application/octet-stream"))
        ),
        None,
    )
    if multipart is None:
        raise not_acceptable(header, "bulk data is application/octet-stream")
    tag, path = _bulk_path(request.match_info["tail"])
    first, *_ = await _instance_files(request)

    def value() -> tuple[list[bytes], str]:
        data = core_files.read(ctx, first)
        if tag == 0x7FE00010 and not path:
            try:
                return ts.frames(data, None, False)
            except LookupError:
                return [], ts.EXPLICIT_LE
        found = ts.element_value(data, tag, path)
        return ([] if found is None else [found]), ts.EXPLICIT_LE

    parts, syntax = await ctx.run(value)
    if not parts:
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"No bulk data for tag {tag:08X}", http_status=404)
    part_type = ts.frame_media(syntax) if tag == 0x7FE00010 else "application/octet-stream"
    if tag == 0x7FE00010:
        part_type += f"; transfer-syntax={syntax}"
    if not multipart:
        return web.Response(body=b"".join(parts), headers={"Content-Type": part_type})
    return _multipart(parts, part_type)


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
    found = await _instance_files(request)
    for pid in await core_res.ancestors_at(ctx, [f.public_id for f in found], level):
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
    first, *_ = await _instance_files(request, req)
    data = await ctx.run(core_files.read, ctx, first)
    content_type = q.get("contentType", "image/jpeg")
    if content_type == "application/dicom":
        return web.Response(body=data, content_type="application/dicom")
    if content_type == "image/jpg":  # a common misspelling Orthanc's plugin takes as JPEG
        content_type = "image/jpeg"
    if content_type not in ("image/jpeg", "image/png"):
        raise OrthancError(ErrorCode.NOT_ACCEPTABLE, f"Unsupported contentType {content_type}", http_status=406)
    fmt = "PNG" if content_type == "image/png" else "JPEG"
    try:
        image = await ctx.run(render.render_image, data, 0, fmt, False)
    except (IndexError, ValueError) as exc:
        raise OrthancError(ErrorCode.BAD_REQUEST, f"Cannot render this instance: {exc}") from exc
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
    router.add_get(instance + "/bulk/{tail:.+}", bulk)
