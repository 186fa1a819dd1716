"""Attachments of resources (`/{level}/{id}/attachments/...`): the DICOM file and user files.

Every GET answers the attachment's ETag and a 304 to a matching `If-None-Match`; `data` and
`compressed-data` honour `Range` (Orthanc 1.12.5). The semantics live in core/content.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from ..core import content
from ..core.content import Found, Revision
from ..errors import ErrorCode, OrthancError
from ..model.enums import ResourceType
from ..web.middleware import error_response
from ..web.responses import content_disposition, json_response, read_body, text_response
from .common import ctx_of

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_FILE_EXTENSIONS = {1: ".dcm", 3: ".dcm", 2: ".json"}


def _empty_json(headers: dict[str, str] | None = None) -> web.Response:
    """Orthanc's literal `{}` answer (no newline) to PUT, compress, uncompress and verify-md5."""
    return web.Response(body=b"{}", headers={"Content-Type": "application/json", **(headers or {})})


def _not_modified(request: web.Request, found: Found) -> web.StreamResponse | None:
    """Orthanc's GET on an attachment: a 304 when `If-None-Match` names the current revision."""
    a = found.attachment
    try:
        wanted = Revision.parse(request.headers.get("If-None-Match"), "If-None-Match")
    except OrthancError as err:  # Orthanc has set the ETag before it reads the header
        return _with_etag(error_response(request, err), found)
    if wanted is not None and wanted.matches(a.revision, a.uncompressed_md5):
        return web.Response(status=304, headers={"ETag": content.etag(a.revision, a.uncompressed_md5)})
    return None


def _with_etag(response: web.StreamResponse, found: Found) -> web.StreamResponse:
    a = found.attachment
    response.headers["ETag"] = content.etag(a.revision, a.uncompressed_md5)
    return response


def parse_range(header: str, size: int) -> tuple[int, int]:
    """`Range: bytes=a-b` as Orthanc 1.12.5 reads it: `a-` to the end, `-b` from 0 to b, `-`
    everything; both ends inclusive. BAD_RANGE (416) when it is not satisfiable."""
    unit, _, spec = header.strip().partition("=")
    first, dash, last = spec.strip().partition("-")
    if unit.strip().lower() != "bytes" or not dash or "," in spec:
        raise OrthancError(ErrorCode.BAD_RANGE, f"Unsupported range: {header}")
    try:
        start = int(first) if first.strip() else 0
        end = int(last) if last.strip() else size - 1
    except ValueError as exc:
        raise OrthancError(ErrorCode.BAD_RANGE, f"Bad range: {header}") from exc
    end = min(end, size - 1)
    if start < 0 or start > end:
        raise OrthancError(ErrorCode.BAD_RANGE, f"Range not satisfiable: {header}")
    return start, end


