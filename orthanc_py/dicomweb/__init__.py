"""DICOMweb under /dicom-web/ (also /v1 and /v2 prefixes, as the Azure DICOM service accepts)."""

from __future__ import annotations

from aiohttp import web

from ..web.appkeys import CTX
from . import changefeed, client, extquery, qido, stow, wado

PREFIXES = ("/dicom-web", "/dicom-web/v1", "/dicom-web/v2", "/v1", "/v2")


def setup(app: web.Application) -> None:
    """Register the DICOMweb routes (the REST layer's context key must already be set)."""
    for prefix in PREFIXES:
        qido.setup(app.router, prefix)
        stow.setup(app.router, prefix)
        wado.setup(app.router, prefix)
        wado.setup_extras(app.router, prefix)
        changefeed.setup(app.router, prefix)
        extquery.setup(app.router, prefix)
    client.setup(app, app[CTX])
    app.router.add_get("/wado", wado.wado_uri)
    app.router.add_get("/dicom-web/wado", wado.wado_uri)
