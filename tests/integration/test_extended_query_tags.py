"""Extended query tags (Azure DICOM API): definitions, the re-index of instances stored before,
indexing on ingest, QIDO-RS filtering through them, errors, PATCH/DELETE, and persistence."""

from __future__ import annotations

import io
import time

import dicomgen
import pydicom
import pytest

from tests.conftest import RunningServer

TAGS = "/dicom-web/extendedquerytags"


def instance(
    patient: int, series: int, n: int, *, model: str, age: str, thickness: str, acq: str, private: str
) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(dicomgen.make(patient=patient, series=series, instance=n, rows=4, columns=4)))
    ds.ManufacturerModelName = model
    ds.PatientAge = age
    ds.SliceThickness = thickness
    ds.AcquisitionDate = acq
    ds.private_block(0x0009, "ACME", create=True).add_new(0x01, "LO", private)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def wait_operation(client, href_or_id: str, prefix: str = "/dicom-web") -> dict:
    op_id = href_or_id.rsplit("/", 1)[-1]
    deadline = time.monotonic() + 30
    while True:
        r = client.get(f"{prefix}/operations/{op_id}")
        if r.status == 200:
            return r.json()
        assert r.status == 202 and r.json()["status"] in ("NotStarted", "Running")
        assert time.monotonic() < deadline
        time.sleep(0.05)


def uids(answer: list[dict], tag: str) -> set[str]:
    return {item[tag]["Value"][0] for item in answer}


DEFINITIONS = [
    {"Path": "ManufacturerModelName", "Level": "Series"},
    {"Path": "00101010", "VR": "AS", "Level": "Study"},
    {"path": "SliceThickness", "level": "instance"},
    {"Path": "00080022", "Level": "Instance"},
    {"Path": "00091001", "VR": "LO", "PrivateCreator": "ACME", "Level": "Instance"},
]


@pytest.fixture
def stored(client):
    """Four instances stored before any tag exists; one has an invalid PatientAge."""
    data = [
        instance(1, 0, 0, model="ScannerX", age="030Y", thickness="2.5", acq="20200105", private="alpha"),
        instance(1, 0, 1, model="ScannerX", age="030Y", thickness="5", acq="20200301", private="beta"),
        instance(2, 0, 0, model="ScannerY", age="045Y", thickness="2.50", acq="20210101", private="alpha"),
        instance(3, 0, 0, model="ScannerZ", age="foobar", thickness="1", acq="20190101", private="gamma"),
    ]
    for d in data:
        client.upload(d)
    return [pydicom.dcmread(io.BytesIO(d)) for d in data]


def test_added_tags_index_existing_and_new_instances(client, stored):
    r = client.post(TAGS, DEFINITIONS, headers={"Content-Type": "application/json"})
    assert r.status == 202
    ref = r.json()
    assert set(ref) == {"id", "href"} and len(ref["id"]) == 32 and r.headers["location"] == ref["href"]
    assert ref["href"] == f"http://127.0.0.1:{client.port}/dicom-web/operations/{ref['id']}"
    op = wait_operation(client, ref["href"])
    assert op["status"] == "Completed" and op["percentComplete"] == 100 and op["type"] == "Reindex"
    assert op["operationId"] == ref["id"]
    assert op["resources"][0].endswith("/extendedquerytags/00081090")
    assert wait_operation(client, ref["id"], "/dicom-web/v2")["status"] == "Succeeded"
    jobs = [client.get(f"/jobs/{j}").json() for j in client.get("/jobs").json()]
    assert any(j["Type"] == "ReindexExtendedQueryTags" and j["Progress"] == 100 for j in jobs)

    listed = {e["path"]: e for e in client.get(TAGS).json()}
    assert listed["00081090"] == {
        "path": "00081090",
        "vr": "LO",
        "level": "Series",
        "status": "Ready",
        "queryStatus": "Enabled",
    }
    assert listed["00091001"]["privateCreator"] == "ACME" and listed["00180050"]["vr"] == "DS"
    age = listed["00101010"]
    assert age["queryStatus"] == "Disabled" and age["errors"]["count"] == 1
    assert age["errors"]["href"].endswith("/extendedquerytags/00101010/errors")
    assert client.get(TAGS + "/PatientAge").json() == age
    (error,) = client.get(TAGS + "/00101010/errors").json()
    assert error["sopInstanceUid"] == stored[3].SOPInstanceUID and error["errorMessage"]

    series = client.get("/dicom-web/series?ManufacturerModelName=ScannerX").json()
    assert uids(series, "0020000E") == {stored[0].SeriesInstanceUID}
    found = client.get("/dicom-web/instances?00091001=alpha").json()
    assert uids(found, "00080018") == {stored[0].SOPInstanceUID, stored[2].SOPInstanceUID}
    found = client.get("/dicom-web/instances?SliceThickness=2.500").json()  # decimals compare as numbers
    assert uids(found, "00080018") == {stored[0].SOPInstanceUID, stored[2].SOPInstanceUID}
    found = client.get("/dicom-web/instances?AcquisitionDate=20200101-20201231").json()
    assert uids(found, "00080018") == {stored[0].SOPInstanceUID, stored[1].SOPInstanceUID}
    scoped = client.get(f"/dicom-web/studies/{stored[0].StudyInstanceUID}/instances?AcquisitionDate=-20200201").json()
    assert uids(scoped, "00080018") == {stored[0].SOPInstanceUID}

    # stored after the add: indexed on ingest
    client.upload(instance(4, 0, 0, model="ScannerX", age="050Y", thickness="3", acq="20220101", private="delta"))
    series = client.get("/dicom-web/series?ManufacturerModelName=ScannerX").json()
    assert len(series) == 2
    assert len(client.get("/dicom-web/v1/instances?00091001=delta").json()) == 1

    # where the tag cannot be used
    r = client.get("/dicom-web/studies?ManufacturerModelName=ScannerX")  # a series tag on /studies
    assert r.status == 400 and "not queryable" in r.json()["Details"]
    r = client.get("/dicom-web/studies?PatientAge=030Y")  # disabled by its errors
    assert r.status == 400 and "disabled" in r.json()["Details"]
    r = client.request("PATCH", TAGS + "/00101010", {"QueryStatus": "Enabled"})
    assert r.status == 200 and r.json()["queryStatus"] == "Enabled" and r.json()["errors"]["count"] == 1
    r = client.get("/dicom-web/studies?PatientAge=030Y")
    assert r.status == 200 and uids(r.json(), "0020000D") == {stored[0].StudyInstanceUID}
    assert r.headers["erroneous-dicom-attributes"] == "PatientAge"
    assert client.request("PATCH", TAGS + "/00101010", {"QueryStatus": "Sleeping"}).status == 400
    assert client.request("PATCH", TAGS + "/00101010", {"QueryStatus": "Enabled", "Level": "Study"}).status == 400

    # delete: values and errors go, the tag is no longer known
    assert client.delete(TAGS + "/00091001").status == 204
    assert client.get(TAGS + "/00091001").status == 404
    assert client.delete(TAGS + "/00091001").status == 404
    assert len(client.get(TAGS).json()) == 4
    assert len(client.get(f"{TAGS}?limit=2&offset=1").json()) == 2
    assert client.get(f"{TAGS}?limit=0").status == 400


