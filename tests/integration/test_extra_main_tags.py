"""`ExtraMainDicomTags` (Orthanc 1.11+) and the DICOMweb plugin's StudiesMetadata/SeriesMetadata
modes, on the real server: extra tags of every level (sequences included) stored at ingest, shown
in MainDicomTags, answered from the index (files removed to prove it), re-stored by reconstruct."""

from __future__ import annotations

from pathlib import Path

import dicomgen
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # type: ignore[attr-defined]

EXTRA = {
    "Patient": ["EthnicGroup"],
    "Study": ["NameOfPhysiciansReadingStudy"],
    "Series": ["Laterality", "RequestAttributesSequence"],
    "Instance": ["Rows", "PixelSpacing", "PerformedProtocolCodeSequence"],
}
STUDY_UID = "1.2.826.0.1.3680043.10.999.1"
SERIES_UID = "1.2.826.0.1.3680043.10.999.1.1"


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "99TEST"
    item.CodeMeaning = meaning
    return item


def _request(step: str) -> Dataset:
    item = Dataset()
    item.ScheduledProcedureStepID = step
    item.RequestedProcedureID = "RP1"
    return item


def instance(number: int = 0) -> bytes:
    return dicomgen.make(
        patient=7,
        study_uid=STUDY_UID,
        series_uid=SERIES_UID,
        instance=number,
        rows=16,
        columns=24,
        extra={
            "EthnicGroup": "Martian",
            "NameOfPhysiciansReadingStudy": "Reader^Ray",
            "Laterality": "R",
            "RequestAttributesSequence": [_request("SPS1")],
            "PerformedProtocolCodeSequence": [_code("P1", "Protocol one")],
        },
    )


def _storage_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and "sqlite" not in p.name and "index" not in p.name]


def _remove_files(server) -> None:
    """Remove every stored DICOM file (the index stays): what still answers comes from the index."""
    files = _storage_files(Path(server.settings.storage_directory))
    assert files
    for p in files:
        p.unlink()


@pytest.fixture
def extra_server(make_server):
    return make_server(
        {
            "ExtraMainDicomTags": EXTRA,
            "DicomServerEnabled": True,
            "DicomPort": 0,
            "DicomAet": "ORTHANCPY",
            "DicomModalities": {"findscu": ["FINDSCU", "127.0.0.1", 11112]},
            "DicomWeb": {"StudiesMetadata": "MainDicomTags", "SeriesMetadata": "Full"},
        }
    )


def test_extra_tags_of_every_level_in_main_dicom_tags(extra_server):
    c = extra_server.client()
    ids = c.upload(instance())
    inst = c.get(f"/instances/{ids['ID']}").json()["MainDicomTags"]
    assert inst["Rows"] == "16" and inst["PixelSpacing"] == "0.5\\0.5"
    assert "Columns" not in inst
    assert inst["PerformedProtocolCodeSequence"] == [
        {"CodeMeaning": "Protocol one", "CodeValue": "P1", "CodingSchemeDesignator": "99TEST"}
    ]
    series = c.get(f"/series/{ids['ParentSeries']}").json()["MainDicomTags"]
    assert series["Laterality"] == "R"
    assert series["RequestAttributesSequence"] == [{"RequestedProcedureID": "RP1", "ScheduledProcedureStepID": "SPS1"}]
    study = c.get(f"/studies/{ids['ParentStudy']}").json()
    assert study["MainDicomTags"]["NameOfPhysiciansReadingStudy"] == "Reader^Ray"
    assert study["PatientMainDicomTags"]["EthnicGroup"] == "Martian"
    assert "EthnicGroup" not in study["MainDicomTags"]
    assert c.get(f"/patients/{ids['ParentPatient']}").json()["MainDicomTags"]["EthnicGroup"] == "Martian"

    short = c.get(f"/instances/{ids['ID']}?short").json()["MainDicomTags"]
    assert short["0028,0010"] == "16"
    assert short["0040,0260"] == [{"0008,0100": "P1", "0008,0102": "99TEST", "0008,0104": "Protocol one"}]
    full = c.get(f"/instances/{ids['ID']}?full").json()["MainDicomTags"]
    assert full["0028,0010"] == {"Name": "Rows", "Type": "String", "Value": "16"}
    seq = full["0040,0260"]
    assert seq["Name"] == "PerformedProtocolCodeSequence" and seq["Type"] == "Sequence"
    assert seq["Value"][0]["0008,0100"] == {"Name": "CodeValue", "Type": "String", "Value": "P1"}

    # expanded lists: every path that builds resources
    assert (
        c.get("/instances?expand").json()[0]["MainDicomTags"]["PerformedProtocolCodeSequence"][0]["CodeValue"] == "P1"
    )
    assert c.get(f"/series/{ids['ParentSeries']}/instances").json()[0]["MainDicomTags"]["Rows"] == "16"
    listed = c.get("/series?expand").json()[0]["MainDicomTags"]
    assert listed["Laterality"] == "R" and "RequestAttributesSequence" in listed
    studies = c.get("/studies?expand").json()[0]
    assert studies["MainDicomTags"]["NameOfPhysiciansReadingStudy"] == "Reader^Ray"
    assert studies["PatientMainDicomTags"]["EthnicGroup"] == "Martian"
    assert c.get("/patients?expand").json()[0]["MainDicomTags"]["EthnicGroup"] == "Martian"
    found = c.post("/tools/find", {"Level": "Instance", "Query": {}, "Expand": True, "Short": True}).json()
    assert found[0]["MainDicomTags"]["0040,0260"][0]["0008,0100"] == "P1"


