"""Typed application keys shared by the HTTP interfaces (REST and DICOMweb)."""

from __future__ import annotations

from aiohttp import web

from ..core.context import ServerContext

CTX: web.AppKey[ServerContext] = web.AppKey("orthanc_ctx", ServerContext)


def ctx_of(request: web.Request) -> ServerContext:
    """The server context of the application serving `request`."""
    return request.app[CTX]
