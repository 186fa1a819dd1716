"""Orthanc's dataset renderings (/tags, /header, /content) checked against answers of Orthanc 1.10.1.

The input files are rebuilt here deterministically; `dicomjson_oracle.json` holds what the real
Orthanc answered for them.  Re-record with a running Orthanc (no plugins):
`python tests/unit/test_dicomjson.py http://localhost:28042`.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import struct
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

REPO = Path(__file__).resolve().parents[2]
ORACLE = Path(__file__).with_name("data") / "dicomjson_oracle.json"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from orthanc_py.model.orthancjson import (  # noqa: E402
    ContentResult,
    content_walk,
    orthanc_header,
    orthanc_tags,
)


def _load_dicomgen() -> Any:
    """scripts/ is not a package, so load the shared generator by path."""
    spec = importlib.util.spec_from_file_location("dicomgen", REPO / "scripts" / "dicomgen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("dicomgen", module)
    spec.loader.exec_module(module)
    return module


dicomgen = _load_dicomgen()
CT = "1.2.840.10008.5.1.4.1.1.2"
SC = "1.2.840.10008.5.1.4.1.1.7"


def _uid(name: str) -> str:
    return str(dicomgen.uid("dicomjson", name))


def _meta(sop: str, ts: str, sop_class: str = SC) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop)
    meta.TransferSyntaxUID = UID(ts)
    meta.ImplementationClassUID = UID(dicomgen.ROOT + "1")
    meta.ImplementationVersionName = "ORTHANC_PY_T"
    return meta


def _base(name: str, charset: str | None = "ISO_IR 100") -> Dataset:
    """Identifiers every file needs so that Orthanc accepts it."""
    ds = Dataset()
    if charset is not None:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = SC
    ds.SOPInstanceUID = _uid(name)
    ds.StudyInstanceUID = _uid(name + "-study")
    ds.SeriesInstanceUID = _uid(name + "-series")
    ds.PatientID = "DJ-" + name
    return ds


def _save(ds: Dataset, ts: str = ExplicitVRLittleEndian) -> bytes:
    ds.file_meta = _meta(ds.SOPInstanceUID, ts, ds.SOPClassUID)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


# --- hand-made explicit VR little endian encoding, to control padding byte by byte -------------

_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}


def _el(tag: int, vr: str, value: bytes) -> bytes:
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode()
    if vr in _LONG_VRS:
        return head + struct.pack("<HI", 0, len(value)) + value
    return head + struct.pack("<H", len(value)) + value


def _sq(tag: int, items: list[list[bytes]], defined: bool = False) -> bytes:
    body = b""
    for item in items:
        content = b"".join(item)
        if defined:
            body += struct.pack("<HHI", 0xFFFE, 0xE000, len(content)) + content
        else:
            body += struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + content
            body += struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
    if defined:
        return struct.pack("<HH", tag >> 16, tag & 0xFFFF) + b"SQ" + struct.pack("<HI", 0, len(body)) + body
    return (
        struct.pack("<HH", tag >> 16, tag & 0xFFFF)
        + b"SQ"
        + struct.pack("<HI", 0, 0xFFFFFFFF)
        + body
        + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    )


def _raw_file(name: str, elements: list[bytes]) -> bytes:
    """Part 10 file whose dataset is `elements` verbatim (must be sorted by tag)."""
    sop = _uid(name)
    ident = [
        _el(0x00080016, "UI", SC.encode() + b"\0"),
        _el(0x00080018, "UI", _pad(sop.encode(), b"\0")),
        _el(0x00100020, "LO", _pad(b"DJ-" + name.encode(), b" ")),
        _el(0x0020000D, "UI", _pad(_uid(name + "-study").encode(), b"\0")),
        _el(0x0020000E, "UI", _pad(_uid(name + "-series").encode(), b"\0")),
    ]
    tagged = sorted(ident + elements, key=lambda e: struct.unpack("<HH", e[:4]))
    buf = io.BytesIO()
    buf.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(buf, _meta(sop, ExplicitVRLittleEndian), enforce_standard=True)  # type: ignore[arg-type]
    return buf.getvalue() + b"".join(tagged)


def _pad(value: bytes, pad: bytes) -> bytes:
    return value + pad if len(value) % 2 else value


# --- the cases -------------------------------------------------------------------------------


def case_synthetic() -> bytes:
    return bytes(dicomgen.make(patient=7, study=1, series=2, instance=3, rows=4, columns=4))


def case_no_pixels_long() -> bytes:
    """String lengths around Orthanc's 256-byte limit."""
    return bytes(
        dicomgen.make(
            patient=8,
            rows=0,
            columns=0,
            study_description="D" * 64,
            extra={
                "ImageComments": "x" * 256,
                "AdditionalPatientHistory": "y" * 257,
                "TextValue": "z" * 5000,
                "DerivationDescription": "é" * 200,
            },
        )
    )


