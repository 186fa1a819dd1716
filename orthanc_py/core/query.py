"""The one find engine: /tools/find, C-FIND and QIDO-RS parse their input into a `FindRequest`
(core.findspec) and ask here: ids, expanded resources, counts, DICOM answers, the files under
the matches.

Constraints on main DICOM tags run in the index (one SQL query, one transaction); constraints
on other tags are checked by reading the DICOM file of one instance of each candidate, as
Orthanc does (StorageAccessOnFind): a first transaction lists the candidates and their files,
the files are read after it, and the answer's transaction takes the matches. Files are never
read inside a transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..index.base import OrderBy, Transaction
from ..model.enums import ResourceType
from ..model.lookup import TagConstraint, matches
from .context import ServerContext
from .dicomfind import header_of, index_values, representative_file_in
from .files import InstanceFile, files_in, instances_under
from .maintagmaps import MainTagMaps, SeriesMainTags, extrapolate, series_main_tags_in
from .resources import ResourceInfo, expand, lookup_in

if TYPE_CHECKING:
    import pydicom


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
    from ..model.parsing import element_text

    for c in constraints:
        elem = ds.get(c.tag) if ds is not None else None
        value = element_text(elem.value) if elem is not None else None
        if not matches(c, value):
            return False
    return True


def _candidates(txn: Transaction, req: FindRequest, paged: bool) -> list[int]:
    """What the index matches (constraints on main tags, parent, labels, metadata, order)."""
    parent_id = None
    if req.parent is not None:
        parent_id, _ = lookup_in(txn, req.parent, req.parent_level)
    indexed, _others = _split(req.constraints)
    page = {"since": req.since, "limit": req.limit} if paged else {}
    return txn.find(
        req.level,
        indexed,
        parent=parent_id,
        labels=req.labels,
        labels_mode=req.labels_mode,
        metadata_constraints=req.metadata_constraints,
        order_by=req.order_by,
        **page,
    )


def _file_plan(txn: Transaction, req: FindRequest) -> list[tuple[int, InstanceFile | None]]:
    """Inside the transaction: every index candidate with the file of one of its instances."""
    return [(rid, representative_file_in(txn, rid, req.level)) for rid in _candidates(txn, req, paged=False)]


def _check_files(ctx: ServerContext, req: FindRequest, plan: list[tuple[int, InstanceFile | None]]) -> list[int]:
    """After the transaction: the candidates whose file matches the constraints the index cannot
    evaluate (Orthanc's StorageAccessOnFind), paged; files are read until the page is full."""
    _indexed, others = _split(req.constraints)
    out: list[int] = []
    skipped = 0
    for rid, f in plan:
        if _passes(header_of(ctx, f), others):
            if skipped < req.since:
                skipped += 1
                continue
            out.append(rid)
            if req.limit and len(out) >= req.limit:
                break
    return out


async def _file_matches(ctx: ServerContext, req: FindRequest) -> list[int] | None:
    """The matches of a request with constraints on tags the index does not hold (None when the
    index evaluates the whole request): one transaction, then the files, off the event loop."""
    if not _split(req.constraints)[1]:
        return None
    plan = await ctx.index.read(lambda txn: _file_plan(txn, req))
    return await ctx.run(_check_files, ctx, req, plan)


def _file_matches_blocking(ctx: ServerContext, req: FindRequest) -> list[int] | None:
    """`_file_matches` from a worker thread."""
    if not _split(req.constraints)[1]:
        return None
    return _check_files(ctx, req, ctx.index.read_blocking(lambda txn: _file_plan(txn, req)))


def find_ids(ctx: ServerContext, txn: Transaction, req: FindRequest, pre: list[int] | None = None) -> list[int]:
    """Internal ids matching the request, in index order (inside a read transaction). `pre`: the
    matches `_file_matches` found when the request has constraints on tags outside the index
    (their files are read before, never inside, the transaction)."""
    if pre is not None:
        return pre
    if _split(req.constraints)[1]:
        raise AssertionError("constraints on tags outside the index go through _file_matches first")
    return _candidates(txn, req, paged=True)


async def find(
    ctx: ServerContext, req: FindRequest, expanded: bool, **expand_opts: bool
) -> list[ResourceInfo] | list[str]:
    """Run a find; answer public ids, or expanded resources."""

    pre = await _file_matches(ctx, req)

    def run(txn: Transaction) -> list[ResourceInfo] | list[str]:
        ids = find_ids(ctx, txn, req, pre)
        if expanded:
            return expand(txn, ctx, ids, **expand_opts)
        return [r.public_id for r in txn.resources(ids)]

    return await ctx.index.read(run)


def find_public_ids_blocking(ctx: ServerContext, req: FindRequest) -> list[str]:
    """The public ids a find matches, from a worker thread (the DIMSE server's)."""
    pre = _file_matches_blocking(ctx, req)
    return ctx.index.read_blocking(lambda txn: [r.public_id for r in txn.resources(find_ids(ctx, txn, req, pre))])


async def count(ctx: ServerContext, req: FindRequest) -> int:
    pre = await _file_matches(ctx, req)

    def run(txn: Transaction) -> int:
        return len(find_ids(ctx, txn, req, pre))

    return await ctx.index.read(run)


def _answers_plan(
    ctx: ServerContext,
    txn: Transaction,
    req: FindRequest,
    requested: Sequence[int],
    file_vr_tags: Sequence[int],
    pre: list[int] | None,
) -> list[tuple[dict[int, str | None], list[int], InstanceFile | None]]:
    """Inside the transaction: per match, what the index knows, what must come from a file, and
    the file to read (one instance of the resource) when there is something to read."""
    plan = []
    for rid, values, missing in index_values(txn, req.level, find_ids(ctx, txn, req, pre), requested):
        need_file = missing or any(values.get(t) is not None for t in file_vr_tags)
        plan.append((values, missing, representative_file_in(txn, rid, req.level) if need_file else None))
    return plan


def _complete(
    ctx: ServerContext,
    plan: list[tuple[dict[int, str | None], list[int], InstanceFile | None]],
    file_vr_tags: Sequence[int],
    sequence_tags: Sequence[int] = (),
) -> list[tuple[dict[int, str | None], dict[int, str], dict[int, dict[str, Any]]]]:
    """After the transaction: the values, VRs and sequences read from the files (Orthanc's
    StorageAccessOnFind; the VR of a private or unknown tag as the file has it)."""
    if all(f is None for _values, _missing, f in plan):  # all from the index: no file, no pydicom
        for values, missing, _f in plan:
            values.update(dict.fromkeys(missing))
        return [(values, {}, {}) for values, _missing, _f in plan]
    from ..model.parsing import element_text
    from ..model.webjson import sequence_json

    out = []
    for values, missing, f in plan:
        ds = header_of(ctx, f) if f is not None else None
        for t in missing:
            elem = ds.get(t) if ds is not None else None
            values[t] = element_text(elem.value) if elem is not None else None
        vrs: dict[int, str] = {}
        if any(values.get(t) is not None for t in file_vr_tags):
            vrs = {t: str(ds[t].VR) for t in file_vr_tags if ds is not None and t in ds}
        seqs: dict[int, dict[str, Any]] = {}
        if ds is not None:
            for t in sequence_tags:
                if t in missing and (rendered := sequence_json(ds, t)) is not None:
                    seqs[t] = rendered
        out.append((values, vrs, seqs))
    return out


async def find_answers(
    ctx: ServerContext,
    req: FindRequest,
    requested: Sequence[int],
    file_vr_tags: Sequence[int] = (),
    sequence_tags: Sequence[int] = (),
) -> list[tuple[dict[int, str | None], dict[int, str], dict[int, dict[str, Any]]]]:
    """A DICOM query (QIDO-RS, C-FIND): per match, the value of each requested tag (None: none),
    the VR the file gives each tag of `file_vr_tags` that has a value, and the DICOM JSON of
    each sequence of `sequence_tags` the file has (sequences have no text value). The index is
    read first; files, when needed, after the transaction."""
    pre = await _file_matches(ctx, req)
    plan = await ctx.index.read(lambda txn: _answers_plan(ctx, txn, req, requested, file_vr_tags, pre))
    if any(f is not None for _v, _m, f in plan):
        return await ctx.run(_complete, ctx, plan, file_vr_tags, sequence_tags)
    return _complete(ctx, plan, file_vr_tags, sequence_tags)


def find_answers_blocking(
    ctx: ServerContext, req: FindRequest, requested: Sequence[int]
) -> list[dict[int, str | None]]:
    """`find_answers` from a worker thread (the DIMSE server's), values only."""
    pre = _file_matches_blocking(ctx, req)
    plan = ctx.index.read_blocking(lambda txn: _answers_plan(ctx, txn, req, requested, (), pre))
    return [values for values, _vrs, _seqs in _complete(ctx, plan, ())]


def _matched_in(
    ctx: ServerContext, txn: Transaction, req: FindRequest, meta: bool, pre: list[int] | None
) -> list[InstanceFile]:
    ids: list[int] = []
    for rid in find_ids(ctx, txn, req, pre):
        ids += instances_under(txn, rid, req.level)
    return files_in(txn, ids, meta)


async def matched_files(ctx: ServerContext, req: FindRequest, meta: bool = False) -> list[InstanceFile]:
    """The files of every instance under the resources a find matches."""
    pre = await _file_matches(ctx, req)
    return await ctx.index.read(lambda txn: _matched_in(ctx, txn, req, meta, pre))


def matched_files_blocking(ctx: ServerContext, req: FindRequest, meta: bool = False) -> list[InstanceFile]:
    """`matched_files` from a worker thread (the DIMSE server's)."""
    pre = _file_matches_blocking(ctx, req)
    return ctx.index.read_blocking(lambda txn: _matched_in(ctx, txn, req, meta, pre))


async def series_files(ctx: ServerContext, req: FindRequest) -> list[tuple[str, list[InstanceFile]]]:
    """Per series a find matches: its public id and the files of its instances (with metadata)."""
    pre = await _file_matches(ctx, req)

    def run(txn: Transaction) -> list[tuple[str, list[InstanceFile]]]:
        out = []
        for sid in find_ids(ctx, txn, req, pre):
            pub = txn.resources([sid])[0].public_id
            out.append((pub, files_in(txn, txn.descendants(sid, ResourceType.INSTANCE), meta=True)))
        return out

    return await ctx.index.read(run)


async def series_main_tags(
    ctx: ServerContext, req: FindRequest, extrapolated: tuple[Sequence[int], Sequence[int]] | None = None
) -> list[tuple[str, MainTagMaps]]:
    """Per series a find matches: its public id and the main tags of its instances as the index
    keeps them (`core.extramain`): no file is read, except with `extrapolated` (series tags,
    study tags: the plugin's Extrapolate mode) a few instances per series and study."""
    pre = await _file_matches(ctx, req)
    samples = extrapolated is not None and any(extrapolated)

    def run(txn: Transaction) -> tuple[list[SeriesMainTags], dict[int, list[InstanceFile]]]:
        return series_main_tags_in(txn, ctx.main_tags, find_ids(ctx, txn, req, pre), samples)

    found, study_samples = await ctx.index.read(run)
    if samples and extrapolated is not None:
        await ctx.run(extrapolate, ctx, found, study_samples, *extrapolated)
    return [(s.public_id, s.merged()) for s in found]


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
    "series_main_tags",
]