def test_system_and_signature_metadata(extra_server):
    c = extra_server.client()
    ids = c.upload(instance())
    system = c.get("/system").json()["MainDicomTags"]
    assert "0028,0010" in system["Instance"].split(";") and "0040,0260" in system["Instance"].split(";")
    assert "0040,0275" in system["Series"].split(";") and "0020,0060" in system["Series"].split(";")
    assert "0008,1060" in system["Study"].split(";") and "0010,2160" in system["Patient"].split(";")
    assert system["Instance"].split(";") == sorted(system["Instance"].split(";"))
    for level, key in (("instances", "ID"), ("series", "ParentSeries"), ("studies", "ParentStudy")):
        sig = c.get(f"/{level}/{ids[key]}/metadata/MainDicomTagsSignature").body.decode()
        assert sig == system[{"instances": "Instance", "series": "Series", "studies": "Study"}[level]]
    sequences = c.get(f"/instances/{ids['ID']}/metadata/MainDicomSequences").json()
    assert sequences["Version"] == 1 and "0040,0260" in sequences["Sequences"]


def test_find_and_cfind_answer_extra_tags_from_the_index(extra_server):
    c = extra_server.client()
    c.upload(instance(0))
    c.upload(instance(1))
    _remove_files(extra_server)  # from now on, only the index can answer
    r = c.post(
        "/tools/find",
        {
            "Level": "Instance",
            "Query": {"PatientID": "PID00007"},
            "Expand": True,
            "RequestedTags": ["Rows", "PerformedProtocolCodeSequence", "RequestAttributesSequence", "EthnicGroup"],
        },
    )
    assert r.status == 200, r.body
    answers = r.json()
    assert len(answers) == 2
    tags = answers[0]["RequestedTags"]
    assert tags["Rows"] == "16" and tags["EthnicGroup"] == "Martian"
    assert tags["PerformedProtocolCodeSequence"][0]["CodeValue"] == "P1"
    assert tags["RequestAttributesSequence"][0]["ScheduledProcedureStepID"] == "SPS1"
    series = c.post(
        "/tools/find",
        {"Level": "Series", "Query": {}, "Expand": True, "RequestedTags": ["RequestAttributesSequence", "Laterality"]},
    ).json()
    assert series[0]["RequestedTags"]["Laterality"] == "R"
    assert series[0]["RequestedTags"]["RequestAttributesSequence"][0]["RequestedProcedureID"] == "RP1"
    one = c.get(f"/instances/{answers[0]['ID']}?requested-tags=Rows;PixelSpacing").json()
    assert one["RequestedTags"] == {"PixelSpacing": "0.5\\0.5", "Rows": "16"}

    ae = AE(ae_title="FINDSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    assoc = ae.associate("127.0.0.1", extra_server.ctx.dicom_port, ae_title="ORTHANCPY")
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = STUDY_UID
    query.SeriesInstanceUID = SERIES_UID
    query.SOPInstanceUID = ""
    query.Rows = None
    query.PixelSpacing = None
    idents = [
        i for st, i in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind) if st.Status == 0xFF00
    ]
    study_query = Dataset()
    study_query.QueryRetrieveLevel = "STUDY"
    study_query.StudyInstanceUID = ""
    study_query.NameOfPhysiciansReadingStudy = ""
    studies = [
        i for st, i in assoc.send_c_find(study_query, StudyRootQueryRetrieveInformationModelFind) if st.Status == 0xFF00
    ]
    assoc.release()
    assert len(idents) == 2
    assert {int(i.Rows) for i in idents} == {16}
    assert [float(v) for v in idents[0].PixelSpacing] == [0.5, 0.5]
    assert [str(s.NameOfPhysiciansReadingStudy) for s in studies] == ["Reader^Ray"]