def case_vrs() -> bytes:
    """One element of each value representation, multi-valued ones and empty ones."""
    ds = _base("vrs")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.add_new(0x00080015, "DT", "20200102030405.123456")
    ds.add_new(0x00080054, "AE", ["AE1", "AE2"])
    ds.add_new(0x00080081, "ST", "Some street 1\r\nTown")
    ds.add_new(0x00080108, "LT", "Extended meaning")
    ds.add_new(0x00080119, "UC", "Long code value")
    ds.add_new(0x0008010E, "UR", "http://example.com/x")
    ds.add_new(0x0008041B, "OB", b"\x01\x02\x03\x04")
    ds.PatientName = "Doe^John^^Dr"
    ds.PatientBirthDate = ""
    ds.PatientSex = None
    ds.PatientAge = "042Y"
    ds.PatientWeight = "72.50"
    ds.add_new(0x00140202, "AT", 0x00100010)
    ds.add_new(0x00181638, "OF", struct.pack("<2f", 1.5, -2.0))
    ds.add_new(0x00182043, "FL", [0.1, 2.5])
    ds.add_new(0x00186020, "SL", -123456)
    ds.add_new(0x00189219, "SS", -12)
    ds.add_new(0x00189440, "SS", [3, -4])
    ds.add_new(0x00189087, "FD", 1000.0)
    ds.add_new(0x00081163, "FD", [0.1, 1e20])
    ds.add_new(0x00189089, "FD", [])
    ds.InstanceNumber = "12"
    ds.ImagePositionPatient = ["-0.5", "1e3", "3"]
    ds.add_new(0x00280009, "AT", [0x00181063, 0x00209153])
    ds.add_new(0x00280010, "US", 5)
    ds.add_new(0x00280011, "US", 65535)
    ds.add_new(0x00280106, "US", None)
    ds.add_new(0x00281201, "OW", b"\x00\x01\x02\x03\x04\x05")
    ds.add_new(0x003A032E, "OD", struct.pack("<d", 1.25))
    ds.add_new(0x00400A162, "SL", [1, -2, 3])
    ds.add_new(0x00660040, "OL", struct.pack("<2I", 1, 2))
    ds.add_new(0x00720082, "SV", [-5, 7])
    ds.add_new(0x00720083, "UV", [9])
    ds.add_new(0x00720081, "OV", struct.pack("<Q", 11))
    ds.add_new(0x00081199, "SQ", Sequence())
    ds.add_new(0x00041200, "UL", 0)
    ds.add_new(0x00080309, "UL", [1, 2, 3])
    ds.add_new(0x00091234, "UN", b"\x00\x01")
    ds.add_new(0x00180010, "UN", b"CONTRAST ")
    ds.add_new(0x00190010, "LO", "unused creator")
    return _save(ds)


