"""Resources: lookup, expansion (what GET /{level}/{id} shows), relatives, statistics, delete.

Expansion is done in bulk (a handful of queries for any number of resources), because listing
all studies with `expand` is a hot path for viewers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ErrorCode, OrthancError
from ..index.base import Attachment, Deletion, Ids, Transaction, WholeLevel
from ..model import maintags as mt
from ..model.dicomfile import as_int
from ..model.enums import MetadataType, ResourceType
from ..model.ids import is_public_id
from ..model.lookup import MatchKind, TagConstraint, normalize
from ..model.maintags import MainTagSet
from .context import ServerContext, now_iso


@dataclass(slots=True)
class ResourceInfo:
    """Everything Orthanc reports about one resource; rest/render.py turns it into JSON."""

    id: int
    level: ResourceType
    public_id: str
    main_tags: dict[int, str]
    parent: str | None
    children: list[str]
    last_update: str | None = None
    labels: list[str] = field(default_factory=list)
    is_stable: bool = True
    patient_main_tags: dict[int, str] | None = None
    expected_instances: int | None = None
    series_status: str | None = None
    file_size: int | None = None
    file_uuid: str | None = None
    index_in_series: int | None = None
    is_protected: bool = False
    metadata: dict[int, str] = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)
    metadata_names: Mapping[int, str] = field(default_factory=dict)
    """Names of user metadata (`UserMetadata`), for answers that name metadata."""
    main_sequences: dict[str, Any] | None = None
    """The extra main sequences (`ExtraMainDicomTags`) the resource keeps, full JSON by
    "gggg,eeee" (its MainDicomSequences metadata)."""


_LAST_UPDATE = int(MetadataType.LAST_UPDATE)
_EXPECTED = int(MetadataType.EXPECTED_NUMBER_OF_INSTANCES)
_INDEX = int(MetadataType.INDEX_IN_SERIES)


def _split_study_tags(info: ResourceInfo, tags: dict[int, str], tagset: MainTagSet) -> None:
    """A study row keeps a copy of its patient's tags (as Orthanc does): answer them apart."""
    study_tags, patient_tags = tagset.study_and_patient
    info.main_tags = {t: v for t, v in tags.items() if t in study_tags}
    info.patient_main_tags = {t: v for t, v in tags.items() if t in patient_tags}


def _with_sequences(txn: Transaction, tagset: MainTagSet, infos: list[ResourceInfo]) -> list[ResourceInfo]:
    """The extra main sequences of each resource (only when `ExtraMainDicomTags` has some)."""
    if tagset.sequences:
        from .extramain import stored_sequences

        found = stored_sequences(txn, tagset, {i.id: i.level for i in infos})
        for info in infos:
            info.main_sequences = found.get(info.id)
    return infos


def unknown(public_id: str) -> OrthancError:
    return OrthancError(ErrorCode.UNKNOWN_RESOURCE)  # Orthanc gives no details here


def lookup_in(txn: Transaction, public_id: str, level: ResourceType | None) -> tuple[int, ResourceType]:
    """Internal id of a public id at `level` (any level when None); UNKNOWN_RESOURCE otherwise."""
    hit = txn.lookup(public_id) if is_public_id(public_id) else None
    if hit is None or (level is not None and hit[1] != level):
        raise unknown(public_id)
    return hit


def identifiers_in(txn: Transaction, rid: int) -> dict[int, str]:
    """The main tags of a resource and of its ancestors, merged (the resource's win): the
    PatientID and UIDs an /exports entry or a store job records."""
    tags: dict[int, str] = {}
    current: int | None = rid
    while current is not None:
        rows = txn.resources([current])
        if not rows:
            break
        tags = {**rows[0].main_tags, **tags}
        current = rows[0].parent_id
    return tags


def series_status(expected: int | None, indexes: list[int | None]) -> str:
    """Orthanc's series Status: Unknown without ExpectedNumberOfInstances or with an instance
    lacking IndexInSeries; Inconsistent on duplicates or out-of-range; else Complete/Missing."""
    if expected is None:
        return "Unknown"
    seen: set[int] = set()
    for idx in indexes:
        if idx is None:
            return "Unknown"
        if idx < 1 or idx > expected or idx in seen:
            return "Inconsistent"
        seen.add(idx)
    return "Complete" if len(seen) == expected else "Missing"


