"""DICOMDIR of a media archive (PS3.10 file-set, PS3.3 F.5 Basic Directory IOD), written the way
Orthanc 1.10.1's DicomDirWriter (on DCMTK's DcmDicomDir) does: one PATIENT, STUDY, SERIES and
IMAGE record per resource, keyed by PatientID / StudyInstanceUID / SeriesInstanceUID /
SOPInstanceUID, values reduced to ASCII, File-set ID "ORTHANC_MEDIA". With `extended`,
SeriesDescription joins the series record (Orthanc's "extended" DICOMDIR, type 3 attributes).

The records are pydicom datasets; the byte offsets that link them (PS3.3 F.3.2.2) are counted
from the start of the file, computed once the records' encoded sizes are known."""

from __future__ import annotations

import datetime as _dt
import io
from dataclasses import dataclass, field
from typing import Any

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
FILE_SET_ID = "ORTHANC_MEDIA"

_NEXT, _LOWER = 0x00041400, 0x00041420


def ascii_only(text: str) -> str:
    """Orthanc writes DICOMDIR values in ASCII: other characters and control characters are
    dropped (Toolbox::ConvertToAscii)."""
    return "".join(c for c in text if 32 <= ord(c) < 127)


def _value(ds: Dataset, keyword: str) -> str | None:
    """The value of a string element as text (None when absent; "" when empty)."""
    if keyword not in ds:
        return None
    elem = ds[keyword]
    value = elem.value
    if value is None:
        return ""
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return "\\".join(str(v) for v in value)
    return str(value)


def _first(ds: Dataset, keywords: tuple[str, ...], default: str) -> str:
    """The first of `keywords` present in `ds` (empty or not), else `default`."""
    for k in keywords:
        v = _value(ds, k)
        if v is not None:
            return v
    return default


@dataclass
class _Record:
    ds: Dataset
    children: list[_Record] = field(default_factory=list)


