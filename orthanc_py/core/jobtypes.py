"""The job types that can be rebuilt from their spec (SaveJobs after a restart, resubmit): the
DICOM network jobs of Orthanc (DicomModalityStore, DicomMoveScu, DicomGetScu). A spec holds
only JSON: the modality's configuration, resource IDs or query keys, and the Content the job
shows from its start."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..model.enums import ResourceType
from ..model.modality import parse_modality
from ..remote.modalities import DimseFailure
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


async def _retrieve_each(
    job: Job | None,
    spec: dict[str, Any],
    identifiers: list[Any],
    queries: list[Any],
    one: Callable[[Any], Awaitable[list[str]]],
) -> dict[str, Any]:
    """The body shared by C-MOVE and C-GET jobs: one retrieve per identifier, a checkpoint
    between two. As Orthanc 1.12.10, "Details" has an entry per identifier from the start (its
    query, its DIMSE status, the instances it brought here); with "Permissive" a failed one is
    reported there and the others still run; without, the failure carries the details."""
    content: dict[str, Any] = job.content if job is not None else {}
    content.update(spec.get("Content", {}))
    details = [{"DimseErrorStatus": 0, "Query": q, "ReceivedInstancesIds": []} for q in queries]
    content["Details"] = details
    for n, identifier in enumerate(identifiers):
        if job is not None:
            await job.checkpoint(n * 100 / len(identifiers))
        try:
            details[n]["ReceivedInstancesIds"] = await one(identifier)
        except DimseFailure as err:
            details[n]["DimseErrorStatus"] = err.status
            if spec.get("Permissive") is not True:
                err.payload = {"Content": details, "Type": "RetrieveJob"}
                raise
    return dict(sorted(content.items()))


def move_job(ctx: ServerContext, spec: dict[str, Any]) -> Run:
    """DicomMoveScu: {"Target": modality configuration, "Level", "Identifiers": [keys],
    "TargetAet", "Content", "DetailsQuery": each identifier as "Details" shows it, "Permissive"}."""
    modality = parse_modality(spec["Target"])
    level = ResourceType.parse(str(spec["Level"]))
    identifiers = [core_q.strings_dataset(_keys(i)) for i in spec.get("Identifiers", [])]
    target = str(spec.get("TargetAet", ""))
    queries = list(spec.get("DetailsQuery") or spec.get("Content", {}).get("Query", []))

    async def one(identifier: Any) -> list[str]:
        (received,) = await core_q.retrieve(ctx, modality, level, [identifier], target)
        return received

    async def run(job: Job | None = None) -> dict[str, Any]:
        return await _retrieve_each(job, spec, identifiers, queries, one)

    return run


def get_job(ctx: ServerContext, spec: dict[str, Any]) -> Run:
    """DicomGetScu: {"Target", "Level", "Identifiers", "Content", "Permissive"} (Content's
    "Query" has one entry per identifier): one C-GET per identifier."""
    modality = parse_modality(spec["Target"])
    level = ResourceType.parse(str(spec["Level"]))
    identifiers = [core_q.strings_dataset(_keys(i)) for i in spec.get("Identifiers", [])]
    queries = list(spec.get("Content", {}).get("Query", []))

    async def one(identifier: Any) -> list[str]:
        (received,) = await core_q.retrieve_get(ctx, modality, level, [identifier])
        return received

    async def run(job: Job | None = None) -> dict[str, Any]:
        return await _retrieve_each(job, spec, identifiers, queries, one)

    return run


def register_job_types(ctx: ServerContext) -> None:
    """Tell the jobs engine how to rebuild these jobs (before saved jobs are taken up)."""
    ctx.jobs.register(modalities.STORE_JOB, lambda spec: modalities.store_job(ctx, spec))
    ctx.jobs.register(MOVE_JOB, lambda spec: move_job(ctx, spec))
    ctx.jobs.register(GET_JOB, lambda spec: get_job(ctx, spec))
    peers.register(ctx)
