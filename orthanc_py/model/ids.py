"""Orthanc's public IDs: SHA-1 of the DICOM identifiers, lowercase hex in 5 dash-joined groups.

Patient: `PatientID`; study: `PatientID|StudyInstanceUID`; series: `...|SeriesInstanceUID`;
instance: `...|SOPInstanceUID` (Orthanc's DicomInstanceHasher).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


def format_sha1(text: str) -> str:
    """SHA-1 of the UTF-8 text as Orthanc prints it: `xxxxxxxx-xxxxxxxx-...` (5 groups of 8)."""
    h = hashlib.sha1(text.encode("utf-8")).hexdigest()
    return f"{h[0:8]}-{h[8:16]}-{h[16:24]}-{h[24:32]}-{h[32:40]}"


@dataclass(frozen=True, slots=True)
class PublicIds:
    """The public IDs of an instance and its three ancestors."""

    patient: str
    study: str
    series: str
    instance: str


def compute(patient_id: str, study_uid: str, series_uid: str, sop_uid: str) -> PublicIds:
    """Hash the four identifiers (already decoded and stripped) into Orthanc's public IDs."""
    study_key = f"{patient_id}|{study_uid}"
    series_key = f"{study_key}|{series_uid}"
    return PublicIds(
        patient=format_sha1(patient_id),
        study=format_sha1(study_key),
        series=format_sha1(series_key),
        instance=format_sha1(f"{series_key}|{sop_uid}"),
    )


def is_public_id(text: str) -> bool:
    """Cheap shape check before touching the index (44 chars, dashes at the right places)."""
    return len(text) == 44 and text[8] == "-" and text[17] == "-" and text[26] == "-" and text[35] == "-"
