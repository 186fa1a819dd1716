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
    (study,) = c.post("/modalities/self/find-study", {"PatientID": "PID00000"}).json()
    assert study["StudyDescription"] == "Synthetic study" and "InstitutionName" not in study
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
    assert _move(archive.ctx.dicom_port, AccessionNumber="nope", StudyInstanceUID="") == 0
    assert _move(archive.ctx.dicom_port, StudyInstanceUID="") == 0
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
