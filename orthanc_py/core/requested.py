"""Requested tags: what `RequestedTags` of /tools/find and `?requested-tags=` of the resource
routes answer for each resource (Orthanc 1.11+).

One place for the three sources Orthanc uses, in its order: main DICOM tags of the resource and
of its ancestors (from the index), computed tags (NumberOfStudyRelatedSeries, ModalitiesInStudy,
SOPClassesInStudy..., counted in the index), and any other tag from the DICOM file of one
instance of the resource, sequences included. Rendering to JSON stays with the interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pydicom

from ..index.base import Transaction
from ..model.enums import ResourceType
from ..model.maintags import LEVEL_OF_TAG, SPECIFIC_CHARACTER_SET
from .context import ServerContext
from .dicomfind import COMPUTED_TAGS, answers, representative_dataset


@dataclass(slots=True)
class RequestedValues:
    """The requested tags of one resource: `strings` from the index (main and computed tags),
    `file` the others as elements of the DICOM file (None when none is needed or found);
    tags the resource lacks are in neither."""

    strings: dict[int, str]
    file: pydicom.Dataset | None
    charset_added: bool = False
    """`file` holds SpecificCharacterSet only to decode its values: not to be answered."""


INSTANCE_AVAILABILITY = 0x00080056
"""Computed too: every stored instance is "ONLINE"."""


def _from_index(tag: int, level: ResourceType) -> bool:
    """A main tag of the level or above, or a computed tag: no file needs opening."""
    if tag in COMPUTED_TAGS or tag == INSTANCE_AVAILABILITY:
        return True
    tag_level = LEVEL_OF_TAG.get(tag)
    return tag_level is not None and tag_level <= level


def requested_values(
    ctx: ServerContext, txn: Transaction, level: ResourceType, ids: Sequence[int], tags: Sequence[int]
) -> list[RequestedValues]:
    """Values of `tags` for each resource of `ids` (all at `level`), in order. Runs in a read
    transaction (a worker thread): files are read only for tags the index does not hold."""
    indexed = [t for t in tags if _from_index(t, level) and t != INSTANCE_AVAILABILITY]
    others = [t for t in tags if not _from_index(t, level)]
    values = answers(ctx, txn, level, ids, indexed) if indexed else [{} for _ in ids]
    out: list[RequestedValues] = []
    for rid, found in zip(ids, values, strict=True):
        strings = {t: v for t, v in found.items() if v is not None}
        if INSTANCE_AVAILABILITY in tags:
            strings[INSTANCE_AVAILABILITY] = "ONLINE"
        subset = None
        added = False
        if others:
            ds = representative_dataset(ctx, txn, rid, level)
            present = [t for t in others if ds is not None and t in ds]
            if ds is not None and present:
                subset = pydicom.Dataset()
                if SPECIFIC_CHARACTER_SET in ds and SPECIFIC_CHARACTER_SET not in present:
                    subset[SPECIFIC_CHARACTER_SET] = ds[SPECIFIC_CHARACTER_SET]
                    added = True
                for t in present:
                    subset[t] = ds[t]
        out.append(RequestedValues(strings, subset, added))
    return out
