"""C-MOVE and C-GET SCP sub-operations of a multi-instance study: every instance arrives with
its stored dataset bytes (several PDUs each), the pending and final responses count right, a
failing or unreachable destination and a cancel are reported as before the sub-operations were
written by the handler's thread (remote.dicomnet.DirectSender)."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import dicomgen
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, AllStoragePresentationContexts, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from orthanc_py.model.wire import body_offset

N = 12
ROWS = 96  # 18 KiB of pixels: each instance spans two 16 KiB PDUs or more


def _body(data: bytes) -> bytes:
    return data[body_offset(data) :]


class SlowSCP:
    """A storage SCP answering `status` to each C-STORE after `delay` seconds."""

    def __init__(self, status: int = 0, delay: float = 0.0) -> None:
        self.received: dict[str, bytes] = {}
        self.status, self.delay = status, delay
        self.associations = 0
        ae = AE(ae_title="STORESCP")
        for cx in AllStoragePresentationContexts:  # Explicit VR first: the files go as stored
            ae.add_supported_context(cx.abstract_syntax, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        self._lock = threading.Lock()
        handlers = [(evt.EVT_C_STORE, self._store), (evt.EVT_ACCEPTED, self._accepted)]
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
        self.port = self.server.server_address[1]

    def _accepted(self, event) -> None:
        with self._lock:
            self.associations += 1

    def _store(self, event) -> int:
        time.sleep(self.delay)
        with self._lock:
            self.received[str(event.request.AffectedSOPInstanceUID)] = event.encoded_dataset(include_meta=True)
        return self.status


@pytest.fixture
def study(make_server):
    """A server holding one study of N instances, and a function that starts it with a
    destination on `port`; returns (server, {SOPInstanceUID: uploaded bytes})."""

    def start(port: int):
        srv = make_server(
            {
                "DicomServerEnabled": True,
                "DicomPort": 0,
                "DicomAet": "ORTHANCPY",
                "DicomModalities": {
                    "dest": ["STORESCP", "127.0.0.1", port],
                    "movescu": ["MOVESCU", "127.0.0.1", 1],
                    "getscu": ["GETSCU", "127.0.0.1", 1],
                },
            }
        )
        c = srv.client()
        files = {}
        for i in range(N):
            data = dicomgen.make(patient=7, instance=i, rows=ROWS, columns=ROWS)
            c.upload(data)
            files[dicomgen.uid("sop", 7, 0, 0, i)] = data
        return srv, files

    return start


def _query() -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = dicomgen.uid("study", 7, 0)
    return ds


def _move(port: int, destination: str = "STORESCP", cancel_after: int = 0) -> list[Dataset]:
    ae = AE(ae_title="MOVESCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", port, ae_title="ORTHANCPY")
    assert assoc.is_established
    responses = []
    try:
        for st, ident in assoc.send_c_move(_query(), destination, StudyRootQueryRetrieveInformationModelMove, msg_id=5):
            st.identifier = ident
            responses.append(st)
            if cancel_after and len(responses) == cancel_after:
                cx = next(
                    c
                    for c in assoc.accepted_contexts
                    if c.abstract_syntax == StudyRootQueryRetrieveInformationModelMove
                )
                assoc.send_c_cancel(5, cx.context_id)
    finally:
        assoc.release()
    return responses


def _counts(st: Dataset) -> tuple[int | None, ...]:
    return tuple(
        getattr(st, k, None)
        for k in (
            "NumberOfRemainingSuboperations",
            "NumberOfCompletedSuboperations",
            "NumberOfFailedSuboperations",
            "NumberOfWarningSuboperations",
        )
    )


@pytest.fixture
def scp():
    s = SlowSCP()
    yield s
    s.server.shutdown()


def test_c_move_sends_every_instance_as_stored_with_counts(study, scp):
    srv, files = study(scp.port)
    responses = _move(srv.ctx.dicom_port)
    pending, final = responses[:-1], responses[-1]
    # one pending response per instance (as Orthanc), counting down
    assert [st.Status for st in pending] == [0xFF00] * N
    assert [_counts(st) for st in pending] == [(N - 1 - i, i + 1, 0, 0) for i in range(N)]
    assert final.Status == 0x0000 and _counts(final)[1:] == (N, 0, 0)
    assert set(scp.received) == set(files)
    for uid, data in files.items():
        assert _body(scp.received[uid]) == _body(data)
    # the store association is released properly: a second move works on a fresh one
    assert _move(srv.ctx.dicom_port)[-1].Status == 0x0000
    assert scp.associations == 2


def test_c_get_sends_every_instance_as_stored_with_counts(study, scp):
    srv, files = study(scp.port)
    received: dict[str, bytes] = {}

    def on_store(event):
        received[str(event.request.AffectedSOPInstanceUID)] = event.encoded_dataset(include_meta=True)
        return 0

    ae = AE(ae_title="GETSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate(
        "127.0.0.1",
        srv.ctx.dicom_port,
        ae_title="ORTHANCPY",
        ext_neg=[build_role(CTImageStorage, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    assert assoc.is_established
    responses = [st for st, _ in assoc.send_c_get(_query(), StudyRootQueryRetrieveInformationModelGet)]
    # the association goes on working after the sub-operations (a C-ECHO-like second request)
    again = [st.Status for st, _ in assoc.send_c_get(_query(), StudyRootQueryRetrieveInformationModelGet)]
    assoc.release()
    assert [_counts(st) for st in responses[:-1]] == [(N - 1 - i, i + 1, 0, 0) for i in range(N)]
    assert responses[-1].Status == 0x0000 and _counts(responses[-1])[1:] == (N, 0, 0)
    assert again[-1] == 0x0000
    assert set(received) == set(files)
    for uid, data in files.items():
        assert _body(received[uid]) == _body(data)


def test_c_move_to_a_destination_that_refuses_every_instance(study):
    dest = SlowSCP(status=0xA700)
    try:
        srv, files = study(dest.port)
        final = _move(srv.ctx.dicom_port)[-1]
    finally:
        dest.server.shutdown()
    assert final.Status == 0xA702  # every sub-operation failed
    assert _counts(final)[1:] == (0, N, 0)
    assert set(final.identifier.FailedSOPInstanceUIDList) == set(files)


def test_c_move_to_an_unreachable_destination(study):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens there once closed
    srv, _files = study(port)
    assert _move(srv.ctx.dicom_port)[-1].Status == 0xA801


def test_c_move_cancelled_after_two_instances(study):
    dest = SlowSCP(delay=0.05)
    try:
        srv, _files = study(dest.port)
        responses = _move(srv.ctx.dicom_port, cancel_after=2)
    finally:
        dest.server.shutdown()
    final = responses[-1]
    assert final.Status == 0xFE00
    remaining, completed, failed, _warning = _counts(final)
    assert completed is not None and 2 <= completed < N and failed == 0
    assert remaining == N - completed
    assert len(dest.received) == completed


@pytest.mark.skipif(not os.path.exists("/usr/bin/movescu"), reason="DCMTK not installed (apt-get install dcmtk)")
def test_dcmtk_move_and_get_receive_the_stored_bytes(study, tmp_path: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        scp_port = s.getsockname()[1]
    moved, got = tmp_path / "moved", tmp_path / "got"
    moved.mkdir()
    got.mkdir()
    storescp = subprocess.Popen(
        ["/usr/bin/storescp", "+B", "-aet", "STORESCP", "-od", str(moved), str(scp_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        srv, files = study(scp_port)
        port = str(srv.ctx.dicom_port)
        keys = ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={dicomgen.uid('study', 7, 0)}"]
        keys += ["127.0.0.1", port]
        move = subprocess.run(
            ["/usr/bin/movescu", "-S", "-aet", "MOVESCU", "-aec", "ORTHANCPY", "-aem", "STORESCP", *keys],
            capture_output=True,
            timeout=60,
        )
        assert move.returncode == 0, move.stderr
        get = subprocess.run(
            ["/usr/bin/getscu", "+B", "-S", "-aet", "GETSCU", "-aec", "ORTHANCPY", "-od", str(got), *keys],
            capture_output=True,
            timeout=60,
        )
        assert get.returncode == 0, get.stderr
    finally:
        storescp.terminate()
        storescp.wait(10)
    bodies = sorted(_body(d) for d in files.values())
    assert sorted(_body(p.read_bytes()) for p in moved.iterdir()) == bodies
    assert sorted(_body(p.read_bytes()) for p in got.iterdir()) == bodies


def test_c_move_longer_than_the_scu_timeout(make_server):
    """DicomScuTimeout bounds a wait for the destination's answer, not the whole move: a C-MOVE
    whose destination takes 0.2 s per instance runs well past a 1 s timeout and completes."""
    dest = SlowSCP(delay=0.2)
    try:
        srv = make_server(
            {
                "DicomServerEnabled": True,
                "DicomPort": 0,
                "DicomAet": "ORTHANCPY",
                "DicomScuTimeout": 1,
                "DicomModalities": {
                    "dest": ["STORESCP", "127.0.0.1", dest.port],
                    "movescu": ["MOVESCU", "127.0.0.1", 1],
                },
            }
        )
        c = srv.client()
        for i in range(N):
            c.upload(dicomgen.make(patient=7, instance=i, rows=8, columns=8))
        started = time.monotonic()
        final = _move(srv.ctx.dicom_port)[-1]
        assert time.monotonic() - started > 2
    finally:
        dest.server.shutdown()
    assert final.Status == 0x0000 and _counts(final)[1:] == (N, 0, 0)
    assert len(dest.received) == N