def case_sequences() -> bytes:
    """Nested sequences, empty sequences and empty items."""
    ds = _base("sequences")
    inner1 = Dataset()
    inner1.ReferencedSOPClassUID = CT
    inner1.ReferencedSOPInstanceUID = _uid("inner1")
    inner2 = Dataset()
    inner2.ReferencedSOPClassUID = CT
    inner2.ReferencedSOPInstanceUID = _uid("inner2")
    inner2.ReferencedFrameNumber = ["1", "2", "3"]
    deepest = Dataset()
    deepest.CodeValue = "121311"
    deepest.CodingSchemeDesignator = "DCM"
    deepest.CodeMeaning = "Localizer"
    inner2.PurposeOfReferenceCodeSequence = [deepest]
    item1 = Dataset()
    item1.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    item1.ReferencedSOPInstanceUID = _uid("item1")
    item1.ReferencedSOPSequence = [inner1, inner2]
    item2 = Dataset()
    ds.ReferencedStudySequence = [item1, item2]
    ds.ReferencedPatientSequence = []
    ds.ProcedureCodeSequence = [Dataset()]
    ds.PatientName = "Seq^Patient"
    return _save(ds)


def case_private() -> bytes:
    """Private blocks with and without creators, a dictionary-known creator, and pixel data."""
    ds = _base("private")
    ds.PatientName = "Private^Tags"
    ds.add_new(0x00090010, "LO", "ORTHANC_PY TEST")
    ds.add_new(0x00091001, "LO", "private string")
    ds.add_new(0x00091002, "OB", b"\x00\xff\x10\x20")
    ds.add_new(0x00091003, "US", [1, 2])
    ds.add_new(0x00091004, "DS", ["1.5", "2"])
    inner = Dataset()
    inner.add_new(0x00090010, "LO", "ORTHANC_PY TEST")
    inner.add_new(0x00091005, "SH", "in item")
    ds.add_new(0x00091006, "SQ", Sequence([inner]))
    ds.add_new(0x00111001, "LO", "orphan")
    ds.add_new(0x00291008, "CS", "IMAGE NUM 4")
    ds.add_new(0x00290010, "LO", "SIEMENS CSA HEADER")
    ds.add_new(0x00291009, "LO", "20100114")
    ds.add_new(0x00291010, "OB", b"SV10\x04\x03\x02\x01")
    ds.add_new(0x7FE00010, "OW", b"\x01\x00\x02\x00\x03\x00\x04\x00")
    ds.Rows = 2
    ds.Columns = 2
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.add_new(0xFFFAFFFA, "SQ", Sequence())
    return _save(ds)


def case_utf8() -> bytes:
    ds = _base("utf8", "ISO_IR 192")
    ds.PatientName = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    ds.StudyDescription = "Ünïcödé ✓"
    ds.InstitutionName = "Klinik Müller"
    return _save(ds)


def case_latin1() -> bytes:
    ds = _base("latin1", "ISO_IR 100")
    ds.PatientName = "Müller^Jürgen"
    ds.StudyDescription = "Thorax ça va"
    return _save(ds)


def case_default_charset() -> bytes:
    """No SpecificCharacterSet at all but Latin-1 bytes."""
    return _raw_file(
        "nocharset",
        [
            _el(0x00100010, "PN", "Gérard^Ñoño".encode("latin-1")),
            _el(0x00081030, "LO", b"plain "),
        ],
    )


def case_cyrillic() -> bytes:
    ds = _base("cyrillic", "ISO_IR 144")
    ds.PatientName = "Люкceмбypг^Иван"
    return _save(ds)


def case_japanese() -> bytes:
    ds = _base("japanese", ["", "ISO 2022 IR 87"])  # type: ignore[arg-type]
    ds.PatientName = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    return _save(ds)


def case_unknown_charset() -> bytes:
    return _raw_file(
        "unknowncharset",
        [
            _el(0x00080005, "CS", b"ISO_IR 999"),  # odd lengths are lost: pydicom converts it
            _el(0x00100010, "PN", "Gérard^X".encode("latin-1")),
        ],
    )


