"""/system, /statistics, /changes, /exports and the small /tools routes."""

from __future__ import annotations

import asyncio
import datetime as _dt
import functools
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from .. import DATABASE_VERSION, ORTHANC_API_VERSION, ORTHANC_VERSION
from ..core import logs as core_logs
from ..core import resources as core_res
from ..model.enums import ResourceType
from ..web.responses import json_response, text_response
from .common import ctx_of, int_arg
from .render import change_json, export_json, global_statistics_json

MAX_CHANGES = 10000
DEFAULT_CHANGES = 100


@functools.cache
def _main_tags_text(signatures: tuple[tuple[ResourceType, str], ...]) -> dict[str, str]:
    """/system's MainDicomTags: each level's MainDicomTagsSignature, `ExtraMainDicomTags`
    included (computed once: formatting them took most of the request's time)."""
    return {level.label: text for level, text in signatures}


async def system(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    s = ctx.settings
    main_tags = _main_tags_text(tuple(ctx.main_tags.signatures.items()))
    return json_response(
        {
            "ApiVersion": ORTHANC_API_VERSION,
            "Capabilities": {"HasExtendedChanges": False, "HasExtendedFind": True},
            "CheckRevisions": s.check_revisions,
            "DatabaseBackendPlugin": None,
            "DatabaseServerIdentifier": "Orthanc",
            "DatabaseVersion": DATABASE_VERSION,
            "DicomAet": s.dicom_aet,
            "DicomPort": s.dicom_port,
            "HasLabels": True,
            "HttpPort": s.http_port,
            "IngestTranscoding": "",
            "IsHttpServerSecure": s.authentication_enabled or not s.remote_access_allowed,
            "MainDicomTags": main_tags,
            "MaximumPatientCount": s.maximum_patient_count,
            "MaximumStorageMode": s.maximum_storage_mode,
            "MaximumStorageSize": s.maximum_storage_size_mb,
            "Name": s.name,
            "OverwriteInstances": s.overwrite_instances,
            "PluginsEnabled": False,
            "ReadOnly": s.read_only,
            "StorageAreaPlugin": None,
            "StorageCompression": s.storage_compression,
            "UserMetadata": dict(s.user_metadata),
            "Version": ORTHANC_VERSION,
        }
    )


_QUERY_RETRIEVE = {
    "Find": ("1.2.840.10008.5.1.4.1.2.1.1", "1.2.840.10008.5.1.4.1.2.2.1"),
    "Move": ("1.2.840.10008.5.1.4.1.2.1.2", "1.2.840.10008.5.1.4.1.2.2.2"),
    "Get": ("1.2.840.10008.5.1.4.1.2.1.3", "1.2.840.10008.5.1.4.1.2.2.3"),
}


def conformance_statement(transfer_syntaxes: Sequence[str], unknown_sop_class_accepted: bool) -> str:
    """Our DICOM conformance statement, from what the DICOM server actually negotiates: the
    SOP classes of each service it provides as SCP, and the transfer syntaxes in force."""
    from pydicom.uid import UID
    from pynetdicom import AllStoragePresentationContexts  # the storage classes the SCP accepts

    def section(title: str, uids: Sequence[str]) -> list[str]:
        names = sorted((UID(uid).name, uid) for uid in uids)
        width = max(len(name) for name, _ in names)
        return [title, "-" * len(title), "", *(f"  {name.ljust(width)} | {uid}" for name, uid in names), ""]

    lines = ["DICOM conformance statement of orthanc_py (Orthanc-compatible server)", "=" * 70, ""]
    lines += section("Verification SCP (C-ECHO)", ["1.2.840.10008.1.1"])
    storage = [str(cx.abstract_syntax) for cx in AllStoragePresentationContexts]
    lines += section("Storage SCP (C-STORE)", storage)
    if unknown_sop_class_accepted:
        lines += ["  Other SOP classes are accepted as well (UnknownSopClassAccepted).", ""]
    for service, uids in _QUERY_RETRIEVE.items():
        lines += section(f"Query/Retrieve SCP (C-{service.upper()})", uids)
    lines += section("Accepted transfer syntaxes", transfer_syntaxes)
    return "\n".join(lines)


async def dicom_conformance(request: web.Request) -> web.StreamResponse:
    """GET /tools/dicom-conformance: the conformance statement, as text."""
    ctx = ctx_of(request)
    text = await ctx.run(conformance_statement, ctx.accepted_transfer_syntaxes, ctx.unknown_sop_class_accepted)
    return text_response(text)


async def invalidate_tags(request: web.Request) -> web.StreamResponse:
    """POST /tools/invalidate-tags: Orthanc drops the DICOM-as-JSON caches it keeps next to each
    file; tags are always read from the stored file here, so there is nothing to drop."""
    return text_response("")


async def statistics(request: web.Request) -> web.StreamResponse:
    return json_response(global_statistics_json(await core_res.global_statistics(ctx_of(request))))


async def _log_page(
    request: web.Request, log: str, key: str, render: Callable[[Any], dict[str, Any]]
) -> web.StreamResponse:
    """Orthanc's paged logs (/changes, /exports): `since`/`limit` give a page with `Done` and
    `Last`; `?last` gives the newest entry only."""
    ctx = ctx_of(request)
    if "last" in request.query:
        found = await core_logs.newest(ctx, log)
    else:
        since = int_arg(request, "since")
        limit = min(int_arg(request, "limit", DEFAULT_CHANGES), MAX_CHANGES)
        found = await core_logs.page(ctx, log, since, limit)
    return json_response({key: [render(c) for c in found.items], "Done": found.done, "Last": found.last})


async def get_changes(request: web.Request) -> web.StreamResponse:
    return await _log_page(request, "changes", "Changes", change_json)


async def get_exports(request: web.Request) -> web.StreamResponse:
    return await _log_page(request, "exports", "Exports", export_json)


async def delete_changes(request: web.Request) -> web.StreamResponse:
    await core_logs.clear(ctx_of(request), "changes")
    return json_response({})


async def delete_exports(request: web.Request) -> web.StreamResponse:
    await core_logs.clear(ctx_of(request), "exports")
    return json_response({})


async def now_utc(request: web.Request) -> web.StreamResponse:
    return text_response(_dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S"))


async def now_local(request: web.Request) -> web.StreamResponse:
    return text_response(_dt.datetime.now().strftime("%Y%m%dT%H%M%S"))


_UID_ROOTS = {
    ResourceType.PATIENT: "1.2.276.0.7230010.3.1.1.",
    ResourceType.STUDY: "1.2.276.0.7230010.3.1.2.",
    ResourceType.SERIES: "1.2.276.0.7230010.3.1.3.",
    ResourceType.INSTANCE: "1.2.276.0.7230010.3.1.4.",
}


async def generate_uid_route(request: web.Request) -> web.StreamResponse:
    """GET /tools/generate-uid?level=...: a fresh UID under DCMTK's root, as Orthanc gives."""
    from pydicom.uid import generate_uid

    text = request.query.get("level", "")
    try:
        level = ResourceType.parse(text)
    except ValueError:
        return web.Response(status=404)
    if level is ResourceType.PATIENT:  # Orthanc generates a UUID for patients
        return text_response(str(uuid.uuid4()))
    return text_response(generate_uid(prefix=_UID_ROOTS[level]))


async def shutdown(request: web.Request) -> web.StreamResponse:
    """POST /tools/shutdown: answer, then stop the server gracefully."""
    asyncio.get_running_loop().call_later(0.1, ctx_of(request).shutdown_requested)
    return json_response({})


async def reset(request: web.Request) -> web.StreamResponse:
    """POST /tools/reset: Orthanc reloads its configuration; ours is read once, so this is a no-op."""
    return json_response({})


async def root_redirect(request: web.Request) -> web.StreamResponse:
    return web.Response(status=301, headers={"Location": "app/explorer.html"})


def setup(router: web.UrlDispatcher) -> None:
    router.add_get("/", root_redirect)
    router.add_get("/system", system)
    router.add_get("/statistics", statistics)
    router.add_get("/changes", get_changes)
    router.add_delete("/changes", delete_changes)
    router.add_get("/exports", get_exports)
    router.add_delete("/exports", delete_exports)
    router.add_get("/tools/now", now_utc)
    router.add_get("/tools/now-local", now_local)
    router.add_get("/tools/generate-uid", generate_uid_route)
    router.add_post("/tools/shutdown", shutdown)
    router.add_post("/tools/reset", reset)
    router.add_get("/tools/dicom-conformance", dicom_conformance)
    router.add_post("/tools/invalidate-tags", invalidate_tags)
