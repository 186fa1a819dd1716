"""C-FIND SCP at every level through the core find engine, from pynetdicom and DCMTK findscu."""

from __future__ import annotations

import os
import subprocess
import time

import dicomgen
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
)


@pytest.fixture
def archive(make_server):
    srv = make_server(
        {
            "DicomServerEnabled": True,
            "DicomPort": 0,
            "DicomAet": "ORTHANCPY",
            "DicomModalities": {"findscu": ["FINDSCU", "127.0.0.1", 11112]},
        }
    )
    c = srv.client()
    specs = [
        dict(patient=0, patient_name="Smith^John", study_date="20190105", modality="CT"),
        dict(patient=0, patient_name="Smith^John", study_date="20190105", modality="CT", instance=1),
        dict(patient=0, patient_name="Smith^John", study_date="20190105", modality="MR", series=1),
        dict(patient=1, patient_name="Müller^Jürgen", study_date="20201231", modality="CT"),
        dict(patient=2, patient_name="Doe^Jane", study_date="20210301", modality="US"),
    ]
    for s in specs:
        c.upload(dicomgen.make(rows=0, columns=0, **s))
    return srv


def cfind(port: int, query: Dataset, model=StudyRootQueryRetrieveInformationModelFind) -> list[Dataset]:
    ae = AE(ae_title="FINDSCU")
    ae.add_requested_context(model)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    assoc = ae.associate("127.0.0.1", port, ae_title="ORTHANCPY")
    assert assoc.is_established
    out = []
    for st, ident in assoc.send_c_find(query, model):
        assert st.Status in (0xFF00, 0xFF01, 0x0000), hex(st.Status)
        if st.Status in (0xFF00, 0xFF01):
            out.append(ident)
    assoc.release()
    return out


def q(level: str, **keys: object) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for k, v in keys.items():
        setattr(ds, k, v)
    return ds


def test_study_level(archive):
    port = archive.ctx.dicom_port
    found = cfind(
        port,
        q(
            "STUDY",
            PatientName="smith*",
            StudyInstanceUID="",
            StudyDate="",
            ModalitiesInStudy="",
            NumberOfStudyRelatedInstances="",
            NumberOfStudyRelatedSeries="",
        ),
    )
    assert len(found) == 1
    ans = found[0]
    assert ans.StudyInstanceUID == dicomgen.uid("study", 0, 0)
    assert ans.PatientName == "Smith^John" and ans.StudyDate == "20190105"
    assert ans.ModalitiesInStudy == ["CT", "MR"]
    assert int(ans.NumberOfStudyRelatedInstances) == 3 and int(ans.NumberOfStudyRelatedSeries) == 2
    assert ans.RetrieveAETitle == "ORTHANCPY" and ans.QueryRetrieveLevel == "STUDY"
    dates = cfind(port, q("STUDY", StudyDate="20200101-20211231", StudyInstanceUID=""))
    assert len(dates) == 2
    assert len(cfind(port, q("STUDY", ModalitiesInStudy="US", StudyInstanceUID=""))) == 1
    assert len(cfind(port, q("STUDY", PatientName="MULLER*", StudyInstanceUID=""))) == 1  # accents, case
    assert cfind(port, q("STUDY", PatientName="nobody", StudyInstanceUID="")) == []


def test_patient_series_instance_levels(archive):
    port = archive.ctx.dicom_port
    patients = cfind(
        port,
        q("PATIENT", PatientID="", PatientName="", NumberOfPatientRelatedStudies=""),
        PatientRootQueryRetrieveInformationModelFind,
    )
    assert sorted(p.PatientID for p in patients) == ["PID00000", "PID00001", "PID00002"]
    series = cfind(
        port,
        q(
            "SERIES",
            StudyInstanceUID=dicomgen.uid("study", 0, 0),
            SeriesInstanceUID="",
            Modality="",
            NumberOfSeriesRelatedInstances="",
        ),
    )
    assert sorted((s.Modality, int(s.NumberOfSeriesRelatedInstances)) for s in series) == [("CT", 2), ("MR", 1)]
    images = cfind(
        port,
        q(
            "IMAGE",
            SeriesInstanceUID=dicomgen.uid("series", 0, 0, 0),
            SOPInstanceUID="",
            InstanceNumber="",
            SOPClassUID="",
        ),
    )
    assert sorted(int(i.InstanceNumber) for i in images) == [1, 2]
    assert {i.SOPClassUID for i in images} == {dicomgen.CT_IMAGE_STORAGE}


def test_bad_level_gets_failure(archive):
    ae = AE(ae_title="FINDSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", archive.ctx.dicom_port, ae_title="ORTHANCPY")
    statuses = [
        st.Status
        for st, _ in assoc.send_c_find(q("NONSENSE", PatientID=""), StudyRootQueryRetrieveInformationModelFind)
    ]
    assoc.release()
    assert statuses and statuses[-1] in (0xA900, 0xC000)


@pytest.mark.skipif(not os.path.exists("/usr/bin/findscu"), reason="DCMTK not installed (apt-get install dcmtk)")
def test_dcmtk_findscu(archive):
    run = subprocess.run(
        [
            "/usr/bin/findscu",
            "-S",
            "-aec",
            "ORTHANCPY",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            "PatientName=Doe*",
            "-k",
            "StudyInstanceUID",
            "127.0.0.1",
            str(archive.ctx.dicom_port),
        ],
        capture_output=True,
        timeout=30,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert dicomgen.uid("study", 2, 0) in run.stdout + run.stderr


def test_unknown_caller_is_refused_unless_always_allowed(make_server):
    refused = make_server({"DicomServerEnabled": True, "DicomPort": 0, "DicomAet": "ORTHANCPY"})
    ae = AE(ae_title="STRANGER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", refused.ctx.dicom_port, ae_title="ORTHANCPY")
    statuses = [
        getattr(st, "Status", None)
        for st, _ in assoc.send_c_find(q("STUDY", StudyInstanceUID=""), StudyRootQueryRetrieveInformationModelFind)
    ]
    for _ in range(100):  # the abort reaches the requestor's thread a moment later
        if not assoc.is_established:
            break
        time.sleep(0.02)
    assert not assoc.is_established and 0x0000 not in statuses  # Orthanc aborts the association
    allowed = make_server(
        {"DicomServerEnabled": True, "DicomPort": 0, "DicomAet": "ORTHANCPY", "DicomAlwaysAllowFind": True}
    )
    assoc = ae.associate("127.0.0.1", allowed.ctx.dicom_port, ae_title="ORTHANCPY")
    statuses = [
        st.Status
        for st, _ in assoc.send_c_find(q("STUDY", StudyInstanceUID=""), StudyRootQueryRetrieveInformationModelFind)
    ]
    assoc.release()
    assert statuses == [0x0000]
