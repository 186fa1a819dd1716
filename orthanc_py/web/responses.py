"""JSON and binary responses, rendered with orjson (keys sorted, as Orthanc's JSON writer does)."""

from __future__ import annotations

import json
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError

from ..errors import ErrorCode, OrthancError

_OPTS = orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS


def content_disposition(filename: str) -> str:
    """The Content-Disposition of a download named by the client (`?filename=`, Orthanc 1.12.7):
    control characters are dropped, so no header can be injected; quotes stay, as in Orthanc
    before 1.12.11."""
    kept = "".join(c for c in filename if c >= " " and c != "\x7f")
    return f'filename="{kept}"'


def json_bytes(data: Any) -> bytes:
    """Orthanc pretty-prints its JSON with sorted keys; so do we (clients diff these answers).
    orjson stops at 255 levels of nesting (the tags of a file with ~60 nested sequences): such
    rare answers go through the standard library's encoder, same layout."""
    try:
        return orjson.dumps(data, option=_OPTS) + b"\n"
    except orjson.JSONEncodeError:
        return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"


JSON_HEAD = b"Content-Type: application/json; charset=utf-8\r\n"
"""The Content-Type line aiohttp writes for json_response (the HTTP fast lane writes it too)."""


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json_bytes(data),
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


def text_response(text: str, content_type: str = "text/plain", status: int = 200) -> web.Response:
    """Orthanc sends its text answers as `text/plain` without a charset."""
    return web.Response(body=text.encode("utf-8"), status=status, headers={"Content-Type": content_type})


def bool_arg(request: web.Request, name: str, default: bool = False) -> bool:
    """Orthanc's boolean GET arguments: present without value or with "true"/"1" means true."""
    if name not in request.query:
        return default
    value = request.query[name].strip().lower()
    return value in ("", "true", "1", "yes")


BIG_READ = 1 << 20
"""Large request bodies: bytes per socket read, and what a request may buffer before aiohttp
pauses the socket (the application's `read_bufsize`)."""


def _widen_reads(request: web.Request) -> None:
    """Let the connection take up to 1 MiB per socket read while a large body arrives. asyncio
    reads at most 256 KiB at a time, and aiohttp turns each read into a chunk of its own: a
    512 KiB upload came in six pieces, each a round of parser, queue and task wake-up on the
    event loop; now two (5% less server CPU per upload, 2-core VM)."""
    transport = request.transport
    current = getattr(transport, "max_size", None)  # asyncio's plain socket transport only
    if isinstance(current, int) and current < BIG_READ and (request.content_length or 0) > current:
        transport.max_size = BIG_READ  # type: ignore[union-attr]


async def read_body(request: web.Request) -> bytes:
    """The whole body, copied once. `request.read()` copies every received chunk into a growing
    bytearray, then copies that into bytes: two to three copies of each upload, on the event
    loop. Here the chunks are kept as received and joined once (no copy for a one-chunk body)."""
    done = getattr(request, "_read_bytes", None)
    if done is not None:  # already read (a middleware, or a second call)
        return bytes(done)
    if not request.body_exists:
        return b""
    stream = request.content
    _widen_reads(request)
    limit = getattr(request, "_client_max_size", 0)
    if limit and hasattr(stream, "set_read_chunk_size"):  # fewer pause/resume cycles
        stream.set_read_chunk_size(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk, _ = await stream.readchunk()
        except (ContentEncodingError, web.RequestPayloadError) as exc:
            # a body that does not decode (Content-Encoding: gzip on bytes that are not gzip, a
            # broken chunked encoding) is bad input: 400, never an internal error
            stream.feed_eof()  # nothing more to read (aiohttp would try to drain it and log the error)
            encoding = request.headers.get("Content-Encoding", "identity")
            details = f"Cannot decode the body of the request (Content-Encoding: {encoding})"
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, details) from exc
        if not chunk:
            if stream.at_eof():
                break
            continue  # (b"", True): a boundary of Transfer-Encoding: chunked, not the end
        chunks.append(chunk)
        size += len(chunk)
        if limit and size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    request._read_bytes = body  # later request.read() calls answer the same bytes
    return body


async def read_text(request: web.Request) -> str:
    """The body as text without surrounding whitespace; bytes that are not UTF-8 become U+FFFD,
    so a binary body is an invalid value for the route (400), never a decoding crash."""
    return (await read_body(request)).decode("utf-8", "replace").strip()


async def read_bool(request: web.Request) -> bool:
    """A Boolean sent as text, as Orthanc's settings routes read it (`1`/`0`/`true`/`false`);
    anything else is Orthanc's BadFileFormat "Boolean value expected"."""
    text = (await read_text(request)).lower()
    if text not in ("1", "0", "true", "false"):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Boolean value expected")
    return text in ("1", "true")


async def read_json(request: web.Request) -> Any:
    """Parse the body as JSON; None when it is not JSON (callers answer Orthanc's BadRequest
    "The body must contain a JSON object")."""
    body = await read_body(request)
    try:
        return orjson.loads(body) if body.strip() else None
    except orjson.JSONDecodeError:
        return None
