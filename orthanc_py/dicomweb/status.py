"""STOW-RS outcomes: the FailureReason of a refused instance (PS3.18 I.2, PS3.4 B.2.3), as
Orthanc's DICOMweb plugin answers under /dicom-web and as the Azure DICOM service answers under
its prefixes. One table; the STOW handler only asks it."""

from __future__ import annotations

from ..errors import ErrorCode, OrthancError

PROCESSING_FAILURE = 0xC000  # 49152 (Orthanc's plugin: "cannot understand", a UID is missing)
ORTHANC_PROCESSING_FAILURE = 0x0110  # Orthanc's plugin: the study of the URL, or the store failed
OUT_OF_RESOURCES = 0xA700  # 42752: the storage is full or cannot be written
STUDY_MISMATCH = 43265  # Azure: the instance is not part of the study in the URL
ALREADY_EXISTS = 45070  # Azure: the instance is already stored

_STORAGE_ERRORS = frozenset((ErrorCode.FULL_STORAGE, ErrorCode.FILE_STORAGE_CANNOT_WRITE))


def storage_failed(err: BaseException) -> bool:
    """Whether ingest failed on the storage (full, or cannot be written) rather than the data."""
    return isinstance(err, OrthancError) and err.code in _STORAGE_ERRORS


def failure_reason(err: BaseException, orthanc: bool) -> int:
    """The reason of an instance ingest refused (`orthanc`: under Orthanc's prefix)."""
    if storage_failed(err):
        if orthanc and not (isinstance(err, OrthancError) and err.code is ErrorCode.FULL_STORAGE):
            return ORTHANC_PROCESSING_FAILURE  # the plugin: 0xA700 for a full storage only
        return OUT_OF_RESOURCES
    return PROCESSING_FAILURE


def study_mismatch_reason(orthanc: bool) -> int:
    """The reason of an instance that is not part of the study the URL names."""
    return ORTHANC_PROCESSING_FAILURE if orthanc else STUDY_MISMATCH
