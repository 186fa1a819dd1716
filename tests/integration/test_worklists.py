"""Modality worklists from a folder (Orthanc's ModalityWorklists plugin), with real SCUs.

Orthanc's own worklist suite (orthanc-tests Plugins/Worklists/Run.py, DCMTK's findscu against
DCMTK's sample worklists and queries) passes against this server as against Orthanc 1.10.1; the
tests here pin the behaviours one by one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE

from orthanc_py.config import from_raw
from tests.conftest import free_ports

MWL = "1.2.840.10008.5.1.4.31"


def write_worklist(folder: Path, name: str, patient: str, station: str, date: str, modality: str = "MR") -> None:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.AccessionNumber = f"ACC-{name}"
    ds.PatientName = patient
    ds.PatientID = f"ID-{name}"
    ds.SOPInstanceUID = f"1.2.3.{len(name)}"
    step = Dataset()
    step.Modality = modality
    step.ScheduledStationAETitle = station
    step.ScheduledProcedureStepStartDate = date
    ds.ScheduledProcedureStepSequence = Sequence([step])
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.276.0.7230010.3.1.0.1"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(folder / name, enforce_file_format=True)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    db = tmp_path / "worklists"
    db.mkdir()
    write_worklist(db, "a.wl", "Müller^Hans", "SCANNER1", "20240105")
    write_worklist(db, "b.wl", "MARTIN^ANNE", "SCANNER2", "20240310", "CT")
    write_worklist(db, "c.WL", "martinez^jose", "SCANNER1", "20241201")
    write_worklist(db, "ignored.dcm", "MARTIN^IGNORED", "SCANNER1", "20240310")
    (db / "broken.wl").write_bytes(b"not DICOM at all")
    return db


def worklist_server(make_server: Any, folder: Path, **extra: Any) -> Any:
    http, dicom = free_ports(2)
    config = {
        "HttpPort": http,
        "DicomServerEnabled": True,
        "DicomPort": dicom,
        "DicomAet": "ORTHANCPY",
        "DefaultEncoding": "Utf8",
        "DicomModalities": {"self": ["ORTHANCPY", "127.0.0.1", dicom], "scu": ["SCU", "127.0.0.1", 104]},
        "Worklists": {"Enable": True, "Database": str(folder)},
        **extra,
    }
    return make_server(config)


def find(port: int, query: Dataset, calling: str = "SCU") -> tuple[list[Dataset], int | None, bool]:
    """(answers, final status, whether the association was accepted)."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(MWL)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    assoc = ae.associate("127.0.0.1", port, ae_title="ORTHANCPY")
    if not assoc.is_established:
        return [], None, False
    answers: list[Dataset] = []
    final = None
    try:
        for st, ident in assoc.send_c_find(query, MWL):
            if not st:
                break
            if st.Status in (0xFF00, 0xFF01):
                answers.append(ident)
            else:
                final = st.Status
    finally:
        if assoc.is_established:
            assoc.release()
    return answers, final, True


def query(**keys: Any) -> Dataset:
    ds = Dataset()
    ds.PatientName = keys.pop("PatientName", "")
    step = Dataset()
    for k, v in keys.items():
        setattr(step, k, v)
    if keys:
        ds.ScheduledProcedureStepSequence = Sequence([step])
    return ds


def names(answers: list[Dataset]) -> list[str]:
    return sorted(str(a.PatientName) for a in answers)


def test_matching_extraction_and_encoding(make_server, folder):
    srv = worklist_server(make_server, folder)
    port = srv.ctx.dicom_port
    # PN wildcards are case-insensitive (CaseSensitivePN is off); only *.wl files are read
    answers, final, _ = find(port, query(PatientName="mart*"))
    assert final == 0x0000 and names(answers) == ["MARTIN^ANNE", "martinez^jose"]
    # the answer holds the asked keys only, in the DefaultEncoding, without SOPInstanceUID
    a = answers[0]
    assert sorted(e.keyword for e in a) == ["PatientName", "SpecificCharacterSet"]
    assert a.SpecificCharacterSet == "ISO_IR 192"
    # a constraint inside the sequence: one item must match; date ranges on DA
    answers, _, _ = find(
        port, query(ScheduledStationAETitle="SCANNER1", ScheduledProcedureStepStartDate="20240101-20240630")
    )
    assert names(answers) == ["Müller^Hans"]
    step = answers[0].ScheduledProcedureStepSequence[0]
    assert step.ScheduledStationAETitle == "SCANNER1" and "Modality" not in step
    # lists of values; an empty sequence asks for the whole sequence
    q = query(PatientName="")
    q.AccessionNumber = "ACC-a.wl\\ACC-b.wl"
    q.ScheduledProcedureStepSequence = Sequence([])
    answers, _, _ = find(port, q)
    assert sorted(a.AccessionNumber for a in answers) == ["ACC-a.wl", "ACC-b.wl"]
    assert all(a.ScheduledProcedureStepSequence[0].Modality in ("MR", "CT") for a in answers)
    # a key the worklist lacks, with a value, does not match; SOPInstanceUID is never answered
    q = query(PatientName="*")
    q.SOPInstanceUID = ""
    answers, _, _ = find(port, q)
    assert len(answers) == 3 and all("SOPInstanceUID" not in a for a in answers)
    q = query(PatientName="*")
    q.StudyInstanceUID = "1.2.3"
    assert find(port, q)[0] == []


