"""/modalities: the registry (list, get, put, delete, configuration), C-ECHO and C-STORE SCU."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from ..core import modalities as core_mod
from ..core.jobs import request_priority, request_synchronous
from ..core.storagecommitment import new_transaction_uid
from ..errors import ErrorCode, OrthancError
from ..model.modality import parse_modality
from ..web.responses import bool_arg, json_response, read_body, read_json, text_response
from .common import ctx_of


async def list_modalities(request: web.Request) -> web.StreamResponse:
    reg = ctx_of(request).modalities
    if bool_arg(request, "expand"):
        return json_response({n: reg.get(n).to_json() for n in reg.names()})
    return json_response(reg.names())


async def get_modality(request: web.Request) -> web.StreamResponse:
    name = request.match_info["id"]
    if name not in ctx_of(request).modalities.names():
        return web.Response(status=404)  # Orthanc: an empty 404, as for an unknown route
    return json_response(
        [
            "configuration",
            "echo",
            "find",
            "find-instance",
            "find-patient",
            "find-series",
            "find-study",
            "find-worklist",
            "get",
            "move",
            "query",
            "storage-commitment",
            "store",
            "store-straight",
        ]
    )


async def get_configuration(request: web.Request) -> web.StreamResponse:
    return json_response(ctx_of(request).modalities.get(request.match_info["id"]).to_json())


async def put_modality(request: web.Request) -> web.StreamResponse:
    body = await read_json(request)
    if body is None:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "The body must be a JSON array or object")
    await ctx_of(request).modalities.put(request.match_info["id"], body)
    return text_response("")  # Orthanc answers an empty text/plain body


async def delete_modality(request: web.Request) -> web.StreamResponse:
    await ctx_of(request).modalities.delete(request.match_info["id"])
    return text_response("")


def _echo_options(ctx: Any, body: Any) -> tuple[float | None, bool]:
    """The body's Timeout (seconds, an integer) and CheckFind (default: DicomEchoChecksFind)."""
    if not isinstance(body, dict):
        return None, ctx.settings.dicom_echo_checks_find
    timeout = body.get("Timeout", 0)
    if not isinstance(timeout, int) or isinstance(timeout, bool):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Integer value expected in field: Timeout")
    check_find = body.get("CheckFind", ctx.settings.dicom_echo_checks_find)
    if not isinstance(check_find, bool):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Boolean value expected in field: CheckFind")
    return float(timeout) or None, check_find


async def echo(request: web.Request) -> web.StreamResponse:
    """POST /modalities/{id}/echo: C-ECHO, and a C-FIND with CheckFind (Orthanc 1.8.1)."""
    ctx = ctx_of(request)
    modality = ctx.modalities.get(request.match_info["id"])
    body = await read_json(request) if request.can_read_body else None
    timeout, check_find = _echo_options(ctx, body)
    await ctx.run(ctx.scu.echo, modality, timeout, check_find)
    return json_response({})


async def tools_echo(request: web.Request) -> web.StreamResponse:
    """POST /tools/dicom-echo: C-ECHO a modality described in the body."""
    ctx = ctx_of(request)
    body = await read_json(request)
    try:
        modality = parse_modality(body)
    except ValueError as exc:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, str(exc)) from exc
    timeout, check_find = _echo_options(ctx, body)
    await ctx.run(ctx.scu.echo, modality, timeout, check_find)
    return json_response({})


# Orthanc's public identifiers: five groups of eight hexadecimal digits (a SHA-1)
_ORTHANC_ID = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{8}){4}$")