def _handlers(level: ResourceType) -> dict[str, Handler]:
    async def find(request: web.Request) -> Found:
        ctx = ctx_of(request)
        ctype = content.content_type(ctx, request.match_info["name"])
        return await content.find_attachment(ctx, request.match_info["id"], level, ctype)

    async def list_names(request: web.Request) -> web.StreamResponse:
        ctx = ctx_of(request)
        types = await content.list_attachments(ctx, request.match_info["id"], level)
        if "full" in request.query:
            return json_response({content.content_name(ctx, t): t for t in types})
        return json_response([content.content_name(ctx, t) for t in types])

    async def operations(request: web.Request) -> web.StreamResponse:
        found = await find(request)
        if (answer := _not_modified(request, found)) is not None:
            return answer
        a = found.attachment
        ops = ["compress", "compressed-data"]
        ops += ["compressed-md5"] if a.compressed_md5 else []
        ops += ["compressed-size", "data", "info", "is-compressed"]
        ops += ["md5"] if a.uncompressed_md5 else []
        ops += ["size", "uncompress"]
        ops += ["verify-md5"] if a.compressed_md5 and a.uncompressed_md5 else []
        ops += ["uuid"]  # listed last by Orthanc 1.10.1
        return _with_etag(json_response(ops), found)

    async def send(request: web.Request, raw: bool) -> web.StreamResponse:
        ctx = ctx_of(request)
        found = await find(request)
        if (answer := _not_modified(request, found)) is not None:
            return answer
        a = found.attachment
        raw = raw and a.compression != 1  # compressed-data of an uncompressed file is its data
        size = a.compressed_size if raw else a.uncompressed_size
        range_header = request.headers.get("Range")
        if range_header is not None:
            start, end = parse_range(range_header, size)
            part = await ctx.run(content.read_attachment_range, ctx, a, start, end + 1, raw)
            response = web.Response(
                status=206,
                body=part,
                headers={"Content-Type": "application/octet-stream", "Content-Range": f"bytes {start}-{end}/{size}"},
            )
            return _with_etag(response, found)
        body = content.read_attachment_cached(ctx, a)  # a small file in the page cache: no thread hop
        if raw:
            if body is None:
                body = await ctx.run(content.read_attachment_raw, ctx, a)
            return _with_etag(web.Response(body=body, headers={"Content-Type": "application/octet-stream"}), found)
        if body is None:
            body = await ctx.run(content.read_attachment, ctx, a)
        headers = {
            "Content-Type": content.content_mime(ctx, a.content_type),
            "Content-Disposition": content_disposition(
                request.query.get("filename") or f"{a.uuid}{_FILE_EXTENSIONS.get(a.content_type, '')}"
            ),
        }
        return _with_etag(web.Response(body=body, headers=headers), found)

    async def data(request: web.Request) -> web.StreamResponse:
        return await send(request, raw=False)

    async def compressed_data(request: web.Request) -> web.StreamResponse:
        return await send(request, raw=True)

    def text_of(pick: Callable[[Found], str]) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            found = await find(request)
            if (answer := _not_modified(request, found)) is not None:
                return answer
            text = pick(found)
            if not text:  # an MD5 that is not stored (StoreMD5ForAttachments false)
                return web.Response(status=404)
            return _with_etag(text_response(text), found)

        return handler

    async def info(request: web.Request) -> web.StreamResponse:
        found = await find(request)
        if (answer := _not_modified(request, found)) is not None:
            return answer
        a = found.attachment
        out = {
            "CompressedMD5": a.compressed_md5,
            "CompressedSize": a.compressed_size,
            "ContentType": a.content_type,
            "UncompressedMD5": a.uncompressed_md5,
            "UncompressedSize": a.uncompressed_size,
            "Uuid": a.uuid,
        }
        return _with_etag(json_response(out), found)

    async def verify_md5(request: web.Request) -> web.StreamResponse:
        ctx = ctx_of(request)
        a = (await find(request)).attachment
        # Orthanc answers nothing (a bare 400 for a POST) without MD5s or on a mismatch
        if not a.uncompressed_md5 or not a.compressed_md5 or not await ctx.run(content.verify_md5, ctx, a):
            return web.Response(status=400)
        return _empty_json()

    async def put(request: web.Request) -> web.StreamResponse:
        ctx = ctx_of(request)
        ctype = content.content_type(ctx, request.match_info["name"])
        expected = Revision.parse(request.headers.get("If-Match"), "if-match")
        body = await read_body(request)
        revision = await content.put_attachment(ctx, request.match_info["id"], level, ctype, body, expected)
        return _empty_json({"ETag": content.body_etag(revision, body)})

    async def delete(request: web.Request) -> web.StreamResponse:
        ctx = ctx_of(request)
        ctype = content.content_type(ctx, request.match_info["name"])
        expected = Revision.parse(request.headers.get("If-Match"), "if-match")
        found = await content.delete_attachment(ctx, request.match_info["id"], level, ctype, expected)
        if not found:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
        return text_response("")

    def compression(compressed: bool) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            ctx = ctx_of(request)
            ctype = content.content_type(ctx, request.match_info["name"])
            await content.change_compression(ctx, request.match_info["id"], level, ctype, compressed)
            return _empty_json()

        return handler

    return {
        "list": list_names,
        "ops": operations,
        "put": put,
        "delete": delete,
        "data": data,
        "compressed-data": compressed_data,
        "size": text_of(lambda f: str(f.attachment.uncompressed_size)),
        "compressed-size": text_of(lambda f: str(f.attachment.compressed_size)),
        "md5": text_of(lambda f: f.attachment.uncompressed_md5),
        "compressed-md5": text_of(lambda f: f.attachment.compressed_md5),
        "is-compressed": text_of(lambda f: "0" if f.attachment.compression == 1 else "1"),
        "info": info,
        "uuid": text_of(lambda f: f.attachment.uuid),
        "verify-md5": verify_md5,
        "compress": compression(True),
        "uncompress": compression(False),
    }


_GETS = ("data", "compressed-data", "size", "compressed-size", "md5", "compressed-md5", "is-compressed", "info", "uuid")
_POSTS = ("verify-md5", "compress", "uncompress")


def setup(router: web.UrlDispatcher) -> None:
    for level in ResourceType:
        base = f"/{level.plural}/{{id}}/attachments"
        h = _handlers(level)
        router.add_get(base, h["list"])
        router.add_get(base + "/{name}", h["ops"])
        router.add_put(base + "/{name}", h["put"])
        router.add_delete(base + "/{name}", h["delete"])
        for name in _GETS:
            router.add_get(f"{base}/{{name}}/{name}", h[name])
        for name in _POSTS:
            router.add_post(f"{base}/{{name}}/{name}", h[name])
