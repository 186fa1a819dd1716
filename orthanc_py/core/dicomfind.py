"""What a DICOM query (C-FIND, QIDO-RS) answers for each match: the requested attributes, taken
from the index (main tags of the resource and its ancestors, counts computed from the tree) or,
for other attributes, from the DICOM file of one instance (Orthanc's StorageAccessOnFind)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..index.base import Transaction
from ..model import maintags as mt
from ..model.enums import ResourceType
from .context import ServerContext
from .files import InstanceFile, files_in, instances_under, read

if TYPE_CHECKING:
    import pydicom

NUMBER_OF_PATIENT_RELATED_STUDIES = mt.tag(0x0020, 0x1200)
NUMBER_OF_PATIENT_RELATED_SERIES = mt.tag(0x0020, 0x1202)
NUMBER_OF_PATIENT_RELATED_INSTANCES = mt.tag(0x0020, 0x1204)
NUMBER_OF_STUDY_RELATED_SERIES = mt.tag(0x0020, 0x1206)
NUMBER_OF_STUDY_RELATED_INSTANCES = mt.tag(0x0020, 0x1208)
NUMBER_OF_SERIES_RELATED_INSTANCES = mt.tag(0x0020, 0x1209)
MODALITIES_IN_STUDY = mt.tag(0x0008, 0x0061)
SOP_CLASSES_IN_STUDY = mt.tag(0x0008, 0x0062)

_COUNTS: dict[int, tuple[ResourceType, ResourceType]] = {
    NUMBER_OF_PATIENT_RELATED_STUDIES: (ResourceType.PATIENT, ResourceType.STUDY),
    NUMBER_OF_PATIENT_RELATED_SERIES: (ResourceType.PATIENT, ResourceType.SERIES),
    NUMBER_OF_PATIENT_RELATED_INSTANCES: (ResourceType.PATIENT, ResourceType.INSTANCE),
    NUMBER_OF_STUDY_RELATED_SERIES: (ResourceType.STUDY, ResourceType.SERIES),
    NUMBER_OF_STUDY_RELATED_INSTANCES: (ResourceType.STUDY, ResourceType.INSTANCE),
    NUMBER_OF_SERIES_RELATED_INSTANCES: (ResourceType.SERIES, ResourceType.INSTANCE),
}
INSTANCE_AVAILABILITY = mt.tag(0x0008, 0x0056)
COUNT_TAGS = frozenset(_COUNTS)
COMPUTED_TAGS = frozenset({*_COUNTS, MODALITIES_IN_STUDY, SOP_CLASSES_IN_STUDY, INSTANCE_AVAILABILITY})


def computed_at(tag: int, level: ResourceType) -> bool:
    """Whether Orthanc 1.12.5 computes this tag for a resource of this level in `RequestedTags`:
    each count only at its own level (NumberOfStudyRelatedInstances for a study, not for its
    series), ModalitiesInStudy and SOPClassesInStudy for studies, InstanceAvailability for
    instances."""
    if tag in _COUNTS:
        return _COUNTS[tag][0] is level
    if tag in (MODALITIES_IN_STUDY, SOP_CLASSES_IN_STUDY):
        return level is ResourceType.STUDY
    if tag == INSTANCE_AVAILABILITY:
        return level is ResourceType.INSTANCE
    return False


def index_values(
    txn: Transaction, level: ResourceType, ids: Sequence[int], requested: Sequence[int]
) -> list[tuple[int, dict[int, str | None], list[int]]]:
    """The requested tags the index knows, for each resource that still exists: main tags of the
    resource and its ancestors, and the tags Orthanc computes (counts, ModalitiesInStudy,
    SOPClassesInStudy, InstanceAvailability). The others are listed as missing (read from a file)."""
    rows = {r.id: r for r in txn.resources(ids)}
    known: dict[int, dict[int, str]] = {rid: dict(r.main_tags) for rid, r in rows.items()}
    chains: dict[int, dict[ResourceType, int]] = {rid: {level: rid} for rid in rows}
    # Walk up one level at a time for all matches together; deeper levels win for tags kept at
    # two levels (ImageOrientationPatient), so ancestors only fill what is missing.
    current = {rid: r.parent_id for rid, r in rows.items()}
    lv = int(level) - 1
    while lv >= 1 and any(p is not None for p in current.values()):
        parents = {r.id: r for r in txn.resources(sorted({p for p in current.values() if p is not None}))}
        nxt: dict[int, int | None] = {}
        for rid, pid in current.items():
            parent = parents.get(pid) if pid is not None else None
            if parent is None:
                nxt[rid] = None
                continue
            chains[rid][ResourceType(lv)] = parent.id
            for t, v in parent.main_tags.items():
                known[rid].setdefault(t, v)
            nxt[rid] = parent.parent_id
        current = nxt
        lv -= 1
    out: list[tuple[int, dict[int, str | None], list[int]]] = []
    for rid in ids:
        if rid not in rows:
            continue
        chain = chains[rid]
        values: dict[int, str | None] = {}
        missing: list[int] = []
        for t in requested:
            if t in known[rid]:
                values[t] = known[rid][t]
            elif t in _COUNTS:
                top, below = _COUNTS[t]
                anchor = chain.get(top)
                values[t] = str(len(txn.descendants(anchor, below))) if anchor is not None else None
            elif t in (MODALITIES_IN_STUDY, SOP_CLASSES_IN_STUDY) and ResourceType.STUDY in chain:
                values[t] = _study_set(txn, chain[ResourceType.STUDY], t)
            elif t == INSTANCE_AVAILABILITY and level is ResourceType.INSTANCE:
                values[t] = "ONLINE"
            else:
                missing.append(t)
        out.append((rid, values, missing))
    return out


def _study_set(txn: Transaction, study: int, tag: int) -> str:
    if tag == MODALITIES_IN_STUDY:
        series = txn.resources(txn.descendants(study, ResourceType.SERIES))
        found = {r.main_tags.get(mt.tag(0x0008, 0x0060), "") for r in series}
    else:
        instances = txn.descendants(study, ResourceType.INSTANCE)
        meta = txn.metadata(instances, (10,))  # MetadataType.SOP_CLASS_UID
        found = {m.get(10, "") for m in meta.values()}
    return "\\".join(sorted(v for v in found if v))


def representative_file_in(txn: Transaction, rid: int, level: ResourceType) -> InstanceFile | None:
    """Inside a transaction: the file of one instance of a resource (None when it has none)."""
    found = files_in(txn, instances_under(txn, rid, level)[:1])
    return found[0] if found else None


def header_of(ctx: ServerContext, f: InstanceFile | None) -> pydicom.Dataset | None:
    """The header of a file, up to its pixel data (None when there is no file, or it is gone)."""
    if f is None:
        return None
    import pydicom

    try:
        data = read(ctx, f)
    except FileNotFoundError:
        return None
    return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)


def representative_dataset_blocking(ctx: ServerContext, rid: int, level: ResourceType) -> pydicom.Dataset | None:
    """Worker thread: the header of one instance of a resource, the file read after the index."""
    return header_of(ctx, ctx.index.read_blocking(lambda txn: representative_file_in(txn, rid, level)))


async def known_values(
    ctx: ServerContext, level: ResourceType, ids: Sequence[int], requested: Sequence[int]
) -> list[tuple[int, dict[int, str | None], list[int]]]:
    """`index_values` in a read transaction of its own."""
    return await ctx.index.read(lambda txn: index_values(txn, level, ids, requested))
