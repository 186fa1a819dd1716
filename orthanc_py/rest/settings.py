"""Settings Orthanc lets clients read and change at run time: /tools/default-encoding,
/tools/accepted-transfer-syntaxes, /tools/unknown-sop-class-accepted.

A change lasts until the server stops (Orthanc does not write it back to its configuration).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from ..core.context import match_transfer_syntaxes
from ..errors import ErrorCode, OrthancError
from ..model.charsets import parse_encoding
from ..web.responses import json_response, read_body, read_bool, read_text, text_response
from .common import ctx_of


async def get_default_encoding(request: web.Request) -> web.StreamResponse:
    return text_response(ctx_of(request).default_encoding)


async def put_default_encoding(request: web.Request) -> web.StreamResponse:
    """Orthanc answers the encoding now in force."""
    try:
        encoding = parse_encoding((await read_text(request)).strip())
    except ValueError as exc:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE) from exc
    ctx = ctx_of(request)
    ctx.default_encoding = encoding
    ctx.settings_changed()
    return text_response(encoding)


async def get_accepted_syntaxes(request: web.Request) -> web.StreamResponse:
    return json_response(list(ctx_of(request).accepted_transfer_syntaxes))


async def put_accepted_syntaxes(request: web.Request) -> web.StreamResponse:
    """A pattern or a list of patterns (UIDs, `*` and `?` wildcards); answers what now matches.
    A body that is not JSON is one pattern as it is (Orthanc: `*` sent as text/plain), unless it
    starts as a JSON value would (Orthanc's reader then takes `1.2.840.10008.1.2` for a number,
    which is a 400)."""
    raw = await read_body(request)
    try:
        body: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8", "replace").strip()
        body = None if not text or text[0] in '0123456789-[{"' else text
    if isinstance(body, str):
        body = [body]
    if not isinstance(body, list) or not all(isinstance(p, str) for p in body):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
    ctx = ctx_of(request)
    ctx.accepted_transfer_syntaxes = match_transfer_syntaxes(body)
    return json_response(list(ctx.accepted_transfer_syntaxes))


async def get_unknown_sop_class(request: web.Request) -> web.StreamResponse:
    return text_response("1" if ctx_of(request).unknown_sop_class_accepted else "0")


async def put_unknown_sop_class(request: web.Request) -> web.StreamResponse:
    ctx_of(request).unknown_sop_class_accepted = await read_bool(request)
    return text_response("")


def setup(router: web.UrlDispatcher) -> None:
    router.add_get("/tools/default-encoding", get_default_encoding)
    router.add_put("/tools/default-encoding", put_default_encoding)
    router.add_get("/tools/accepted-transfer-syntaxes", get_accepted_syntaxes)
    router.add_put("/tools/accepted-transfer-syntaxes", put_accepted_syntaxes)
    router.add_get("/tools/unknown-sop-class-accepted", get_unknown_sop_class)
    router.add_put("/tools/unknown-sop-class-accepted", put_unknown_sop_class)
