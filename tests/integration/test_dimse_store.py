"""DICOM SCP: C-ECHO and C-STORE from real peers (pynetdicom SCU, DCMTK storescu/echoscu)."""

from __future__ import annotations

import io
import os
import subprocess

import dicomgen
import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from orthanc_py.model.parsing import _dataset_start


@pytest.fixture
def dicom_server(make_server):
    srv = make_server({"DicomServerEnabled": True, "DicomPort": 0, "DicomAet": "ORTHANCPY"})
    assert srv.ctx is not None and srv.ctx.dicom_port
    return srv


def associate(port: int, called: str = "ORTHANCPY"):
    ae = AE(ae_title="SCU")
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    return ae.associate("127.0.0.1", port, ae_title=called)


def test_echo_and_store_with_pynetdicom(dicom_server, tmp_path):
    port = dicom_server.ctx.dicom_port
    assoc = associate(port)
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    files = [dicomgen.make(patient=1, instance=i, rows=32, columns=32) for i in range(3)]
    for raw in files:
        path = tmp_path / "x.dcm"
        path.write_bytes(raw)
        ds = pydicom.dcmread(path)
        assert assoc.send_c_store(ds).Status == 0x0000
    assoc.release()
    c = dicom_server.client()
    ids = c.get("/instances").json()
    assert len(ids) == 3
    meta = c.get(f"/instances/{ids[0]}/metadata?expand").json()
    assert meta["Origin"] == "DicomProtocol" and meta["RemoteAET"] == "SCU" and meta["CalledAET"] == "ORTHANCPY"
    assert meta["RemoteIP"] == "127.0.0.1"
    # the same public IDs and content as a REST upload of the same file
    rest = dicom_server.client().post("/instances", files[0]).json()
    assert rest["Status"] == "AlreadyStored" and rest["ID"] in ids
    got = c.get(f"/instances/{rest['ID']}/tags?simplify").json()
    assert got["PatientID"] == "PID00001"


def test_store_of_bad_dataset_gets_failure_status(dicom_server):
    ds = pydicom.dcmread(io.BytesIO(dicomgen.make(patient=2, rows=0)))
    del ds.StudyInstanceUID
    assoc = associate(dicom_server.ctx.dicom_port)
    assert assoc.is_established
    st = assoc.send_c_store(ds)
    assert st.Status == 0xC000
    assoc.release()
    assert dicom_server.client().get("/instances").json() == []


def test_called_aet_check(make_server):
    srv = make_server(
        {"DicomServerEnabled": True, "DicomPort": 0, "DicomAet": "ORTHANCPY", "DicomCheckCalledAet": True}
    )
    assoc = associate(srv.ctx.dicom_port, called="WRONG")
    assert not assoc.is_established
    assoc = associate(srv.ctx.dicom_port)
    assert assoc.is_established
    assoc.release()


def dcmtk(name: str) -> str | None:
    """DCMTK's tool (pynetdicom installs Python look-alikes with the same names on PATH)."""
    path = f"/usr/bin/{name}"
    return path if os.path.exists(path) else None