def expand(
    txn: Transaction,
    ctx: ServerContext,
    ids: Ids,
    *,
    with_metadata: bool = False,
    with_attachments: bool = False,
) -> list[ResourceInfo]:
    """Build `ResourceInfo` for resources of one or several levels with a few bulk queries
    (`WholeLevel(level)` for all of them)."""
    if (
        isinstance(ids, WholeLevel)
        and ids.level in (ResourceType.PATIENT, ResourceType.STUDY)
        and not with_metadata
        and not with_attachments
    ):
        return _expand_whole(txn, ctx, ids.level)
    rows = txn.resources(ids)
    if not rows:
        return []
    all_ids: Ids = ids if isinstance(ids, WholeLevel) else [r.id for r in rows]
    kids = txn.children(all_ids)
    meta = txn.metadata(
        all_ids,
        None
        if with_metadata
        else (
            MetadataType.LAST_UPDATE,
            MetadataType.EXPECTED_NUMBER_OF_INSTANCES,
            MetadataType.INDEX_IN_SERIES,
            MetadataType.MODIFIED_FROM,
            MetadataType.ANONYMIZED_FROM,
        ),
    )
    labels = txn.labels(all_ids)
    instance_ids: Ids = [r.id for r in rows if r.level is ResourceType.INSTANCE]
    if isinstance(ids, WholeLevel):
        instance_ids = ids if ids.level is ResourceType.INSTANCE else []
    atts = txn.attachments(instance_ids) if instance_ids else {}
    all_atts = txn.attachments(all_ids) if with_attachments else {}
    series_with_expected = [
        r.id
        for r in rows
        if r.level is ResourceType.SERIES and MetadataType.EXPECTED_NUMBER_OF_INSTANCES in meta.get(r.id, {})
    ]
    child_index: dict[int, dict[int, str]] = {}
    if series_with_expected:
        child_ids = [cid for sid in series_with_expected for cid, _ in kids.get(sid, ())]
        child_index = txn.metadata(child_ids, (MetadataType.INDEX_IN_SERIES,))
    out: list[ResourceInfo] = []
    pending = ctx.stable.pending  # IsStable: not waiting for its quiet period
    last_key, expected_key, index_key = _LAST_UPDATE, _EXPECTED, _INDEX
    series, instance, patient = ResourceType.SERIES, ResourceType.INSTANCE, ResourceType.PATIENT
    protected = (
        txn.protected_among([r.id for r in rows if r.level is patient])
        if any(r.level is patient for r in rows)
        else set()
    )
    no_meta: dict[int, str] = {}
    user_names = {index: name for name, index in ctx.settings.user_metadata.items()} if with_metadata else {}
    for r in rows:
        rid = r.id
        m = meta.get(rid, no_meta)
        level = r.level
        info = ResourceInfo(
            rid,
            level,
            r.public_id,
            r.main_tags,
            r.parent_public_id,
            [pub for _, pub in kids.get(rid, ())],
            m.get(last_key),
            labels.get(rid, []),
            r.public_id not in pending,
            metadata=m,
            attachments=all_atts.get(rid, []),
            metadata_names=user_names,
        )
        dicom = None
        if level is instance:
            for a in atts.get(rid, ()):
                if a.content_type == 1:  # FileContentType.DICOM
                    dicom = (a.uuid, a.uncompressed_size)
        indexes = (
            [as_int(child_index.get(cid, no_meta).get(index_key)) for cid, _ in kids.get(rid, ())]
            if level is series and expected_key in m
            else []
        )
        _complete(info, r.main_tags, dicom, indexes, rid in protected, ctx.main_tags)
        out.append(info)
    return _with_sequences(txn, ctx.main_tags, out)


def _complete(
    info: ResourceInfo,
    tags: dict[int, str],
    dicom: tuple[str, int] | None,
    child_indexes: list[int | None],
    is_protected: bool,
    tagset: MainTagSet,
) -> None:
    """The fields of `info` that depend on its level (from its metadata and the facts given)."""
    level = info.level
    if level is ResourceType.STUDY:
        _split_study_tags(info, tags, tagset)
    elif level is ResourceType.SERIES:
        expected = as_int(info.metadata.get(_EXPECTED))
        info.expected_instances = expected
        info.series_status = series_status(expected, child_indexes if expected is not None else [])
    elif level is ResourceType.INSTANCE:
        if dicom is not None:
            info.file_uuid, info.file_size = dicom
        info.index_in_series = as_int(info.metadata.get(_INDEX))
    else:
        info.is_protected = is_protected


