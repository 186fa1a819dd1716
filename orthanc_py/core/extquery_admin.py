"""Changing extended query tags (the DICOMweb /extendedquerytags services): add, with the
re-index job that indexes the stored instances; update; delete; the indexing errors; and, at
start, resuming a re-index a stop interrupted. What ingest and QIDO-RS read is in extquery.py."""

from __future__ import annotations

import asyncio
import datetime
import functools
from collections.abc import Sequence
from typing import Any

from ..index.base import ExtTagRow, Transaction
from ..model import extquery as eq
from ..model.enums import FileContentType, ResourceType
from .context import ServerContext
from .extquery import JOB_TYPE, _bad, _conflict, _norm, lookup, storage_tag
from .jobs import Job

_CHUNK = 200


async def add(ctx: ServerContext, body: Any) -> Job:
    """Validate and record new tags, then start their re-index job (returned)."""
    try:
        defs = eq.parse_definitions(body, eq.default_searchable())
    except eq.InvalidDefinition as exc:
        raise _bad(str(exc)) from exc
    running = ctx.ext_tags.running_operation()
    if running is not None:
        raise _conflict(f"There is an existing re-index operation {running.replace('-', '')}.")
    if any(ctx.ext_tags.by_tag(d.tag) is not None for d in defs):
        raise _conflict("One or more extended query tags already exist.")
    if len(ctx.ext_tags.rows) + len(defs) > eq.MAX_TAGS:
        raise _conflict(f"Extended query tags exceeds max allowed count '{eq.MAX_TAGS}'.")
    ready = asyncio.Event()
    keys: list[int] = []

    async def run(job: Job) -> dict[str, Any]:
        await ready.wait()
        return await _reindex(ctx, job, keys)

    job = ctx.jobs.submit(JOB_TYPE, run)

    def record(txn: Transaction) -> None:
        for d in defs:
            keys.append(txn.add_ext_tag(d.tag, d.private_creator, d.vr, int(d.level), job.id))
        ctx.ext_tags.refresh(txn)

    try:
        await ctx.index.write(record)
    except BaseException:
        ctx.jobs.cancel(job.id)
        raise
    job.content.update({"Tags": [d.path for d in defs]})
    ready.set()
    return job


async def delete(ctx: ServerContext, path: str) -> None:
    row = lookup(ctx, path)

    def run(txn: Transaction) -> None:
        keep_values = eq.indexed_already(row.tag, row.private_creator)  # a main tag's rows stay
        txn.delete_ext_tag(row.key, None if keep_values else storage_tag(row))
        ctx.ext_tags.refresh(txn)

    await ctx.index.write(run)


async def update(ctx: ServerContext, path: str, body: Any) -> ExtTagRow:
    row = lookup(ctx, path)
    if not isinstance(body, dict) or not body:
        raise _bad("The request body must be a JSON object with QueryStatus.")
    unknown = [k for k in body if k.lower() != "querystatus"]
    if unknown:
        raise _bad(f"The request body contains unsupported keys: {', '.join(unknown)}.")
    status = next(iter(body.values()))
    if not isinstance(status, str) or status.lower() not in ("enabled", "disabled"):
        raise _bad(f"Expected value '{status}' to be one of the following values: ['Disabled', 'Enabled']")

    def run(txn: Transaction) -> ExtTagRow:
        txn.update_ext_tag(row.key, query_status=status.capitalize())
        ctx.ext_tags.refresh(txn)
        return next(r for r in ctx.ext_tags.rows if r.key == row.key)

    return await ctx.index.write(run)


async def errors(ctx: ServerContext, path: str, offset: int, limit: int) -> list[dict[str, str]]:
    row = lookup(ctx, path)
    found = await ctx.index.read(lambda txn: txn.ext_errors(row.key, offset, limit))
    return [
        {"studyInstanceUid": st, "seriesInstanceUid": se, "sopInstanceUid": sop, "createdTime": at, "errorMessage": msg}
        for st, se, sop, at, msg in found
    ]


# --- the re-index job


