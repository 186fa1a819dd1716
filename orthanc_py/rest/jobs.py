"""/jobs: list (?expand), one job, cancel."""

from __future__ import annotations

from aiohttp import web

from ..web.responses import bool_arg, json_response
from .common import ctx_of


async def list_jobs(request: web.Request) -> web.StreamResponse:
    jobs = ctx_of(request).jobs.all()
    if bool_arg(request, "expand"):
        return json_response([j.to_json() for j in jobs])
    return json_response([j.id for j in jobs])


async def get_job(request: web.Request) -> web.StreamResponse:
    return json_response(ctx_of(request).jobs.get(request.match_info["id"]).to_json())


async def cancel_job(request: web.Request) -> web.StreamResponse:
    ctx_of(request).jobs.cancel(request.match_info["id"])
    return json_response({})


def setup(router: web.UrlDispatcher) -> None:
    router.add_get("/jobs", list_jobs)
    router.add_get("/jobs/{id}", get_job)
    router.add_post("/jobs/{id}/cancel", cancel_job)
