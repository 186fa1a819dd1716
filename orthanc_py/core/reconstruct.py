"""Reconstruction (/tools/reconstruct, /{level}/{id}/reconstruct): the index rebuilt from the
stored files. Each instance's file is parsed again and its main DICOM tags and computed
metadata are written back to the instance and its series, study and patient, so the last
instance read gives its parents' tags, as Orthanc does (Orthanc Book, "Upgrading / main DICOM
tags": reconstruction after changing the main DICOM tags or after a modification)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..index.base import Attachment, Transaction
from ..model.enums import FileContentType, MetadataType, ResourceType
from .content import change_compression
from .context import ServerContext
from .ingest import main_sequences_of
from .resources import lookup_in

if TYPE_CHECKING:
    from ..model.parsing import ParsedInstance


@dataclass(frozen=True, slots=True)
class _Instance:
    id: int
    public_id: str
    attachment: Attachment


def _main_tags_of(
    txn: Transaction,
    rid: int,
    level: ResourceType,
    p: ParsedInstance,
    signatures: Mapping[ResourceType, str],
    sequences: Mapping[ResourceType, str] | None,
) -> None:
    """The main tags of one resource, its MainDicomTagsSignature and MainDicomSequences, as the
    configuration says now (Orthanc re-stores them all)."""
    tags = p.main_tags[level]
    if level is ResourceType.STUDY:  # a study keeps a copy of its patient's tags
        tags = {**p.main_tags[ResourceType.PATIENT], **tags}
    txn.set_main_tags(rid, tags)
    txn.set_metadata(rid, int(MetadataType.MAIN_DICOM_TAGS_SIGNATURE), signatures[level])
    if sequences and level in sequences:
        txn.set_metadata(rid, int(MetadataType.MAIN_DICOM_SEQUENCES), sequences[level])
    else:
        txn.delete_metadata(rid, int(MetadataType.MAIN_DICOM_SEQUENCES))


def _rewrite(
    txn: Transaction,
    iid: int,
    p: ParsedInstance,
    signatures: Mapping[ResourceType, str],
    sequences: Mapping[ResourceType, str] | None,
) -> str | None:
    """Write one instance's tags and metadata, and its ancestors' tags; the series public ID."""
    chain = {ResourceType.INSTANCE: iid}
    for level in (ResourceType.SERIES, ResourceType.STUDY, ResourceType.PATIENT):
        ancestor = txn.ancestor(iid, level)
        if ancestor is None:
            return None  # deleted meanwhile
        chain[level] = ancestor
    for level, rid in chain.items():
        _main_tags_of(txn, rid, level, p, signatures, sequences)
    meta = [
        (iid, int(MetadataType.SOP_CLASS_UID), p.sop_class_uid),
        (iid, int(MetadataType.TRANSFER_SYNTAX), p.transfer_syntax),
    ]
    if p.index_in_series is not None:
        meta.append((iid, int(MetadataType.INDEX_IN_SERIES), p.index_in_series))
    if p.pixel_data_offset is not None:
        meta.append((iid, int(MetadataType.PIXEL_DATA_OFFSET), str(p.pixel_data_offset)))
    series = chain[ResourceType.SERIES]
    if p.expected_instances is not None:
        meta.append((series, int(MetadataType.EXPECTED_NUMBER_OF_INSTANCES), str(p.expected_instances)))
    for rid, mtype, value in meta:
        txn.set_metadata(rid, mtype, value)
    return p.ids.series


def _instances(txn: Transaction, public_id: str | None, level: ResourceType | None) -> list[_Instance]:
    """The instances of a resource (all of them when `public_id` is None), with their file."""
    if public_id is None or level is None:
        ids = txn.list_ids(ResourceType.INSTANCE)
    else:
        rid, _ = lookup_in(txn, public_id, level)
        ids = [rid] if level is ResourceType.INSTANCE else txn.descendants(rid, ResourceType.INSTANCE)
    rows = {r.id: r.public_id for r in txn.resources(ids)} if ids else {}
    attachments = txn.attachments(ids) if ids else {}
    return [
        _Instance(i, rows[i], a)
        for i in ids
        if i in rows
        for a in attachments.get(i, ())
        if a.content_type == FileContentType.DICOM
    ]


def _rewrite_level(
    txn: Transaction,
    iid: int,
    p: ParsedInstance,
    level: ResourceType,
    signatures: Mapping[ResourceType, str],
    sequences: Mapping[ResourceType, str] | None,
) -> str | None:
    """Only the main tags of the instance's ancestor at `level` (LimitToThisLevelMainDicomTags)."""
    rid = iid if level is ResourceType.INSTANCE else txn.ancestor(iid, level)
    if rid is None:
        return None
    _main_tags_of(txn, rid, level, p, signatures, sequences)
    return p.ids.series


async def reconstruct(
    ctx: ServerContext,
    public_id: str | None,
    level: ResourceType | None,
    this_level_only: bool = False,
    files: bool = False,
) -> None:
    """Reconstruct one resource (all its instances), or every instance when `public_id` is None.
    `this_level_only` (Orthanc 1.12.4's LimitToThisLevelMainDicomTags): only the resource's own
    main tags, read from one of its instances. `files` (ReconstructFiles): the files are stored
    again as StorageCompression says now."""
    from ..model.parsing import parse

    instances = await ctx.index.read(functools.partial(_instances, public_id=public_id, level=level))
    if this_level_only and level is not None:
        instances = instances[:1]
    for inst in instances:
        a = inst.attachment
        data = await ctx.run(ctx.storage.read_file, a.uuid, a.content_type, a.compression)
        parsed = await ctx.run(parse, data)
        sequences = await ctx.run(main_sequences_of, ctx, data, parsed)
        signatures = ctx.main_tags.signatures
        if this_level_only and level is not None:
            write = functools.partial(
                _rewrite_level, iid=inst.id, p=parsed, level=level, signatures=signatures, sequences=sequences
            )
        else:
            write = functools.partial(_rewrite, iid=inst.id, p=parsed, signatures=signatures, sequences=sequences)
        series = await ctx.index.write(write)
        if series is not None:
            ctx.series_cache.invalidate(series)
        if files and not this_level_only:
            compressed = ctx.storage.compression
            await change_compression(ctx, inst.public_id, ResourceType.INSTANCE, a.content_type, compressed)
