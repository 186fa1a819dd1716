"""Orthanc's REST API: one module per resource family; `setup` registers them all.

The modules of the common reads (and of the HTTP fast lane) are imported at start-up; the others
(`LAZY`) when one of their routes is first called (rest/lazy.py, their routes in rest/routes.py).
"""

from __future__ import annotations

import importlib

from aiohttp import web

from ..core import storagecommitment as core_storagecommitment
from ..core.context import ServerContext
from ..model.enums import ResourceType
from ..web.fastlane import FastRoute, RouteKey
from . import images, instances, resources, settings, system, tools
from .common import CTX
from .lazy import LazyArea, job_factory_on_first_use
from .routes import AREAS

# Every area, in the order its routes are registered (the router tries routes in this order).
ORDER = (
    "system",
    "tools",
    "settings",
    "instances",
    "images",
    "modify",
    "mergesplit",
    "create",
    "resources",
    "attachments",
    "metadata",
    "modalities",
    "peers",
    "queries",
    "jobs",
    "admin",
    "bulk",
    "scripting",
    "archive",
    "webdav",
    "storagecommitment",
)
EAGER = {"system": system, "tools": tools, "settings": settings, "instances": instances, "images": images}
EAGER["resources"] = resources
LAZY = tuple(name for name in ORDER if name not in EAGER)

# Job types whose module loads with their area: registered now, their factory on first use.
LAZY_JOB_TYPES = {
    "ResourceModification": ("orthanc_py.core.modifyjob", "register"),
    "SplitStudy": ("orthanc_py.core.mergesplit", "register_jobs"),
    "MergeStudy": ("orthanc_py.core.mergesplit", "register_jobs"),
}


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
    for name in ORDER:
        module = EAGER.get(name)
        if module is not None:
            module.setup(app.router)
        else:
            LazyArea(f"{__name__}.{name}", AREAS[name]).register(app.router)
    # Jobs can be rebuilt from their spec (SaveJobs, resubmit)
    for job_type, (module_name, function) in LAZY_JOB_TYPES.items():

        def register(module_name: str = module_name, function: str = function) -> None:
            getattr(importlib.import_module(module_name), function)(ctx)

        ctx.jobs.register(job_type, job_factory_on_first_use(ctx.jobs, job_type, register))
    core_storagecommitment.register_job_type(ctx)
