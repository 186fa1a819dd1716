"""Orthanc's enumerations (numbers and names as in Orthanc's Enumerations.h), used verbatim in JSON."""

from __future__ import annotations

import enum


class ResourceType(enum.IntEnum):
    """The four levels of the DICOM model, numbered as Orthanc does."""

    PATIENT = 1
    STUDY = 2
    SERIES = 3
    INSTANCE = 4

    @property
    def label(self) -> str:
        """Orthanc's name in JSON (`"Type": "Study"`)."""
        return _LEVEL_LABELS[self]

    @property
    def plural(self) -> str:
        """The REST collection name (`/studies`)."""
        return _LEVEL_PLURALS[self]

    @property
    def parent(self) -> ResourceType | None:
        return None if self is ResourceType.PATIENT else ResourceType(self - 1)

    @property
    def child(self) -> ResourceType | None:
        return None if self is ResourceType.INSTANCE else ResourceType(self + 1)

    @property
    def qr_level(self) -> str:
        """The DICOM QueryRetrieveLevel (0008,0052) naming this level ("IMAGE" for instances)."""
        return _QR_LEVELS[self]

    @classmethod
    def from_qr_level(cls, text: str) -> ResourceType:
        """The level a DICOM QueryRetrieveLevel names (exact, upper case); KeyError otherwise."""
        return _LEVEL_BY_QR[text]

    @classmethod
    def parse(cls, text: str) -> ResourceType:
        """Accept Orthanc's spellings: "Study", "study", "studies", "STUDY"; ValueError otherwise."""
        level = _LEVEL_BY_NAME.get(text.strip().lower())
        if level is None:
            raise ValueError(f"Unknown resource level: {text}")
        return level


_LEVEL_LABELS = {
    ResourceType.PATIENT: "Patient",
    ResourceType.STUDY: "Study",
    ResourceType.SERIES: "Series",
    ResourceType.INSTANCE: "Instance",
}
_LEVEL_PLURALS = {
    ResourceType.PATIENT: "patients",
    ResourceType.STUDY: "studies",
    ResourceType.SERIES: "series",
    ResourceType.INSTANCE: "instances",
}
_QR_LEVELS = {
    ResourceType.PATIENT: "PATIENT",
    ResourceType.STUDY: "STUDY",
    ResourceType.SERIES: "SERIES",
    ResourceType.INSTANCE: "IMAGE",
}
_LEVEL_BY_QR = {v: k for k, v in _QR_LEVELS.items()}
_LEVEL_BY_NAME = {
    **{v.lower(): k for k, v in _LEVEL_LABELS.items()},
    **{v: k for k, v in _LEVEL_PLURALS.items()},
    "image": ResourceType.INSTANCE,
}


class ChangeType(enum.IntEnum):
    """Entries of the /changes log."""

    COMPLETED_SERIES = 1
    DELETED = 2
    NEW_CHILD_INSTANCE = 3
    NEW_INSTANCE = 4
    NEW_PATIENT = 5
    NEW_SERIES = 6
    NEW_STUDY = 7
    ANONYMIZED_STUDY = 8
    ANONYMIZED_SERIES = 9
    MODIFIED_STUDY = 10
    MODIFIED_SERIES = 11
    ANONYMIZED_PATIENT = 12
    MODIFIED_PATIENT = 13
    STABLE_PATIENT = 14
    STABLE_STUDY = 15
    STABLE_SERIES = 16
    UPDATED_ATTACHMENT = 17
    UPDATED_METADATA = 18
    UPDATED_PEERS = 19
    UPDATED_MODALITIES = 20
    JOB_SUBMITTED = 21
    JOB_SUCCESS = 22
    JOB_FAILURE = 23

    @property
    def label(self) -> str:
        """Orthanc's CamelCase name (`"NewInstance"`)."""
        return "".join(p.capitalize() for p in self.name.split("_"))


CHANGE_BY_LABEL = {c.label: c for c in ChangeType}


class MetadataType(enum.IntEnum):
    """Orthanc's built-in metadata; user-defined ones are numbered from 1024."""

    INDEX_IN_SERIES = 1
    RECEPTION_DATE = 2
    REMOTE_AET = 3
    EXPECTED_NUMBER_OF_INSTANCES = 4
    MODIFIED_FROM = 5
    ANONYMIZED_FROM = 6
    LAST_UPDATE = 7
    ORIGIN = 8
    TRANSFER_SYNTAX = 9
    SOP_CLASS_UID = 10
    REMOTE_IP = 11
    CALLED_AET = 12
    HTTP_USERNAME = 13
    PIXEL_DATA_OFFSET = 14
    MAIN_DICOM_TAGS_SIGNATURE = 15
    MAIN_DICOM_SEQUENCES = 16
    PIXEL_DATA_VR = 17


METADATA_NAMES: dict[int, str] = {
    MetadataType.INDEX_IN_SERIES: "IndexInSeries",
    MetadataType.RECEPTION_DATE: "ReceptionDate",
    MetadataType.REMOTE_AET: "RemoteAET",
    MetadataType.EXPECTED_NUMBER_OF_INSTANCES: "ExpectedNumberOfInstances",
    MetadataType.MODIFIED_FROM: "ModifiedFrom",
    MetadataType.ANONYMIZED_FROM: "AnonymizedFrom",
    MetadataType.LAST_UPDATE: "LastUpdate",
    MetadataType.ORIGIN: "Origin",
    MetadataType.TRANSFER_SYNTAX: "TransferSyntax",
    MetadataType.SOP_CLASS_UID: "SopClassUid",
    MetadataType.REMOTE_IP: "RemoteIP",
    MetadataType.CALLED_AET: "CalledAET",
    MetadataType.HTTP_USERNAME: "HttpUsername",
    MetadataType.PIXEL_DATA_OFFSET: "PixelDataOffset",
    MetadataType.MAIN_DICOM_TAGS_SIGNATURE: "MainDicomTagsSignature",
    MetadataType.MAIN_DICOM_SEQUENCES: "MainDicomSequences",
    MetadataType.PIXEL_DATA_VR: "PixelDataVR",
}
METADATA_BY_NAME: dict[str, int] = {v: k for k, v in METADATA_NAMES.items()}
USER_METADATA_MIN = 1024


class FileContentType(enum.IntEnum):
    """Attachment types; user-defined ones are numbered from 1024."""

    DICOM = 1
    DICOM_AS_JSON = 2
    DICOM_UNTIL_PIXEL_DATA = 3


ATTACHMENT_NAMES: dict[int, str] = {
    FileContentType.DICOM: "dicom",
    FileContentType.DICOM_AS_JSON: "dicom-as-json",
    FileContentType.DICOM_UNTIL_PIXEL_DATA: "dicom-until-pixel-data",
}


TRANSFER_SYNTAXES: tuple[str, ...] = (
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.2",
    *(f"1.2.840.10008.1.2.4.{n}" for n in (*range(50, 67), 70, 80, 81, *range(90, 96), *range(100, 109))),
    "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.6.1",
    "1.2.840.10008.1.2.6.2",
)
"""The transfer syntaxes Orthanc knows, in its order (what `AcceptedTransferSyntaxes` patterns
are matched against, and what GET /tools/accepted-transfer-syntaxes lists)."""
