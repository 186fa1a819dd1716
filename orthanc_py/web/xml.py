"""JSON answers rendered as XML when the client asks for `application/xml`, as Orthanc's REST API
does (Orthanc Book, "REST API": an `Accept: application/xml` header turns any JSON answer into
XML). One layer for every route: handlers only ever produce JSON."""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

import orjson
from aiohttp import web

MIME_XML = "application/xml"
MIME_JSON = "application/json"


def wants_xml(accept: str) -> bool:
    """Orthanc splits Accept on ";" (not ",") and compares each piece exactly; the last of
    `application/xml` and `application/json` wins. So `text/html, application/xml` stays JSON
    and `application/xml;q=0.9` is XML, as Orthanc 1.10.1 answers."""
    xml = False
    for piece in accept.split(";"):
        if piece == MIME_XML:
            xml = True
        elif piece == MIME_JSON:
            xml = False
    return xml


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    return escape(str(value))


def _element(out: list[str], name: str, value: Any, depth: int) -> None:
    pad = "  " * depth
    if isinstance(value, dict | list):
        children: list[str] = []
        _children(children, value, depth + 1)
        if children:
            out.append(f"{pad}<{name}>\n")
            out.extend(children)
            out.append(f"{pad}</{name}>\n")
        else:
            out.append(f"{pad}<{name} />\n")
    else:
        out.append(f"{pad}<{name}>{_scalar(value)}</{name}>\n")


def _children(out: list[str], value: dict[str, Any] | list[Any], depth: int) -> None:
    if isinstance(value, list):
        for item in value:
            _element(out, "item", item, depth)
    else:
        for key in sorted(value):
            _element(out, key, value[key], depth)


def json_to_xml(data: Any) -> bytes:
    """Orthanc's mapping: the document is `<root>`, array items are `<item>`, object members are
    elements named after their keys (sorted), null/true/false as text, empty containers as
    empty elements; two-space indentation."""
    out = ['<?xml version="1.0" encoding="utf-8"?>\n']
    _element(out, "root", data, 0)
    return "".join(out).encode("utf-8")


def as_xml(response: web.StreamResponse) -> web.StreamResponse:
    """The XML rendering of a JSON answer (other answers are returned as they are)."""
    if not isinstance(response, web.Response) or response.content_type != MIME_JSON:
        return response
    body = response.body
    if not isinstance(body, bytes | bytearray):
        return response
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return response
    headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-type", "content-length")}
    xml = web.Response(body=json_to_xml(data), status=response.status, headers=headers)
    xml.content_type = MIME_XML
    xml.charset = "utf-8"
    return xml
