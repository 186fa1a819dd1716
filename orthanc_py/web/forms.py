"""HTML form uploads (`multipart/form-data`), as Orthanc's HTTP server handles them for any POST.

Orthanc Explorer's "Upload" button (jQuery File Upload) posts files as form parts. Orthanc hands
each part to the route as a POST of its own (the part is the body) and answers an empty 200.
With jQuery's `maxChunkSize`, a file arrives in several requests carrying `X-File-Name` and
`X-File-Size`; the chunks are kept until the file is whole, for at most 10 files at a time.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from multidict import CIMultiDict

from ..errors import ErrorCode, OrthancError
from .responses import read_body

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FORM_DATA = "multipart/form-data"
CHUNKED_FILES = 10


def form_boundary(content_type: str) -> str | None:
    """The boundary of a `multipart/form-data` Content-Type, read leniently as Orthanc does
    (spaces around ";" and "=" are allowed); None for any other type."""
    pieces = [p.strip() for p in content_type.split(";")]
    if not pieces or pieces[0].lower() != FORM_DATA:
        return None
    for piece in pieces[1:]:
        key, sep, value = piece.partition("=")
        if sep and key.strip().lower() == "boundary":
            return value.strip().strip('"') or None
    return None


def form_parts(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    """The complete parts of a multipart body: (headers with lower-case names, content). A
    closing delimiter is not required (jQuery's chunks end with `--boundary` alone)."""
    delimiter = b"--" + boundary.encode("latin-1")
    parts: list[tuple[dict[str, str], bytes]] = []
    pos = body.find(delimiter)
    while pos >= 0:
        start = pos + len(delimiter)
        if body[start : start + 2] == b"--":
            break
        head_end = body.find(b"\r\n\r\n", start)
        if head_end < 0:
            break
        end = body.find(b"\r\n" + delimiter, head_end + 4)
        if end < 0:
            break
        headers: dict[str, str] = {}
        for line in body[start:head_end].decode("latin-1").split("\r\n"):
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        parts.append((headers, body[head_end + 4 : end]))
        pos = end + 2
    return parts


class ChunkStore:
    """Files being uploaded in chunks, by name (Orthanc keeps 10; a file pushed out by newer
    ones fails when its next chunk arrives)."""

    def __init__(self, places: int = CHUNKED_FILES) -> None:
        self.places = places
        self.files: OrderedDict[str, list[bytes]] = OrderedDict()
        self.discarded: set[str] = set()

    def add(self, name: str, size: int, chunk: bytes) -> bytes | None:
        """The whole file once its last chunk arrived, else None."""
        if name in self.discarded:
            self.discarded.discard(name)
            raise OrthancError(ErrorCode.NETWORK_PROTOCOL, "Error in the multipart form upload")
        chunks = self.files.get(name)
        if chunks is None:
            if len(self.files) >= self.places:
                oldest, _ = self.files.popitem(last=False)
                self.discarded.add(oldest)
            chunks = self.files[name] = []
        chunks.append(chunk)
        received = sum(len(c) for c in chunks)
        if received < size:
            return None
        del self.files[name]
        return b"".join(chunks) if received == size else None


def _chunk_header(request: web.Request) -> tuple[str, int] | None:
    name, size = request.headers.get("X-File-Name"), request.headers.get("X-File-Size")
    if name is None and size is None:
        return None
    if name is None:
        raise OrthancError(ErrorCode.NETWORK_PROTOCOL, 'HTTP header "X-File-Name" is missing')
    if size is None:
        raise OrthancError(ErrorCode.NETWORK_PROTOCOL, 'HTTP header "X-File-Size" is missing')
    try:
        value = int(size)
    except ValueError as exc:
        raise OrthancError(ErrorCode.NETWORK_PROTOCOL, 'HTTP header "X-File-Size" is not an integer') from exc
    if value < 0:
        raise OrthancError(ErrorCode.NETWORK_PROTOCOL, 'HTTP header "X-File-Size" has negative value')
    return name, value


def form_middleware() -> Middleware:
    """A POST of `multipart/form-data` becomes one POST per part to the same route (the part's
    headers replace the Content-Type); the answer is an empty 200, as Orthanc gives."""
    store = ChunkStore()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method != "POST":
            return await handler(request)
        boundary = form_boundary(request.headers.get("Content-Type", ""))
        if boundary is None:
            return await handler(request)
        requested_with = request.headers.get("X-Requested-With")
        if requested_with is not None and requested_with != "XMLHttpRequest":
            details = 'HTTP header "X-Requested-With" should be "XMLHttpRequest" in multipart uploads'
            raise OrthancError(ErrorCode.NETWORK_PROTOCOL, details)
        chunked = _chunk_header(request)
        template = request.clone()  # aiohttp clones a request only before its body is read
        for part_headers, content in form_parts(await read_body(request), boundary):
            if chunked is not None:
                whole = store.add(chunked[0], chunked[1], content)
                if whole is None:
                    continue
                content = whole
            headers = CIMultiDict(request.headers)
            headers.popall("Content-Type", None)
            headers.popall("Content-Length", None)
            if "content-type" in part_headers:
                headers["Content-Type"] = part_headers["content-type"]
            headers["Content-Length"] = str(len(content))
            part = template.clone(headers=headers)
            part._read_bytes = content  # what read_body() and request.read() answer
            await handler(part)
        return web.Response(status=200)

    return middleware
