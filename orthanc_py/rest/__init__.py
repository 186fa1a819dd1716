"""Orthanc's REST API: one module per resource family; `setup` registers them all."""

from __future__ import annotations

from aiohttp import web

from ..core import modifyjob
from ..core.context import ServerContext
from ..model.enums import ResourceType
from ..web.fastlane import FastRoute, RouteKey
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


def fast_routes(ctx: ServerContext) -> dict[RouteKey, FastRoute]:
    """The routes of the HTTP fast lane (web/fastlane.py), each the plain case of its handler."""
    routes: dict[RouteKey, FastRoute] = {(level.plural, None): resources.fast_get(ctx, level) for level in ResourceType}
    routes["instances", "file"] = instances.fast_file(ctx)
    routes["instances", "tags"] = instances.fast_tags(ctx, "full")
    routes["instances", "simplified-tags"] = instances.fast_tags(ctx, "simplify")
    routes["instances", "preview"] = images.fast_preview(ctx)
    return routes


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
