"""ZIP archives and DICOMDIR media compared with the real Orthanc for the same files: member
names (folders, file names, order), the bytes of every member, and the DICOMDIR's records.

Runs when Orthanc is installed (`apt-get install orthanc`, as .ci/run does)."""

from __future__ import annotations

import io
import json
import os
import shutil
import urllib.request
import zipfile
from typing import Any

import dicomgen
import pydicom
import pytest

from tests.conformance.real_orthanc import ORTHANC, real_orthanc, upload
from tests.conftest import free_ports

pytestmark = pytest.mark.skipif(not os.path.exists(ORTHANC), reason="the real Orthanc is not installed")

# names Orthanc reduces: non-ASCII, punctuation, "^", empty values, one-letter and missing
# modalities, two series with the same folder name, two patients with the same one
SPECS = [
    dict(patient=1, series=0, instance=0, patient_name="Müller^Jörg", study_description="Crâne (3D) - coupes"),
    dict(patient=1, series=0, instance=1, patient_name="Müller^Jörg", study_description="Crâne (3D) - coupes"),
    dict(patient=1, series=1, instance=0, patient_name="Müller^Jörg", study_description="Crâne (3D) - coupes"),
    dict(patient=2, series=0, instance=0, accession="", study_description="", modality="M", series_description=""),
    dict(patient=3, series=0, instance=0, patient_id="A/B", patient_name="Same", series_description="x/y^z"),
    dict(patient=4, series=0, instance=0, patient_id="AB", patient_name="Same", series_description="x/y^z"),
    dict(patient=5, series=0, instance=0, modality="", series_description="  spaced   out  "),
]


def files() -> list[bytes]:
    return [dicomgen.make(rows=4, columns=4, **spec) for spec in SPECS]  # type: ignore[arg-type]


def fetch(url: str, path: str, body: Any = None) -> bytes:
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(urllib.request.Request(url + path, data=data), timeout=60) as r:
        return bytes(r.read())


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    from tests.conftest import RunningServer

    base = tmp_path_factory.mktemp("archive")
    http, dicom = free_ports(2)
    config = {"Name": "Oracle", "HttpPort": http, "DicomPort": dicom, "Plugins": [], "RemoteAccessAllowed": False}
    with real_orthanc(base, config) as url:
        ours = RunningServer({}, base / "ours")
        try:
            client = ours.client()
            for data in files():
                upload(url, data)
                client.upload(data)
            yield url, client.url
        finally:
            ours.stop()
    shutil.rmtree(base, ignore_errors=True)


def members(body: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        return [(name, zf.read(name)) for name in zf.namelist()]


def as_1_12_6(orthanc_1_10: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Orthanc 1.10.1's members renamed as Orthanc 1.12.6 names them (the version we answer
    as): the counter of a file name becomes its InstanceNumber, the digits keeping their width."""
    out = []
    for name, data in orthanc_1_10:
        folder, _, base = name.rpartition("/")
        stem = base[: -len(".dcm")]
        digits = len(stem) - len(stem.rstrip("0123456789"))
        number = str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).get("InstanceNumber", "")).strip()
        if number.isdigit():
            base = f"{stem[: len(stem) - digits]}{int(number):0{digits}d}.dcm"
        out.append((f"{folder}/{base}" if folder else base, data))
    return out


def records(dicomdir: bytes) -> list[dict[str, Any]]:
    ds = pydicom.dcmread(io.BytesIO(dicomdir))
    skip = {"OffsetOfTheNextDirectoryRecord", "OffsetOfReferencedLowerLevelDirectoryEntity", "StudyTime", "StudyDate"}
    return [{e.keyword: str(e.value) for e in r if e.keyword not in skip} for r in ds.DirectoryRecordSequence]


def test_archive_of_everything_matches_orthanc(servers):
    theirs, ours = servers
    patients = json.loads(fetch(theirs, "/patients"))
    assert sorted(patients) == sorted(json.loads(fetch(ours, "/patients")))
    expected = as_1_12_6(members(fetch(theirs, "/tools/create-archive", patients)))
    got = members(fetch(ours, "/tools/create-archive", patients))
    assert [n for n, _ in got] == [n for n, _ in expected]
    assert got == expected


def test_study_and_series_archives_match_orthanc(servers):
    theirs, ours = servers
    for study in json.loads(fetch(theirs, "/studies")):
        expected = as_1_12_6(members(fetch(theirs, f"/studies/{study}/archive")))
        assert members(fetch(ours, f"/studies/{study}/archive")) == expected
    for series in json.loads(fetch(theirs, "/series"))[:3]:
        expected = as_1_12_6(members(fetch(theirs, f"/series/{series}/archive")))
        assert members(fetch(ours, f"/series/{series}/archive")) == expected


@pytest.mark.parametrize("route", ["/tools/create-media", "/tools/create-media-extended"])
def test_media_matches_orthanc(servers, route):
    theirs, ours = servers
    patients = json.loads(fetch(theirs, "/patients"))
    expected = dict(members(fetch(theirs, route, patients)))
    got = dict(members(fetch(ours, route, patients)))
    assert sorted(got) == sorted(expected)
    assert {k: v for k, v in got.items() if k != "DICOMDIR"} == {k: v for k, v in expected.items() if k != "DICOMDIR"}
    assert records(got["DICOMDIR"]) == records(expected["DICOMDIR"])