def case_padding() -> bytes:
    """Leading/trailing spaces and NULs exactly as bytes in the file."""
    return _raw_file(
        "padding",
        [
            _el(0x00080005, "CS", b"ISO_IR 100"),
            _el(0x00080020, "DA", b"20200101"),
            _el(0x00080050, "SH", b"  A  B  "),
            _el(0x00080060, "CS", b"MR\0\0"),
            _el(0x00080070, "LO", b"Vendor\0 "),
            _el(0x00080080, "LO", b"Inst \0"),
            _el(0x00080081, "ST", b"  text  "),
            _el(0x00080090, "PN", b"Ref^Doc "),
            _el(0x00081010, "SH", b""),
            _el(0x00081030, "LO", b"A \\B \\ C "),
            _el(0x00081040, "LO", b"x\0y "),
            _el(0x00100010, "PN", b"Pad^Name  "),
            _el(0x00180050, "DS", b" 0.5 "),
            _el(0x00200013, "IS", b"  7 "),
            _el(0x00200032, "DS", b"1\\2.50\\-3 "),
            _el(0x00200052, "UI", b"1.2.3\0"),
            _el(0x00204000, "LT", b"  lt text with trailing  "),
            _el(0x00280010, "US", b"\x05\x00"),
            _el(0x00280011, "US", b"\x05\x00\x06\x00"),
            _el(0x00280030, "DS", b"0.5\\0.5 "),
            _el(0x00281050, "DS", b""),
            _el(0x00400254, "LO", b"odd"),
            _sq(0x00400275, [[_el(0x00400009, "SH", b"SPS1  ")], []], defined=True),
        ],
    )


def case_implicit() -> bytes:
    """Implicit VR: private tags without dictionary entry become UN."""
    ds = _base("implicit")
    ds.PatientName = "Implicit^VR"
    ds.add_new(0x00090010, "LO", "ORTHANC_PY TEST")
    ds.add_new(0x00091001, "LO", "private string")
    ds.add_new(0x00111001, "LO", "orphan")
    ds.add_new(0x00280010, "US", 7)
    ds.add_new(0x00180050, "DS", "2.5")
    ds.ReferencedStudySequence = [Dataset()]
    ds.ReferencedStudySequence[0].ReferencedSOPClassUID = CT
    return _save(ds, ImplicitVRLittleEndian)


def case_big_endian() -> bytes:
    ds = _base("bigendian")
    ds.PatientName = "Big^Endian"
    ds.add_new(0x00280010, "US", 258)
    ds.add_new(0x00186020, "SL", -2)
    ds.add_new(0x00182043, "FL", [0.25, 8.0])
    ds.add_new(0x00280009, "AT", [0x00181063])
    return _save(ds, ExplicitVRBigEndian)


def case_deflated() -> bytes:
    ds = _base("deflated")
    ds.PatientName = "Deflated"
    return _save(ds, DeflatedExplicitVRLittleEndian)


def case_encapsulated() -> bytes:
    """JPEG transfer syntax with fake fragments: Orthanc does not decode them to answer."""
    ds = _base("encapsulated")
    ds.PatientName = "Encapsulated"
    ds.Rows = 2
    ds.Columns = 2
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = "2"
    from pydicom.encaps import encapsulate

    ds.add_new(0x7FE00010, "OB", encapsulate([b"\xff\xd8frame1\xff\xd9", b"\xff\xd8frame-2\xff\xd9"]))
    ds["PixelData"].is_undefined_length = True
    return _save(ds, JPEGBaseline8Bit)


def case_group_length() -> bytes:
    return _raw_file(
        "grouplength",
        [
            _el(0x00080000, "UL", struct.pack("<I", 10)),
            _el(0x00100000, "UL", struct.pack("<I", 10)),
            _el(0x00100010, "PN", b"Group^Length"),
            _el(0x00091000, "LO", b"no creator"),
        ],
    )


def case_after_pixels() -> bytes:
    """Elements after (7fe0,0010) in a file that has no pixel data."""
    ds = _base("afterpixels")
    ds.PatientName = "After^Pixels"
    ds.add_new(0x7FE00008, "OF", b"")
    ds.add_new(0xFFFAFFFA, "SQ", Sequence([Dataset()]))
    ds.add_new(0xFFFCFFFC, "OB", b"\0\0")
    return _save(ds)


CASES: dict[str, Callable[[], bytes]] = {
    name[5:]: fn for name, fn in sorted(globals().items()) if name.startswith("case_") and callable(fn)
}

