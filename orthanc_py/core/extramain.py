"""`ExtraMainDicomTags` (Orthanc 1.11+): the extra main tags of each level, taken from the file
at ingest and reconstruction, and the extra sequences, kept as each resource's
MainDicomSequences metadata (`{"Version": 1, "Sequences": {"gggg,eeee": full JSON}}`) and read
back for the answers that show main tags."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..index.base import Transaction
from ..model.enums import MetadataType, ResourceType
from ..model.maintags import MainTagSet, format_tag
from ..model.orthancjson import TagsOptions, orthanc_tags
from ..model.parsing import ParsedInstance, element_text
from .context import ServerContext
from .dicomfind import header_of
from .files import InstanceFile, files_in

REQUEST_ATTRIBUTES_SEQUENCE = 0x00400275
"""Kept in its series' MainDicomSequences whatever the configuration (core.ingest.main_sequences)."""
_CHARSET = 0x00080005
MAIN_DICOM_SEQUENCES = int(MetadataType.MAIN_DICOM_SEQUENCES)


def extract(ctx: ServerContext, data: bytes, parsed: ParsedInstance) -> dict[ResourceType, str]:
    """Worker thread, only when extra tags are configured: add the extra tags' values to
    `parsed.main_tags` and answer the MainDicomSequences metadata of each level that has
    sequences. Values Orthanc would not keep as text (binary, too long) are left out."""
    import pydicom

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


MainTagMaps = list[tuple[dict[int, str], dict[str, Any]]]
"""Per instance: its main tags merged with its series' and study's (the instance's win), and
the extra main sequences of the three (full JSON by "gggg,eeee")."""

SAMPLES = 3
"""Instances read per series or study in the plugin's Extrapolate mode."""


@dataclass(slots=True)
class SeriesMainTags:
    """One series as the index keeps it, for metadata answered from main tags (no file read,
    except the few samples of the Extrapolate mode)."""

    public_id: str
    study_id: int
    series: dict[int, str]
    study: dict[int, str]
    """The study's main tags (its copy of the patient's included)."""
    sequences: dict[str, Any]
    """The extra main sequences of the series and the study (the series' win)."""
    instances: list[tuple[dict[int, str], dict[str, Any]]]
    """Each instance's own main tags and sequences, in creation order."""
    samples: list[InstanceFile] = field(default_factory=list)
    series_extra: dict[int, str] = field(default_factory=dict)
    study_extra: dict[int, str] = field(default_factory=dict)

    def merged(self) -> MainTagMaps:
        """Each instance's tags completed by its series' then its study's, as the plugin merges
        them (a value already there is kept; extrapolated values complete their level)."""
        upper = {**self.study, **self.study_extra, **self.series, **self.series_extra}
        return [({**upper, **tags}, {**self.sequences, **seqs}) for tags, seqs in self.instances]


def series_main_tags_in(
    txn: Transaction, tagset: MainTagSet, series_ids: list[int], samples: bool = False
) -> tuple[list[SeriesMainTags], dict[int, list[InstanceFile]]]:
    """Inside a transaction, per series: what the index knows of it and of its instances; with
    `samples`, the files of the first instances (by public ID) of each series and study."""
    series_rows = {r.id: r for r in txn.resources(series_ids)}
    study_rows = {r.id: r for r in txn.resources(sorted({r.parent_id for r in series_rows.values() if r.parent_id}))}
    kids = txn.children([sid for sid in series_ids if sid in series_rows])
    out: list[SeriesMainTags] = []
    study_samples: dict[int, list[InstanceFile]] = {}
    for sid in sorted(series_ids):  # creation order, as Orthanc 1.10.1's plugin answers them
        series = series_rows.get(sid)
        if series is None or series.parent_id is None or series.parent_id not in study_rows:
            continue
        study = study_rows[series.parent_id]
        by_id = {r.id: r for r in txn.resources([cid for cid, _ in kids.get(sid, ())])}
        rows = [by_id[cid] for cid, _ in kids.get(sid, ()) if cid in by_id]
        levels = {r.id: r.level for r in rows}
        levels[sid] = ResourceType.SERIES
        levels[study.id] = ResourceType.STUDY
        sequences = stored_sequences(txn, tagset, levels)
        found = SeriesMainTags(
            series.public_id,
            study.id,
            series.main_tags,
            study.main_tags,
            {**sequences.get(study.id, {}), **sequences.get(sid, {})},
            [(r.main_tags, sequences.get(r.id, {})) for r in rows],
        )
        if samples:
            found.samples = _first_files(txn, [r.id for r in rows])
            if study.id not in study_samples:
                study_samples[study.id] = _first_files(txn, txn.descendants(study.id, ResourceType.INSTANCE))
        out.append(found)
    return out, study_samples


def _first_files(txn: Transaction, ids: list[int]) -> list[InstanceFile]:
    return sorted(files_in(txn, ids), key=lambda f: f.public_id)[:SAMPLES]


def extrapolate(
    ctx: ServerContext,
    found: list[SeriesMainTags],
    study_samples: dict[int, list[InstanceFile]],
    series_tags: Sequence[int],
    study_tags: Sequence[int],
) -> None:
    """Worker thread, the plugin's Extrapolate mode: the value most of the sampled instances of
    each series (`SeriesMetadataExtrapolatedTags`) and study (`StudiesMetadataExtrapolatedTags`)
    give each tag (a tie: the smallest value), added to that level's tags."""
    headers: dict[str, Any] = {}

    def consensus(files: list[InstanceFile], tags: Sequence[int]) -> dict[int, str]:
        counts: dict[int, dict[str, int]] = {t: {} for t in tags}
        for f in files:
            if f.public_id not in headers:
                headers[f.public_id] = header_of(ctx, f)
            ds = headers[f.public_id]
            if ds is None:
                continue
            for t in tags:
                elem = ds.get(t)
                text = element_text(elem.value) if elem is not None and elem.VR != "SQ" else None
                if text is not None:
                    counts[t][text] = counts[t].get(text, 0) + 1
        out = {}
        for t, seen in counts.items():
            if seen:
                out[t] = min(seen, key=lambda v: (-seen[v], v))
        return out

    by_study: dict[int, dict[int, str]] = {}
    for s in found:
        if series_tags:
            s.series_extra = consensus(s.samples, series_tags)
        if study_tags:
            if s.study_id not in by_study:
                by_study[s.study_id] = consensus(study_samples.get(s.study_id, []), study_tags)
            s.study_extra = by_study[s.study_id]


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