_GET_METADATA = (_LAST_UPDATE, _EXPECTED, _INDEX, int(MetadataType.MODIFIED_FROM), int(MetadataType.ANONYMIZED_FROM))


def _get_in(txn: Transaction, ctx: ServerContext, public_id: str, level: ResourceType | None) -> ResourceInfo:
    s = txn.summary(public_id, _GET_METADATA, level) if is_public_id(public_id) else None
    if s is None or (level is not None and s.row.level is not level):
        raise unknown(public_id)
    r = s.row
    if r.level is ResourceType.SERIES and _EXPECTED in s.metadata:
        return expand(txn, ctx, [r.id])[0]  # the status needs each instance's IndexInSeries
    info = ResourceInfo(
        r.id,
        r.level,
        r.public_id,
        r.main_tags,
        r.parent_public_id,
        s.children,
        s.metadata.get(_LAST_UPDATE),
        s.labels,
        r.public_id not in ctx.stable.pending,
        metadata=s.metadata,
    )
    _complete(info, r.main_tags, s.dicom, [], s.is_protected, ctx.main_tags)
    return _with_sequences(txn, ctx.main_tags, [info])[0]


def _expand_whole(txn: Transaction, ctx: ServerContext, level: ResourceType) -> list[ResourceInfo]:
    """`expand` of every patient or study: what it needs comes in one query (children and
    LastUpdate included), which halves the time of GET /studies?expand."""
    rows = txn.level_summary(level, _LAST_UPDATE)
    labels = txn.labels(WholeLevel(level))
    pending = ctx.stable.pending
    protected = txn.protected_among([r[0] for r in rows]) if level is ResourceType.PATIENT else set()
    study = level is ResourceType.STUDY
    out = []
    for rid, pub, ppub, tags, kids, last_update in rows:
        info = ResourceInfo(
            rid,
            level,
            pub,
            tags,
            ppub,
            kids,
            last_update,
            labels.get(rid, []),
            pub not in pending,
            metadata={} if last_update is None else {_LAST_UPDATE: last_update},
        )
        if study:
            _split_study_tags(info, tags, ctx.main_tags)
        else:
            info.is_protected = rid in protected
        out.append(info)
    return _with_sequences(txn, ctx.main_tags, out)


async def get(ctx: ServerContext, public_id: str, level: ResourceType | None) -> ResourceInfo:
    """One resource, expanded; UNKNOWN_RESOURCE when absent or at another level."""

    return await ctx.index.read(lambda txn: _get_in(txn, ctx, public_id, level), short=True)


def get_now(ctx: ServerContext, public_id: str, level: ResourceType | None) -> ResourceInfo:
    """`get` done on the event loop at once (HTTP fast lane): BlockingIOError when the index
    cannot answer without waiting."""
    return ctx.index.read_now(lambda txn: _get_in(txn, ctx, public_id, level))


@dataclass(frozen=True)
class LaneResourceSource:
    """What a renderer in C of the event loop's thread needs for `rendered_now` (web/_lane.c)."""

    connection: object
    """The index's own SQLite connection of this thread (a sqlite3.Connection)."""
    database: str
    """The database file's real path (checked against the connection's handle)."""
    statement: str
    """Transaction.summary's statement at the level, with the metadata its JSON shows."""


def lane_resource_source(
    ctx: ServerContext, level: ResourceType, on_close: Callable[[], None]
) -> LaneResourceSource | None:
    """The LaneResourceSource of `level` on this server, or None where `get` needs more than
    the summary row (a series' status, extra main sequences) or the index has no such
    connection (PostgreSQL). `on_close` runs before the connection closes."""
    statement_of = getattr(ctx.index, "summary_statement", None)
    if level is ResourceType.SERIES or ctx.main_tags.sequences or statement_of is None:
        return None
    found = inline_connection(ctx, on_close)
    if found is None:
        return None
    return LaneResourceSource(found[0], found[1], statement_of(_RENDERED_METADATA[level], level))