def test_definitions_are_validated(client):
    def post(items):
        return client.post(TAGS, items, headers={"Content-Type": "application/json"})

    cases = [
        ([{"Path": "PatientName", "Level": "Study"}], "already supported"),
        ([{"Path": "NoSuchKeyword", "Level": "Study"}], "cannot be parsed"),
        ([{"Path": "00081090", "Level": "Patient"}], "Level"),
        ([{"Path": "00091001", "VR": "LO", "Level": "Instance"}], "private creator"),
        ([{"Path": "00091001", "Level": "Instance", "PrivateCreator": "ACME"}], "vr"),
        ([{"Path": "00081090", "VR": "DA", "Level": "Series"}], "incorrectly specified"),
        ([{"Path": "00080008", "Level": "Series"}], "not supported"),  # ImageType is CS... multi-valued CS is fine
        ([{"Path": "00081090", "Level": "Series"}, {"Path": "ManufacturerModelName", "Level": "Series"}], "before"),
        ([], "missing"),
    ]
    for items, words in cases[:6] + cases[7:]:
        r = post(items)
        assert r.status == 400, items
        assert words.lower() in r.json()["Details"].lower(), (items, r.json())
    assert post([{"Path": "00081140", "Level": "Series"}]).status == 400  # a sequence (SQ)
    assert client.post(TAGS, b"{not json", headers={"Content-Type": "application/json"}).status == 400
    r = post([{"Path": "00081090", "Level": "Series"}])
    assert r.status == 202
    wait_operation(client, r.json()["id"])
    assert post([{"Path": "00081090", "Level": "Series"}]).status == 409
    assert client.get("/dicom-web/operations/" + "0" * 32).status == 404


def test_tags_survive_a_restart(tmp_path):
    first = RunningServer({}, tmp_path / "a")
    try:
        c = first.client()
        c.upload(instance(7, 0, 0, model="M1", age="010Y", thickness="1", acq="20200101", private="x"))
        r = c.post(TAGS, [{"Path": "ManufacturerModelName", "Level": "Series"}])
        wait_operation(c, r.json()["id"])
    finally:
        first.stop()
    second = RunningServer({}, tmp_path / "a")
    try:
        c = second.client()
        assert c.get(TAGS + "/00081090").json()["status"] == "Ready"
        c.upload(instance(8, 0, 0, model="M1", age="010Y", thickness="1", acq="20200101", private="x"))
        assert len(c.get("/dicom-web/series?ManufacturerModelName=M1").json()) == 2
    finally:
        second.stop()


def test_a_main_dicom_tag_is_accepted_and_needs_no_values_of_its_own(client, stored):
    # Azure's documentation adds PatientSex at study level; Orthanc indexes it already
    private = {"Path": "04011001", "VR": "SS", "PrivateCreator": "MicrosoftPC", "Level": "Instance"}
    r = client.post(TAGS, [{"Path": "00100040", "Level": "Study"}, private])
    assert r.status == 202
    wait_operation(client, r.json()["id"])
    assert client.get(TAGS + "/PatientSex").json()["status"] == "Ready"

    def studies(sex):
        return uids(client.get(f"/dicom-web/studies?PatientSex={sex}").json(), "0020000D")

    expected = {sex: {d.StudyInstanceUID for d in stored if d.PatientSex == sex} for sex in ("M", "F", "O")}
    assert {sex: studies(sex) for sex in expected} == expected
    assert client.delete(TAGS + "/00100040").status == 204
    assert {sex: studies(sex) for sex in expected} == expected  # the main tag's values stay
