"""/tools/find, /tools/count-resources, /tools/lookup: matching rules and error answers."""

from __future__ import annotations

import dicomgen
import pytest


@pytest.fixture
def data(client):
    specs = [
        dict(patient=0, patient_name="Smith^John", study_date="20190105", modality="CT"),
        dict(patient=1, patient_name="SMITHERS^Ann", study_date="20200615", modality="MR"),
        dict(patient=2, patient_name="Müller^Jürgen", study_date="20201231", modality="CT"),
        dict(patient=3, patient_name="Doe^Jane", study_date="20210301", modality="US", accession="A[1]"),
    ]
    out = []
    for s in specs:
        out.append(client.upload(dicomgen.make(rows=0, columns=0, **s)))
    return out


def find(client, body):
    r = client.post("/tools/find", body)
    assert r.status == 200, r.body
    return r.json()


def studies(data, *idx):
    return sorted(data[i]["ParentStudy"] for i in idx)


def test_wildcards_case_and_accents(client, data):
    assert sorted(find(client, {"Level": "Study", "Query": {"PatientName": "smith*"}})) == studies(data, 0, 1)
    assert sorted(find(client, {"Level": "Study", "Query": {"PatientName": "Smith^Joh?"}})) == studies(data, 0)
    assert find(client, {"Level": "Study", "Query": {"PatientName": "smith*"}, "CaseSensitive": True}) == []
    assert find(client, {"Level": "Study", "Query": {"PatientName": "MULLER*"}}) == studies(data, 2)
    assert find(client, {"Level": "Study", "Query": {"AccessionNumber": "A[1]"}}) == studies(data, 3)
    assert find(client, {"Level": "Study", "Query": {"AccessionNumber": "A[*"}}) == studies(data, 3)
    # "CaseSensitive" (default false) covers every text VR, as Orthanc's REST lookups
    assert len(find(client, {"Level": "Series", "Query": {"Modality": "ct"}})) == 2
    assert find(client, {"Level": "Series", "Query": {"Modality": "ct"}, "CaseSensitive": True}) == []
    assert len(find(client, {"Level": "Series", "Query": {"Modality": "CT"}, "CaseSensitive": True})) == 2
    assert find(client, {"Level": "Study", "Query": {"AccessionNumber": "a[1]"}}) == studies(data, 3)
    # UIDs, dates and numbers take no wildcards (Orthanc refuses them)
    for key, value in (("StudyInstanceUID", "1.2*"), ("StudyDate", "2019*"), ("SeriesNumber", "1?")):
        r = client.post("/tools/find", {"Level": "Series", "Query": {key: value}})
        assert r.status == 400 and r.json()["OrthancError"] == "Parameter out of range", (key, r.body)


def test_ranges_lists_and_universal(client, data):
    assert sorted(find(client, {"Level": "Study", "Query": {"StudyDate": "20200101-20201231"}})) == studies(data, 1, 2)
    assert sorted(find(client, {"Level": "Study", "Query": {"StudyDate": "-20200615"}})) == studies(data, 0, 1)
    assert sorted(find(client, {"Level": "Study", "Query": {"StudyDate": "20201231-"}})) == studies(data, 2, 3)
    assert sorted(find(client, {"Level": "Series", "Query": {"Modality": "MR\\US"}})) == sorted(
        d["ParentSeries"] for d in (data[1], data[3])
    )
    assert len(find(client, {"Level": "Study", "Query": {"PatientName": "*"}})) == 4
    assert len(find(client, {"Level": "Patient", "Query": {}})) == 4
    # A study-level query on a series tag (ModalitiesInStudy)
    assert sorted(find(client, {"Level": "Study", "Query": {"ModalitiesInStudy": "CT"}})) == studies(data, 0, 2)
    # A non-main tag is checked against the files
    assert (
        find(client, {"Level": "Instance", "Query": {"Manufacturer": "orthanc_py", "InstitutionName": "Nowhere"}}) == []
    )
    assert len(find(client, {"Level": "Instance", "Query": {"SOPClassUID": dicomgen.CT_IMAGE_STORAGE}})) == 4
    # paging applies to what the files matched (read after the index transaction)
    by_file = {"Level": "Instance", "Query": {"Manufacturer": "orthanc_py"}}
    every = find(client, by_file)
    assert len(every) >= 3
    assert find(client, {**by_file, "Limit": 2}) == every[:2]
    assert find(client, {**by_file, "Since": 1, "Limit": 2}) == every[1:3]


