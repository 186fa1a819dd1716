"""Orthanc's REST API: one module per resource family; `setup` registers them all."""

from __future__ import annotations

from aiohttp import web

from ..core import modifyjob
from ..core.context import ServerContext
from . import (
    admin,
    archive,
    attachments,
    bulk,
    create,
    images,
    instances,
    jobs,
    mergesplit,
    metadata,
    modalities,
    modify,
    peers,
    queries,
    resources,
    scripting,
    settings,
    storagecommitment,
    system,
    tools,
    webdav,
)
from .common import CTX


def setup(app: web.Application, ctx: ServerContext) -> None:
    """Register every REST route on `app`."""
    app[CTX] = ctx
    for module in (
        system,
        tools,
        settings,
        instances,
        images,
        modify,
        mergesplit,
        create,
        resources,
        attachments,
        metadata,
        modalities,
        peers,
        queries,
        jobs,
        admin,
        bulk,
        scripting,
        archive,
        webdav,
        storagecommitment,
    ):
        module.setup(app.router)
    modifyjob.register(ctx)  # ResourceModification jobs can be rebuilt (SaveJobs, resubmit)
    mergesplit.register_jobs(ctx)  # split/merge jobs can be rebuilt from their spec (SaveJobs)
    storagecommitment.register_jobs(ctx)
