"""Reconstruction (/tools/reconstruct, /{level}/{id}/reconstruct): the index rebuilt from the
stored files. Each instance's file is parsed again and its main DICOM tags and computed
metadata are written back to the instance and its series, study and patient, so the last
instance read gives its parents' tags, as Orthanc does (Orthanc Book, "Upgrading / main DICOM
tags": reconstruction after changing the main DICOM tags or after a modification)."""

from __future__ import annotations

from ..index.base import Transaction
from ..model.enums import FileContentType, MetadataType, ResourceType
from ..model.parsing import ParsedInstance, parse
from .context import ServerContext
from .ingest import SIGNATURES
from .resources import instance_ids_of


def _rewrite(txn: Transaction, iid: int, p: ParsedInstance) -> str | None:
    """Write one instance's tags and metadata, and its ancestors' tags; the series public ID."""
    chain = {ResourceType.INSTANCE: iid}
    for level in (ResourceType.SERIES, ResourceType.STUDY, ResourceType.PATIENT):
        ancestor = txn.ancestor(iid, level)
        if ancestor is None:
            return None  # deleted meanwhile
        chain[level] = ancestor
    meta: list[tuple[int, int, str]] = []
    for level, rid in chain.items():
        tags = p.main_tags[level]
        if level is ResourceType.STUDY:  # a study keeps a copy of its patient's tags
            tags = {**p.main_tags[ResourceType.PATIENT], **tags}
        txn.set_main_tags(rid, tags)
        meta.append((rid, int(MetadataType.MAIN_DICOM_TAGS_SIGNATURE), SIGNATURES[level]))
    meta += [
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


def _all_instances(txn: Transaction) -> list[tuple[int, str]]:
    ids = txn.list_ids(ResourceType.INSTANCE)
    attachments = txn.attachments(ids)
    return [(i, a.uuid) for i in ids for a in attachments.get(i, ()) if a.content_type == FileContentType.DICOM]


async def reconstruct(ctx: ServerContext, public_id: str | None, level: ResourceType | None) -> None:
    """Reconstruct one resource (all its instances), or every instance when `public_id` is None."""
    if public_id is None or level is None:
        instances = await ctx.index.read(_all_instances)
    else:
        instances = await instance_ids_of(ctx, public_id, level)
    for iid, uuid in instances:
        data = await ctx.run(ctx.storage.read, uuid, int(FileContentType.DICOM))
        parsed = await ctx.run(parse, data)
        series = await ctx.index.write(lambda txn, i=iid, p=parsed: _rewrite(txn, i, p))  # type: ignore[misc]
        if series is not None:
            ctx.series_cache.invalidate(series)
