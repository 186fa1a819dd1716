"""`fastparse.parse_fast` must give exactly what `parsing.parse` gives, or None (pydicom path).

Every case compares the two on the same bytes: same fields (except `dataset`), or the same
OrthancError (code and details). Files are built by dicomgen/pydicom, and by a small raw
element writer for what pydicom will not write (odd lengths, padding, VR mix-ups, truncation).
"""

from __future__ import annotations

import dataclasses
import io
import random
import struct
import warnings
import zlib
from typing import Any

import dicomgen
import pytest
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import JPEGBaseline8Bit

from orthanc_py.errors import OrthancError
from orthanc_py.model import parsing
from orthanc_py.model.fastparse import parse_fast
from tests.conformance import oracle_data

FIELDS = [f.name for f in dataclasses.fields(parsing.ParsedInstance) if f.name != "dataset"]
EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
LONG = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
UNDEF = 0xFFFFFFFF


def outcome(fn: Any, data: bytes) -> Any:
    """A comparable summary: the fields, the error, or None (fallback)."""
    try:
        with warnings.catch_warnings():  # as in production: pydicom warnings are not errors
            warnings.simplefilter("ignore")
            result = fn(data)
    except OrthancError as exc:
        return ("error", exc.code, exc.details)
    except Exception as exc:  # parse lets a few pydicom errors through; parse_fast must not differ
        return ("exception", type(exc).__name__)
    if result is None:
        return None
    return ("ok", {name: getattr(result, name) for name in FIELDS})


def check(data: bytes, fast_expected: bool | None = True) -> Any:
    """Assert parse_fast agrees with parse. `fast_expected`: True, no fallback; False, fallback; None, either."""
    slow = outcome(parsing.parse, data)
    fast = outcome(parse_fast, data)
    if fast_expected is False:
        assert fast is None
    elif fast_expected:
        assert fast is not None, "unexpected fallback"
    if fast is not None:
        assert fast == slow
    return slow


# --- raw writer ---------------------------------------------------------------------


def el(tag: int, vr: str, value: bytes, explicit: bool = True, length: int | None = None) -> bytes:
    """One little endian element; `length` overrides the header (e.g. undefined)."""
    n = len(value) if length is None else length
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    if not explicit or tag >> 16 == 0xFFFE:
        return head + struct.pack("<I", n) + value
    if vr in LONG:
        return head + vr.encode() + b"\0\0" + struct.pack("<I", n) + value
    return head + vr.encode() + struct.pack("<H", n) + value


def item(body: bytes, undefined: bool = False) -> bytes:
    if undefined:
        return el(0xFFFEE000, "", body, length=UNDEF) + el(0xFFFEE00D, "", b"")
    return el(0xFFFEE000, "", body)


def sq(tag: int, items: list[bytes], explicit: bool = True, undefined: bool = False, vr: str = "SQ") -> bytes:
    body = b"".join(items)
    if undefined:
        return el(tag, vr, body + el(0xFFFEE0DD, "", b""), explicit, length=UNDEF)
    return el(tag, vr, body, explicit)


def meta(ts: str | None = EXPLICIT) -> bytes:
    elems = el(0x00020001, "OB", b"\0\1") + el(0x00020002, "UI", b"1.2.840.10008.5.1.4.1.1.2\0")
    elems += el(0x00020003, "UI", b"1.2.3.4\0")
    if ts is not None:
        raw = ts.encode()
        elems += el(0x00020010, "UI", raw + b"\0" * (len(raw) % 2))
    return b"\0" * 128 + b"DICM" + el(0x00020000, "UL", struct.pack("<I", len(elems))) + elems


BASE: dict[int, tuple[str, bytes]] = {
    0x00080016: ("UI", b"1.2.840.10008.5.1.4.1.1.2\0"),
    0x00080018: ("UI", b"1.2.3.4\0"),
    0x00080060: ("CS", b"CT"),
    0x00100010: ("PN", b"Doe^John"),
    0x00100020: ("LO", b"PID1"),
    0x0020000D: ("UI", b"1.2.3.1\0"),
    0x0020000E: ("UI", b"1.2.3.2\0"),
    0x00200013: ("IS", b"7 "),
}


