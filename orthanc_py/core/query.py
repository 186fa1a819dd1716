"""The one find engine: /tools/find, C-FIND and QIDO-RS parse their input into a `FindRequest`.

Constraints on main DICOM tags run in the index (one SQL query); constraints on other tags are
checked by reading the DICOM file of one instance of each candidate, as Orthanc does
(StorageAccessOnFind), so they are correct but slow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pydicom

from ..index.base import OrderBy, Transaction
from ..model.enums import ResourceType
from ..model.lookup import TagConstraint, matches
from ..model.parsing import element_text
from .context import ServerContext
from .dicomfind import header_of, index_values, representative_dataset, representative_file_in
from .files import InstanceFile, files_in, instances_under
from .resources import ResourceInfo, expand, lookup_in


@dataclass
class FindRequest:
    """A parsed query. `constraints` may mix main and non-main tags (level None = not indexed)."""

    level: ResourceType
    constraints: list[TagConstraint] = field(default_factory=list)
    parent: str | None = None
    parent_level: ResourceType | None = None
    labels: list[str] = field(default_factory=list)
    labels_mode: str = "All"
    metadata_constraints: list[tuple[int, TagConstraint]] = field(default_factory=list)
    order_by: list[OrderBy] = field(default_factory=list)
    since: int = 0
    limit: int = 0


def _split(constraints: Sequence[TagConstraint]) -> tuple[list[TagConstraint], list[TagConstraint]]:
    indexed = [c for c in constraints if c.level is not None]
    others = [c for c in constraints if c.level is None]
    return indexed, others


def _passes(ds: pydicom.Dataset | None, constraints: Sequence[TagConstraint]) -> bool:
    for c in constraints:
        elem = ds.get(c.tag) if ds is not None else None
        value = element_text(elem.value) if elem is not None else None
        if not matches(c, value):
            return False
    return True


def find_ids(ctx: ServerContext, txn: Transaction, req: FindRequest) -> list[int]:
    """Internal ids matching the request, in index order (runs inside a read transaction)."""
    parent_id = None
    if req.parent is not None:
        parent_id, _ = lookup_in(txn, req.parent, req.parent_level)
    indexed, others = _split(req.constraints)
    # With constraints the index cannot evaluate, paging happens after the file checks.
    page = {} if others else {"since": req.since, "limit": req.limit}
    candidates = txn.find(
        req.level,
        indexed,
        parent=parent_id,
        labels=req.labels,
        labels_mode=req.labels_mode,
        metadata_constraints=req.metadata_constraints,
        order_by=req.order_by,
        **page,
    )
    if not others:
        return candidates
    out: list[int] = []
    skipped = 0
    for rid in candidates:
        if _passes(representative_dataset(ctx, txn, rid, req.level), others):
            if skipped < req.since:
                skipped += 1
                continue
            out.append(rid)
            if req.limit and len(out) >= req.limit:
                break
    return out


async def find(
    ctx: ServerContext, req: FindRequest, expanded: bool, **expand_opts: bool
) -> list[ResourceInfo] | list[str]:
    """Run a find; answer public ids, or expanded resources."""

    def run(txn: Transaction) -> list[ResourceInfo] | list[str]:
        ids = find_ids(ctx, txn, req)
        if expanded:
            return expand(txn, ctx, ids, **expand_opts)
        return [r.public_id for r in txn.resources(ids)]

    return await ctx.index.read(run)


def find_public_ids_blocking(ctx: ServerContext, req: FindRequest) -> list[str]:
    """The public ids a find matches, from a worker thread (the DIMSE server's)."""
    return ctx.index.read_blocking(lambda txn: [r.public_id for r in txn.resources(find_ids(ctx, txn, req))])


async def count(ctx: ServerContext, req: FindRequest) -> int:
    def run(txn: Transaction) -> int:
        return len(find_ids(ctx, txn, req))

    return await ctx.index.read(run)


def _answers_plan(
    ctx: ServerContext, txn: Transaction, req: FindRequest, requested: Sequence[int], file_vr_tags: Sequence[int]
) -> list[tuple[dict[int, str | None], list[int], InstanceFile | None]]:
    """Inside the transaction: per match, what the index knows, what must come from a file, and
    the file to read (one instance of the resource) when there is something to read."""
    plan = []
    for rid, values, missing in index_values(txn, req.level, find_ids(ctx, txn, req), requested):
        need_file = missing or any(values.get(t) is not None for t in file_vr_tags)
        plan.append((values, missing, representative_file_in(txn, rid, req.level) if need_file else None))
    return plan


def _complete(
    ctx: ServerContext,
    plan: list[tuple[dict[int, str | None], list[int], InstanceFile | None]],
    file_vr_tags: Sequence[int],
) -> list[tuple[dict[int, str | None], dict[int, str]]]:
    """After the transaction: the values and VRs read from the files (Orthanc's
    StorageAccessOnFind; the VR of a private or unknown tag as the file has it)."""
    out = []
    for values, missing, f in plan:
        ds = header_of(ctx, f) if f is not None else None
        for t in missing:
            elem = ds.get(t) if ds is not None else None
            values[t] = element_text(elem.value) if elem is not None else None
        vrs: dict[int, str] = {}
        if any(values.get(t) is not None for t in file_vr_tags):
            vrs = {t: str(ds[t].VR) for t in file_vr_tags if ds is not None and t in ds}
        out.append((values, vrs))
    return out


async def find_answers(
    ctx: ServerContext, req: FindRequest, requested: Sequence[int], file_vr_tags: Sequence[int] = ()
) -> list[tuple[dict[int, str | None], dict[int, str]]]:
    """A DICOM query (QIDO-RS, C-FIND): per match, the value of each requested tag (None: none),
    and the VR the file gives each tag of `file_vr_tags` that has a value. The index is read
    first; files, when needed, after the transaction."""
    plan = await ctx.index.read(lambda txn: _answers_plan(ctx, txn, req, requested, file_vr_tags))
    if any(f is not None for _v, _m, f in plan):
        return await ctx.run(_complete, ctx, plan, file_vr_tags)
    return _complete(ctx, plan, file_vr_tags)


def find_answers_blocking(
    ctx: ServerContext, req: FindRequest, requested: Sequence[int]
) -> list[dict[int, str | None]]:
    """`find_answers` from a worker thread (the DIMSE server's), values only."""
    plan = ctx.index.read_blocking(lambda txn: _answers_plan(ctx, txn, req, requested, ()))
    return [values for values, _vrs in _complete(ctx, plan, ())]


def _matched_in(ctx: ServerContext, txn: Transaction, req: FindRequest, meta: bool) -> list[InstanceFile]:
    ids: list[int] = []
    for rid in find_ids(ctx, txn, req):
        ids += instances_under(txn, rid, req.level)
    return files_in(txn, ids, meta)


async def matched_files(ctx: ServerContext, req: FindRequest, meta: bool = False) -> list[InstanceFile]:
    """The files of every instance under the resources a find matches."""
    return await ctx.index.read(lambda txn: _matched_in(ctx, txn, req, meta))


def matched_files_blocking(ctx: ServerContext, req: FindRequest, meta: bool = False) -> list[InstanceFile]:
    """`matched_files` from a worker thread (the DIMSE server's)."""
    return ctx.index.read_blocking(lambda txn: _matched_in(ctx, txn, req, meta))


async def series_files(ctx: ServerContext, req: FindRequest) -> list[tuple[str, list[InstanceFile]]]:
    """Per series a find matches: its public id and the files of its instances (with metadata)."""

    def run(txn: Transaction) -> list[tuple[str, list[InstanceFile]]]:
        out = []
        for sid in find_ids(ctx, txn, req):
            pub = txn.resources([sid])[0].public_id
            out.append((pub, files_in(txn, txn.descendants(sid, ResourceType.INSTANCE), meta=True)))
        return out

    return await ctx.index.read(run)


__all__ = [
    "FindRequest",
    "OrderBy",
    "count",
    "find",
    "find_answers",
    "find_answers_blocking",
    "find_ids",
    "find_public_ids_blocking",
    "matched_files",
    "matched_files_blocking",
    "series_files",
]
