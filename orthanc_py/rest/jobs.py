"""/jobs: the list (?expand), one job, its actions (pause, resume, cancel, resubmit), its
deletion from the history and its outputs; answers as Orthanc's OrthancRestSystem.cpp."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from ..core.jobs import JobsEngine
from ..errors import ErrorCode, OrthancError
from ..web.responses import bool_arg, content_disposition, json_response
from .common import ctx_of, empty_404


async def list_jobs(request: web.Request) -> web.StreamResponse:
    jobs = sorted(ctx_of(request).jobs.all(), key=lambda j: j.id)  # Orthanc: a std::set of ids
    if bool_arg(request, "expand"):
        return json_response([j.to_json() for j in jobs])
    return json_response([j.id for j in jobs])


async def get_job(request: web.Request) -> web.StreamResponse:
    job = ctx_of(request).jobs.find(request.match_info["id"])
    if job is None:
        return empty_404()  # Orthanc answers nothing
    return json_response(job.to_json())


async def delete_job(request: web.Request) -> web.StreamResponse:
    """DELETE /jobs/{id} (Orthanc 1.12.2): a finished job leaves the history, with its outputs;
    a job still pending, running or paused must be cancelled first."""
    job_id = request.match_info["id"]
    if not ctx_of(request).jobs.delete(job_id):
        raise OrthancError(ErrorCode.INEXISTENT_ITEM, f"No job found with this id: {job_id}")
    return web.Response(body=b"", content_type="text/plain")


def _action(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        """POST /jobs/{id}/<action>: {} when done; an unknown job, or an action its state does
        not allow (resume of a job not paused, resubmit of a job not failed), is an empty 400."""
        engine: JobsEngine = ctx_of(request).jobs
        action: Callable[[str], bool] = getattr(engine, name)
        if not action(request.match_info["id"]):
            return web.Response(status=400)
        return json_response({})

    return handler


async def get_output(request: web.Request) -> web.StreamResponse:
    """GET /jobs/{id}/{key}: an output of a successful job (e.g. "archive")."""
    key = request.match_info["key"]
    found = ctx_of(request).jobs.output(request.match_info["id"], key)
    if found is None:
        raise OrthancError(ErrorCode.INEXISTENT_ITEM, f"Job has no such output: {key}")
    body, mime, filename = found
    headers = {"Content-Type": mime}
    if filename:
        headers["Content-Disposition"] = content_disposition(filename)
    if isinstance(body, Path):
        if not body.is_file():
            raise OrthancError(ErrorCode.INEXISTENT_ITEM, f"Job has no such output: {key}")
        return web.FileResponse(body, headers=headers)
    return web.Response(body=body, headers=headers)


async def delete_output(request: web.Request) -> web.StreamResponse:
    """DELETE /jobs/{id}/{key} (Orthanc 1.12.1): the output is gone, the job stays."""
    key = request.match_info["key"]
    if not ctx_of(request).jobs.delete_output(request.match_info["id"], key):
        raise OrthancError(ErrorCode.INEXISTENT_ITEM, f"Job has no such output: {key}")
    return web.Response(body=b"", content_type="text/plain")


def setup(router: web.UrlDispatcher) -> None:
    router.add_get("/jobs", list_jobs)
    router.add_get("/jobs/{id}", get_job)
    router.add_delete("/jobs/{id}", delete_job)
    for action in ("cancel", "pause", "resubmit", "resume"):
        router.add_post(f"/jobs/{{id}}/{action}", _action(action))
    router.add_get("/jobs/{id}/{key}", get_output)
    router.add_delete("/jobs/{id}/{key}", delete_output)
