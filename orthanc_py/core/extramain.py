"""`ExtraMainDicomTags` (Orthanc 1.11+): the extra main tags of each level, taken from the file
at ingest and reconstruction, and the extra sequences, kept as each resource's
MainDicomSequences metadata (`{"Version": 1, "Sequences": {"gggg,eeee": full JSON}}`) and read
back for the answers that show main tags."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import orjson

from ..index.base import Transaction
from ..model.dicomfile import ParsedInstance
from ..model.enums import MetadataType, ResourceType
from ..model.maintags import MainTagSet, format_tag
from ..model.tagtext import TagsOptions
from .context import ServerContext

REQUEST_ATTRIBUTES_SEQUENCE = 0x00400275
"""Kept in its series' MainDicomSequences whatever the configuration (core.ingest.main_sequences)."""
_CHARSET = 0x00080005
MAIN_DICOM_SEQUENCES = int(MetadataType.MAIN_DICOM_SEQUENCES)


def extract(ctx: ServerContext, data: bytes, parsed: ParsedInstance) -> dict[ResourceType, str]:
    """Worker thread, only when extra tags are configured: add the extra tags' values to
    `parsed.main_tags` and answer the MainDicomSequences metadata of each level that has
    sequences. Values Orthanc would not keep as text (binary, too long) are left out."""
    import pydicom

    from ..model.orthancjson import orthanc_tags

    tagset = ctx.main_tags
    wanted = {_CHARSET, REQUEST_ATTRIBUTES_SEQUENCE}
    for tags in (*tagset.extra.values(), *tagset.sequences.values()):
        wanted.update(tags)
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True, specific_tags=sorted(wanted))
        full = orthanc_tags(ds, "full", TagsOptions(ctx.dictionary, ctx.default_encoding))
    except Exception:  # the file passed ingest's own parser: store it without the extra tags
        return {}
    for level, tags in tagset.extra.items():
        values = parsed.main_tags[level]
        for t in tags:
            node = full.get(format_tag(t))
            if node is not None and node.get("Type") == "String":
                values[t] = node["Value"]
    out: dict[ResourceType, str] = {}
    levels: dict[ResourceType, tuple[int, ...]] = dict(tagset.sequences)
    levels[ResourceType.SERIES] = (*levels.get(ResourceType.SERIES, ()), REQUEST_ATTRIBUTES_SEQUENCE)
    for level, tags in levels.items():
        found = {k: node for t in tags if (node := full.get(k := format_tag(t))) and node.get("Type") == "Sequence"}
        if found:
            out[level] = orjson.dumps({"Sequences": found, "Version": 1}).decode()
    return out


def parse_sequences(text: str | None) -> dict[str, Any]:
    """The sequences of a MainDicomSequences metadata value (full JSON by "gggg,eeee")."""
    if not text:
        return {}
    try:
        found = orjson.loads(text).get("Sequences")
    except (orjson.JSONDecodeError, AttributeError):
        return {}
    return found if isinstance(found, dict) else {}


def stored_sequences(
    txn: Transaction, tagset: MainTagSet, ids: Mapping[int, ResourceType]
) -> dict[int, dict[str, Any]]:
    """Inside a transaction: the configured extra sequences each resource keeps (full JSON by
    "gggg,eeee"), for the resources of levels that have some."""
    wanted = [rid for rid, level in ids.items() if tagset.sequences.get(level)]
    if not wanted:
        return {}
    meta = txn.metadata(wanted, (MAIN_DICOM_SEQUENCES,))
    out: dict[int, dict[str, Any]] = {}
    for rid in wanted:
        found = parse_sequences(meta.get(rid, {}).get(MAIN_DICOM_SEQUENCES))
        keys = {format_tag(t) for t in tagset.sequences[ids[rid]]}
        picked = {k: v for k, v in found.items() if k in keys}
        if picked:
            out[rid] = picked
    return out


async def requested_sequences(
    ctx: ServerContext, resources: Mapping[int, ResourceType], tags: list[int]
) -> dict[int, dict[str, Any]]:
    """The requested tags that are extra main sequences, from the MainDicomSequences of each
    resource or of its ancestor that keeps them (full JSON by "gggg,eeee"): `RequestedTags`
    answered from the index, as Orthanc answers them. A resource stored before the sequence was
    configured has none: its file is read instead (by the caller)."""
    tagset = ctx.main_tags
    levels = tagset.sequence_levels()
    wanted = [t for t in tags if t in levels]
    if not wanted:
        return {}

    def run(txn: Transaction) -> dict[int, dict[str, Any]]:
        holders: dict[int, dict[ResourceType, int]] = {}
        for rid, level in resources.items():
            chain: dict[ResourceType, int] = {}
            for t in wanted:
                at = levels[t]
                if at > level or at in chain:
                    continue
                found = rid if at is level else txn.ancestor(rid, at)
                if found is not None:
                    chain[at] = found
            holders[rid] = chain
        stored = stored_sequences(txn, tagset, {h: lv for chain in holders.values() for lv, h in chain.items()})
        out: dict[int, dict[str, Any]] = {}
        for rid, chain in holders.items():
            merged: dict[str, Any] = {}
            for t in wanted:
                holder = chain.get(levels[t])
                node = stored.get(holder, {}).get(format_tag(t)) if holder is not None else None
                if node is not None:
                    merged[format_tag(t)] = node
            if merged:
                out[rid] = merged
        return out

    return await ctx.index.read(run)
