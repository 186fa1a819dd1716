"""WADO-RS pixel and element routes: /frames, /rendered and /thumbnail, and the BulkDataURIs of
metadata answers."""

from __future__ import annotations

from aiohttp import web

from ..core import files as core_files
from ..errors import ErrorCode, OrthancError
from ..imaging import transcode as ts
from ..web.appkeys import ctx_of
from .headers import MediaRange, bad_accept, not_acceptable, parse_accept, public_base
from .targets import multipart_response, stored_syntax, url_files, url_files_blocking


async def rendered(request: web.Request) -> web.StreamResponse:
    """/rendered (and our /thumbnail, the same image) of a study, series, instance or frame,
    drawn as Orthanc's DICOMweb plugin draws it: JPEG unless Accept asks for PNG, the
    viewport, quality and window arguments; a study or series shows its first instance."""
    from ..imaging import webrender

    ctx = ctx_of(request)
    accept = (request.headers.get("Accept") or "*/*").strip()
    mimes = {"*/*": "image/jpeg", "image/jpeg": "image/jpeg", "image/jpg": "image/jpeg", "image/png": "image/png"}
    mime = mimes.get(accept.split(";")[0].strip().lower())
    if mime is None:  # the plugin takes one media type, JPEG by default
        raise OrthancError(
            ErrorCode.PARAMETER_OUT_OF_RANGE, f"Unsupported MIME type in WADO-RS rendered frame: {accept}"
        )
    args = webrender.WebRenderArgs.parse(dict(request.query))
    try:
        frame = int(request.match_info.get("frames", "1").split(",")[0] or 1)
    except ValueError:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, "Bad frame number") from None
    if frame <= 0:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Inexistent frame index in this image: {frame}")

    def read_and_render() -> bytes:  # lookup, file and drawing in one worker-thread hop
        first, *_ = url_files_blocking(request)
        return webrender.web_rendered(core_files.read(ctx, first), frame - 1, args, mime)

    image = await ctx.run(read_and_render)
    return web.Response(body=image, content_type=mime)


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
    wanted = r.syntax or _DEFAULT_OF_MEDIA.get(kind)
    if wanted in ts.syntaxes_of_media(kind) and wanted in ts.ENCODABLE:
        if stored in ts.UNCOMPRESSED or ts.can_decode(stored):
            return wanted
    return None


_DEFAULT_OF_MEDIA = {
    "image/jpeg": ts.JPEG_BASELINE,
    "image/jls": "1.2.840.10008.1.2.4.80",
    "image/x-jls": "1.2.840.10008.1.2.4.80",
    "image/jp2": "1.2.840.10008.1.2.4.90",
    "image/dicom-rle": "1.2.840.10008.1.2.5",
    "image/x-dicom-rle": "1.2.840.10008.1.2.5",
}
"""The syntax a frame is encoded in when the client names a media type but no syntax."""


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
    first, *_ = await url_files(request)
    stored = stored_syntax(first)
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
    return multipart_response(parts, part_type, [base + str(n) for n in numbers])


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
        raise bad_accept(header, "bulk data is application/octet-stream")
    if any("range" in r.names for r in ranges):  # as Orthanc's plugin: whole values only
        raise bad_accept(header, "bulk data is given whole, without a range")
    tag, path = _bulk_path(request.match_info["tail"])
    first, *_ = await url_files(request)

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
    return multipart_response(parts, part_type)