# /content paths probed for every case (the raw answer or a JSON list is recorded)
COMMON_PATHS = ["", "0010-0010", "0010,0010", "00100010", "PatientName", "0008-0018", "7fe0-0010"]
EXTRA_PATHS: dict[str, list[str]] = {
    "synthetic": ["7fe0-0010/0", "7fe0-0010/1", "0028-0010", "0028-0030", "0020-0032", "0008-0005"],
    "vrs": [
        "0008-0008",
        "0010-0030",
        "0010-0040",
        "0018-6020",
        "0018-9219",
        "0018-2043",
        "0008-1163",
        "0028-0009",
        "0014-0202",
        "0028-1201",
        "0008-041b",
        "0009-1234",
        "0018-0010",
        "0008-1199",
        "0008-1199/0",
        "0028-0106",
        "0008-0054",
        "0018-9089",
        "0028-0011",
        "0072-0082",
        "0072-0083",
        "0008-0309",
    ],
    "sequences": [
        "0008-1110",
        "0008-1110/0",
        "0008-1110/1",
        "0008-1110/2",
        "0008-1110/0/0008-1199",
        "0008-1110/0/0008-1199/1",
        "0008-1110/0/0008-1199/1/0040-a170/0",
        "0008-1110/0/0008-1199/1/0040-a170/0/0008-0104",
        "0008-1110/0/0008-1199/1/0008-1160",
        "0008-1110/0/0008-1150",
        "0008-1110/x",
        "0008-1110/-1",
        "0008-1110/+1",
        "0008-1110/01",
        "0008-1110/0/",
        "0008-1120",
        "0008-1120/0",
        "0008-1032",
        "0008-1032/0",
        "0010-0010/0",
        "0008-1111",
        "ReferencedStudySequence/0",
        "0008-1110/0/ReferencedSOPSequence",
        "zzzz-0010",
        "NotATag",
        "0010-0011",
    ],
    "private": [
        "0009-0010",
        "0009-1001",
        "0009-1002",
        "0009-1003",
        "0009-1006",
        "0009-1006/0",
        "0009-1006/0/0009-1005",
        "0011-1001",
        "0029-1010",
        "7fe0-0010/0",
        "7fe0-0010/1",
        "fffa-fffa",
    ],
    "padding": [
        "0008-0050",
        "0008-0060",
        "0008-0070",
        "0008-0080",
        "0008-0081",
        "0008-0090",
        "0008-1010",
        "0008-1030",
        "0008-1040",
        "0010-0010",
        "0018-0050",
        "0020-0013",
        "0020-0052",
        "0020-4000",
        "0040-0254",
        "0040-0275/0",
        "0040-0275/0/0040-0009",
        "0040-0275/1",
    ],
    "implicit": ["0009-1001", "0011-1001", "0028-0010", "0008-1110/0"],
    "big_endian": ["0028-0010", "0018-6020", "0018-2043", "0028-0009"],
    "encapsulated": ["7fe0-0010/0", "7fe0-0010/1", "7fe0-0010/2", "7fe0-0010/x"],
    "group_length": ["0008-0000", "0010-0000", "0009-1000"],
    "utf8": ["0010-0010", "0008-1030"],
    "after_pixels": ["fffa-fffa", "fffa-fffa/0", "fffc-fffc", "7fe0-0008"],
    "latin1": ["0010-0010"],
}


def content_paths(case: str) -> list[str]:
    return COMMON_PATHS + EXTRA_PATHS.get(case, [])


def _as_recorded(result: ContentResult) -> dict[str, Any]:
    if result.kind == "json":
        return {"status": 200, "json": result.items}
    return {"status": 200, "raw": base64.b64encode(result.data).decode()}


def _oracle() -> dict[str, Any]:
    return dict(json.loads(ORACLE.read_text()))


@pytest.fixture(scope="module")
def oracle() -> dict[str, Any]:
    return _oracle()


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return {name: fn() for name, fn in CASES.items()}