def _plan_chunk(txn: Transaction, ids: Sequence[int]) -> list[tuple[str, str, int, int, int]]:
    """(public id, file uuid, instance, series, study ids) of the instances still present."""
    rows = txn.resources(ids)
    series = {r.id: r.parent_id for r in txn.resources([r.parent_id for r in rows if r.parent_id is not None])}
    atts = txn.attachments([r.id for r in rows])
    out = []
    for r in rows:
        dicom = next((a for a in atts.get(r.id, []) if a.content_type == FileContentType.DICOM), None)
        study = series.get(r.parent_id) if r.parent_id is not None else None
        if dicom is not None and r.parent_id is not None and study is not None:
            out.append((r.public_id, dicom.uuid, r.id, r.parent_id, study))
    return out


def _extract(
    ctx: ServerContext, plan: list[tuple[str, str, int, int, int]], rows: list[ExtTagRow]
) -> tuple[list[tuple[int, int, str, str | None]], dict[int, list[tuple[str, str, str, str, str, str]]]]:
    """Worker thread: read each instance's header and collect values and errors."""
    import pydicom

    values: list[tuple[int, int, str, str | None]] = []
    errs: dict[int, list[tuple[str, str, str, str, str, str]]] = {}
    created = datetime.datetime.now(datetime.UTC).replace(tzinfo=None).isoformat()
    for public_id, file_uuid, iid, series_id, study_id in plan:
        try:
            path = ctx.storage.path(file_uuid, FileContentType.DICOM)
            source: Any = path
            if path is None:
                import io

                source = io.BytesIO(ctx.storage.read(file_uuid, FileContentType.DICOM))
            ds = pydicom.dcmread(source, stop_before_pixels=True, force=True)
        except Exception:  # a file gone since the plan was made, or unreadable: nothing to index
            continue
        target = {ResourceType.INSTANCE: iid, ResourceType.SERIES: series_id, ResourceType.STUDY: study_id}
        for row in rows:
            text, error = eq.value_of(ds, row.tag, row.private_creator, row.vr)
            if error is not None:
                st, se, sop = (str(ds.get(k, "")) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"))
                errs.setdefault(row.key, []).append((public_id, st, se, sop, created, error))
            elif text is not None:
                values.append((target[ResourceType(row.level)], storage_tag(row), text, _norm(row, text)))
    return values, errs


async def _reindex(ctx: ServerContext, job: Job, keys: list[int]) -> dict[str, Any]:
    ids: list[int] = await ctx.index.read(lambda txn: txn.list_ids(ResourceType.INSTANCE))
    total = len(ids)
    for start in range(0, total, _CHUNK):
        rows = [r for r in ctx.ext_tags.active() if r.key in keys]
        if not rows:
            break
        chunk = ids[start : start + _CHUNK]
        plan = await ctx.index.read(functools.partial(_plan_chunk, ids=chunk))
        values, errs = await ctx.run(_extract, ctx, plan, rows)

        def write(txn: Transaction, values: Any = values, errs: Any = errs, rows: Any = rows) -> None:
            present = {r.key for r in txn.ext_tags()}
            kept = {storage_tag(r) for r in rows if r.key in present}  # a tag deleted meanwhile stays deleted
            txn.add_tag_values([v for v in values if v[1] in kept])
            for key, found in errs.items():
                if key in present:
                    txn.add_ext_errors(key, found)
                    txn.update_ext_tag(key, query_status="Disabled")
            ctx.ext_tags.refresh(txn)

        await ctx.index.write(write)
        job.progress = min(99, int(100 * (start + len(chunk)) / total))

    def finish(txn: Transaction) -> None:
        for key in keys:
            txn.update_ext_tag(key, status="Ready", operation=None)
        ctx.ext_tags.refresh(txn)

    await ctx.index.write(finish)
    return {"Instances": total}


async def resume(ctx: ServerContext) -> None:
    """At start: load the definitions; re-run the re-index of tags left "Adding" by a stop."""
    await ctx.index.read(ctx.ext_tags.refresh)
    pending = [r.key for r in ctx.ext_tags.rows if r.status == "Adding"]
    if not pending:
        return

    async def run(job: Job) -> dict[str, Any]:
        return await _reindex(ctx, job, pending)

    job = ctx.jobs.submit(JOB_TYPE, run)

    def relink(txn: Transaction) -> None:
        for key in pending:
            txn.update_ext_tag(key, operation=job.id)
        ctx.ext_tags.refresh(txn)

    await ctx.index.write(relink)