@pytest.mark.skipif(dcmtk("storescu") is None, reason="DCMTK not installed (apt-get install dcmtk)")
def test_dcmtk_storescu_and_echoscu(dicom_server, tmp_path):
    port = str(dicom_server.ctx.dicom_port)
    echo = subprocess.run([dcmtk("echoscu"), "-aec", "ORTHANCPY", "127.0.0.1", port], capture_output=True, timeout=30)
    assert echo.returncode == 0, echo.stderr
    for i in range(4):
        (tmp_path / f"{i}.dcm").write_bytes(dicomgen.make(patient=3, instance=i, rows=32, columns=32))
    files = [str(p) for p in sorted(tmp_path.glob("*.dcm"))]
    # -xe: propose explicit VR little endian only, so storescu sends the files unchanged
    run = subprocess.run(
        [dcmtk("storescu"), "-xe", "-aec", "ORTHANCPY", "127.0.0.1", port, *files], capture_output=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    c = dicom_server.client()
    ids = c.get("/instances").json()
    assert len(ids) == 4
    for iid in ids:  # the dataset is stored as received, byte for byte (no decode and re-encode)
        body = c.get(f"/instances/{iid}/file").body
        number = int(pydicom.dcmread(io.BytesIO(body)).InstanceNumber)
        original = (tmp_path / f"{number - 1}.dcm").read_bytes()
        assert body[_dataset_start(body)[0] :] == original[_dataset_start(original)[0] :]


def test_unknown_sop_class_and_accepted_syntaxes(make_server):
    private_sop = "1.2.826.0.1.3680043.10.1404.999.1"
    ds = pydicom.dcmread(io.BytesIO(dicomgen.make(patient=9, rows=0)))
    ds.SOPClassUID = private_sop
    ds.file_meta.MediaStorageSOPClassUID = private_sop

    def send(srv) -> bool:
        ae = AE(ae_title="SCU")
        ae.add_requested_context(private_sop, ["1.2.840.10008.1.2.1"])
        assoc = ae.associate("127.0.0.1", srv.ctx.dicom_port, ae_title="ORTHANCPY")
        if not assoc.is_established:
            return False
        try:
            return bool(assoc.accepted_contexts) and assoc.send_c_store(ds).Status == 0x0000
        finally:
            assoc.release()

    strict = make_server({"DicomServerEnabled": True, "DicomPort": 0, "DicomAet": "ORTHANCPY"})
    assert send(strict) is False
    lenient = make_server(
        {"DicomServerEnabled": True, "DicomPort": 0, "DicomAet": "ORTHANCPY", "UnknownSopClassAccepted": True}
    )
    assert send(lenient) is True
    assert len(lenient.client().get("/instances").json()) == 1
    implicit_only = make_server(
        {
            "DicomServerEnabled": True,
            "DicomPort": 0,
            "DicomAet": "ORTHANCPY",
            "AcceptedTransferSyntaxes": ["1.2.840.10008.1.2"],
        }
    )
    ae = AE(ae_title="SCU")
    ae.add_requested_context(CTImageStorage, ["1.2.840.10008.1.2.1"])
    assoc = ae.associate("127.0.0.1", implicit_only.ctx.dicom_port, ae_title="ORTHANCPY")
    assert not assoc.is_established or not assoc.accepted_contexts
    if assoc.is_established:
        assoc.release()


def test_settings_changed_at_run_time_apply_to_the_next_association(make_server):
    """PUT /tools/accepted-transfer-syntaxes and /tools/unknown-sop-class-accepted take effect
    for the next association, as in Orthanc."""
    srv = make_server({"DicomServerEnabled": True, "DicomPort": 0, "DicomAet": "ORTHANCPY"})
    c = srv.client()

    def accepted(abstract: str, syntax: str) -> bool:
        ae = AE(ae_title="SCU")
        ae.add_requested_context(abstract, [syntax])
        assoc = ae.associate("127.0.0.1", srv.ctx.dicom_port, ae_title="ORTHANCPY")
        ok = assoc.is_established and bool(assoc.accepted_contexts)
        if assoc.is_established:
            assoc.release()
        return ok

    assert accepted(CTImageStorage, "1.2.840.10008.1.2.1")
    c.put("/tools/accepted-transfer-syntaxes", ["1.2.840.10008.1.2"])
    assert not accepted(CTImageStorage, "1.2.840.10008.1.2.1")
    assert accepted(CTImageStorage, "1.2.840.10008.1.2")
    c.put("/tools/accepted-transfer-syntaxes", ["1.2.840.10008.1.*"])
    assert accepted(CTImageStorage, "1.2.840.10008.1.2.1")
    private_sop = "1.2.826.0.1.3680043.10.1404.999.2"
    assert not accepted(private_sop, "1.2.840.10008.1.2.1")
    c.put("/tools/unknown-sop-class-accepted", "1")
    assert accepted(private_sop, "1.2.840.10008.1.2.1")