def _read(data: bytes) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the unknown character set case
        return dcmread(io.BytesIO(data))


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("fmt", ["full", "simplify", "short"])
def test_tags(case: str, fmt: str, oracle: dict[str, Any], files: dict[str, bytes]) -> None:
    got = orthanc_tags(_read(files[case]), fmt)
    expected = oracle[case]["tags"][fmt]
    assert got == expected
    assert list(got) == list(expected)  # Orthanc sorts object keys


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("fmt", ["full", "simplify", "short"])
def test_header(case: str, fmt: str, oracle: dict[str, Any], files: dict[str, bytes]) -> None:
    got = orthanc_header(_read(files[case]).file_meta, fmt)
    assert got == oracle[case]["header"][fmt]
    assert list(got) == list(oracle[case]["header"][fmt])


@pytest.mark.parametrize("case", sorted(CASES))
def test_content(case: str, oracle: dict[str, Any], files: dict[str, bytes]) -> None:
    ds = _read(files[case])
    for path, expected in oracle[case]["content"].items():
        parts = path.split("/") if path else []
        if expected["status"] == 404:
            with pytest.raises(LookupError):
                content_walk(ds, parts)
        elif expected["status"] == 500:  # unknown tag name
            with pytest.raises(ValueError):
                content_walk(ds, parts)
        else:
            assert expected.get("type", "application/octet-stream") == "application/octet-stream"
            expected = {k: v for k, v in expected.items() if k != "type"}
            assert _as_recorded(content_walk(ds, parts)) == expected, path


@pytest.mark.parametrize("case", ["vrs", "sequences", "private", "utf8", "japanese", "synthetic"])
def test_converted_dataset_matches_raw(case: str, files: dict[str, bytes]) -> None:
    """Elements pydicom already converted (e.g. after attribute access) render like raw ones."""
    expected = orthanc_tags(_read(files[case]), "full")
    converted = _read(files[case])
    for elem in converted:  # forces conversion of every element
        _ = elem.value
    assert orthanc_tags(converted, "full") == expected


def test_bad_format() -> None:
    with pytest.raises(ValueError):
        orthanc_tags(Dataset(), "human")


# --- recording against a running Orthanc ---------------------------------------------------------


def _record(base: str) -> None:  # pragma: no cover - needs a real Orthanc
    import urllib.error
    import urllib.request

    def call(method: str, url: str, body: bytes | None = None) -> tuple[int, str, bytes]:
        req = urllib.request.Request(base + url, data=body, method=method)
        try:
            with urllib.request.urlopen(req) as resp:
                return resp.status, resp.headers.get("Content-Type", ""), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.headers.get("Content-Type", ""), err.read()

    out: dict[str, Any] = {}
    for name, fn in CASES.items():
        status, _, body = call("POST", "/instances", fn())
        assert status == 200, (name, body)
        iid = json.loads(body)["ID"]
        entry: dict[str, Any] = {"tags": {}, "header": {}, "content": {}}
        for fmt, suffix in (("full", ""), ("simplify", "?simplify"), ("short", "?short")):
            entry["tags"][fmt] = json.loads(call("GET", f"/instances/{iid}/tags{suffix}")[2])
            entry["header"][fmt] = json.loads(call("GET", f"/instances/{iid}/header{suffix}")[2])
        for path in content_paths(name):
            status, ctype, body = call("GET", f"/instances/{iid}/content/{path}")
            if status != 200:
                entry["content"][path] = {"status": status}
            elif ctype.startswith("application/json"):
                entry["content"][path] = {"status": 200, "json": json.loads(body)}
            else:
                entry["content"][path] = {
                    "status": 200,
                    "raw": base64.b64encode(body).decode(),
                    "type": ctype,
                }
        out[name] = entry
        call("DELETE", f"/instances/{iid}")
    ORACLE.parent.mkdir(exist_ok=True)
    ORACLE.write_text(json.dumps(out, indent=1, ensure_ascii=False, sort_keys=False) + "\n")


if __name__ == "__main__":  # pragma: no cover
    _record(sys.argv[1] if len(sys.argv) > 1 else "http://localhost:28042")
