"""Orthanc's main DICOM tags per level: the tags copied into the index at ingest.

These are Orthanc's default lists (unchanged since Orthanc 1.4.2); they decide what
`MainDicomTags` shows and what `/tools/find` can match without opening files. `MainTagSet` adds
the `ExtraMainDicomTags` of the configuration to them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .enums import ResourceType

if TYPE_CHECKING:
    from .dictionary import TagDictionary

log = logging.getLogger("orthanc_py.maintags")


def tag(group: int, element: int) -> int:
    """A tag as one int (0xGGGGEEEE), the representation used everywhere in the model."""
    return (group << 16) | element


PATIENT_NAME = tag(0x0010, 0x0010)
PATIENT_ID = tag(0x0010, 0x0020)
STUDY_INSTANCE_UID = tag(0x0020, 0x000D)
SERIES_INSTANCE_UID = tag(0x0020, 0x000E)
SOP_INSTANCE_UID = tag(0x0008, 0x0018)
SOP_CLASS_UID = tag(0x0008, 0x0016)
ACCESSION_NUMBER = tag(0x0008, 0x0050)
STUDY_DATE = tag(0x0008, 0x0020)
INSTANCE_NUMBER = tag(0x0020, 0x0013)
IMAGE_INDEX = tag(0x0054, 0x1330)
NUMBER_OF_FRAMES = tag(0x0028, 0x0008)
SPECIFIC_CHARACTER_SET = tag(0x0008, 0x0005)
PIXEL_DATA = tag(0x7FE0, 0x0010)

MAIN_TAGS: dict[ResourceType, dict[int, str]] = {
    ResourceType.PATIENT: {
        tag(0x0010, 0x0010): "PatientName",
        tag(0x0010, 0x0030): "PatientBirthDate",
        tag(0x0010, 0x0040): "PatientSex",
        tag(0x0010, 0x1000): "OtherPatientIDs",
        tag(0x0010, 0x0020): "PatientID",
    },
    ResourceType.STUDY: {
        tag(0x0008, 0x0020): "StudyDate",
        tag(0x0008, 0x0030): "StudyTime",
        tag(0x0020, 0x0010): "StudyID",
        tag(0x0008, 0x1030): "StudyDescription",
        tag(0x0008, 0x0050): "AccessionNumber",
        tag(0x0020, 0x000D): "StudyInstanceUID",
        tag(0x0032, 0x1060): "RequestedProcedureDescription",
        tag(0x0008, 0x0080): "InstitutionName",
        tag(0x0032, 0x1032): "RequestingPhysician",
        tag(0x0008, 0x0090): "ReferringPhysicianName",
    },
    ResourceType.SERIES: {
        tag(0x0008, 0x0021): "SeriesDate",
        tag(0x0008, 0x0031): "SeriesTime",
        tag(0x0008, 0x0060): "Modality",
        tag(0x0008, 0x0070): "Manufacturer",
        tag(0x0008, 0x1010): "StationName",
        tag(0x0008, 0x103E): "SeriesDescription",
        tag(0x0018, 0x0015): "BodyPartExamined",
        tag(0x0018, 0x0024): "SequenceName",
        tag(0x0018, 0x1030): "ProtocolName",
        tag(0x0020, 0x0011): "SeriesNumber",
        tag(0x0018, 0x1090): "CardiacNumberOfImages",
        tag(0x0020, 0x1002): "ImagesInAcquisition",
        tag(0x0020, 0x0105): "NumberOfTemporalPositions",
        tag(0x0054, 0x0081): "NumberOfSlices",
        tag(0x0054, 0x0101): "NumberOfTimeSlices",
        tag(0x0020, 0x000E): "SeriesInstanceUID",
        tag(0x0020, 0x0037): "ImageOrientationPatient",
        tag(0x0054, 0x1000): "SeriesType",
        tag(0x0008, 0x1070): "OperatorsName",
        tag(0x0040, 0x0254): "PerformedProcedureStepDescription",
        tag(0x0018, 0x1400): "AcquisitionDeviceProcessingDescription",
        tag(0x0018, 0x0010): "ContrastBolusAgent",
    },
    ResourceType.INSTANCE: {
        tag(0x0008, 0x0012): "InstanceCreationDate",
        tag(0x0008, 0x0013): "InstanceCreationTime",
        tag(0x0020, 0x0012): "AcquisitionNumber",
        tag(0x0054, 0x1330): "ImageIndex",
        tag(0x0020, 0x0013): "InstanceNumber",
        tag(0x0028, 0x0008): "NumberOfFrames",
        tag(0x0020, 0x0100): "TemporalPositionIdentifier",
        tag(0x0008, 0x0018): "SOPInstanceUID",
        tag(0x0020, 0x0032): "ImagePositionPatient",
        tag(0x0020, 0x4000): "ImageComments",
        tag(0x0020, 0x0037): "ImageOrientationPatient",
    },
}

LEVEL_OF_TAG: dict[int, ResourceType] = {}
"""For each main tag, the highest level that holds it (ImageOrientationPatient: series)."""
for _level in sorted(ResourceType, reverse=True):
    for _t in MAIN_TAGS[_level]:
        LEVEL_OF_TAG[_t] = _level

ALL_MAIN_TAGS: frozenset[int] = frozenset(LEVEL_OF_TAG)

IDENTIFIER_TAGS: dict[ResourceType, int] = {
    ResourceType.PATIENT: PATIENT_ID,
    ResourceType.STUDY: STUDY_INSTANCE_UID,
    ResourceType.SERIES: SERIES_INSTANCE_UID,
    ResourceType.INSTANCE: SOP_INSTANCE_UID,
}

KEYWORD_TO_MAIN_TAG: dict[str, int] = {name: t for level_tags in MAIN_TAGS.values() for t, name in level_tags.items()}

BITS_ALLOCATED = tag(0x0028, 0x0100)

_VR_TABLE: dict[str, tuple[int, ...]] = {
    "CS": (0x00080005, 0x00080060, 0x00100040, 0x00180015, 0x00541000),
    "DA": (0x00080012, 0x00080020, 0x00080021, 0x00100030),
    "DS": (0x00200032, 0x00200037),
    "IS": (0x00181090, 0x00200011, 0x00200012, 0x00200013, 0x00200100, 0x00200105, 0x00201002, 0x00280008),
    "LO": (
        *(0x00080070, 0x00080080, 0x00081030, 0x0008103E, 0x00100020, 0x00101000, 0x00180010, 0x00181030),
        *(0x00181400, 0x00321060, 0x00400254),
    ),
    "LT": (0x00204000,),
    "PN": (0x00080090, 0x00081070, 0x00100010, 0x00321032),
    "SH": (0x00080050, 0x00081010, 0x00180024, 0x00200010),
    "TM": (0x00080013, 0x00080030, 0x00080031),
    "UI": (0x00080016, 0x00080018, 0x0020000D, 0x0020000E),
    "US": (0x00280100, 0x00540081, 0x00540101, 0x00541330),
}
DICTIONARY_VR: dict[int, str] = {t: vr for vr, tags in _VR_TABLE.items() for t in tags}
"""pydicom's dictionary VR of the main tags, SOP Class UID, Specific Character Set and Bits
Allocated, written out: ingest and the index's reads need no pydicom (~100 ms and ~30 MB with
numpy and the pixel plugins, loaded on first use). tests/unit/test_maintags.py checks it."""


def format_tag(t: int, sep: str = ",") -> str:
    """`0x00100010` -> `"0010,0010"` (Orthanc's lowercase hex)."""
    return f"{t >> 16:04x}{sep}{t & 0xFFFF:04x}"


SIGNATURES: dict[ResourceType, str] = {
    level: ";".join(sorted(format_tag(t) for t in MAIN_TAGS[level])) for level in ResourceType
}
"""The MainDicomTagsSignature metadata of each level: the main tags a resource was indexed with
(the same text on every resource of a level, so the index stores it once)."""


_LEVEL_NAMES = {
    "patient": ResourceType.PATIENT,
    "patients": ResourceType.PATIENT,
    "study": ResourceType.STUDY,
    "studies": ResourceType.STUDY,
    "series": ResourceType.SERIES,
    "instance": ResourceType.INSTANCE,
    "instances": ResourceType.INSTANCE,
}
"""Level names as Orthanc's StringToResourceType reads them (any case)."""

COMPUTED_TAGS = frozenset(
    {
        tag(0x0020, 0x1200),
        tag(0x0020, 0x1202),
        tag(0x0020, 0x1204),
        tag(0x0020, 0x1206),
        tag(0x0020, 0x1208),
        tag(0x0020, 0x1209),
        tag(0x0008, 0x0061),
        tag(0x0008, 0x0062),
        tag(0x0008, 0x0056),
    }
)
"""Tags Orthanc computes when asked (counts, ModalitiesInStudy, SOPClassesInStudy,
InstanceAvailability): they cannot be main DICOM tags."""


@dataclass(frozen=True)
class MainTagSet:
    """The main DICOM tags this server indexes: Orthanc's defaults plus the `ExtraMainDicomTags`
    of the configuration (Orthanc 1.11+). Built once at start-up and kept on the server context.

    Extra tags with a value are stored as main tags (texts); extra sequences are stored as each
    resource's MainDicomSequences metadata, as Orthanc 1.11.1+ stores them."""

    names: Mapping[ResourceType, Mapping[int, str]]
    """Every main tag of each level (sequences included), with the name answers give it."""
    extra: Mapping[ResourceType, tuple[int, ...]] = field(default_factory=dict)
    """The extra tags of each level that are not sequences."""
    sequences: Mapping[ResourceType, tuple[int, ...]] = field(default_factory=dict)
    """The extra sequences of each level."""
    signatures: Mapping[ResourceType, str] = field(default_factory=lambda: SIGNATURES)
    """The MainDicomTagsSignature of each level (what /system lists, what ingest records)."""

    @property
    def has_extras(self) -> bool:
        """Whether anything beyond Orthanc's defaults is configured (ingest reads the file again
        for these tags only then: the default costs nothing more per instance)."""
        return bool(self.extra or self.sequences)

    @functools.cached_property
    def study_and_patient(self) -> tuple[frozenset[int], frozenset[int]]:
        """The tags a study row shows as MainDicomTags, and as PatientMainDicomTags."""
        return frozenset(self.names[ResourceType.STUDY]), frozenset(self.names[ResourceType.PATIENT])

    def sequence_levels(self) -> dict[int, ResourceType]:
        """Each configured sequence and the (highest) level that stores it."""
        out: dict[int, ResourceType] = {}
        for level in sorted(self.sequences, reverse=True):
            for t in self.sequences[level]:
                out[t] = level
        return out


DEFAULT_MAIN_TAGS = MainTagSet(MAIN_TAGS)
"""Orthanc's default main DICOM tags (no `ExtraMainDicomTags`)."""


def main_tag_set(config: Any, dictionary: TagDictionary) -> MainTagSet:
    """The main tags of the `ExtraMainDicomTags` configuration (`{"Study": ["Name", "gggg,eeee"],
    ...}`). As Orthanc: a tag named twice at one level stops the start
    (MainDicomTagsMultiplyDefined), a computed tag is left out with a warning; private tags are
    left out (Orthanc cannot store them either). Unknown names raise ValueError."""
    if not isinstance(config, Mapping) or not config:
        return DEFAULT_MAIN_TAGS
    from ..errors import ErrorCode, OrthancError
    from .orthancjson import parse_tag

    names = {level: dict(MAIN_TAGS[level]) for level in ResourceType}
    extra: dict[ResourceType, list[int]] = {}
    sequences: dict[ResourceType, list[int]] = {}
    for key, entries in config.items():
        level = _LEVEL_NAMES.get(str(key).lower())
        if level is None:
            raise ValueError(f"Unknown resource level in ExtraMainDicomTags: {key}")
        if not isinstance(entries, list):
            raise OrthancError(
                ErrorCode.BAD_FILE_FORMAT,
                f"The definition of the '{key}' ExtraMainDicomTags entry is invalid (not an array).",
            )
        for entry in entries:
            t = parse_tag(str(entry), dictionary)
            if t in COMPUTED_TAGS:
                log.warning("%s cannot be added in the Extra Main Dicom Tags: its value is computed", entry)
                continue
            if (t >> 16) & 1:
                log.warning("%s cannot be added in the Extra Main Dicom Tags: it is a private tag", entry)
                continue
            if t in names[level]:
                raise OrthancError(ErrorCode.MAIN_DICOM_TAGS_MULTIPLY_DEFINED, f"{format_tag(t)} is already defined")
            name = dictionary.name(t)
            names[level][t] = name
            (sequences if dictionary.vr(t) == "SQ" else extra).setdefault(level, []).append(t)
    if not extra and not sequences:
        return DEFAULT_MAIN_TAGS
    return MainTagSet(
        names,
        {level: tuple(tags) for level, tags in extra.items()},
        {level: tuple(tags) for level, tags in sequences.items()},
        {level: ";".join(sorted(format_tag(t) for t in names[level])) for level in ResourceType},
    )