def test_expand_limit_since_order(client, data):
    all_ids = find(client, {"Level": "Study", "Query": {}})
    assert all_ids == sorted(all_ids)  # Orthanc answers in public-ID order
    assert find(client, {"Level": "Study", "Query": {}, "Limit": 2}) == all_ids[:2]
    assert find(client, {"Level": "Study", "Query": {}, "Since": 1, "Limit": 2}) == all_ids[1:3]
    expanded = find(
        client,
        {
            "Level": "Study",
            "Query": {"PatientName": "Doe*"},
            "Expand": True,
            "RequestedTags": ["PatientName", "ModalitiesInStudy"],
        },
    )
    assert expanded[0]["ID"] == data[3]["ParentStudy"]
    assert expanded[0]["RequestedTags"]["PatientName"] == "Doe^Jane"
    short = find(client, {"Level": "Patient", "Query": {"PatientID": "PID00003"}, "Expand": True, "Short": True})
    assert short[0]["MainDicomTags"]["0010,0020"] == "PID00003"
    ordered = find(
        client,
        {"Level": "Study", "Query": {}, "OrderBy": [{"Type": "DicomTag", "Key": "StudyDate", "Direction": "DESC"}]},
    )
    assert ordered == [data[i]["ParentStudy"] for i in (3, 2, 1, 0)]
    parent = find(client, {"Level": "Instance", "Query": {}, "ParentPatient": data[1]["ParentPatient"]})
    assert parent == [data[1]["ID"]]
    content = find(client, {"Level": "Series", "Query": {"Modality": "US"}, "ResponseContent": ["Parent"]})
    assert content == [{"ID": data[3]["ParentSeries"], "ParentStudy": data[3]["ParentStudy"], "Type": "Series"}]
    count = client.post("/tools/count-resources", {"Level": "Study", "Query": {"PatientName": "S*"}}).json()
    assert count == {"Count": 2}


def test_lookup(client, data):
    r = client.post("/tools/lookup", dicomgen.uid("study", 1, 0) + "\n").json()
    assert r == [{"ID": data[1]["ParentStudy"], "Path": f"/studies/{data[1]['ParentStudy']}", "Type": "Study"}]
    assert client.post("/tools/lookup", "PID00002").json()[0]["Type"] == "Patient"
    assert client.post("/tools/lookup", "nothing").json() == []


@pytest.mark.parametrize(
    "body,status,code",
    [
        (b"{not json", 400, 8),
        (b"[1, 2]", 400, 8),
        (b"", 400, 8),
        ({"Query": {}}, 400, 8),
        ({"Level": "Foo", "Query": {}}, 400, 3),
        ({"Level": "Study"}, 400, 8),
        ({"Level": "Study", "Query": {"StudyDate": 2020}}, 400, 8),
        ({"Level": "Study", "Query": {"NoSuchTag": "x"}}, 400, 27),  # 500 in Orthanc; a 400 here (issue 13)
        ({"Level": "Study", "Query": {"": "x"}}, 400, 27),
        ({"Level": "Study", "Query": {}, "RequestedTags": ["NoSuchTag"], "Expand": True}, 400, 27),
        ({"Level": "Study", "Query": {}, "OrderBy": [{"Type": "Nope", "Key": "PatientName"}]}, 400, 8),
        ({"Level": "Study", "Query": {}, "OrderBy": {}}, 400, 8),
        ({"Level": "Study", "Query": {}, "MetadataQuery": {"1234": 5}}, 400, 8),
        ({"Level": "Study", "Query": {"StudyDate": "2020*"}}, 400, 3),
        ({"Level": "Study", "Query": {}, "Limit": -1}, 400, 3),
        ({"Level": "Study", "Query": {}, "Limit": 2.5}, 400, 8),
        ({"Level": "Study", "Query": {}, "Since": "2"}, 400, 8),
        ({"Level": "Study", "Query": {}, "CaseSensitive": "no"}, 400, 8),
    ],
)
def test_find_errors(client, body, status, code):
    r = client.post("/tools/find", body)
    assert r.status == status
    err = r.json()
    assert err["OrthancStatus"] == code and err["Uri"] == "/tools/find" and err["Method"] == "POST"
