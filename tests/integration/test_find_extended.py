"""/tools/find as Orthanc 1.12.5: requested and computed tags, patient tags per study, case rules,
OrderBy/MetadataQuery/ResponseContent, paging limits; /tools/lookup normalization."""

from __future__ import annotations

import dicomgen
import pytest
from pydicom.dataset import Dataset


def find(client, body, status=200):
    r = client.post("/tools/find", body)
    assert r.status == status, r.body
    return r.json()


def _with_sequence() -> bytes:
    ds = dicomgen.make_dataset(dicomgen.Spec(patient=7, rows=0, columns=0, modality="MR"))
    item = Dataset()
    item.RequestedProcedureID = "RP42"
    ds.RequestAttributesSequence = [item]
    return dicomgen.to_bytes(ds)


def test_requested_tags_computed_and_from_files(client):
    client.upload(_with_sequence())
    client.upload(dicomgen.make(patient=7, series=1, rows=0, columns=0, modality="CT"))
    base = {"Level": "Study", "Query": {"PatientID": "PID00007"}, "Expand": True}
    study = find(
        client,
        {
            **base,
            "RequestedTags": [
                "PatientName",
                "ModalitiesInStudy",
                "NumberOfStudyRelatedSeries",
                "NumberOfStudyRelatedInstances",
                "SOPClassesInStudy",
            ],
        },
    )[0]["RequestedTags"]
    assert study == {
        "PatientName": "Patient^00007",
        "ModalitiesInStudy": "CT\\MR",
        "NumberOfStudyRelatedSeries": "2",
        "NumberOfStudyRelatedInstances": "2",
        "SOPClassesInStudy": dicomgen.CT_IMAGE_STORAGE,
    }
    series = find(
        client,
        {
            "Level": "Series",
            "Query": {"Modality": "MR"},
            "Expand": True,
            "RequestedTags": ["RequestAttributesSequence", "NumberOfSeriesRelatedInstances", "Rows"],
        },
    )[0]["RequestedTags"]
    # a query on a sequence matches nothing (as Orthanc's REST lookups), without an error
    assert find(client, {"Level": "Series", "Query": {"RequestAttributesSequence": "x"}}) == []
    # a sequence keeps its structure; a tag the file lacks (Rows) is left out
    assert series == {
        "RequestAttributesSequence": [{"RequestedProcedureID": "RP42"}],
        "NumberOfSeriesRelatedInstances": "1",
    }
    patient = find(
        client,
        {
            "Level": "Patient",
            "Query": {},
            "Expand": True,
            "Short": True,
            "RequestedTags": ["NumberOfPatientRelatedInstances"],
        },
    )[0]["RequestedTags"]
    assert patient == {"0020,1204": "2"}
    instance = find(
        client,
        {"Level": "Instance", "Query": {"Modality": "CT"}, "Expand": True, "RequestedTags": ["InstanceAvailability"]},
    )[0]["RequestedTags"]
    assert instance == {"InstanceAvailability": "ONLINE"}
    # the same values through the resource routes
    sid = client.get("/studies").json()[0]
    r = client.get(f"/studies/{sid}?requested-tags=ModalitiesInStudy;NumberOfStudyRelatedSeries").json()
    assert r["RequestedTags"] == {"ModalitiesInStudy": "CT\\MR", "NumberOfStudyRelatedSeries": "2"}
    # ResponseContent [] answers ID, Type and the requested tags only
    only = find(client, {**base, "ResponseContent": [], "RequestedTags": ["StudyDate"]})
    assert only == [{"ID": sid, "Type": "Study", "RequestedTags": {"StudyDate": "20200101"}}]


