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
from .responses import json_response

log = logging.getLogger("orthanc_py.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REALM = "Orthanc Secure Area"
USERNAME: web.RequestKey[str] = web.RequestKey("username", str)
_ORTHANC_METHODS = ("GET", "POST", "DELETE", "PUT")


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
    return body


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Internal Server Error"


def error_response(request: web.Request, err: OrthancError) -> web.Response:
    """Orthanc's error JSON. (Orthanc 1.10.1 sends it without Content-Type; aiohttp always sends
    one, and application/json is the truthful one.)"""
    return json_response(error_body(request, err), status=err.http_status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except OrthancError as err:
        return error_response(request, err)
    except web.HTTPMethodNotAllowed as exc:
        if request.method not in _ORTHANC_METHODS:  # Orthanc: unknown verbs are a bare 400
            return web.Response(status=400)
        allow = ",".join(m for m in _ORTHANC_METHODS if m in exc.allowed_methods)
        return web.Response(status=405, headers={"Allow": allow})
    except web.HTTPNotFound:
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


@web.middleware
async def paths_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: a target with empty path components is dispatched again, normalised (routing
    ran on the raw target, where yarl even reads `//system` as a host name)."""
    normal = orthanc_path(request.raw_path)
    if normal is None:
        return await handler(request)
    return await request.app._handle(request.clone(rel_url=URL(normal, encoded=True)))


@functools.lru_cache(maxsize=1024)
def _is_loopback(remote: str | None) -> bool:
    if not remote:
        return True  # unix socket or test transport
    try:
        return ipaddress.ip_address(remote.split("%")[0]).is_loopback
    except ValueError:
        return False


def access_middleware(
    remote_access_allowed: bool, authentication_enabled: bool, users: Mapping[str, str]
) -> Middleware:
    """RemoteAccessAllowed (loopback only when false) and HTTP Basic auth from RegisteredUsers."""
    credentials = {base64.b64encode(f"{u}:{p}".encode()).decode("ascii"): u for u, p in users.items()}

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not remote_access_allowed and not _is_loopback(request.remote):
            return web.Response(status=403, text="Remote access is disabled", content_type="text/plain")
        if authentication_enabled:
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            user = credentials.get(token.strip()) if scheme.lower() == "basic" else None
            if user is None:
                return web.Response(
                    status=401,
                    headers={"WWW-Authenticate": f'Basic realm="{REALM}"'},
                    text="Unauthorized",
                    content_type="text/plain",
                )
            request[USERNAME] = user
        return await handler(request)

    return middleware
