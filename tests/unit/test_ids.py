"""Public IDs and parsing: checked against the IDs the real Orthanc 1.10.1 gave for the same files."""

from __future__ import annotations

import json
from pathlib import Path

import dicomgen
import pytest

from orthanc_py.errors import ErrorCode, OrthancError
from orthanc_py.model import ids, parsing
from orthanc_py.model.enums import ResourceType
from tests.conformance import oracle_data

ORACLE = json.loads(
    (Path(__file__).resolve().parents[1] / "conformance" / "oracle" / "orthanc-1.10.1.json").read_text()
)


def test_format_sha1():
    assert ids.format_sha1("") == "da39a3ee-5e6b4b0d-3255bfef-95601890-afd80709"
    assert ids.is_public_id(ids.format_sha1("x")) and not ids.is_public_id("nope")


@pytest.mark.parametrize("entry", oracle_data.DATASETS, ids=lambda e: e["name"])
def test_ids_match_orthanc(entry):
    recorded = {d["name"]: d for d in ORACLE["_meta"]["datasets"]}[entry["name"]]
    data = oracle_data.build(entry)
    parsed = parsing.parse(data)
    assert parsed.ids.instance == recorded["ID"]


def test_parse_main_tags_and_offsets():
    data = dicomgen.make(patient=3, instance=4, rows=16, columns=16)
    p = parsing.parse(data)
    assert p.main_tags[ResourceType.PATIENT][0x00100020] == "PID00003"
    assert p.main_tags[ResourceType.INSTANCE][0x00200013] == "5"
    assert p.index_in_series == "5"
    assert p.transfer_syntax == "1.2.840.10008.1.2.1"
    assert data[p.pixel_data_offset : p.pixel_data_offset + 4] == b"\xe0\x7f\x10\x00"
    assert p.expected_instances is None


def test_expected_instances_rule():
    assert parsing.expected_instances({0x00201002: "10", 0x00200105: "3"}) == 30
    assert parsing.expected_instances({0x00540081: "4", 0x00540101: "2"}) == 8
    assert parsing.expected_instances({0x00181090: "12"}) == 12
    assert parsing.expected_instances({0x00181090: "0"}) is None


@pytest.mark.parametrize("cut", [0, 5, 100, 150, 190, 701, -1])
def test_truncated_files_are_rejected(cut):
    data = dicomgen.make(rows=16, columns=16)
    with pytest.raises(OrthancError) as err:
        parsing.parse(data[:cut])
    assert err.value.code is ErrorCode.BAD_FILE_FORMAT
