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
from .dicomfind import answers, representative_dataset
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


def _answers_in(
    ctx: ServerContext, txn: Transaction, req: FindRequest, requested: Sequence[int], file_vr_tags: Sequence[int]
) -> list[tuple[dict[int, str | None], dict[int, str]]]:
    ids = find_ids(ctx, txn, req)
    rows = answers(ctx, txn, req.level, ids, requested)
    out = []
    for rid, values in zip(ids, rows, strict=False):
        vrs: dict[int, str] = {}
        if any(values.get(t) is not None for t in file_vr_tags):
            # the VR of a private or unknown tag as the file has it (Orthanc reads the answers
            # from an instance of each resource)
            ds = representative_dataset(ctx, txn, rid, req.level)
            vrs = {t: str(ds[t].VR) for t in file_vr_tags if ds is not None and t in ds}
        out.append((values, vrs))
    return out


async def find_answers(
    ctx: ServerContext, req: FindRequest, requested: Sequence[int], file_vr_tags: Sequence[int] = ()
) -> list[tuple[dict[int, str | None], dict[int, str]]]:
    """A DICOM query (QIDO-RS, C-FIND): per match, the value of each requested tag (None: none),
    and the VR the file gives each tag of `file_vr_tags` that has a value."""
    return await ctx.index.read(lambda txn: _answers_in(ctx, txn, req, requested, file_vr_tags))


def find_answers_blocking(
    ctx: ServerContext, req: FindRequest, requested: Sequence[int]
) -> list[dict[int, str | None]]:
    """`find_answers` from a worker thread (the DIMSE server's), values only."""
    return [values for values, _vrs in ctx.index.read_blocking(lambda txn: _answers_in(ctx, txn, req, requested, ()))]


__all__ = [
    "FindRequest",
    "OrderBy",
    "count",
    "find",
    "find_answers",
    "find_answers_blocking",
    "find_ids",
    "find_public_ids_blocking",
]
