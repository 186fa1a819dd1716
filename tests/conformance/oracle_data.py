"""Datasets uploaded to the real Orthanc to record the conformance oracle.

The same list is replayed against orthanc_py, so every entry must build byte-identical
files on every run (dicomgen is deterministic; nothing here uses randomness or clocks).
Each entry names a dataset (``name``, also the ``{placeholder}`` used in oracle labels),
gives its ``dicomgen.make`` keyword arguments (``kwargs``), and may add what ``make``
cannot express: ``sequences`` (keyword -> list of item dicts), ``private`` tags and
``drop`` (keywords removed after building, e.g. to produce a file without PatientID).
"""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

_DICOMGEN_PATH = Path(__file__).resolve().parents[2] / "scripts" / "dicomgen.py"


def _load_dicomgen() -> ModuleType:
    """Import scripts/dicomgen.py by path: ``scripts`` is not a package."""
    if "dicomgen" in sys.modules:
        return sys.modules["dicomgen"]
    spec = importlib.util.spec_from_file_location("dicomgen", _DICOMGEN_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["dicomgen"] = module
    spec.loader.exec_module(module)
    return module


dicomgen = _load_dicomgen()

SMALL = {"rows": 16, "columns": 16}
PRIVATE_CREATOR = "ORTHANC_PY TEST"
REFERENCED_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2"


def _hierarchy() -> list[dict[str, Any]]:
    """Three ordinary patients: p0 has 2 studies, p0/st0 has 2 series of several instances."""
    entries: list[dict[str, Any]] = []
    layout = [
        # (patient, study, series, n_instances, modality, study_date)
        (0, 0, 0, 3, "CT", "20200101"),
        (0, 0, 1, 2, "MR", "20200101"),
        (0, 1, 0, 2, "CT", "20210615"),
    ]
    for patient, study, series, count, modality, date in layout:
        for instance in range(count):
            entries.append(
                {
                    "name": f"p{patient}_st{study}_se{series}_i{instance}",
                    "kwargs": {
                        "patient": patient,
                        "study": study,
                        "series": series,
                        "instance": instance,
                        "modality": modality,
                        "study_date": date,
                        "series_description": f"Series {series} {modality}",
                        **SMALL,
                    },
                }
            )
    # p1: Latin-1 name (ISO_IR 100 is dicomgen's default character set).
    for instance in range(2):
        entries.append(
            {
                "name": f"p1_st0_se0_i{instance}",
                "kwargs": {
                    "patient": 1,
                    "instance": instance,
                    "patient_name": "Müller^Jürgen",
                    "study_date": "20190310",
                    "study_description": "Knöchel rechts",
                    "modality": "MR",
                    **SMALL,
                },
            }
        )
    # p2: UTF-8 (ISO_IR 192) Greek name and Japanese description.
    entries.append(
        {
            "name": "p2_st0_se0_i0",
            "kwargs": {
                "patient": 2,
                "patient_name": "Παπαδόπουλος^Γιώργος",
                "study_date": "20221224",
                "study_description": "頭部 CT 検査",
                "extra": {"SpecificCharacterSet": "ISO_IR 192"},
                **SMALL,
            },
        }
    )
    return entries


def _special() -> list[dict[str, Any]]:
    """Edge cases, one patient each unless stated."""
    return [
        {"name": "no_patient_id", "kwargs": {"patient": 3, **SMALL}, "drop": ["PatientID"]},
        {"name": "empty_patient_id", "kwargs": {"patient": 4, "patient_id": "", **SMALL}},
        # Same PatientID with and without trailing spaces: do they share a patient?
        {"name": "trailing_spaces", "kwargs": {"patient": 5, "patient_id": "TRAIL05   ", **SMALL}},
        {
            "name": "trailing_spaces_twin",
            "kwargs": {"patient": 5, "study": 1, "patient_id": "TRAIL05", **SMALL},
        },
        {
            "name": "sequences_private",
            "kwargs": {"patient": 6, "accession": "ACCSEQ", **SMALL},
            "sequences": {
                "ReferencedImageSequence": [
                    {
                        "ReferencedSOPClassUID": REFERENCED_SOP_CLASS,
                        "ReferencedSOPInstanceUID": dicomgen.uid("ref", 1),
                    },
                    {
                        "ReferencedSOPClassUID": REFERENCED_SOP_CLASS,
                        "ReferencedSOPInstanceUID": dicomgen.uid("ref", 2),
                    },
                ],
                "ProcedureCodeSequence": [
                    {
                        "CodeValue": "CTHEAD",
                        "CodingSchemeDesignator": "L",
                        "CodeMeaning": "CT head without contrast",
                    }
                ],
            },
            "private": [
                {"group": 0x0009, "creator": PRIVATE_CREATOR, "offset": 0x01, "vr": "LO", "value": "secret"},
                {"group": 0x0009, "creator": PRIVATE_CREATOR, "offset": 0x02, "vr": "US", "value": 42},
            ],
        },
        {
            "name": "multi_valued",
            "kwargs": {
                "patient": 7,
                "modality": "MR",
                **SMALL,
                "extra": {
                    "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
                    "OtherPatientIDs": ["OTHER1", "OTHER2"],
                },
            },
        },
        {"name": "no_pixel_data", "kwargs": {"patient": 8, "modality": "SR", "rows": 0, "columns": 0}},
    ]


DATASETS: list[dict[str, Any]] = [*_hierarchy(), *_special()]
"""Uploaded in this order; the oracle's change sequence numbers depend on it."""

BAD_DATASETS: list[dict[str, Any]] = [
    {"name": "missing_study_uid", "kwargs": {"patient": 9, **SMALL}, "drop": ["StudyInstanceUID"]},
    {"name": "missing_series_uid", "kwargs": {"patient": 9, **SMALL}, "drop": ["SeriesInstanceUID"]},
    {"name": "missing_sop_uid", "kwargs": {"patient": 9, **SMALL}, "drop": ["SOPInstanceUID"]},
]
"""Files Orthanc refuses (no DICOM identifier at some level)."""


def _item(values: dict[str, Any]) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def build_dataset(entry: dict[str, Any]) -> Dataset:
    """Dataset for ``entry`` including sequences and private tags (file meta not yet set)."""
    ds: Dataset = dicomgen.make_dataset(dicomgen.Spec(**entry["kwargs"]))
    for keyword, items in entry.get("sequences", {}).items():
        setattr(ds, keyword, Sequence([_item(values) for values in items]))
    for tag in entry.get("private", []):
        block = ds.private_block(tag["group"], tag["creator"], create=True)
        block.add_new(tag["offset"], tag["vr"], tag["value"])
    return ds


def build(entry: dict[str, Any]) -> bytes:
    """Part-10 bytes for ``entry``; ``drop`` removes elements after the file meta is set."""
    ds = build_dataset(entry)
    data: bytes = dicomgen.to_bytes(ds)
    if not entry.get("drop"):
        return data
    for keyword in entry["drop"]:
        delattr(ds, keyword)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def not_dicom() -> bytes:
    """A body that is not DICOM at all."""
    return b"This is definitely not a DICOM file.\n" * 4


def truncated(fraction: float = 0.5) -> bytes:
    """A valid file cut short (default: in the middle of the pixel data)."""
    data = build(DATASETS[0])
    return data[: int(len(data) * fraction)]