def test_computed_tags_only_at_their_own_level(client):
    """As Orthanc 1.12.5: a series asked for study-level computed tags (what QIDO-RS asks for
    series without a study) answers none of them, only its own count; the study answers them."""
    client.upload(dicomgen.make(patient=8, series=0, instance=0, rows=0, columns=0, modality="CT"))
    client.upload(dicomgen.make(patient=8, series=1, instance=0, rows=0, columns=0, modality="MR"))
    counts = ["NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "ModalitiesInStudy"]
    asked = ["PatientID", "StudyDate", "SeriesDescription", *counts, "NumberOfSeriesRelatedInstances"]
    series = find(client, {"Level": "Series", "Query": {"Modality": "CT"}, "Expand": True, "RequestedTags": asked})[0][
        "RequestedTags"
    ]
    assert not set(counts) & set(series)
    assert series["NumberOfSeriesRelatedInstances"] == "1"
    assert series["PatientID"] == "PID00008"
    sid = client.get("/studies").json()[0]
    study = client.get(f"/studies/{sid}?requested-tags=" + ";".join([*counts, "SOPClassesInStudy"])).json()
    assert study["RequestedTags"]["NumberOfStudyRelatedInstances"] == "2"
    assert study["RequestedTags"]["ModalitiesInStudy"] == "CT\\MR"
    # the other way round: study counts for a patient, patient counts for an instance are left out too
    patient = client.get("/patients?expand&requestedTags=NumberOfStudyRelatedSeries;SOPClassesInStudy").json()
    assert patient[0]["RequestedTags"] == {}
    inst = client.get("/instances?expand&requested-tags=NumberOfPatientRelatedStudies;InstanceAvailability").json()
    assert inst[0]["RequestedTags"] == {"InstanceAvailability": "ONLINE"}


def test_patient_tags_are_matched_on_each_study(client):
    # One PatientID, three studies naming the patient differently (Orthanc's PatientIdsCollision).
    for i, name in enumerate(("FOO", "HELLO", "WORLD")):
        client.upload(dicomgen.make(patient=0, study=i, rows=0, columns=0, patient_id="COMMON", patient_name=name))
    assert len(find(client, {"Level": "Patient", "Query": {"PatientName": "*"}})) == 1
    assert len(find(client, {"Level": "Study", "Query": {"PatientName": "FOO\\HELLO"}, "CaseSensitive": True})) == 2
    assert len(find(client, {"Level": "Series", "Query": {"PatientName": "Foo"}})) == 1
    assert find(client, {"Level": "Series", "Query": {"PatientName": "Foo"}, "CaseSensitive": True}) == []
    ordered = find(
        client,
        {
            "Level": "Study",
            "Query": {},
            "Expand": True,
            "OrderBy": [{"Type": "DicomTag", "Key": "PatientName", "Direction": "DESC"}],
        },
    )
    assert [s["PatientMainDicomTags"]["PatientName"] for s in ordered] == ["WORLD", "HELLO", "FOO"]


def test_lookup_and_case_rules(client):
    client.upload(dicomgen.make(patient=3, rows=0, columns=0, patient_id="ozp00SjY2xG", accession="acc-1"))
    for text in ("ozp00SjY2xG", "OZP00SJY2XG", " ozp00sjy2xg \n"):
        assert [r["Type"] for r in client.post("/tools/lookup", text).json()] == ["Patient"]
    assert [r["Type"] for r in client.post("/tools/lookup", "ACC-1").json()] == ["Study"]
    query = {"Level": "Patient", "Query": {"PatientID": "OZP00SjY2xG"}}
    assert len(find(client, query)) == 1
    assert find(client, {**query, "CaseSensitive": True}) == []
    # count-resources refuses CaseSensitive, and ignores Since
    r = client.post("/tools/count-resources", {**query, "CaseSensitive": True})
    assert r.status == 400
    assert client.post("/tools/count-resources", {**query, "Since": 1}).json() == {"Count": 1}
    # Since cannot page through matches the index cannot decide alone
    find(client, {"Level": "Study", "Query": {"PatientName": "*a*"}, "CaseSensitive": True, "Since": 1}, 400)
    find(client, {**query, "CaseSensitive": True, "Since": 1}, 400)  # identifiers are kept folded by Orthanc
    exact = {"Level": "Series", "Query": {"Modality": "CT"}, "CaseSensitive": True, "Since": 1}
    assert find(client, exact) == []  # exact text values page fine
    by_file = {"Level": "Instance", "Query": {"SOPClassUID": dicomgen.CT_IMAGE_STORAGE}}
    find(client, {**by_file, "Since": 1}, 400)
    assert client.post("/tools/count-resources", by_file).status == 400
    assert len(find(client, by_file)) == 1


@pytest.fixture
def metadata_server(make_server):
    return make_server({"UserMetadata": {"my-metadata": 1098}, "LimitFindInstances": 3})


def test_order_by_metadata_query_and_limits(metadata_server):
    client = metadata_server.client()
    ids = []
    for i in range(4):
        u = client.upload(dicomgen.make(patient=1, series=i, rows=0, columns=0, modality="MR" if i % 2 else "CT"))
        ids.append(u)
        assert client.put(f"/series/{u['ParentSeries']}/metadata/1098", f"v{3 - i}x").status == 200
        assert client.put(f"/instances/{u['ID']}/metadata/1234", f"{10 - 3 * i}.5").status == 200
    series = [u["ParentSeries"] for u in ids]
    by_meta = find(
        client,
        {"Level": "Series", "Query": {}, "OrderBy": [{"Type": "Metadata", "Key": "my-metadata", "Direction": "ASC"}]},
    )
    assert by_meta == series[::-1]
    assert find(client, {"Level": "Series", "Query": {}, "MetadataQuery": {"my-metadata": "*2*"}}) == [series[1]]
    as_float = find(
        client,
        {
            "Level": "Instance",
            "Query": {},
            "Limit": 10,
            "OrderBy": [{"Type": "MetadataAsFloat", "Key": "1234", "Direction": "ASC"}],
        },
    )
    # LimitFindInstances caps any Limit; 1.5 < 4.5 < 7.5 as numbers
    assert as_float == [ids[3]["ID"], ids[2]["ID"], ids[1]["ID"]]
    # a key some resources lack puts them last whatever the direction
    client.delete(f"/series/{series[0]}/metadata/1098")
    desc = find(
        client,
        {"Level": "Series", "Query": {}, "OrderBy": [{"Type": "Metadata", "Key": "1098", "Direction": "DESC"}]},
    )
    assert desc == [series[1], series[2], series[3], series[0]]
    as_int = find(
        client,
        {
            "Level": "Series",
            "Query": {},
            "OrderBy": [{"Type": "DicomTagAsInt", "Key": "SeriesNumber", "Direction": "DESC"}],
        },
    )
    assert as_int == series[::-1]
    content = find(
        client,
        {"Level": "Series", "Query": {"Modality": "CT"}, "ResponseContent": ["Metadata", "RequestedTags"]},
    )
    assert {c["ID"] for c in content} == {series[0], series[2]}
    assert "LastUpdate" in content[0]["Metadata"]
    bad = client.post("/tools/find", {"Level": "Series", "Query": {}, "MetadataQuery": {"no-such-name": "x"}})
    assert bad.status == 404 and bad.json()["OrthancStatus"] == 7  # as the metadata routes


def test_case_sensitive_defaults_to_false_whatever_case_sensitive_pn(make_server):
    client = make_server({"CaseSensitivePN": True}).client()
    client.upload(dicomgen.make(patient=4, rows=0, columns=0, patient_name="BRAINIX"))
    assert len(find(client, {"Level": "Patient", "Query": {"PatientName": "brainix"}})) == 1
    assert find(client, {"Level": "Patient", "Query": {"PatientName": "brainix"}, "CaseSensitive": True}) == []


def test_labels_none_without_labels_constrains_nothing(client):
    u = client.upload(dicomgen.make(patient=2, rows=0, columns=0))
    client.put(f"/instances/{u['ID']}/labels/a", "")
    assert len(find(client, {"Level": "Instance", "Query": {}, "Labels": [], "LabelsConstraint": "None"})) == 1
    assert find(client, {"Level": "Instance", "Query": {}, "Labels": ["a"], "LabelsConstraint": "None"}) == []