def body(changes: dict[int, tuple[str, bytes] | None] | None = None, explicit: bool = True) -> bytes:
    """BASE with `changes` (None removes), in tag order."""
    elems = {**BASE, **(changes or {})}
    return b"".join(el(t, *v, explicit=explicit) for t, v in sorted(elems.items()) if v is not None)


def raw(changes: dict[int, tuple[str, bytes] | None] | None = None, ts: str | None = EXPLICIT) -> bytes:
    return meta(ts) + body(changes, explicit=ts != IMPLICIT)


# --- cases ------------------------------------------------------------------------


@pytest.mark.parametrize("entry", oracle_data.DATASETS + oracle_data.BAD_DATASETS, ids=lambda e: e["name"])
def test_oracle_datasets(entry: dict[str, Any]) -> None:
    check(oracle_data.build(entry))


def _dataset(**extra: Any) -> Dataset:
    return dicomgen.make_dataset(dicomgen.Spec(rows=4, columns=4, extra=extra))


def _save(ds: Dataset, implicit: bool = False, meta_header: bool = True) -> bytes:
    if meta_header:
        return dicomgen.to_bytes(ds)
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=implicit, little_endian=True)
    return buf.getvalue()


def _seq_item(**values: Any) -> Dataset:
    out = Dataset()
    for keyword, value in values.items():
        setattr(out, keyword, value)
    return out


def _with_sequences(undefined: bool) -> Dataset:
    ds = _dataset()
    ds.LanguageCodeSequence = Sequence([_seq_item(CodeValue="en", PatientName="Inner^Name")])  # before main tags
    ds.ReferencedStudySequence = Sequence([_seq_item(ReferencedSOPInstanceUID="1.2.3", StudyInstanceUID="9.9")])
    ds.RequestAttributesSequence = Sequence([_seq_item(ScheduledProcedureStepID="X"), _seq_item()])  # after
    if undefined:
        for kw in ("LanguageCodeSequence", "ReferencedStudySequence", "RequestAttributesSequence"):
            ds[kw].is_undefined_length = True
            for it in ds[kw].value:
                it.is_undefined_length_sequence_item = True
    return ds


GENERATED = {
    "ct512": lambda: dicomgen.make(),
    "no_pixels": lambda: dicomgen.make(rows=0, columns=0),
    "latin1": lambda: dicomgen.make(patient_name="Müller^Jürgen", study_description="Knöchel ", rows=2, columns=2),
    "utf8": lambda: _save(_dataset(SpecificCharacterSet="ISO_IR 192", PatientName="Παπαδόπουλος^Γιώργος")),
    "utf8_cjk": lambda: _save(_dataset(SpecificCharacterSet="ISO_IR 192", StudyDescription="頭部 CT 検査")),
    "cyrillic": lambda: _save(_dataset(SpecificCharacterSet="ISO_IR 144", PatientName="Иванов^Иван")),
    "greek": lambda: _save(_dataset(SpecificCharacterSet="ISO_IR 126", PatientName="Νίκος")),
    "multi_valued": lambda: _save(
        _dataset(OtherPatientIDs=["A", "B", ""], ImageType=["ORIGINAL", "PRIMARY"], StationName="S1")
    ),
    "empty_values": lambda: _save(
        _dataset(PatientName="", StudyDescription="", InstanceNumber=None, AccessionNumber="", PatientID="")
    ),
    "expected_1": lambda: _save(_dataset(ImagesInAcquisition=10, NumberOfTemporalPositions=3)),
    "expected_2": lambda: _save(_dataset(NumberOfSlices=4, NumberOfTimeSlices=2, ImageIndex=3)),
    "expected_3": lambda: _save(_dataset(CardiacNumberOfImages=12, ImageComments="a\\b  ")),
    "implicit_no_meta": lambda: _save(_dataset(), implicit=True, meta_header=False),
    "explicit_no_meta": lambda: _save(_dataset(), implicit=False, meta_header=False),
    "sequences": lambda: _save(_with_sequences(False)),
    "sequences_undefined": lambda: _save(_with_sequences(True)),
    "sequences_implicit": lambda: _save(_with_sequences(True), implicit=True, meta_header=False),
}


@pytest.mark.parametrize("name", GENERATED)
def test_generated(name: str) -> None:
    check(GENERATED[name]())


