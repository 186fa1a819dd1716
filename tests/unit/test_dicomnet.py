"""The P-DATA-TF PDUs DirectSender writes are byte for byte those pynetdicom's DUL would write
for the same DIMSE message; read_ahead keeps order, raises at the failing item, stops."""

from __future__ import annotations

import io
import threading
import time

import pytest
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode
from pynetdicom.pdu import P_DATA_TF

from orthanc_py.remote.dicomnet import _pdv_pdus, read_ahead


def _message(body: bytes) -> C_STORE_RQ:
    req = C_STORE()
    req.MessageID = 7
    req.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    req.AffectedSOPInstanceUID = "1.2.3.4"
    req.Priority = 2
    req.DataSet = io.BytesIO(body)
    msg = C_STORE_RQ()
    msg.primitive_to_message(req)
    return msg


def _pynetdicom_bytes(body: bytes, max_pdu: int) -> bytes:
    msg = _message(body)
    out = b""
    for primitive in msg.encode_msg(3, max_pdu):
        pdu = P_DATA_TF()
        pdu.from_primitive(primitive)
        out += pdu.encode()
    return out


@pytest.mark.parametrize("max_pdu", [0, 16384, 4096, 1000, 100000])
@pytest.mark.parametrize("size", [0, 1, 2, 16378, 16379, 40000])
def test_pdus_match_pynetdicom(max_pdu, size):
    body = bytes(i % 251 for i in range(size))
    msg = _message(body)
    ours = _pdv_pdus(3, encode(msg.command_set, True, True) or b"", True, max_pdu)
    if body:
        ours += _pdv_pdus(3, body, False, max_pdu)
    assert b"".join(ours) == _pynetdicom_bytes(body, max_pdu)


def test_read_ahead_in_order_and_bounded():
    loading = []
    lock = threading.Lock()

    def load(i: int) -> int:
        with lock:
            loading.append(i)
        return i * 10

    it = read_ahead(load, list(range(50)))
    assert next(it) == 0
    # the helper waits for the consumer: only a few items are loaded ahead
    time.sleep(0.1)
    assert len(loading) <= 4
    assert list(it) == [i * 10 for i in range(1, 50)]


def test_read_ahead_raises_at_the_failing_item_and_stops():
    def load(i: int) -> int:
        if i == 3:
            raise ValueError("bad file")
        return i

    got = []
    with pytest.raises(ValueError, match="bad file"):
        for v in read_ahead(load, list(range(10))):
            got.append(v)
    assert got == [0, 1, 2]


def test_read_ahead_closed_early_stops_its_thread():
    it = read_ahead(lambda i: i, list(range(1000)))
    assert next(it) == 0
    it.close()
    for _ in range(50):
        if not any(t.name == "read-ahead" for t in threading.enumerate()):
            break
        time.sleep(0.02)
    assert not any(t.name == "read-ahead" for t in threading.enumerate())
