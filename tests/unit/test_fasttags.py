"""`fasttags.tags_fast` must render exactly what `orthancjson.orthanc_tags` renders from pydicom's
Dataset, or return None (the pydicom path): every sample file we can find (pydicom's test files,
the sample files of Orthanc's integration suite, dicomgen's files in explicit and implicit VR),
in every format and with every option (`?whole`, `?ignore-length`, a `Dictionary` with private
tags, `DefaultEncoding`, the header-only reading of shared-tags).
"""

from __future__ import annotations

import io
import os
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pydicom
import pydicom.data
import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian

from orthanc_py.model import fasttags, orthancjson
from orthanc_py.model.dcmtkvalues import TagsOptions
from orthanc_py.model.dictionary import dcmtk
from tests.conformance import oracle_data

dicomgen = oracle_data.dicomgen

ORTHANC_TESTS = Path(os.environ.get("ORTHANC_TESTS_MIRROR", "/work/.mirror/orthanc-mirrors+orthanc-tests/repo"))
NOT_DICOM = (".json", ".txt", ".png", ".jpg", ".jpeg", ".lua", ".py", ".xml", ".zip", ".gz", ".md", ".html", ".pdf")
MAX_SIZE = 3_000_000
"""Larger sample files are left out to keep the test quick (they are pixel data, not structure)."""

DICTIONARY = dcmtk().with_entries(
    {
        "00e1,10c2": ["UI", "PET-CT Multi Modality Name", 1, 1, "ELSCINT1"],
        "0011,1001": ["DS", "Abnormality score", 1, 1],
        "0019,1002": ["SQ", "A private sequence", 1, 1, "ORTHANC_PY TEST"],
        "0029,1010": ["LO", "Siemens thing", 1, 1, "SIEMENS CSA HEADER"],
        "0009,1001": ["LO", "Renamed", 1, 1, "GEMS_IDEN_01"],
    },
    "Lunit",
)
LONG_TAGS = frozenset((0x00081030, 0x0008103E, 0x00204000, 0x00290010, 0x00181020, 0x00080008, 0x00400254))

# (format, options, with_pixels): what the routes ask for
VARIANTS: list[tuple[str, TagsOptions, bool]] = [
    ("full", TagsOptions(), True),
    ("simplify", TagsOptions(), True),
    ("short", TagsOptions(), True),
    ("full", TagsOptions(whole=True), True),
    ("short", TagsOptions(ignore_length=LONG_TAGS), True),
    ("full", TagsOptions(DICTIONARY, "Utf8"), True),
    ("simplify", TagsOptions(DICTIONARY.without_private(), "Latin2", whole=True), True),
    ("full", TagsOptions(), False),
    ("simplify", TagsOptions(whole=True), False),
]