def inline_connection(ctx: ServerContext, on_close: Callable[[], None]) -> tuple[object, str] | None:
    """The index's own SQLite connection of the event loop's thread and the database's real
    path (an optional capability of the index: SQLite has it), for code in C on this thread;
    None without one. `on_close` runs before the connection closes."""
    connection_of = getattr(ctx.index, "inline_connection", None)
    if connection_of is None:
        return None
    try:
        connection, database = connection_of(on_close)
    except BlockingIOError:
        return None
    return connection, database


_RENDERED_METADATA = {
    ResourceType.PATIENT: (_LAST_UPDATE, int(MetadataType.MODIFIED_FROM), int(MetadataType.ANONYMIZED_FROM)),
    ResourceType.STUDY: (_LAST_UPDATE, int(MetadataType.MODIFIED_FROM), int(MetadataType.ANONYMIZED_FROM)),
    ResourceType.INSTANCE: (_INDEX, int(MetadataType.MODIFIED_FROM), int(MetadataType.ANONYMIZED_FROM)),
}
"""The metadata the JSON of a resource shows, by level (each type is a seek of ~0.7 us in the
summary statement: `_GET_METADATA` also has what a series' status needs)."""


def rendered_now(
    ctx: ServerContext,
    public_id: str,
    level: ResourceType,
    render: Callable[[ResourceInfo], bytes],
    fast: Callable[[str, bool], bytes | None] | None = None,
) -> bytes:
    """`render(get_now(...))`, kept by the index until the next commit (Index.read_now_cached):
    the HTTP fast lane's GET /{level}/{id}. IsStable is not in the index: it is in the key (a
    resource turning stable also logs a change, but not at the same instant). `fast`: the same
    bytes from (public id, IsStable) in one call, or None (then `render` runs)."""
    stable = level is ResourceType.INSTANCE or public_id not in ctx.stable.pending

    def read(txn: Transaction) -> bytes:
        if fast is not None:
            body = fast(public_id, stable)
            if body is not None:
                return body
        return render(_get_in(txn, ctx, public_id, level))

    return ctx.index.read_now_cached(
        (render, level, public_id, stable),
        read,
        _rendered_size,
        # one statement (Transaction.summary), except for a series (its status may need its
        # instances') and with extra main sequences (read apart)
        single=level is not ResourceType.SERIES and not ctx.main_tags.sequences,
    )


def _rendered_size(body: bytes) -> int:
    return len(body) + 200  # the key and the entry


async def list_level(
    ctx: ServerContext, level: ResourceType, since: int, limit: int, expanded: bool
) -> list[ResourceInfo] | list[str]:
    """GET /patients etc.: public ids (or expanded infos) in creation order."""

    def run(txn: Transaction) -> list[ResourceInfo] | list[str]:
        if expanded and not since and not limit:
            return expand(txn, ctx, WholeLevel(level))
        if not expanded:
            return txn.list_public_ids(level, since, limit)
        return expand(txn, ctx, txn.list_ids(level, since, limit))

    return await ctx.index.read(run)


def relatives_in(txn: Transaction, rid: int, level: ResourceType, target: ResourceType) -> list[int]:
    """Internal ids of the ancestor (target above level) or descendants (below) of a resource."""
    if target < level:
        anc = txn.ancestor(rid, target)
        return [anc] if anc is not None else []
    return txn.descendants(rid, target)


async def relatives(
    ctx: ServerContext, public_id: str, level: ResourceType, target: ResourceType, expanded: bool = True
) -> list[ResourceInfo] | list[str]:
    """/studies/{id}/series, /instances/{id}/patient, ... (Orthanc answers expanded resources)."""

    def run(txn: Transaction) -> list[ResourceInfo] | list[str]:
        rid, _ = lookup_in(txn, public_id, level)
        ids = relatives_in(txn, rid, level, target)
        if expanded:
            return expand(txn, ctx, ids)
        return [r.public_id for r in txn.resources(ids)]

    return await ctx.index.read(run, short=target < level)  # one ancestor: a point read


async def delete(ctx: ServerContext, public_id: str, level: ResourceType) -> Deletion:
    """Delete a resource with its descendants and emptied ancestors; files go after commit."""

    date = now_iso()

    def run(txn: Transaction) -> Deletion:
        rid, _ = lookup_in(txn, public_id, level)
        deletion = txn.delete_resource(rid)
        if deletion.remaining_ancestor is not None:
            _touch_ancestors(txn, deletion.remaining_ancestor[1], date)
        return deletion

    deletion = await ctx.index.write(run)
    await settle_deletions(ctx, [deletion])
    return deletion


