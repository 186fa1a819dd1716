"""C-MOVE and C-GET SCP: instances reach a pynetdicom peer, byte for byte in their dataset."""

from __future__ import annotations

import os
import subprocess
import time

import dicomgen
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)


@pytest.fixture
def archive(make_server, scp):
    srv = make_server(
        {
            "DicomServerEnabled": True,
            "DicomPort": 0,
            "DicomAet": "ORTHANCPY",
            "DicomModalities": {
                "dest": ["STORESCP", "127.0.0.1", scp.port],
                "movescu": ["MOVESCU", "127.0.0.1", 11112],
                "getscu": ["GETSCU", "127.0.0.1", 11113],
            },
        }
    )
    c = srv.client()
    for i in range(3):
        c.upload(dicomgen.make(patient=1, instance=i, rows=32, columns=32))
    c.upload(dicomgen.make(patient=2, rows=32, columns=32))
    return srv


def study_query(patient: int) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = dicomgen.uid("study", patient, 0)
    return ds


def test_c_move_to_known_destination(archive, scp):
    ae = AE(ae_title="MOVESCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", archive.ctx.dicom_port, ae_title="ORTHANCPY")
    assert assoc.is_established
    statuses = [
        st.Status for st, _ in assoc.send_c_move(study_query(1), "STORESCP", StudyRootQueryRetrieveInformationModelMove)
    ]
    assert statuses[-1] == 0x0000
    unknown = [
        st.Status for st, _ in assoc.send_c_move(study_query(1), "NOBODY", StudyRootQueryRetrieveInformationModelMove)
    ]
    assoc.release()
    assert unknown[-1] == 0xA801
    expected = {dicomgen.uid("sop", 1, 0, 0, i) for i in range(3)}
    assert set(scp.received) == expected


def test_c_get(archive):
    received: dict[str, Dataset] = {}

    def on_store(event):
        received[str(event.dataset.SOPInstanceUID)] = event.dataset
        return 0

    ae = AE(ae_title="GETSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate(
        "127.0.0.1",
        archive.ctx.dicom_port,
        ae_title="ORTHANCPY",
        ext_neg=[build_role(CTImageStorage, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    assert assoc.is_established
    statuses = [st.Status for st, _ in assoc.send_c_get(study_query(2), StudyRootQueryRetrieveInformationModelGet)]
    bogus = study_query(2)
    bogus.QueryRetrieveLevel = "BOGUS"  # a failure status, not pynetdicom's "invalid handler" 0xC413
    refused = [st.Status for st, _ in assoc.send_c_get(bogus, StudyRootQueryRetrieveInformationModelGet)]
    assoc.release()
    assert statuses[-1] == 0x0000
    assert refused[-1] == 0xA900
    stranger = AE(ae_title="STRANGER")  # not in DicomModalities, DicomAlwaysAllowGet off
    stranger.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    other = stranger.associate("127.0.0.1", archive.ctx.dicom_port, ae_title="ORTHANCPY")
    assert other.is_established
    denied = [
        getattr(st, "Status", None)
        for st, _ in other.send_c_get(study_query(2), StudyRootQueryRetrieveInformationModelGet)
    ]
    for _ in range(100):  # the abort reaches the requestor's thread a moment later
        if not other.is_established:
            break
        time.sleep(0.02)
    assert not other.is_established and 0x0000 not in denied  # Orthanc aborts the association
    assert set(received) == {dicomgen.uid("sop", 2, 0, 0, 0)}
    assert received[dicomgen.uid("sop", 2, 0, 0, 0)].PatientID == "PID00002"


def _wait_port(port: int) -> None:
    import socket
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)


@pytest.mark.skipif(not os.path.exists("/usr/bin/movescu"), reason="DCMTK not installed (apt-get install dcmtk)")
def test_dcmtk_movescu_and_getscu(make_server, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        scp_port = s.getsockname()[1]
    received = tmp_path / "moved"
    received.mkdir()
    storescp = subprocess.Popen(
        ["/usr/bin/storescp", "-aet", "DEST", "-od", str(received), str(scp_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(scp_port)
        srv = make_server(
            {
                "DicomServerEnabled": True,
                "DicomPort": 0,
                "DicomAet": "ORTHANCPY",
                "DicomModalities": {
                    "dest": ["DEST", "127.0.0.1", scp_port],
                    "movescu": ["MOVESCU", "127.0.0.1", 1],
                    "getscu": ["GETSCU", "127.0.0.1", 1],
                },
            }
        )
        c = srv.client()
        for i in range(3):
            c.upload(dicomgen.make(patient=4, instance=i, rows=16, columns=16))
        port = str(srv.ctx.dicom_port)
        move = subprocess.run(
            [
                "/usr/bin/movescu",
                "-S",
                "-aet",
                "MOVESCU",
                "-aec",
                "ORTHANCPY",
                "-aem",
                "DEST",
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                f"StudyInstanceUID={dicomgen.uid('study', 4, 0)}",
                "127.0.0.1",
                port,
            ],
            capture_output=True,
            timeout=60,
        )
        assert move.returncode == 0, move.stderr
        assert len(list(received.iterdir())) == 3
        got = tmp_path / "got"
        got.mkdir()
        get = subprocess.run(
            [
                "/usr/bin/getscu",
                "-S",
                "-aet",
                "GETSCU",
                "-aec",
                "ORTHANCPY",
                "-od",
                str(got),
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                f"StudyInstanceUID={dicomgen.uid('study', 4, 0)}",
                "127.0.0.1",
                port,
            ],
            capture_output=True,
            timeout=60,
        )
        assert get.returncode == 0, get.stderr
        assert len(list(got.iterdir())) == 3
    finally:
        storescp.terminate()
        storescp.wait(10)
