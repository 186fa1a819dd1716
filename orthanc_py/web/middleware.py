"""One place where failures become Orthanc's JSON error body, plus access control.

Handlers raise `OrthancError`; nothing else builds error bodies. Any other exception is logged
(without PHI) and answered as Orthanc's InternalError, never as a traceback.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from aiohttp.typedefs import Middleware
from yarl import URL

from ..errors import ErrorCode, OrthancError
from .responses import json_bytes
from .xml import as_xml, wants_xml

log = logging.getLogger("orthanc_py.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REALM = "Orthanc Secure Area"
USERNAME: web.RequestKey[str] = web.RequestKey("username", str)
_DISPATCHED: web.RequestKey[bool] = web.RequestKey("orthanc_dispatched", bool)
FROM_LUA: web.RequestKey[bool] = web.RequestKey("orthanc_from_lua", bool)
"""Set on the REST calls of Lua scripts (web/luafilter.py)."""
_ORTHANC_METHODS = ("GET", "POST", "DELETE", "PUT")
WEBDAV_METHODS = frozenset({"OPTIONS", "PROPFIND", "HEAD", "PROPPATCH", "LOCK", "UNLOCK", "MKCOL"})
"""Methods Orthanc 1.10.1 serves for WebDAV only: elsewhere they get a bare 404 (rest/webdav.py)."""


def error_body(request: web.Request, err: OrthancError) -> dict[str, object]:
    """Orthanc's error JSON: HttpError, HttpStatus, Message, Method, OrthancError, OrthancStatus,
    Uri, and Details when there are details."""
    reason = _reason(err.http_status)
    body: dict[str, object] = {
        "HttpError": reason,
        "HttpStatus": err.http_status,
        "Message": err.code.message,
        "Method": request.method,
        "OrthancError": err.code.message,
        "OrthancStatus": err.code.code,
        "Uri": request.path,
    }
    if err.details and err.details != err.code.message:
        body["Details"] = err.details
    if err.payload is not None:  # Orthanc 1.12.10
        body["ErrorPayload"] = err.payload
    return body


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Internal Server Error"


ORTHANC_ERROR: web.ResponseKey[bool] = web.ResponseKey("orthanc_error", bool)
"""Set on the answers that carry Orthanc's error description (HttpDescribeErrors)."""


def error_response(request: web.Request, err: OrthancError) -> web.Response:
    """Orthanc's error JSON, sent as `text/plain` as Orthanc 1.12.2+ sends every error description
    (1.10.1 sent none; the XSS fix of 1.12.2 gave every body a Content-Type, and error bodies are
    "a textual description of the error")."""
    body = json_bytes(error_body(request, err))
    response = web.Response(body=body, status=err.http_status, content_type="text/plain")
    response[ORTHANC_ERROR] = True
    return response


@web.middleware
async def silent_errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """HttpDescribeErrors false: an error is its HTTP status alone, without Orthanc's description."""
    response = await handler(request)
    if response.get(ORTHANC_ERROR):
        return web.Response(status=response.status)
    return response


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except OrthancError as err:
        if err.code is ErrorCode.FORBIDDEN_ACCESS:
            return web.Response(status=403)  # Orthanc signals these refusals with a bare status
        response = error_response(request, err)
        if request.content.exception() is not None:
            response.force_close()  # the body was unreadable: the connection cannot be reused
        return response
    except web.HTTPMethodNotAllowed as exc:
        if request.method in WEBDAV_METHODS:  # Orthanc: no WebDAV folder there
            return web.Response(status=404)
        if request.method not in _ORTHANC_METHODS:  # Orthanc: unknown verbs are a bare 400
            return web.Response(status=400)
        allow = ",".join(m for m in _ORTHANC_METHODS if m in exc.allowed_methods)
        return web.Response(status=405, headers={"Allow": allow})
    except web.HTTPNotFound:
        if request.method in WEBDAV_METHODS:
            return web.Response(status=404)
        return error_response(request, OrthancError(ErrorCode.UNKNOWN_RESOURCE, http_status=404))
    except web.HTTPException:
        raise
    except (ConnectionResetError, TimeoutError):
        raise
    except Exception:
        log.exception("internal error while serving %s %s", request.method, request.path)
        return error_response(request, OrthancError(ErrorCode.INTERNAL_ERROR))


