"""WebDAV under `/webdav/`, as Orthanc 1.10.1's HTTP server answers it (HttpServer.cpp's WebDAV
handling, IWebDavBucket.cpp; the tree itself is core/webdav.py).

- OPTIONS of `/webdav` (only there): `DAV: 1,2` and the methods allowed.
- PROPFIND with `Depth: 0` or `1` (anything else is an error, as in Orthanc): a `207` multistatus
  whose first response is the folder asked for (for a file: its folder) with the present time.
- GET/HEAD of files (a folder has no content: 404), `Last-Modified` in ISO format with a "Z".
- PUT into `uploads/` (201 once the file, or each DICOM file of a ZIP, is stored as an instance:
  Orthanc answers first and stores in the background), MKCOL there, DELETE
  (204, or 403 where it is not allowed), and LOCK/UNLOCK/PROPPATCH answered without effect
  (Orthanc fakes them for Windows and davfs2). Other methods: 400, POST: the REST API's 404.
- `WebDavEnabled` false: no WebDAV (404); `WebDavDeleteAllowed` (default false) and
  `WebDavUploadAllowed` (default true) as in Orthanc.

Errors of the WebDAV-only methods name the method "GET" in their body, as Orthanc's do.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence
from typing import BinaryIO
from urllib.parse import quote

from aiohttp import web

from ..core.context import ServerContext
from ..core.resources import ResourceInfo
from ..core.webdav import WebDavTree
from ..core.webdav_files import Entry, iso_time
from ..errors import ErrorCode, OrthancError
from ..model.styledjson import styled
from ..web.middleware import WEBDAV_METHODS, error_response
from ..web.responses import read_body
from .common import ctx_of
from .render import resource_json

ROOT = "webdav"
_METHODS = ("GET", "HEAD", "PUT", "DELETE", "POST", "OPTIONS", "PROPFIND", "PROPPATCH", "LOCK", "UNLOCK", "MKCOL")
_ALLOW = "GET, PUT, DELETE, OPTIONS, PROPFIND, HEAD, LOCK, UNLOCK, PROPPATCH, MKCOL"
_XML_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'
_BIG_LISTING = 500
"""Listings longer than this are written off the event loop (10,000 items: ~0.1 s of work)."""
_DEPTH = re.compile(r"[+-]?[0-9]+")
_SPECIAL = re.compile("[&<>\x00-\x08\x0b\x0c\x0e-\x1f]")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def uri_encode(text: str) -> str:
    """Orthanc's `Toolbox::UriEncode`: every byte of the UTF-8 form but letters, digits,
    `-_.~` and `/` percent-encoded, in uppercase hex."""
    return quote(text, safe="/")


def _reference(match: re.Match[str]) -> str:
    ch = match.group(0)
    return _ENTITIES.get(ch) or f"&#{ord(ch) // 10}{ord(ch) % 10};"


def _xml_text(text: str) -> str:
    """Character data as pugixml writes it: `& < >` escaped, other control characters but tab,
    CR and LF as decimal references."""
    return _SPECIAL.sub(_reference, text) if _SPECIAL.search(text) else text


Xml = tuple[str, "str | list[Xml] | None"]
"""An element: (name, text) or (name, children); (name, None) is an empty element."""


def _xml(out: list[str], node: Xml, depth: int, attrs: str = "") -> None:
    """pugixml's indented layout (two spaces a level, `<a />` for an empty element)."""
    name, content = node
    pad = "  " * depth
    if content is None or content == []:
        out.append(f"{pad}<{name}{attrs} />\n")
    elif isinstance(content, str):
        out.append(f"{pad}<{name}{attrs}>{_xml_text(content)}</{name}>\n")
    else:
        out.append(f"{pad}<{name}{attrs}>\n")
        for child in content:
            _xml(out, child, depth + 1)
        out.append(f"{pad}</{name}>\n")


def _document(root: Xml) -> bytes:
    out = [_XML_HEAD]
    _xml(out, root, 0, ' xmlns:D="DAV:"')
    return "".join(out).encode("utf-8")


