"""Synthetic DICOM instances for tests, benchmarks and `scripts/populate`.

Deterministic: the same arguments give the same bytes, so public IDs computed by the real
Orthanc for these files can be recorded once and checked against ours.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ROOT = "1.2.826.0.1.3680043.10.1404."


def uid(*parts: object) -> str:
    """A stable UID derived from `parts` (so repeated runs produce the same dataset)."""
    return generate_uid(prefix=ROOT, entropy_srcs=[str(p) for p in parts])


@dataclass
class Spec:
    """What one synthetic instance carries; unset UIDs derive from the indices."""

    patient: int = 0
    study: int = 0
    series: int = 0
    instance: int = 0
    patient_id: str | None = None
    patient_name: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    sop_uid: str | None = None
    modality: str = "CT"
    study_date: str = "20200101"
    study_description: str = "Synthetic study"
    series_description: str = "Synthetic series"
    accession: str | None = None
    rows: int = 512
    columns: int = 512
    extra: dict[str, object] = field(default_factory=dict)


def make_dataset(spec: Spec) -> Dataset:
    """Build the dataset described by `spec` (16-bit monochrome CT image)."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = spec.sop_uid or uid("sop", spec.patient, spec.study, spec.series, spec.instance)
    ds.StudyDate = spec.study_date
    ds.SeriesDate = spec.study_date
    ds.StudyTime = "101010"
    ds.AccessionNumber = spec.accession if spec.accession is not None else f"ACC{spec.patient:05d}{spec.study:03d}"
    ds.Modality = spec.modality
    ds.Manufacturer = "orthanc_py"
    ds.InstitutionName = "Synthetic Hospital"
    ds.ReferringPhysicianName = "Doctor^Who"
    ds.StudyDescription = spec.study_description
    ds.SeriesDescription = spec.series_description
    ds.PatientName = spec.patient_name or f"Patient^{spec.patient:05d}"
    ds.PatientID = spec.patient_id if spec.patient_id is not None else f"PID{spec.patient:05d}"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = spec.study_uid or uid("study", spec.patient, spec.study)
    ds.SeriesInstanceUID = spec.series_uid or uid("series", spec.patient, spec.study, spec.series)
    ds.StudyID = f"S{spec.study}"
    ds.SeriesNumber = spec.series + 1
    ds.InstanceNumber = spec.instance + 1
    ds.ImagePositionPatient = [0, 0, float(spec.instance)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceThickness = 1
    ds.PixelSpacing = [0.5, 0.5]
    for keyword, value in spec.extra.items():
        setattr(ds, keyword, value)
    if spec.rows and spec.columns:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = spec.rows
        ds.Columns = spec.columns
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.WindowCenter = 40
        ds.WindowWidth = 400
        seed = int.from_bytes(hashlib.sha1(ds.SOPInstanceUID.encode()).digest()[:4], "little")
        rng = np.random.default_rng(seed)
        pixels = rng.integers(0, 4096, size=(spec.rows, spec.columns), dtype=np.uint16)
        ds.PixelData = pixels.tobytes()
    return ds


def to_bytes(ds: Dataset) -> bytes:
    """Serialize as a Part 10 file in Explicit VR Little Endian."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = ROOT + "1"
    ds.file_meta = meta
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def make(spec: Spec | None = None, **kwargs: object) -> bytes:
    """Shorthand: `make(patient=1, study=2, rows=0)` -> Part 10 bytes."""
    if spec is None:
        spec = Spec(**kwargs)  # type: ignore[arg-type]
    return to_bytes(make_dataset(spec))
