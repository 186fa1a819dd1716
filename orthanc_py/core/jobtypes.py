"""The job types that can be rebuilt from their spec (SaveJobs after a restart, resubmit): the
DICOM network jobs of Orthanc (DicomModalityStore, DicomMoveScu, DicomGetScu). A spec holds
only JSON: the modality's configuration, resource IDs or query keys, and the Content the job
shows from its start."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..model.enums import ResourceType
from ..model.modality import parse_modality
from . import modalities, peers
from . import queries as core_q
from .context import ServerContext
from .jobs import Job

MOVE_JOB = "DicomMoveScu"
GET_JOB = "DicomGetScu"

Run = Callable[..., Awaitable[dict[str, Any]]]


def keys_json(tags: dict[int, str]) -> dict[str, str]:
    """Query keys as a spec holds them ({"0020000D": value})."""
    return {f"{t:08X}": v for t, v in tags.items()}


def _keys(spec_keys: dict[str, str]) -> dict[int, str]:
    return {int(t, 16): str(v) for t, v in spec_keys.items()}


def move_job(ctx: ServerContext, spec: dict[str, Any]) -> Run:
    """DicomMoveScu: {"Target": modality configuration, "Level", "Identifiers": [keys],
    "TargetAet", "Content"}: one C-MOVE per identifier, a checkpoint between two."""
    modality = parse_modality(spec["Target"])
    level = ResourceType.parse(str(spec["Level"]))
    identifiers = [core_q.strings_dataset(_keys(i)) for i in spec.get("Identifiers", [])]
    target = str(spec.get("TargetAet", ""))

    async def run(job: Job | None = None) -> dict[str, Any]:
        content: dict[str, Any] = job.content if job is not None else {}
        content.update(spec.get("Content", {}))
        for n, identifier in enumerate(identifiers):
            if job is not None:
                await job.checkpoint(n * 100 / len(identifiers))
            await core_q.retrieve(ctx, modality, level, [identifier], target)
        return content

    return run


def get_job(ctx: ServerContext, spec: dict[str, Any]) -> Run:
    """DicomGetScu: {"Target", "Level", "Identifiers", "Content"} (Content's "Query" has one
    entry per identifier): one C-GET per identifier; "Details" lists what each brought."""
    modality = parse_modality(spec["Target"])
    level = ResourceType.parse(str(spec["Level"]))
    identifiers = [core_q.strings_dataset(_keys(i)) for i in spec.get("Identifiers", [])]

    async def run(job: Job | None = None) -> dict[str, Any]:
        content: dict[str, Any] = job.content if job is not None else {}
        content.update(spec.get("Content", {}))
        queries = content.get("Query", [])
        details = []
        for n, identifier in enumerate(identifiers):
            if job is not None:
                await job.checkpoint(n * 100 / len(identifiers))
            (received,) = await core_q.retrieve_get(ctx, modality, level, [identifier])
            query = queries[n] if n < len(queries) else {}
            details.append({"DimseErrorStatus": 0, "Query": query, "ReceivedInstancesIds": received})
        content["Details"] = details
        return dict(sorted(content.items()))

    return run


def register_job_types(ctx: ServerContext) -> None:
    """Tell the jobs engine how to rebuild these jobs (before saved jobs are taken up)."""
    ctx.jobs.register(modalities.STORE_JOB, lambda spec: modalities.store_job(ctx, spec))
    ctx.jobs.register(MOVE_JOB, lambda spec: move_job(ctx, spec))
    ctx.jobs.register(GET_JOB, lambda spec: get_job(ctx, spec))
    peers.register(ctx)