_RESPONSE = (
    "  <D:response>\n"
    "    <D:href>{href}</D:href>\n"
    "    <D:propstat>\n"
    "      <D:status>HTTP/1.1 200 OK</D:status>\n"
    "      <D:prop>\n"
    "        <D:displayname>{name}</D:displayname>\n"
    "        <D:creationdate>{created}Z</D:creationdate>\n"  # "Z" (UTC): required by Windows 7+
    "        <D:getlastmodified>{modified}Z</D:getlastmodified>\n"
    "{kind}"
    "      </D:prop>\n"
    "    </D:propstat>\n"
    "  </D:response>\n"
)
_FOLDER = "        <D:resourcetype>\n          <D:collection />\n        </D:resourcetype>\n"
_FILE = (
    "        <D:resourcetype />\n"
    "        <D:getcontentlength>{size}</D:getcontentlength>\n"
    "        <D:getcontenttype>{mime}</D:getcontenttype>\n"
)


def _response(href: str, entry: Entry, now: str) -> str:
    """One item of a multistatus, as pugixml lays out the document Orthanc builds."""
    created = entry.created or now
    kind = _FOLDER if entry.folder else _FILE.format(size=entry.size, mime=_xml_text(entry.mime))
    return _RESPONSE.format(
        href=_xml_text(href),
        name=_xml_text(entry.name),
        created=created,
        modified=entry.modified or created,
        kind=kind,
    )


def multistatus(folder: Sequence[str], entries: Sequence[Entry]) -> bytes:
    """PROPFIND's answer: the folder (`folder`: its URI components) with the present time, then
    `entries`. The folder's href ends with a slash, its items' do not."""
    now = iso_time(time.time())
    base = "/" + "/".join(folder)
    out = [_XML_HEAD, '<D:multistatus xmlns:D="DAV:">\n']
    out.append(_response(uri_encode(base + "/"), Entry(folder[-1] if folder else "", True, now), now))
    prefix = base.rstrip("/") + "/"
    out.extend(_response(uri_encode(prefix + e.name), e, now) for e in entries)
    out.append("</D:multistatus>\n")
    return "".join(out).encode("utf-8")


def _fake_lock(uri: str) -> web.Response:
    """LOCK: no lock is taken; the answer only satisfies the clients that lock (Windows,
    davfs2 needs the Lock-Token header)."""
    token = "opaquelocktoken:0x" + uuid.uuid4().hex
    body = _document(
        (
            "D:prop",
            [
                (
                    "D:lockdiscovery",
                    [
                        (
                            "D:activelock",
                            [
                                ("D:locktype", [("D:write", None)]),
                                ("D:lockscope", [("D:exclusive", None)]),
                                ("D:depth", "0"),
                                ("D:timeout", "Second-3599"),
                                ("D:lockroot", [("D:href", uri)]),
                                ("D:owner", None),
                                ("D:locktoken", [("D:href", token)]),
                            ],
                        )
                    ],
                )
            ],
        )
    )
    return web.Response(status=201, body=body, headers={"Lock-Token": token, "Content-Type": "application/xml"})


def _fake_proppatch(uri: str) -> web.Response:
    """PROPPATCH: properties are not kept; a multistatus without properties (for Windows)."""
    body = _document(("D:multistatus", [("D:response", [("D:href", uri), ("D:propstat", None)])]))
    return web.Response(status=207, body=body, headers={"Content-Type": "application/xml"})


def _depth(request: web.Request) -> int:
    text = request.headers.get("Depth")
    if text is None:
        raise OrthancError(ErrorCode.NETWORK_PROTOCOL, "WebDAV PROPFIND without depth")
    if not _DEPTH.fullmatch(text) or not -(2**31) <= int(text) < 2**31:
        raise OrthancError(ErrorCode.BAD_PARAMETER_TYPE, "Syntax error in some user-supplied data")
    depth = int(text)
    if depth not in (0, 1):
        raise OrthancError(
            ErrorCode.NETWORK_PROTOCOL, "WebDAV PROPFIND at unsupported depth (can only be 0 or 1): " + text
        )
    return depth


async def _propfind(request: web.Request, tree: WebDavTree, path: list[str]) -> web.Response:
    depth = _depth(request)
    components = [ROOT, *path]
    entries = await tree.folder(path, depth)
    if entries is not None:
        if len(entries) > _BIG_LISTING:
            body = await tree.ctx.run(multistatus, components, entries)
        else:
            body = multistatus(components, entries)
    elif path and (found := await tree.get_file(path, with_data=False)) is not None:
        now = iso_time(time.time())
        entry = Entry(path[-1], False, now, found.modified or now, found.size, found.mime)
        body = multistatus(components[:-1], [entry])
    else:
        return web.Response(status=404)
    return web.Response(status=207, body=body, headers={"Content-Type": "application/xml; charset=UTF-8"})