async def settle_deletions(ctx: ServerContext, deletions: list[Deletion]) -> None:
    """After the commit of deletions (a DELETE, recycling): the series summaries forgotten
    (deletes are rare: all of them), the stability tracker and Lua told, the files removed."""
    if not deletions:
        return
    ctx.series_cache.clear()
    for deletion in deletions:
        forget_deleted(ctx, deletion)
        await ctx.run(remove_files, ctx, deletion.attachments)


def forget_deleted(ctx: ServerContext, deletion: Deletion) -> None:
    """Event-loop half of a committed deletion (a DELETE, or recycling during a store): the
    deleted resources leave the stability tracker, and Lua hears of them, OnDeletedInstance
    first up to OnDeletedPatient (as Orthanc calls them)."""
    for _lv, pid in deletion.deleted:
        ctx.stable.forget(pid)
    if ctx.lua is not None:
        ctx.lua.deleted(sorted(deletion.deleted, key=lambda d: -int(d[0])))


def _touch_ancestors(txn: Transaction, public_id: str, date: str) -> None:
    """A resource lost a child: its LastUpdate and its ancestors' are now (Orthanc 1.12.1+)."""
    hit = txn.lookup(public_id)
    rid: int | None = hit[0] if hit is not None else None
    while rid is not None:
        txn.set_metadata(rid, _LAST_UPDATE, date)
        rows = txn.resources([rid])
        rid = rows[0].parent_id if rows else None


def remove_files(ctx: ServerContext, attachments: list[Attachment]) -> None:
    for a in attachments:
        ctx.storage.remove(a.uuid, a.content_type)


async def statistics(ctx: ServerContext, public_id: str, level: ResourceType) -> dict[str, int]:
    def run(txn: Transaction) -> dict[str, int]:
        rid, _ = lookup_in(txn, public_id, level)
        return txn.resource_statistics(rid, level)

    return await ctx.index.read(run)


async def global_statistics(ctx: ServerContext) -> dict[str, int]:
    def run(txn: Transaction) -> dict[str, int]:
        disk, unc = txn.total_sizes()
        return {
            "patients": txn.count(ResourceType.PATIENT),
            "studies": txn.count(ResourceType.STUDY),
            "series": txn.count(ResourceType.SERIES),
            "instances": txn.count(ResourceType.INSTANCE),
            "disk": disk,
            "uncompressed": unc,
        }

    return await ctx.index.read(run)


_LOOKUP_TAGS = (
    mt.PATIENT_ID,
    mt.STUDY_INSTANCE_UID,
    mt.ACCESSION_NUMBER,
    mt.SERIES_INSTANCE_UID,
    mt.SOP_INSTANCE_UID,
)


async def lookup_identifier(ctx: ServerContext, text: str) -> list[tuple[ResourceType, str]]:
    """(level, public id) of the resources with this PatientID, UID or AccessionNumber. Orthanc
    looks in its table of normalized identifiers: case, accents and surrounding spaces ignored."""
    value = normalize(text)

    def run(txn: Transaction) -> list[tuple[ResourceType, str]]:
        out: list[tuple[ResourceType, str]] = []
        seen: set[int] = set()
        for tag in _LOOKUP_TAGS:
            level = mt.LEVEL_OF_TAG[tag]
            c = TagConstraint(tag, level, MatchKind.EQUAL, (value,), False)
            for rid in txn.find(level, [c]):
                if rid not in seen:
                    seen.add(rid)
                    out += [(row.level, row.public_id) for row in txn.resources([rid])]
        return out

    return await ctx.index.read(run)


async def ancestors_at(ctx: ServerContext, public_ids: list[str], level: ResourceType) -> list[str]:
    """The distinct resources at `level` that hold the given resources (themselves at their own
    level), in order; vanished resources are skipped."""

    def run(txn: Transaction) -> list[str]:
        out: list[str] = []
        for pid in public_ids:
            hit = txn.lookup(pid)
            if hit is None:
                continue
            rid = hit[0] if hit[1] is level else txn.ancestor(hit[0], level)
            if rid is not None:
                out += [r.public_id for r in txn.resources([rid])]
        return list(dict.fromkeys(out))

    return await ctx.index.read(run)
