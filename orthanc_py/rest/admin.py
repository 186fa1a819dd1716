"""Administration routes: /tools (list), log levels, metrics, /plugins.

Monitoring setups scrape `/tools/metrics-prometheus`; viewers and admin tools read `/plugins` to
find the DICOMweb service (served natively here, so it is listed as Orthanc lists its plugin).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..core import resources as core_res
from ..errors import ErrorCode, OrthancError
from ..web.responses import json_response, read_bool, read_text, text_response
from .common import ctx_of

# Orthanc's log categories -> our loggers (the first one answers GET)
LOG_CATEGORIES: dict[str, tuple[str, ...]] = {
    "generic": ("orthanc_py", "orthanc_py.config", "orthanc_py.extquery"),
    "plugins": ("orthanc_py.plugins", "orthanc_py.stow"),
    "http": ("orthanc_py.http", "aiohttp"),
    "sqlite": ("orthanc_py.index",),
    "dicom": ("orthanc_py.dimse", "orthanc_py.scu", "orthanc_py.modalities", "pynetdicom"),
    "jobs": ("orthanc_py.jobs",),
    "lua": ("orthanc_py.lua",),
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_LEVELS = {"default": logging.WARNING, "verbose": logging.INFO, "trace": logging.DEBUG}

DICOMWEB_PLUGIN = {
    "Description": "Implementation of DICOMweb (QIDO-RS, STOW-RS and WADO-RS) and WADO-URI.",
    "ExtendsOrthancExplorer": False,
    "ID": "dicom-web",
    "Version": "1.20",
}
PLUGINS = {"dicom-web": DICOMWEB_PLUGIN}
EXPLORER_JS = "// Extensions to Orthanc Explorer by the registered plugins\n"


def _level_name(level: int) -> str:
    if level <= logging.DEBUG:
        return "trace"
    return "verbose" if level <= logging.INFO else "default"


def _verbosity(text: str) -> int:
    if text not in _LEVELS:
        details = f'Verbosity can be "default", "verbose" or "trace": {text}'
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, details)
    return _LEVELS[text]


def set_category(category: str, level: int) -> None:
    for name in LOG_CATEGORIES[category]:
        logging.getLogger(name).setLevel(level)


def category_level(category: str) -> int:
    return logging.getLogger(LOG_CATEGORIES[category][0]).getEffectiveLevel()


async def get_log_level(request: web.Request) -> web.StreamResponse:
    """The most verbose category, as Orthanc answers it."""
    return text_response(_level_name(min(category_level(c) for c in LOG_CATEGORIES)))


async def put_log_level(request: web.Request) -> web.StreamResponse:
    level = _verbosity(await read_text(request))
    for category in LOG_CATEGORIES:
        set_category(category, level)
    return text_response("")


def _category_routes(category: str) -> tuple[Handler, Handler]:
    async def get(request: web.Request) -> web.StreamResponse:
        return text_response(_level_name(category_level(category)))

    async def put(request: web.Request) -> web.StreamResponse:
        set_category(category, _verbosity(await read_text(request)))
        return text_response("")

    return get, put


async def get_metrics_enabled(request: web.Request) -> web.StreamResponse:
    return text_response("1" if ctx_of(request).metrics_enabled else "0")


async def put_metrics_enabled(request: web.Request) -> web.StreamResponse:
    ctx_of(request).metrics_enabled = await read_bool(request)
    return text_response("")


async def metrics_prometheus(request: web.Request) -> web.StreamResponse:
    """Orthanc's metric names, one `name value timestamp-ms` line each; empty when disabled."""
    ctx = ctx_of(request)
    content_type = "text/plain; version=0.0.4"
    if not ctx.metrics_enabled:
        return text_response("", content_type)
    s = await core_res.global_statistics(ctx)
    states = [job.state for job in ctx.jobs.all()]
    values = {
        "orthanc_count_instances": s["instances"],
        "orthanc_count_patients": s["patients"],
        "orthanc_count_series": s["series"],
        "orthanc_count_studies": s["studies"],
        "orthanc_disk_size_mb": s["disk"] / (1024 * 1024),
        "orthanc_jobs_completed": sum(st in ("Success", "Failure") for st in states),
        "orthanc_jobs_failed": states.count("Failure"),
        "orthanc_jobs_pending": states.count("Pending"),
        "orthanc_jobs_running": states.count("Running"),
        "orthanc_jobs_success": states.count("Success"),
        "orthanc_uncompressed_size_mb": s["uncompressed"] / (1024 * 1024),
    }
    now = int(time.time() * 1000)
    lines = [f"{name} {value:g} {now}\n" for name, value in values.items()]
    return text_response("".join(lines), content_type)


async def list_plugins(request: web.Request) -> web.StreamResponse:
    return json_response(["explorer.js", *PLUGINS])


async def get_plugin(request: web.Request) -> web.StreamResponse:
    plugin = PLUGINS.get(request.match_info["id"])
    if plugin is None:
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, "Unknown plugin")
    return json_response(plugin)


async def explorer_js(request: web.Request) -> web.StreamResponse:
    return text_response(EXPLORER_JS, "application/javascript")


def tools_list(router: web.UrlDispatcher) -> list[str]:
    """The /tools/{name} routes the router knows (Orthanc lists its tools at GET /tools)."""
    names = set()
    for resource in router.resources():
        path = resource.canonical
        if path.startswith("/tools/") and path.count("/") == 2 and "{" not in path:
            names.add(path[len("/tools/") :])
    return sorted(names)


def setup(router: web.UrlDispatcher) -> None:
    async def tools(request: web.Request) -> web.StreamResponse:
        return json_response(tools_list(request.app.router))

    router.add_get("/tools", tools)
    router.add_get("/tools/log-level", get_log_level)
    router.add_put("/tools/log-level", put_log_level)
    for category in LOG_CATEGORIES:
        get, put = _category_routes(category)
        router.add_get(f"/tools/log-level-{category}", get)
        router.add_put(f"/tools/log-level-{category}", put)
    router.add_get("/tools/metrics", get_metrics_enabled)
    router.add_put("/tools/metrics", put_metrics_enabled)
    router.add_get("/tools/metrics-prometheus", metrics_prometheus)
    router.add_get("/plugins", list_plugins)
    router.add_get("/plugins/explorer.js", explorer_js)
    router.add_get("/plugins/{id}", get_plugin)
