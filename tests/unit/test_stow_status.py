"""dicomweb.status: the FailureReason table of STOW-RS, Orthanc's plugin and the Azure service."""

from __future__ import annotations

from orthanc_py.dicomweb import status
from orthanc_py.errors import ErrorCode, OrthancError


def test_failure_reasons():
    full = OrthancError(ErrorCode.FULL_STORAGE)
    unwritable = OrthancError(ErrorCode.FILE_STORAGE_CANNOT_WRITE)
    bad = OrthancError(ErrorCode.BAD_FILE_FORMAT, "not DICOM")
    # Orthanc's plugin: out of resources for a full storage (recycling refused), else processing failure
    assert status.failure_reason(full, orthanc=True) == status.failure_reason(full, orthanc=False) == 0xA700
    assert status.failure_reason(unwritable, orthanc=True) == 0x0110
    assert status.failure_reason(unwritable, orthanc=False) == 0xA700
    assert status.failure_reason(bad, orthanc=True) == status.failure_reason(bad, orthanc=False) == 0xC000
    assert status.failure_reason(RuntimeError("bug"), orthanc=False) == 0xC000
    assert status.study_mismatch_reason(orthanc=True) == 0x0110
    assert status.study_mismatch_reason(orthanc=False) == 43265