def _resources(body: Any, raw: bytes) -> tuple[list[str], dict[str, Any]]:
    """Orthanc accepts a bare ID (text), a JSON string, a JSON list, or {"Resources": [...], ...}."""
    if body is None:
        return [raw.decode("utf-8", "replace").strip()], {}
    if isinstance(body, str):
        return [body], {}
    if isinstance(body, list) and all(isinstance(x, str) for x in body):
        return body, {}
    if isinstance(body, dict):
        res = body.get("Resources")
        if isinstance(res, str):
            res = [res]
        if not isinstance(res, list) or not all(isinstance(x, str) for x in res):
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, 'Field "Resources" must be a list of Orthanc identifiers')
        return res, body
    raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Bad body for a C-STORE request")


async def store(request: web.Request) -> web.StreamResponse:
    """POST /modalities/{id}/store: C-STORE resources (synchronously); Orthanc's job summary."""
    ctx = ctx_of(request)
    name = request.match_info["id"]
    modality = ctx.modalities.get(name)
    raw = await request.read()
    body = await read_json(request)
    resources, options = _resources(body, raw)
    for rid in resources:
        if not _ORTHANC_ID.match(rid):
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f"This string is not a valid Orthanc identifier: {rid}")
    for key in ("CalledAet", "Host", "Port", "LocalAet", "Timeout"):
        if key in options:
            override = {
                "AET": modality.aet,
                "Host": modality.host,
                "Port": modality.port,
                "LocalAet": modality.local_aet,
                **{
                    k if k != "CalledAet" else "AET": v
                    for k, v in options.items()
                    if k in ("CalledAet", "Host", "Port", "LocalAet")
                },
            }
            modality = parse_modality(override)
            break

    local_aet = modality.local_aet or ctx.settings.dicom_aet
    # what Orthanc's DicomModalityStore job shows from its start, kept when it fails
    content: dict[str, Any] = {
        "Description": "REST API",
        "FailedInstancesCount": 0,
        "InstancesCount": 0,
        "LocalAet": local_aet,
        "ParentResources": sorted(set(resources)),
        "RemoteAet": modality.aet,
    }
    if not resources:
        del content["ParentResources"]

    commit = options.get("StorageCommitment", False)
    if not isinstance(commit, bool):
        raise OrthancError(ErrorCode.BAD_PARAMETER_TYPE)  # Orthanc gives no details
    if commit:  # the transaction's UID is known (and shown) from the start
        content["StorageCommitmentTransactionUID"] = new_transaction_uid()

    spec = {
        "Modality": name,
        "StorageCommitment": commit,
        "Target": modality.to_json(),
        "Resources": list(resources),
        "MoveOriginatorAet": str(options.get("MoveOriginatorAet", "")),
        "MoveOriginatorID": options.get("MoveOriginatorID"),
        "Permissive": options.get("Permissive") is True,
        "Content": content,
    }
    run = core_mod.store_job(ctx, spec)
    priority = request_priority(options)
    if not request_synchronous(options):
        job = ctx.jobs.submit(core_mod.STORE_JOB, run, priority, spec=spec, user_data=options.get("UserData"))
        job.content.update(content)
        return json_response({"ID": job.id, "Path": f"/jobs/{job.id}"})
    return json_response(await run())


async def store_straight(request: web.Request) -> web.StreamResponse:
    """POST /modalities/{id}/store-straight: the body is a DICOM file, sent as it is."""
    ctx = ctx_of(request)
    modality = ctx.modalities.get(request.match_info["id"])
    data = await read_body(request)
    return json_response(await core_mod.store_straight(ctx, ctx.scu, modality, data))


def setup(router: web.UrlDispatcher) -> None:
    router.add_get("/modalities", list_modalities)
    router.add_get("/modalities/{id}", get_modality)
    router.add_put("/modalities/{id}", put_modality)
    router.add_delete("/modalities/{id}", delete_modality)
    router.add_get("/modalities/{id}/configuration", get_configuration)
    router.add_post("/modalities/{id}/echo", echo)
    router.add_post("/modalities/{id}/store", store)
    router.add_post("/modalities/{id}/store-straight", store_straight)
    router.add_post("/tools/dicom-echo", tools_echo)