def test_private_tags_and_encapsulated_pixels() -> None:
    ds = _dataset()
    block = ds.private_block(0x0009, "ORTHANC_PY TEST", create=True)
    block.add_new(0x01, "LO", "secret")
    block.add_new(0x02, "UN", b"\1\2\3\4")
    ds.PixelData = encapsulate([b"\xff\xd8frame1\xff\xd9", b"\xff\xd8frame-2\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.NumberOfFrames = 2
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    assert data.endswith(b"\xfe\xff\xdd\xe0\0\0\0\0")  # undefined length, fragments, delimiter
    assert check(data)[1]["transfer_syntax"] == JPEGBaseline8Bit


VALUES: dict[str, tuple[int, str, bytes]] = {
    "pn_empty_groups": (0x00100010, "PN", b"A^B=="),  # trailing empty groups kept, both paths
    "pn_odd": (0x00100010, "PN", b"Doe^Joe"),
    "pn_multi_empty": (0x00100010, "PN", b"A\\\\B \\"),
    "pn_lead_space": (0x00100010, "PN", b" Lead^X \0"),
    "pn_nul_inside": (0x00100010, "PN", b"x\0y"),
    "pn_empty": (0x00100010, "PN", b""),
    "pn_latin1_no_charset": (0x00100010, "PN", "Zoë".encode("latin-1")),
    "lo_padding": (0x00100020, "LO", b"  P 1 \0 \0"),
    "lo_multi": (0x00101000, "LO", b"A \\ B\\\\"),
    "lo_odd": (0x00081030, "LO", b"abc"),
    "cs_multi": (0x00080060, "CS", b"CT\\MR \0"),
    "da_tm": (0x00080030, "TM", b"101010.123 "),
    "ui_odd": (0x00080018, "UI", b"1.2.3.4.5"),
    "ui_space": (0x00080018, "UI", b"1.2.3.4 "),
    "is_lead": (0x00200013, "IS", b" 12"),
    "is_zeros": (0x00200013, "IS", b"0012 "),
    "is_multi": (0x00200013, "IS", b"12\\ 3\\ "),
    "is_sign": (0x00200013, "IS", b"+3"),
    "is_blank": (0x00200013, "IS", b"  "),
    "ds_multi": (0x00200032, "DS", b" 1.5\\-2.5e3\\.5\\1. "),
    "ds_nul": (0x00200032, "DS", b"1.5\0"),
    "ds_blank_part": (0x00200037, "DS", b"1\\ \\0"),
    "lt_backslash": (0x00204000, "LT", b"a\\b  \0"),
    "st_main": (0x00204000, "ST", b"text "),
    "ae_main": (0x00081010, "AE", b"  STA1 \\ X "),
    "us_index": (0x00541330, "US", struct.pack("<H", 7)),
    "us_multi": (0x00540081, "US", struct.pack("<2H", 4, 5)),
    "us_as_instance_number": (0x00200013, "US", struct.pack("<H", 9)),
    "sl_negative": (0x00200012, "SL", struct.pack("<l", -5)),
    "ul_value": (0x00200012, "UL", struct.pack("<L", 4000000000)),
    "ss_empty": (0x00200012, "SS", b""),
    "empty_study_uid": (0x0020000D, "UI", b""),
    "blank_series_uid": (0x0020000E, "UI", b"  "),
    "empty_sop_class": (0x00080016, "UI", b""),
}


@pytest.mark.parametrize("name", VALUES)
def test_values(name: str) -> None:
    tag, vr, value = VALUES[name]
    check(raw({tag: (vr, value)}))
    same_vr = dictionary_VR(tag) == vr  # else implicit VR decodes the bytes as another VR
    check(meta(IMPLICIT) + body({tag: (vr, value)}, explicit=False), fast_expected=True if same_vr else None)


FALLBACK_VALUES: dict[str, tuple[int, str, bytes]] = {
    "is_float": (0x00200013, "IS", b"1.5"),
    "is_garbage": (0x00200013, "IS", b"12a"),
    "is_huge": (0x00200013, "IS", b"99999999999999999999"),
    "ds_garbage": (0x00200032, "DS", b"abc"),
    "ds_nan": (0x00200032, "DS", b"nan"),
    "us_odd": (0x00541330, "US", b"\1\2\3"),
    "main_as_ob": (0x00100020, "OB", b"PID1"),
    "main_as_un": (0x00100020, "UN", b"PID1"),
    "main_as_fl": (0x00200012, "FL", struct.pack("<f", 1.5)),
    "main_as_sq": (0x00081030, "SQ", b""),
    "bad_vr": (0x00081030, "zz", b"abcd"),
    "escape": (0x00100010, "PN", b"A\x1b(BB"),
}


@pytest.mark.parametrize("name", FALLBACK_VALUES)
def test_fallback_values(name: str) -> None:
    tag, vr, value = FALLBACK_VALUES[name]
    check(raw({tag: (vr, value)}), fast_expected=False)


CHARSETS: dict[str, tuple[bytes, bytes, bool]] = {
    # name: (SpecificCharacterSet, PatientName bytes, handled by parse_fast)
    "absent_latin1": (b"", "Zoë".encode("latin-1"), True),
    "iso_ir_6": (b"ISO_IR 6", "Zoë".encode("latin-1"), True),
    "iso_ir_100": (b"ISO_IR 100", "Zoë".encode("latin-1"), True),
    "iso_ir_101": (b"ISO_IR 101", "Łódź".encode("iso8859_2"), True),
    "iso_ir_192": (b"ISO_IR 192", "Zoë^山田".encode(), True),
    "utf8_invalid": (b"ISO_IR 192", b"Zo\xeb", False),
    "iso2022": (b"ISO 2022 IR 100", b"Zo\xeb", False),
    "multi": (b"\\ISO 2022 IR 87", b"Yamada", False),
    "gb18030": (b"GB18030", "王".encode("gb18030"), False),
    "ir13": (b"ISO_IR 13", b"Yamada", False),
    "misspelled": (b"ISO_IR100", b"Zo\xeb", False),
    "unknown": (b"FOO", b"Zo\xeb", False),
}


@pytest.mark.parametrize("name", CHARSETS)
def test_charsets(name: str) -> None:
    charset, name_bytes, handled = CHARSETS[name]
    changes: dict[int, tuple[str, bytes] | None] = {0x00100010: ("PN", name_bytes), 0x00081030: ("LO", name_bytes)}
    if name != "absent_latin1":
        changes[0x00080005] = ("CS", charset)
    check(raw(changes), fast_expected=handled)
    if name == "absent_latin1":
        check(raw({**changes, 0x00080005: ("CS", b"")}))


def _pixel(value: bytes = b"\0" * 8) -> tuple[str, bytes]:
    return ("OW", value)


STRUCTURES: dict[str, tuple[bytes, bool]] = {
    "implicit_meta": (raw(ts=IMPLICIT), True),
    "meta_without_ts": (raw(ts=None), True),
    "no_meta_explicit": (body(), True),
    "no_meta_implicit": (body(explicit=False), True),
    "preamble_no_meta": (b"\0" * 128 + b"DICM" + body(), True),
    "jpeg_ts": (raw(ts=JPEGBaseline8Bit), True),
    "big_endian": (raw(ts="1.2.840.10008.1.2.2"), False),
    "deflated": (meta("1.2.840.10008.1.2.1.99") + zlib.compress(body())[2:-4], False),
    "implicit_ts_explicit_body": (meta(IMPLICIT) + body(), False),
    "explicit_ts_implicit_body": (meta(EXPLICIT) + body(explicit=False), False),
    "headerless_meta": (meta(EXPLICIT)[132:] + body(), False),
    "pixel_then_main_tag": (raw({0x7FE00010: _pixel()}) + el(0x00100010, "PN", b"After^Pixels"), True),
    "float_pixel_stops": (raw({0x7FE00008: ("OF", b"\0" * 8)}) + el(0x7FE10010, "LO", b"zz"), True),
    "two_pixel_data": (raw({0x7FE00010: _pixel()}) + el(0x7FE00010, "OW", b"\0\0"), True),
    "uid_after_pixels": (raw({0x7FE00010: _pixel()}) + el(0x0020000D, "UI", b"1.2\0"), True),
    "duplicate_tag": (raw() + el(0x00100020, "LO", b"PID2"), True),
    "top_level_delimiter": (raw() + el(0xFFFEE00D, "", b""), True),
    "top_level_item": (raw() + el(0xFFFEE000, "", b"\0" * 4), False),
    "undefined_un_private": (
        raw() + sq(0x00091010, [item(el(0x00100010, "PN", b"In^Side", False), True)], True, True, "UN"),
        True,
    ),
    "nested_sequences": (
        meta()
        + sq(0x00081110, [item(sq(0x00081115, [item(el(0x00100020, "LO", b"INNER"))], undefined=True), True)], True)
        + body(),
        True,
    ),
    "sequence_defined": (raw() + sq(0x00400275, [item(el(0x00100010, "PN", b"X^Y")), item(b"")]), True),
    "encapsulated": (
        raw(ts=JPEGBaseline8Bit) + sq(0x7FE00010, [item(b""), item(b"frag1\0"), item(b"frag-2")], True, True, "OB"),
        True,
    ),
    "all_uids_missing": (raw({0x0020000D: None, 0x0020000E: None, 0x00080018: None}), True),
    "missing_series": (raw({0x0020000E: None}), True),
    "missing_patient_id": (raw({0x00100020: None}), True),
    "empty_dataset": (meta(), True),
    "not_dicom": (oracle_data.not_dicom(), True),
    "zeros": (b"\0" * 256, True),
}


@pytest.mark.parametrize("name", STRUCTURES)
def test_structures(name: str) -> None:
    data, handled = STRUCTURES[name]
    check(data, fast_expected=handled)


@pytest.mark.parametrize("size", range(8))
def test_tiny_inputs(size: int) -> None:
    check(b"\x08\x00\x05\x00CS\x00\x00"[:size])


TRUNCATED = {
    "dicomgen": lambda: dicomgen.make(rows=2, columns=2),
    "raw_sequences": lambda: (
        raw(ts=JPEGBaseline8Bit)
        + sq(0x00400275, [item(el(0x00100010, "PN", b"X^Y"), True)], undefined=True)
        + sq(0x7FE00010, [item(b""), item(b"frag1\0")], True, True, "OB")
    ),
    "implicit_no_meta": lambda: body({0x00081110: ("SQ", item(el(0x00081155, "UI", b"1.2\0", False), True))}, False),
}


@pytest.mark.parametrize("name", TRUNCATED)
def test_truncated_at_every_offset(name: str) -> None:
    data = TRUNCATED[name]()
    fallbacks = 0
    for cut in range(len(data) + 1):
        slow = outcome(parsing.parse, data[:cut])
        fast = outcome(parse_fast, data[:cut])
        if fast is None:
            fallbacks += 1
        else:
            assert fast == slow, cut
    assert fallbacks < len(data) // 10


def test_random_corruption() -> None:
    """Flipped bytes in a small file: never a different answer (falling back is fine)."""
    rng = random.Random(1404)
    base = raw({0x00080005: ("CS", b"ISO_IR 100"), 0x00200032: ("DS", b"1\\2\\3 ")}) + sq(
        0x00400275, [item(el(0x00100010, "PN", b"X^Y"))], undefined=True
    )
    for _ in range(1500):
        data = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        check(bytes(data), fast_expected=None)


def test_tables_written_out_are_pydicoms() -> None:
    """The fast path's copies of pydicom's tables (so that ingest needs no pydicom) match it."""
    from pydicom.charset import python_encoding
    from pydicom.values import converters

    from orthanc_py.model import dicomfile, fastparse
    from orthanc_py.model import maintags as mt

    assert fastparse._VALID_VRS == {str(vr).encode() for vr in converters if len(vr) == 2}
    read = {*mt.ALL_MAIN_TAGS, mt.SOP_CLASS_UID, mt.SPECIFIC_CHARACTER_SET, dicomfile.BITS_ALLOCATED}
    assert fastparse._WANTED == {t: dictionary_VR(t).encode() for t in read}
    single_byte = {n: c for n, c in python_encoding.items() if n.startswith("ISO_IR ") and n != "ISO_IR 13"}
    assert fastparse._CHARSETS == {**single_byte, "": python_encoding[""]}
    assert list(fastparse._private_syntaxes()) == []