def test_stored_with_another_set_then_reconstructed(make_server, tmp_path):
    storage = str(tmp_path / "shared")
    before = make_server({"StorageDirectory": storage})
    ids = before.client().upload(instance())
    old_signature = before.client().get(f"/instances/{ids['ID']}/metadata/MainDicomTagsSignature").body.decode()
    before.stop()

    after = make_server({"StorageDirectory": storage, "ExtraMainDicomTags": EXTRA})
    c = after.client()
    # as Orthanc: MainDicomTags shows what the index holds (a warning says to reconstruct) ...
    assert "Rows" not in c.get(f"/instances/{ids['ID']}").json()["MainDicomTags"]
    assert c.get(f"/instances/{ids['ID']}/metadata/MainDicomTagsSignature").body.decode() == old_signature
    # ... and requested tags the index lacks come from the file
    answer = c.post(
        "/tools/find",
        {"Level": "Instance", "Query": {}, "Expand": True, "RequestedTags": ["Rows", "PerformedProtocolCodeSequence"]},
    ).json()
    assert answer[0]["RequestedTags"]["Rows"] == "16"
    assert answer[0]["RequestedTags"]["PerformedProtocolCodeSequence"][0]["CodeValue"] == "P1"

    assert c.post(f"/studies/{ids['ParentStudy']}/reconstruct", {}).status == 200
    inst = c.get(f"/instances/{ids['ID']}").json()["MainDicomTags"]
    assert inst["Rows"] == "16" and inst["PerformedProtocolCodeSequence"][0]["CodeValue"] == "P1"
    assert c.get(f"/series/{ids['ParentSeries']}").json()["MainDicomTags"]["Laterality"] == "R"
    assert c.get(f"/patients/{ids['ParentPatient']}").json()["MainDicomTags"]["EthnicGroup"] == "Martian"
    new_signature = c.get(f"/instances/{ids['ID']}/metadata/MainDicomTagsSignature").body.decode()
    assert new_signature == c.get("/system").json()["MainDicomTags"]["Instance"] != old_signature


def test_reconstruct_this_level_only(make_server, tmp_path):
    storage = str(tmp_path / "shared")
    before = make_server({"StorageDirectory": storage})
    ids = before.client().upload(instance())
    before.stop()
    c = make_server({"StorageDirectory": storage, "ExtraMainDicomTags": EXTRA}).client()
    r = c.post(f"/series/{ids['ParentSeries']}/reconstruct", {"LimitToThisLevelMainDicomTags": True})
    assert r.status == 200
    assert c.get(f"/series/{ids['ParentSeries']}").json()["MainDicomTags"]["Laterality"] == "R"
    assert "Rows" not in c.get(f"/instances/{ids['ID']}").json()["MainDicomTags"]


def test_dicomweb_metadata_modes(extra_server):
    c = extra_server.client()
    c.upload(instance(0))
    c.upload(instance(1))
    # SeriesMetadata "Full": every file read, bulk data by URI (unchanged behaviour)
    full = c.get(f"/dicom-web/studies/{STUDY_UID}/series/{SERIES_UID}/metadata").json()
    assert len(full) == 2 and "00280011" in full[0] and "BulkDataURI" in full[0]["7FE00010"]
    # StudiesMetadata "MainDicomTags": the index only, extra tags and sequences included
    _remove_files(extra_server)
    r = c.get(f"/dicom-web/studies/{STUDY_UID}/metadata")
    assert r.status == 200, r.body
    items = r.json()
    assert len(items) == 2
    item = items[0]
    assert item["00280010"] == {"vr": "US", "Value": [16]}
    assert item["00280030"] == {"vr": "DS", "Value": ["0.5", "0.5"]}
    assert "00280011" not in item and "7FE00010" not in item and "00081190" not in item
    assert item["00400260"]["vr"] == "SQ"
    assert item["00400260"]["Value"][0]["00080100"] == {"vr": "SH", "Value": ["P1"]}
    assert item["00400275"]["Value"][0]["00400009"] == {"vr": "SH", "Value": ["SPS1"]}
    assert item["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Patient^00007"}]}
    assert item["00102160"] == {"vr": "SH", "Value": ["Martian"]}
    assert item["00080005"] == {"vr": "CS", "Value": ["ISO_IR 100"]}
    assert list(item) == sorted(item)
    sops = [i["00080018"]["Value"][0] for i in items]
    assert len(set(sops)) == 2
    xml = c.get(
        f"/dicom-web/studies/{STUDY_UID}/metadata",
        headers={"Accept": 'multipart/related; type="application/dicom+xml"'},
    )
    assert xml.status == 200 and xml.body.count(b"<NativeDicomModel") == 2
    assert b'keyword="PerformedProtocolCodeSequence"' in xml.body


def test_dicomweb_metadata_mode_checked(make_server):
    srv = make_server({"DicomWeb": {"SeriesMetadata": "Everything"}})
    c = srv.client()
    c.upload(instance())
    r = c.get(f"/dicom-web/studies/{STUDY_UID}/series/{SERIES_UID}/metadata")
    assert r.status == 400
    assert c.get(f"/dicom-web/studies/{STUDY_UID}/metadata").status == 200  # StudiesMetadata: Full