async def _get(request: web.Request, tree: WebDavTree, path: list[str]) -> web.StreamResponse:
    found = await tree.get_file(path, with_data=request.method == "GET")
    if found is None:
        return web.Response(status=404)
    # Orthanc 1.10.1 has no time for its JSON files, and says so: "not-a-date-timeZ"
    headers = {"Content-Type": found.mime, "Last-Modified": (found.modified or "not-a-date-time") + "Z"}
    if request.method == "HEAD":  # Orthanc 1.10.1 answers HEAD with an empty body, and says so
        return web.Response(status=200, headers={**headers, "Content-Length": "0"})
    if found.path is not None:
        return await _send_file(request, tree, found.path, found.size, headers)
    return web.Response(status=200, body=found.data or b"", headers=headers)


def _open_binary(path: str) -> BinaryIO:
    return open(path, "rb")


async def _send_file(
    request: web.Request, tree: WebDavTree, path: str, size: int, headers: dict[str, str]
) -> web.StreamResponse:
    """A large file, read in chunks off the event loop (FileResponse would replace Orthanc's
    Last-Modified with the file's own)."""
    response = web.StreamResponse(status=200, headers=headers)
    response.content_length = size
    f = await tree.ctx.run(_open_binary, path)
    try:
        await response.prepare(request)
        while chunk := await tree.ctx.run(f.read, 1 << 20):
            await response.write(chunk)
    finally:
        f.close()
    await response.write_eof()
    return response


async def _dispatch(request: web.Request, tree: WebDavTree, path: list[str]) -> web.StreamResponse:
    method = request.method
    if method == "OPTIONS":
        if path:
            return web.Response(status=404)  # Orthanc answers OPTIONS at the root only
        return web.Response(status=200, headers={"DAV": "1,2", "Allow": _ALLOW})
    if method == "PROPFIND":
        return await _propfind(request, tree, path)
    if method in ("GET", "HEAD"):
        return await _get(request, tree, path)
    if method == "PUT":
        data = await read_body(request)
        return web.Response(status=201 if await tree.store_file(path, data) else 403)
    if method == "DELETE":
        return web.Response(status=204 if await tree.delete_item(path) else 403)
    if method == "MKCOL":
        return web.Response(status=201 if await tree.create_folder(path) else 403)
    if method == "PROPPATCH":
        return _fake_proppatch(request.path)
    if method == "LOCK":
        return _fake_lock(request.path)
    if method == "UNLOCK":
        return web.Response(status=204)
    raise web.HTTPNotFound()  # POST: Orthanc's REST API, which has no such route


class _Service:
    """The WebDAV tree of one application, built at its first request (the settings and the
    context come with the request)."""

    def __init__(self) -> None:
        self.tree: WebDavTree | None = None

    def tree_of(self, ctx: ServerContext) -> WebDavTree:
        if self.tree is None or self.tree.ctx is not ctx:
            s = ctx.settings
            self.tree = WebDavTree(ctx, _render_json, s.webdav_delete_allowed, s.webdav_upload_allowed)
        return self.tree

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ctx = ctx_of(request)
        webdav_only = request.method in WEBDAV_METHODS
        if not ctx.settings.webdav_enabled:
            if webdav_only:
                return web.Response(status=404)
            raise web.HTTPNotFound()
        path = [p for p in request.match_info.get("path", "").split("/") if p]
        try:
            return await _dispatch(request, self.tree_of(ctx), path)
        except OrthancError as err:
            if not webdav_only:
                raise
            return error_response(request.clone(method="GET"), err)


def _render_json(info: ResourceInfo) -> bytes:
    """`study.json`, `series.json`: the resource as GET /studies/{id} answers it, laid out as
    Orthanc writes these files (JsonCpp's styled layout, DOS newlines)."""
    return styled(resource_json(info)).replace("\n", "\r\n").encode("ascii")


def setup(router: web.UrlDispatcher) -> None:
    service = _Service()

    async def handle(request: web.Request) -> web.StreamResponse:
        return await service.handle(request)

    for pattern in ("/" + ROOT, "/" + ROOT + "/{path:.*}"):
        resource = router.add_resource(pattern)
        for method in _METHODS:
            resource.add_route(method, handle)