def orthanc_path(raw: str) -> str | None:
    """The request target as Orthanc parses it, or None when it is already so.

    Orthanc splits the URI on "/" and drops empty components, so `//system`, `/patients/` and
    `/instances//{id}/tags/` name the same resources as their single-slash forms (Orthanc's own
    integration suite sends every request as `//path`; orthanc-api-client asks for `/patients/`).
    The query string is kept as it is.
    """
    path, sep, query = raw.partition("?")
    if "//" not in path and (len(path) <= 1 or not path.endswith("/")):
        return None
    return "/" + "/".join(part for part in path.split("/") if part) + sep + query


def orthanc_method(request: web.Request) -> str | None:
    """The method Orthanc serves for this request, when a client fakes PUT or DELETE (None when
    there is no faking; "" when the faked method is not allowed: Orthanc answers a bare 400).

    Clients that can only send GET and POST fake the others as Google does (header
    `X-HTTP-Method-Override`, any request) or as Ruby on Rails does (`GET ...?_method=DELETE`);
    Orthanc honours PUT and DELETE only.
    """
    faked = request.headers.get("X-HTTP-Method-Override")
    if faked is None and request.method == "GET":
        faked = request.query.get("_method")
    if not faked:
        return None
    faked = faked.upper()
    return faked if faked in ("PUT", "DELETE") else ""


@web.middleware
async def paths_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: the request line as Orthanc reads it. A target with empty path components, or a
    faked method, is dispatched again (routing ran on the raw target, where yarl even reads
    `//system` as a host name, and on the method sent)."""
    if request.get(_DISPATCHED):
        return await handler(request)
    normal = orthanc_path(request.raw_path)
    method = orthanc_method(request)
    if normal is None and method is None:
        return await handler(request)
    if method == "":
        return web.Response(status=400)
    changes: dict[str, object] = {}
    if normal is not None:
        changes["rel_url"] = URL(normal, encoded=True)
    if method is not None and method != request.method:
        changes["method"] = method
    again = request.clone(**changes)  # type: ignore[arg-type]
    again[_DISPATCHED] = True
    return await request.app._handle(again)


def xml_middleware(excluded_prefixes: tuple[str, ...]) -> Middleware:
    """JSON answers become XML for `Accept: application/xml` (Orthanc's REST API does it for
    every route; its plugins, such as DICOMweb under `excluded_prefixes`, do not)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        accept = request.headers.get("Accept")
        if accept and wants_xml(accept) and not request.path.startswith(excluded_prefixes):
            return as_xml(response)
        return response

    return middleware


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer carries `X-Content-Type-Options: nosniff`, as Orthanc 1.12.2+ sends it
    (against MIME-confusion attacks). Registered on the application's `on_response_prepare`."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")


@functools.lru_cache(maxsize=1024)
def is_loopback(remote: str | None) -> bool:
    """Whether a request comes from this host (RemoteAccessAllowed false admits only these)."""
    if not remote:
        return True  # unix socket or test transport
    try:
        return ipaddress.ip_address(remote.split("%")[0]).is_loopback
    except ValueError:
        return False


def basic_credentials(users: Mapping[str, str]) -> dict[str, str]:
    """RegisteredUsers as the tokens of their `Authorization: Basic` header -> user name."""
    return {base64.b64encode(f"{u}:{p}".encode()).decode("ascii"): u for u, p in users.items()}


def basic_user(header: str, credentials: Mapping[str, str]) -> str | None:
    """The registered user an `Authorization` header names (None: refused)."""
    scheme, _, token = header.partition(" ")
    return credentials.get(token.strip()) if scheme.lower() == "basic" else None


def access_middleware(
    remote_access_allowed: bool, authentication_enabled: bool, users: Mapping[str, str]
) -> Middleware:
    """RemoteAccessAllowed (loopback only when false) and HTTP Basic auth from RegisteredUsers."""
    credentials = basic_credentials(users)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.get(FROM_LUA):  # Orthanc's Lua calls its REST API in-process, unauthenticated
            return await handler(request)
        if not remote_access_allowed and not is_loopback(request.remote):
            return web.Response(status=403)  # Orthanc answers both refusals without a body
        if authentication_enabled:
            user = basic_user(request.headers.get("Authorization", ""), credentials)
            if user is None:
                return web.Response(status=401, headers={"WWW-Authenticate": f'Basic realm="{REALM}"'})
            request[USERNAME] = user
        return await handler(request)

    return middleware
