"""Orthanc's behaviour on the DICOM wire: C-FIND answers (DefaultEncoding, counters, presence
wildcards, levels), /queries (normalization, typed values, retrieve report), incoming C-MOVE as a
job, the file meta header of received instances, store-straight, and modality configuration."""

from __future__ import annotations

import io
import time

import dicomgen
import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
)

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
NAME = "Test-éü^Дмитрий"


@pytest.fixture
def archive(make_server, scp):
    srv = make_server(
        {
            "DicomServerEnabled": True,
            "DicomPort": 0,
            "DicomAet": "ORTHANCPY",
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowMove": True,
            "SynchronousCMove": False,
        }
    )
    c = srv.client()
    assert c.put("/modalities/self", ["ORTHANCPY", "127.0.0.1", srv.ctx.dicom_port]).status == 200
    assert c.put("/modalities/storescp", ["STORESCP", "127.0.0.1", scp.port]).status == 200
    c.upload(
        dicomgen.make(
            patient=0,
            rows=16,
            columns=16,
            accession="ACC1",
            patient_name=NAME,
            extra={"SpecificCharacterSet": "ISO_IR 192"},
        )
    )
    return srv


def _assoc(port: int, model: str, syntaxes: list[str] | None = None):
    ae = AE(ae_title="FINDSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context(model, syntaxes or [IMPLICIT_LE, EXPLICIT_LE])
    assoc = ae.associate("127.0.0.1", port, ae_title="ORTHANCPY")
    assert assoc.is_established
    return assoc


def cfind(port: int, query: Dataset, model=StudyRootQueryRetrieveInformationModelFind) -> tuple[list[Dataset], int]:
    assoc = _assoc(port, model)
    out, final = [], None
    for st, ident in assoc.send_c_find(query, model):
        final = st.Status
        if st.Status in (0xFF00, 0xFF01):
            out.append(ident)
    assoc.release()
    return out, final


def q(level: str, **keys: object) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for k, v in keys.items():
        setattr(ds, k, v)
    return ds


def test_cfind_answers_in_the_default_encoding(archive):
    port = archive.ctx.dicom_port
    c = archive.client()
    assert c.put("/tools/default-encoding", "Latin1").status == 200
    (ans,), _ = cfind(port, q("PATIENT", PatientName="", PatientID=""), PatientRootQueryRetrieveInformationModelFind)
    assert ans.SpecificCharacterSet == "ISO_IR 100"
    assert str(ans.PatientName) == "Test-éü^"  # what Latin-1 cannot hold is dropped
    assert c.put("/tools/default-encoding", "Utf8").status == 200
    (ans,), _ = cfind(port, q("PATIENT", PatientName="", PatientID=""), PatientRootQueryRetrieveInformationModelFind)
    assert ans.SpecificCharacterSet == "ISO_IR 192" and str(ans.PatientName) == NAME


def test_cfind_counters_presence_levels_and_syntax(archive):
    port = archive.ctx.dicom_port
    (ans,), _ = cfind(
        port,
        q("PATIENT", PatientID="", NumberOfPatientRelatedStudies="", NumberOfStudyRelatedSeries=""),
        PatientRootQueryRetrieveInformationModelFind,
    )
    assert ans.NumberOfPatientRelatedStudies == 1
    assert ans.NumberOfStudyRelatedSeries is None  # counters are computed at the query's level only
    # "*" asks for the tag to be present; an empty value asks for nothing
    assert cfind(port, q("STUDY", StudyInstanceUID="", OtherPatientIDs="*"))[0] == []
    assert len(cfind(port, q("STUDY", StudyInstanceUID="", OtherPatientIDs=""))[0]) == 1
    assert len(cfind(port, q("IMAGES", SOPInstanceUID=""))[0]) == 1  # Orthanc's level spellings
    query = q("SERIES", SeriesInstanceUID="", RequestAttributesSequence=[])
    query.add_new(0x00090010, "LO", "")
    (ans,), _ = cfind(port, query)
    assert not ans[0x00090010].value and ans.RequestAttributesSequence == []  # echoed, as Orthanc does
    # no wildcard on UIDs: the C-FIND fails
    assert cfind(port, q("STUDY", StudyInstanceUID="1.2*"))[1] == 0xC000
    assoc = _assoc(port, StudyRootQueryRetrieveInformationModelFind, [IMPLICIT_LE, EXPLICIT_LE])
    assert assoc.accepted_contexts[0].transfer_syntax[0] == EXPLICIT_LE  # preferred, as Orthanc
    assoc.release()


def test_queries_normalize_typed_values_and_retrieve_report(archive):
    c = archive.client()
    body = {"Level": "Patient", "Query": {"PatientID": "", "StudyDescription": "nope"}}
    qid = c.post("/modalities/self/query", body).json()["ID"]
    answers = c.get(f"/queries/{qid}/answers?expand&simplify").json()
    assert len(answers) == 1 and "StudyDescription" not in answers[0]  # not a patient-level key
    assert c.get(f"/queries/{qid}/query?short").json() == {"0008,1030": "nope", "0010,0020": ""}
    r = c.post("/modalities/self/query", {**body, "Normalize": False})
    assert c.get(f"/queries/{r.json()['ID']}/answers").json() == []
    r = c.post("/modalities/self/query", {"Level": "Instance", "Query": {"Rows": "*"}, "Normalize": False})
    assert r.status == 400 and r.json()["OrthancStatus"] == 15
    r = c.post("/modalities/self/query", {"Level": "Instance", "Query": {"Rows": "16"}, "Normalize": False})
    assert c.get(f"/queries/{r.json()['ID']}/answers?expand&simplify").json()[0]["Rows"] == "16"
    # normalization keeps the level's module attributes (SOPClassUID is in SOP Common, Rows is not);
    # answers repeat the SOP class and instance in (0002,0002)/(0002,0003), as Orthanc's do
    r = c.post("/modalities/self/query", {"Level": "Instance", "Query": {"SOPClassUID": "", "Rows": ""}})
    (inst,) = c.get(f"/queries/{r.json()['ID']}/answers?expand&short").json()
    assert "0028,0010" not in inst and inst["0008,0016"] == inst["0002,0002"] == dicomgen.CT_IMAGE_STORAGE
    assert inst["0002,0003"] == inst["0008,0018"]
    assert c.get(f"/queries/{r.json()['ID']}/answers/0").json() == ["content", "retrieve"]
    assert c.get(f"/queries/{r.json()['ID']}/answers/1").status == 400
    assert c.post(f"/queries/{r.json()['ID']}/answers/0/query-series", {}).status == 404  # not below
    # the older find-{level} routes: the level's template, the identifiers above required
    assert c.post("/modalities/self/find-study", {"PatientID": "PI"}).status == 400
    (study,) = c.post("/modalities/self/find-study", {"PatientID": "PID00000", "Rows": "16"}).json()
    assert study["StudyDescription"] == "Synthetic study" and "InstitutionName" not in study
    assert "Rows" not in study  # keys outside the template are ignored
    (patient,) = c.post("/modalities/self/find", {"PatientName": "Test*"}).json()  # the whole tree
    (series,) = patient["Studies"][0]["Series"]
    assert patient["PatientID"] == "PID00000" and series["SeriesInstanceUID"] == dicomgen.uid("series", 0, 0, 0)
    assert "PatientName" not in series
    r = c.post("/modalities/self/query", {"Query": {}})
    assert r.json()["Details"] == "The JSON body must contain field Level"
    r = c.post("/modalities/self/query", {"Level": "Study", "Query": {"Foo": ""}})
    assert r.json()["Details"] == "Associative array of DICOM tags to strings expected in field: Query"
    r = c.post("/modalities/self/move", {"Level": "Study", "Resources": [{"StudyInstanceUID": "1.2.3"}]})
    assert r.status == 422 and "0xC000" in r.json()["Details"]  # the SCP matched nothing
    report = c.post(f"/queries/{qid}/retrieve", {"TargetAet": "STORESCP", "Full": True}).json()
    assert report["Description"] == "REST API" and report["RemoteAet"] == "ORTHANCPY"
    assert report["Query"] == [
        {
            "0008,0052": {"Name": "QueryRetrieveLevel", "Type": "String", "Value": "PATIENT"},
            "0010,0020": {"Name": "PatientID", "Type": "String", "Value": "PID00000"},
        }
    ]


def _move(port: int, **keys: object) -> int:
    assoc = _assoc(port, StudyRootQueryRetrieveInformationModelMove)
    statuses = [
        st.Status
        for st, _ in assoc.send_c_move(q("STUDY", **keys), "STORESCP", StudyRootQueryRetrieveInformationModelMove)
    ]
    assoc.release()
    return statuses[-1]


def test_incoming_move_runs_as_a_job(archive, scp):
    c = archive.client()
    before = set(c.get("/jobs").json())
    assert _move(archive.ctx.dicom_port, AccessionNumber="nope", StudyInstanceUID="") == 0xC000  # as Orthanc
    assert _move(archive.ctx.dicom_port, StudyInstanceUID="") == 0xC000
    assert set(c.get("/jobs").json()) == before  # nothing matched: no job
    assert _move(archive.ctx.dicom_port, AccessionNumber="ACC1", StudyInstanceUID="") == 0
    (new,) = set(c.get("/jobs").json()) - before
    for _ in range(100):
        job = c.get(f"/jobs/{new}").json()
        if job["State"] == "Success":
            break
        time.sleep(0.05)
    assert job["Type"] == "DicomModalityStore" and job["State"] == "Success"
    assert job["Content"]["Description"] == "C-MOVE" and job["Content"]["MoveOriginatorAET"] == "FINDSCU"
    assert job["Content"]["InstancesCount"] == 1
    assert list(scp.received) == [dicomgen.uid("sop", 0, 0, 0, 0)]


def test_received_file_meta_and_store_straight(archive, scp):
    c = archive.client()
    ae = AE(ae_title="STORESCU")
    ae.add_requested_context(CTImageStorage, [EXPLICIT_LE])
    assoc = ae.associate("127.0.0.1", archive.ctx.dicom_port, ae_title="ANY-SCP")
    ds = pydicom.dcmread(io.BytesIO(dicomgen.make(patient=5, rows=16, columns=16)))
    assert assoc.send_c_store(ds).Status == 0
    assoc.release()
    found = c.post("/tools/lookup", dicomgen.uid("sop", 5, 0, 0, 0)).json()
    header = c.get(f"{found[0]['Path']}/header?simplify").json()
    assert header["ImplementationVersionName"] == "OFFIS_DCMTK_367"  # as Orthanc writes it
    assert header["TransferSyntaxUID"] == EXPLICIT_LE and "SourceApplicationEntityTitle" not in header
    assert c.get(f"{found[0]['Path']}/metadata/CalledAET").body == b"ANY-SCP"  # the AET the peer called
    count = len(c.get("/instances").json())
    data = dicomgen.make(patient=7, rows=16, columns=16)
    answer = c.post("/modalities/storescp/store-straight", data).json()
    assert answer == {"SOPClassUID": dicomgen.CT_IMAGE_STORAGE, "SOPInstanceUID": dicomgen.uid("sop", 7, 0, 0, 0)}
    assert dicomgen.uid("sop", 7, 0, 0, 0) in scp.received
    assert len(c.get("/instances").json()) == count  # sent, not stored here
    assert c.post("/modalities/storescp/store-straight", "nope").status == 400
    r = c.post("/modalities/storescp/store", {"Resources": []})  # Orthanc: nothing sent, no ParentResources
    assert r.json() == {
        "Description": "REST API",
        "FailedInstancesCount": 0,
        "InstancesCount": 0,
        "LocalAet": "ORTHANCPY",
        "RemoteAet": "STORESCP",
    }
    assert c.post("/modalities/storescp/store", "nope").json()["Details"] == (
        "This string is not a valid Orthanc identifier: nope"
    )


def test_modality_configuration(client):
    assert client.put("/modalities/x", ["X", "localhost", 2000, "InvalidManufacturerName"]).json()["OrthancStatus"] == 3
    assert client.put("/modalities/x", ["X", "localhost", 2000, "MedInria"]).status == 200  # obsolete name
    assert client.get("/modalities/x/configuration").json() == {
        "AET": "X",
        "AllowEcho": True,
        "AllowEventReport": True,
        "AllowFind": True,
        "AllowFindWorklist": True,
        "AllowGet": True,
        "AllowMove": True,
        "AllowNAction": True,
        "AllowStore": True,
        "AllowTranscoding": True,
        "Host": "localhost",
        "LocalAet": "",
        "Manufacturer": "Generic",
        "Port": 2000,
        "Timeout": 0,
        "UseDicomTls": False,
    }
    assert "configuration" in client.get("/modalities/x").json()
    r = client.put("/modalities/y", {"AET": "Y", "Host": "h", "Port": 104, "UseDicomTls": True})
    assert r.status == 200 and r.body == b""  # Orthanc answers an empty text/plain body
    assert client.get("/modalities/y/configuration").json()["UseDicomTls"] is True
    r = client.put("/modalities/y", {"AET": "Y", "Host": "h", "Port": 0})
    assert r.json()["OrthancStatus"] == 3 and "[1..65534]" in r.json()["Details"]
    r = client.put("/modalities/y", {"AET": "Y", "Host": "h", "Port": 104, "Timeout": "x"})
    assert r.json()["Details"] == "Integer value expected in field: Timeout"
    assert client.delete("/modalities/y").body == b""
    r = client.delete("/modalities/y")
    assert r.status == 404 and r.json()["Details"] == "Unknown DICOM modality with symbolic name: y"


def test_accepted_transfer_syntaxes_as_plain_text(client):
    """Orthanc's suite sends `*` as text/plain: one pattern, not JSON."""
    narrowed = client.put("/tools/accepted-transfer-syntaxes", ["1.2.840.10008.1.2"])
    assert narrowed.json() == ["1.2.840.10008.1.2"]
    r = client.put("/tools/accepted-transfer-syntaxes", "*", headers={"Content-Type": "text/plain"})
    assert r.status == 200 and len(r.json()) == 42


def test_cfind_cut_at_the_limit_ends_with_cancel(make_server):
    srv = make_server(
        {
            "DicomServerEnabled": True,
            "DicomPort": 0,
            "DicomAet": "ORTHANCPY",
            "DicomAlwaysAllowFind": True,
            "LimitFindResults": 2,
        }
    )
    srv.client().put("/modalities/self", ["ORTHANCPY", "127.0.0.1", srv.ctx.dicom_port])
    for p in range(3):
        srv.client().upload(dicomgen.make(patient=p, rows=8, columns=8))
    found, final = cfind(srv.ctx.dicom_port, q("STUDY", StudyInstanceUID=""))
    assert len(found) == 2 and final == 0xFE00  # Orthanc: "matching terminated due to cancel"
    r = srv.client().post("/modalities/self/query", {"Level": "Study", "Query": {}})
    assert r.status == 500 and "0xFE00" in r.json()["Details"]  # and its SCU fails on that status


def test_echo_check_find(archive, scp):
    c = archive.client()
    assert c.post("/modalities/self/echo", {"CheckFind": True}).status == 200
    assert c.post("/modalities/storescp/echo", {}).status == 200
    r = c.post("/modalities/storescp/echo", {"CheckFind": True})  # echoes, but answers no C-FIND
    assert r.status == 500 and r.json()["OrthancStatus"] == 9
    r = c.post("/modalities/self/echo", {"Timeout": "x"})
    assert r.json()["Details"] == "Integer value expected in field: Timeout"


def test_synchronous_move_transcodes_what_the_destination_cannot_take(make_server, scp):
    """SynchronousCMove (Orthanc's default): an RLE file goes to a destination that accepts only
    uncompressed syntaxes, decoded, under its own SOPInstanceUID."""
    from pydicom.uid import RLELossless

    srv = make_server(
        {"DicomServerEnabled": True, "DicomPort": 0, "DicomAet": "ORTHANCPY", "DicomAlwaysAllowMove": True}
    )
    c = srv.client()
    c.put("/modalities/storescp", ["STORESCP", "127.0.0.1", scp.port])
    ds = pydicom.dcmread(io.BytesIO(dicomgen.make(patient=3, rows=16, columns=16)))
    ds.compress(RLELossless, generate_instance_uid=False)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    c.upload(out.getvalue())
    c.upload(dicomgen.make(patient=3, instance=1, rows=16, columns=16))  # stored uncompressed
    assert _move(srv.ctx.dicom_port, StudyInstanceUID=dicomgen.uid("study", 3, 0)) == 0
    assert set(scp.received) == {dicomgen.uid("sop", 3, 0, 0, 0), dicomgen.uid("sop", 3, 0, 0, 1)}
    sent = pydicom.dcmread(io.BytesIO(scp.received[dicomgen.uid("sop", 3, 0, 0, 0)]))
    assert sent.file_meta.TransferSyntaxUID in (EXPLICIT_LE, IMPLICIT_LE)
    assert sent.SOPInstanceUID == dicomgen.uid("sop", 3, 0, 0, 0) and len(sent.PixelData) == 16 * 16 * 2


def test_c_get_scu_stores_what_comes_back(make_server):
    pacs = make_server({"DicomServerEnabled": True, "DicomPort": 0, "DicomAet": "PACS", "DicomAlwaysAllowGet": True})
    viewer = make_server(
        {
            "DicomServerEnabled": True,
            "DicomPort": 0,
            "DicomAet": "VIEWER",
            "DicomModalities": {"pacs": ["PACS", "127.0.0.1", pacs.ctx.dicom_port]},
        }
    )
    for i in range(2):
        pacs.client().upload(dicomgen.make(patient=4, instance=i, rows=8, columns=8))
    v = viewer.client()
    assert "get" in v.get("/modalities/pacs").json()
    study = dicomgen.uid("study", 4, 0)
    r = v.post("/modalities/pacs/get", {"Level": "Study", "Resources": [{"StudyInstanceUID": study}]})
    assert r.status == 200, r.body
    (detail,) = r.json()["Details"]
    assert sorted(detail["ReceivedInstancesIds"]) == sorted(v.get("/instances").json())
    assert len(detail["ReceivedInstancesIds"]) == 2 and detail["Query"]["0020,000d"] == study
    meta = v.get(f"/instances/{detail['ReceivedInstancesIds'][0]}/metadata?expand").json()
    assert meta["Origin"] == "DicomProtocol" and meta["RemoteAET"] == "PACS"