def test_bad_configuration_stops_the_start():
    """As Orthanc: a tag named twice at one level, or a level that is not a list, stops the start
    (ServerContext builds the set before serving); computed tags are left out."""
    from orthanc_py.errors import OrthancError
    from orthanc_py.model.dictionary import dcmtk
    from orthanc_py.model.maintags import DEFAULT_MAIN_TAGS, main_tag_set

    with pytest.raises(OrthancError, match="already defined"):
        main_tag_set({"Study": ["StudyDate"]}, dcmtk())
    with pytest.raises(OrthancError, match="not an array"):
        main_tag_set({"Study": "Rows"}, dcmtk())
    with pytest.raises(ValueError):
        main_tag_set({"Study": ["NoSuchTag"]}, dcmtk())
    assert main_tag_set({"Study": ["ModalitiesInStudy"], "Series": []}, dcmtk()) is DEFAULT_MAIN_TAGS


def test_dicomweb_metadata_extrapolate(make_server):
    """Extrapolate: the main tags, completed by the value most of (up to) 3 instances of each
    series / study give the ...ExtrapolatedTags (checked against Orthanc 1.10.1 + DICOMweb 1.7)."""
    srv = make_server(
        {
            "DicomWeb": {
                "StudiesMetadata": "Extrapolate",
                "SeriesMetadata": "MainDicomTags",
                "SeriesMetadataExtrapolatedTags": ["Columns", "ImageType"],
                "StudiesMetadataExtrapolatedTags": ["SliceThickness", "0018,0081"],
            }
        }
    )
    c = srv.client()
    for n, (columns, thickness) in enumerate([(24, "2"), (24, "2"), (32, "5"), (32, "5")]):
        c.upload(
            dicomgen.make(
                patient=7,
                study_uid=STUDY_UID,
                series_uid=SERIES_UID,
                instance=n,
                rows=16,
                columns=columns,
                extra={"SliceThickness": thickness, "EchoTime": "100", "ImageType": ["ORIGINAL", "PRIMARY"]},
            )
        )
    items = c.get(f"/dicom-web/studies/{STUDY_UID}/metadata").json()
    assert len(items) == 4
    files = sorted(c.get("/instances").json())[:3]
    samples = [c.get(f"/instances/{i}/simplified-tags").json() for i in files]
    columns = sorted(int(s["Columns"]) for s in samples)
    thickness = sorted(s["SliceThickness"] for s in samples)
    for item in items:
        assert item["00280011"] == {"vr": "US", "Value": [columns[1]]}  # the majority of 3 samples
        assert item["00180050"] == {"vr": "DS", "Value": [thickness[1]]}
        assert item["00180081"] == {"vr": "DS", "Value": ["100"]}
        assert item["00080008"] == {"vr": "CS", "Value": ["ORIGINAL", "PRIMARY"]}
        assert "00280010" not in item  # Rows is not extrapolated
    plain = c.get(f"/dicom-web/studies/{STUDY_UID}/series/{SERIES_UID}/metadata").json()
    assert "00280011" not in plain[0] and "00180050" not in plain[0]


def test_dicomweb_extrapolated_tag_checked(make_server):
    srv = make_server({"DicomWeb": {"SeriesMetadata": "Extrapolate", "SeriesMetadataExtrapolatedTags": ["Nope"]}})
    c = srv.client()
    c.upload(instance())
    assert c.get(f"/dicom-web/studies/{STUDY_UID}/series/{SERIES_UID}/metadata").status == 400


def test_study_joining_a_patient_repeats_its_extra_tags(make_server):
    """Orthanc 1.11.3+: a study modified to join a patient with other studies must repeat every
    patient main tag, `ExtraMainDicomTags` included."""
    c = make_server({"ExtraMainDicomTags": {"Patient": ["EthnicGroup"]}}).client()
    for study in (0, 1):
        c.upload(dicomgen.make(patient=1, study=study, extra={"EthnicGroup": "Martian"}))
    moved = c.upload(dicomgen.make(patient=2, extra={"EthnicGroup": "Martian"}))["ParentStudy"]
    replace = {
        "PatientID": "PID00001",
        "PatientName": "Patient^00001",
        "PatientBirthDate": "19700101",
        "PatientSex": "O",
    }
    r = c.post(f"/studies/{moved}/modify", {"Replace": replace, "Force": True})
    assert r.status == 400 and "Failing tag: 0010,2160" in r.json()["Details"]
    r = c.post(f"/studies/{moved}/modify", {"Replace": {**replace, "EthnicGroup": "Martian"}, "Force": True})
    assert r.status == 200, r.body
