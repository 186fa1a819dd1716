"""Storage commitment SCU routes (Orthanc Book, "DICOM storage commitment"):
POST /modalities/{id}/storage-commitment, GET /storage-commitment/{id} and
POST /storage-commitment/{id}/remove, with Orthanc 1.10.1's checks and messages."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..core import storagecommitment as core_sc
from ..core.context import ServerContext
from ..errors import ErrorCode, OrthancError
from ..model.modality import Modality
from ..model.styledjson import styled
from ..web.responses import json_response, read_json
from .common import ctx_of

_RESOURCES = "Resources"
_INSTANCES = "DicomInstances"


def _bad(details: str) -> OrthancError:
    return OrthancError(ErrorCode.BAD_FILE_FORMAT, details)


def _dicom_instances(value: Any) -> list[tuple[str, str]]:
    """DicomInstances: [SOP class, SOP instance] arrays or {"SOPClassUID", "SOPInstanceUID"}."""
    if not isinstance(value, list):
        raise _bad(f'The "{_INSTANCES}" field must provide an array of DICOM instances')
    pairs = []
    for item in value:
        if isinstance(item, list):
            if len(item) != 2 or not all(isinstance(x, str) for x in item):
                raise _bad("An instance entry must provide an array with 2 strings: SOP Class UID and SOP Instance UID")
            pairs.append((item[0], item[1]))
        elif isinstance(item, dict):
            sop_class, sop_instance = item.get("SOPClassUID"), item.get("SOPInstanceUID")
            if not isinstance(sop_class, str) or not isinstance(sop_instance, str):
                # Orthanc 1.10.1's words, typo and missing quote included
                raise _bad(
                    'An instance entry must provide an object with 2 string fiels: "SOPClassUID" and "SOPInstanceUID'
                )
            pairs.append((sop_class, sop_instance))
        else:
            raise _bad(f"JSON array or object is expected to specify one instance to be queried, found: {styled(item)}")
    return pairs


def timeout_field(body: dict[str, Any]) -> float | None:
    """The optional "Timeout" (seconds, an unsigned integer), as Orthanc reads it."""
    if "Timeout" not in body:
        return None
    value = body["Timeout"]
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad("Integer value expected in field: Timeout")
    if value < 0:
        raise _bad("Unsigned integer value expected in field: Timeout")
    return float(value) or None


def modality_named(request: web.Request) -> Modality:
    """The modality of the URL; Orthanc's 404 and words when there is none."""
    ctx = ctx_of(request)
    name = request.match_info["id"]
    if name not in ctx.modalities.names():
        raise OrthancError(ErrorCode.INEXISTENT_ITEM, f"No modality with symbolic name: {name}")
    return ctx.modalities.get(name)


async def request_commitment(request: web.Request) -> web.StreamResponse:
    """POST /modalities/{id}/storage-commitment: an N-ACTION for the instances under "Resources"
    (Orthanc IDs) and those of "DicomInstances"; the transaction's ID and Path."""
    ctx = ctx_of(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise _bad("Must provide a JSON object with a list of resources")
    if _RESOURCES not in body and _INSTANCES not in body:
        raise _bad(
            f'Empty storage commitment request, one of these fields is mandatory: "{_RESOURCES}" or "{_INSTANCES}"'
        )
    pairs: list[tuple[str, str]] = []
    if _RESOURCES in body:
        resources = body[_RESOURCES]
        if not isinstance(resources, list):
            raise _bad(f'The "{_RESOURCES}" field must provide an array of Orthanc resources')
        for item in resources:
            if not isinstance(item, str):
                raise _bad(f'The "{_RESOURCES}" field must provide an array of strings, found: {styled(item)}')
        pairs += await core_sc.instances_of(ctx, resources)
    if _INSTANCES in body:
        pairs += _dicom_instances(body[_INSTANCES])
    modality = modality_named(request)
    timeout = timeout_field(body)
    uid = await core_sc.request(ctx, modality, ctx.settings.dicom_aet, pairs, timeout)
    return json_response({"ID": uid, "Path": f"/storage-commitment/{uid}"})


async def get_report(request: web.Request) -> web.StreamResponse:
    """GET /storage-commitment/{id}: Pending until the peer's report came, then its lists."""
    return json_response(core_sc.report_json(ctx_of(request), request.match_info["id"]))


async def remove(request: web.Request) -> web.StreamResponse:
    """POST /storage-commitment/{id}/remove: delete the instances the peer committed to."""
    await core_sc.remove_committed(ctx_of(request), request.match_info["id"])
    return web.Response(body=b"{}", content_type="application/json")  # Orthanc's bare "{}"


def register_jobs(ctx: ServerContext) -> None:
    """StorageCommitmentScp jobs can be rebuilt from their spec (SaveJobs, resubmit)."""
    core_sc.register_job_type(ctx)


def setup(router: web.UrlDispatcher) -> None:
    router.add_post("/modalities/{id}/storage-commitment", request_commitment)
    router.add_get("/storage-commitment/{id}", get_report)
    router.add_post("/storage-commitment/{id}/remove", remove)