def test_latin1_answers_drop_what_latin1_cannot_hold(make_server, folder):
    write_worklist(folder, "d.wl", "Ωmega^Ünal", "SCANNER3", "20240101")
    srv = worklist_server(make_server, folder, DefaultEncoding="Latin1")
    answers, _, _ = find(srv.ctx.dicom_port, query(ScheduledStationAETitle="SCANNER3"))
    assert len(answers) == 1 and answers[0].SpecificCharacterSet == "ISO_IR 100"
    assert str(answers[0].PatientName) == "mega^Ünal"


def test_limit_answers_and_filter_issuer_aet(make_server, folder):
    srv = worklist_server(make_server, folder, Worklists={"Enable": True, "Database": str(folder), "LimitAnswers": 1})
    answers, final, _ = find(srv.ctx.dicom_port, query(PatientName="*"))
    # as the plugin counts: the match after the limit is answered, then "terminated"
    assert len(answers) == 2 and final == 0xFE00
    srv2 = worklist_server(
        make_server,
        folder,
        Worklists={"Enable": True, "Database": str(folder), "FilterIssuerAet": True},
        DicomModalities={"scanner": ["SCANNER2", "127.0.0.1", 104]},
    )
    answers, _, _ = find(srv2.ctx.dicom_port, query(PatientName="*"), calling="SCANNER2")
    assert names(answers) == ["MARTIN^ANNE"]


def test_lua_filter_rewrites_the_query(make_server, folder):
    srv = worklist_server(make_server, folder, ExecuteLuaEnabled=True)
    script = (
        "function IncomingWorklistRequestFilter(query, origin)\n"
        "  query['0040,0100'][1]['0040,0001'] = 'SCANNER2'\n"
        "  query['0008,0050'] = origin['RemoteAet']\n"
        "  return query\nend"
    )
    c = srv.client()
    assert c.post("/tools/execute-script", script, headers={"Content-Type": "application/lua"}).status == 200
    q = query(PatientName="*", ScheduledStationAETitle="")
    q.AccessionNumber = ""
    answers, _, _ = find(srv.ctx.dicom_port, q)
    assert answers == []  # AccessionNumber was rewritten to "SCU": no worklist has it
    script = script.replace("  query['0008,0050'] = origin['RemoteAet']\n", "")
    assert c.post("/tools/execute-script", script, headers={"Content-Type": "application/lua"}).status == 200
    answers, _, _ = find(srv.ctx.dicom_port, q)
    assert names(answers) == ["MARTIN^ANNE"]


def test_permissions_and_disabled_server(make_server, folder):
    srv = worklist_server(
        make_server,
        folder,
        DicomModalities={"scu": {"AET": "SCU", "Host": "127.0.0.1", "Port": 104, "AllowFindWorklist": False}},
    )
    answers, final, _ = find(srv.ctx.dicom_port, query(PatientName="*"))
    assert answers == [] and final is None  # refused: Orthanc aborts the association
    http, dicom = free_ports(2)
    plain = make_server({"HttpPort": http, "DicomServerEnabled": True, "DicomPort": dicom, "DicomAet": "ORTHANCPY"})
    assert find(plain.ctx.dicom_port, query(PatientName="*"))[2] is False  # no worklist context without the folder


def test_find_worklist_route_against_ourselves(make_server, folder):
    srv = worklist_server(make_server, folder)
    c = srv.client()
    legacy = c.post("/modalities/self/find-worklist", {"PatientID": "ID-b.wl"}).json()
    assert legacy == [{"PatientID": "ID-b.wl", "SpecificCharacterSet": "ISO_IR 192"}]
    short = c.post("/modalities/self/find-worklist", {"Query": {"PatientID": "ID-b.wl"}, "Short": True}).json()
    assert short == [{"0008,0005": "ISO_IR 192", "0010,0020": "ID-b.wl"}]
    full = c.post("/modalities/self/find-worklist", {"Query": {"PatientID": "ID-b.wl"}, "Full": True}).json()
    assert full[0]["0010,0020"] == {"Name": "PatientID", "Type": "String", "Value": "ID-b.wl"}
    seq = c.post(
        "/modalities/self/find-worklist",
        {"Query": {"PatientName": "", "ScheduledProcedureStepSequence": [{"Modality": "CT"}]}},
    ).json()
    assert seq == [
        {
            "PatientName": "MARTIN^ANNE",
            "ScheduledProcedureStepSequence": [{"Modality": "CT"}],
            "SpecificCharacterSet": "ISO_IR 192",
        }
    ]
    assert c.post("/modalities/nope/find-worklist", {"PatientID": ""}).status == 404


def test_enabled_without_a_folder_is_a_configuration_error(tmp_path):
    with pytest.raises(ValueError, match=r"Worklists\.Database"):
        from_raw({"Worklists": {"Enable": True}}, tmp_path)