class DicomDirWriter:
    """Collects the instances of a media archive, then encodes the DICOMDIR."""

    def __init__(self, extended: bool = False) -> None:
        self.extended = extended
        self._roots: list[_Record] = []
        self._index: dict[tuple[int, str], _Record] = {}
        now = _dt.datetime.now(_dt.UTC)  # Orthanc uses UTC for a study without date
        self._now = (now.strftime("%Y%m%d"), now.strftime("%H%M%S.000000"))

    @staticmethod
    def _set(record: Dataset, keyword: str, value: str) -> None:
        setattr(record, keyword, ascii_only(value))

    def _copy(self, record: Dataset, ds: Dataset, keyword: str, optional: bool, copy_empty: bool) -> None:
        """DCMTK's type 1/1C/2/3 copies: type 1 and 2 always write the element (empty when the
        file lacks it), 1C only a non-empty value, 3 any value present."""
        value = _value(ds, keyword)
        if optional and not value and not (copy_empty and value is not None):
            return
        self._set(record, keyword, value or "")

    def _record(self, kind: str, ds: Dataset, path: str | None) -> Dataset:
        r = Dataset()
        r.OffsetOfTheNextDirectoryRecord = 0
        r.RecordInUseFlag = 0xFFFF
        r.OffsetOfReferencedLowerLevelDirectoryEntity = 0
        r.DirectoryRecordType = kind
        if kind == "PATIENT":
            self._copy(r, ds, "PatientID", True, False)
            self._copy(r, ds, "PatientName", False, True)
        elif kind == "STUDY":
            date = _first(ds, ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"), self._now[0])
            time = _first(ds, ("StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime"), self._now[1])
            self._set(r, "StudyDate", date)
            self._set(r, "StudyTime", time)
            self._copy(r, ds, "StudyDescription", False, True)
            self._copy(r, ds, "StudyInstanceUID", False, False)
            self._copy(r, ds, "StudyID", True, False)
            self._copy(r, ds, "AccessionNumber", False, True)
        elif kind == "SERIES":
            self._copy(r, ds, "Modality", False, False)
            self._copy(r, ds, "SeriesInstanceUID", False, False)
            self._copy(r, ds, "SeriesNumber", True, False)
            if self.extended:
                self._copy(r, ds, "SeriesDescription", True, True)
        else:
            self._copy(r, ds, "InstanceNumber", False, False)
            meta = getattr(ds, "file_meta", None) or Dataset()
            sop_class, sop_instance = _value(ds, "SOPClassUID"), _value(ds, "SOPInstanceUID")
            syntax = _value(meta, "TransferSyntaxUID")
            if sop_class is None or sop_instance is None or syntax is None:
                raise ValueError("not a DICOM instance (no SOP class, SOP instance or transfer syntax)")
            assert path is not None
            r.ReferencedFileID = path.split("\\")
            self._set(r, "ReferencedSOPClassUIDInFile", sop_class)
            self._set(r, "ReferencedSOPInstanceUIDInFile", sop_instance)
            self._set(r, "ReferencedTransferSyntaxUIDInFile", syntax)
        self._copy(r, ds, "SpecificCharacterSet", True, False)
        return r

    def add(self, path: str, ds: Dataset) -> None:
        """Add the instance `ds` (its header is enough), stored at `path` ("IMAGES\\IM0")."""
        keys = (
            ("IMAGE", "SOPInstanceUID"),
            ("SERIES", "SeriesInstanceUID"),
            ("STUDY", "StudyInstanceUID"),
            ("PATIENT", "PatientID"),
        )
        child: _Record | None = None
        for level, (kind, keyword) in enumerate(keys):
            ident = _value(ds, keyword)
            if ident is None:
                if kind != "PATIENT":  # a missing PatientID is tolerated (Orthanc issue 124)
                    raise ValueError(f"no {keyword}")
                ident = ""
            found = self._index.get((level, ident))
            if found is not None:
                if child is not None:
                    found.children.append(child)
                return
            record = _Record(self._record(kind, ds, path if kind == "IMAGE" else None))
            if child is not None:
                record.children.append(child)
            self._index[(level, ident)] = record
            child = record
        assert child is not None
        self._roots.append(child)

    def encode(self) -> bytes:
        """The DICOMDIR file (Explicit VR Little Endian, records in depth-first order)."""
        flat: list[_Record] = []

        def walk(records: list[_Record]) -> None:
            for r in records:
                flat.append(r)
                walk(r.children)

        walk(self._roots)
        sizes = []
        for r in flat:
            buf = DicomBytesIO()
            buf.is_little_endian, buf.is_implicit_VR = True, False
            write_dataset(buf, r.ds)
            sizes.append(8 + len(buf.getvalue()))  # item tag + length + body (defined length)
        root = self._root_dataset([r.ds for r in flat])
        first = len(self._write(root)) - sum(sizes)
        offsets = {}
        pos = first
        for r, size in zip(flat, sizes, strict=True):
            offsets[id(r)] = pos
            pos += size

        def link(records: list[_Record]) -> None:
            for i, r in enumerate(records):
                r.ds[_NEXT].value = offsets[id(records[i + 1])] if i + 1 < len(records) else 0
                r.ds[_LOWER].value = offsets[id(r.children[0])] if r.children else 0
                link(r.children)

        link(self._roots)
        if self._roots:
            root.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = offsets[id(self._roots[0])]
            root.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = offsets[id(self._roots[-1])]
        return self._write(root)

    @staticmethod
    def _root_dataset(records: list[Dataset]) -> Dataset:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(MEDIA_STORAGE_DIRECTORY)
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.FileSetID = FILE_SET_ID
        ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = 0
        ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = 0
        ds.FileSetConsistencyFlag = 0
        ds.DirectoryRecordSequence = DicomSequence(records)
        return ds

    @staticmethod
    def _write(ds: Any) -> bytes:
        out = io.BytesIO()
        ds.preamble = b"\0" * 128
        pydicom.dcmwrite(out, ds, enforce_file_format=True, implicit_vr=False, little_endian=True)
        return out.getvalue()