def check(data: bytes) -> bool:
    """Every variant agrees; True when the fast path rendered the default variant (a dictionary
    that makes a private implicit VR element a sequence may send one variant to pydicom)."""
    taken = []
    datasets: dict[bool, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fmt, options, with_pixels in VARIANTS:
            fast = fasttags.tags_fast(data, fmt, options, with_pixels)
            taken.append(fast is not None)
            if fast is None:
                continue
            if with_pixels not in datasets:  # one pydicom reading serves every variant
                datasets[with_pixels] = pydicom.dcmread(
                    io.BytesIO(data), stop_before_pixels=not with_pixels, force=True
                )
            assert fast == orthancjson.orthanc_tags(datasets[with_pixels], fmt, options), (fmt, options, with_pixels)
    return taken[0]


# --- the files --------------------------------------------------------------------------------------


def pydicom_files() -> list[tuple[str, bytes]]:
    paths = sorted(Path(p) for p in pydicom.data.get_testdata_files())
    return [(p.name, p.read_bytes()) for p in paths if p.is_file() and p.stat().st_size <= MAX_SIZE]


def orthanc_tests_files() -> list[tuple[str, bytes]]:
    """The sample files of Orthanc's suite, read from its mirror in one `git cat-file --batch`."""
    if not ORTHANC_TESTS.is_dir():
        return []
    git = ["git", "--git-dir", str(ORTHANC_TESTS)]
    listing = subprocess.run([*git, "ls-tree", "-r", "-l", "HEAD", "Database"], capture_output=True, text=True)
    wanted = []
    for line in listing.stdout.splitlines():
        meta, path = line.split("\t", 1)
        size = meta.split()[3]
        if size.isdigit() and int(size) <= MAX_SIZE and not path.lower().endswith(NOT_DICOM):
            wanted.append((path, meta.split()[2]))
    batch = subprocess.run(
        [*git, "cat-file", "--batch"], input="".join(f"{sha}\n" for _, sha in wanted).encode(), capture_output=True
    ).stdout
    out, pos = [], 0
    for path, _sha in wanted:
        header_end = batch.index(b"\n", pos)
        size = int(batch[pos:header_end].split()[2])
        out.append((path, batch[header_end + 1 : header_end + 1 + size]))
        pos = header_end + 1 + size + 1
    return out


def implicit(ds: Dataset) -> bytes:
    """A dataset written in implicit VR little endian."""
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def dicomgen_files() -> list[tuple[str, bytes]]:
    """dicomgen's files (the oracle datasets, with sequences and private tags), and a few made
    here: implicit VR (with signed pixels and "US or SS" elements), nested and private sequences."""
    out = []
    for entry in oracle_data.DATASETS:
        try:
            out.append((entry["name"], oracle_data.build(entry)))
        except Exception:
            continue
    out.append(("ct64", dicomgen.make(rows=64, columns=64)))
    for signed in (0, 1):
        ds = dicomgen.make_dataset(dicomgen.Spec(rows=4, columns=4))
        ds.PixelRepresentation = signed
        ds.SmallestImagePixelValue = b"\xfe\xff"
        ds.LargestImagePixelValue = b"\x10\x00"
        ds.PixelPaddingValue = b"\x00\x80"
        raw = dicomgen.to_bytes(ds)
        reread = pydicom.dcmread(io.BytesIO(raw))
        out.append((f"implicit-signed{signed}", implicit(reread)))
    ds = dicomgen.make_dataset(dicomgen.Spec(rows=4, columns=4, patient_name="Stra\u00dfe^J\u00fcrgen"))
    inner = Dataset()
    inner.CodeValue = "121"
    inner.CodingSchemeDesignator = "DCM"
    inner.CodeMeaning = "x" * 300
    outer = Dataset()
    outer.ReferencedSOPInstanceUID = "1.2.3"
    outer.PurposeOfReferenceCodeSequence = Sequence([inner, Dataset()])
    ds.ReferencedImageSequence = Sequence([outer])
    ds.add(DataElement(0x00190010, "LO", "ORTHANC_PY TEST"))
    ds.add(DataElement(0x00191002, "SQ", Sequence([inner])))
    ds.add(DataElement(0x00191003, "LO", "private value "))
    ds.add(DataElement(0x00110010, "LO", "Lunit"))
    ds.add(DataElement(0x00111001, "DS", "0.5"))
    ds.ImageComments = "\u00e9" * 200
    ds.FrameIncrementPointer = 0x00181063
    ds.RescaleSlope = "1.5"
    ds.add(DataElement(0x00181310, "US", [0, 64, 64, 0]))
    ds.add(DataElement(0x00189219, "FD", [0.1, 1e-20]))
    explicit_bytes = dicomgen.to_bytes(ds)
    out.append(("sequences-explicit", explicit_bytes))
    undefined = pydicom.dcmread(io.BytesIO(explicit_bytes))
    undefined.ReferencedImageSequence.is_undefined_length = True
    undefined.ReferencedImageSequence[0].is_undefined_length_sequence_item = True
    buf = io.BytesIO()
    undefined.save_as(buf, enforce_file_format=True)
    out.append(("sequences-undefined-length", buf.getvalue()))
    out.append(("sequences-implicit", implicit(pydicom.dcmread(io.BytesIO(explicit_bytes)))))
    return out


def test_every_dicomgen_file_takes_the_fast_path_and_renders_the_same() -> None:
    files = dicomgen_files()
    assert len(files) > 20
    assert [name for name, data in files if not check(data)] == []
    # an implicit VR private sequence that only the `Dictionary` makes a sequence: pydicom path
    assert fasttags.tags_fast(dict(files)["sequences-implicit"], "full", TagsOptions(DICTIONARY)) is None


def test_sample_files_render_the_same_fast_or_through_pydicom(capsys: pytest.CaptureFixture[str]) -> None:
    files = pydicom_files() + orthanc_tests_files()
    fast = [check(data) for _name, data in files]
    part10 = [data[128:132] == b"DICM" for _name, data in files]
    fast10 = sum(f and p for f, p in zip(fast, part10, strict=True))
    with capsys.disabled():
        print(
            f"\nfasttags: {sum(fast)} of {len(files)} sample files took the fast path; "
            f"of the {sum(part10)} Part 10 files, {fast10}"
        )
    assert fast10 > 0.9 * sum(part10)


def test_truncated_and_odd_files_fall_back() -> None:
    data = dicomgen.make(rows=4, columns=4)
    assert fasttags.tags_fast(data, "full", TagsOptions()) is not None
    for cut in (200, 300, len(data) - 3):  # an element cut short: the pydicom path decides
        assert fasttags.tags_fast(data[:cut], "full", TagsOptions()) is None or check(data[:cut])
    for odd in (b"", b"not dicom at all", data[:128] + b"DICM"):
        check(odd)


def test_max_elements_bounds_the_walk_and_the_rendering() -> None:
    data = dicomgen.make(rows=4, columns=4)
    count = len(fasttags.tags_fast(data, "short", TagsOptions(whole=True)) or {})
    assert fasttags.tags_fast(data, "short", TagsOptions(whole=True), max_elements=count) is not None
    assert fasttags.tags_fast(data, "short", TagsOptions(whole=True), max_elements=count - 1) is None
    nested = dict(dicomgen_files())["sequences-explicit"]  # items count too
    top = len(fasttags.tags_fast(nested, "short", TagsOptions(whole=True)) or {})
    assert fasttags.tags_fast(nested, "short", TagsOptions(whole=True), max_elements=top) is None
