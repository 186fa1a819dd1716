"""Study and series metadata answered from the index (the DICOMweb plugin's `MainDicomTags` and
`Extrapolate` modes): per instance, its main tags completed by its series' and study's, extra
main sequences included, and in Extrapolate mode the consensus of a few files per series and
study for the configured tags."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..index.base import Transaction
from ..model.enums import ResourceType
from ..model.maintags import MainTagSet
from .context import ServerContext
from .dicomfind import header_of
from .extramain import stored_sequences
from .files import InstanceFile, files_in

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
    from ..model.parsing import element_text

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
