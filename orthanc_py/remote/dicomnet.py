"""Network tuning of pynetdicom's sockets, applied once, before the first association (the DICOM
server's start and the SCU call `tune_pynetdicom`: pynetdicom is not loaded before).

pynetdicom reads a PDU 4 KiB at a time (128 `recv` calls and copies for a 512x512 CT) and lets
the kernel delay its ACKs. Against DCMTK peers (which leave Nagle's algorithm on) a delayed ACK
stalls every C-STORE for 40 ms: 20 instances/s whatever the machine. Reading into one buffer
and re-arming TCP_QUICKACK after each read removes both costs.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

from ..model.wire import encoded_body

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)
_applied = False
_apply_lock = threading.Lock()


def _recv(self: Any, nr_bytes: int) -> bytearray:
    """Same contract as pynetdicom's AssociationSocket.recv: up to `nr_bytes`, fewer when the
    peer closed the connection."""
    sock = self.socket
    buf = bytearray(nr_bytes)
    view = memoryview(buf)
    got = 0
    while got < nr_bytes:
        n = sock.recv_into(view[got:], nr_bytes - got)
        if not n:
            del view
            return buf[:got]
        got += n
    if _QUICKACK is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        except OSError:
            pass
    del view
    return buf


def _encoder(original: Callable[..., bytes | None]) -> Callable[..., bytes | None]:
    def encode(ds: Any, is_implicit_vr: bool, is_little_endian: bool, deflated: bool = False) -> bytes | None:
        """pynetdicom's `encode`, answering the stored bytes of a dataset that has them."""
        body = encoded_body(ds, is_implicit_vr, is_little_endian, deflated)
        if body is not None:
            return body
        return original(ds, is_implicit_vr, is_little_endian, deflated)

    return encode


def tune_pynetdicom() -> None:
    """Install the faster `recv` on pynetdicom's association sockets and the encoder that sends
    stored bytes as they are (idempotent)."""
    global _applied
    if _applied:
        return
    with _apply_lock:  # the DICOM server's start and a first SCU request may race
        if _applied:
            return
        from pynetdicom import association, transport

        transport.AssociationSocket.recv = _recv  # type: ignore[method-assign]
        association.encode = _encoder(association.encode)
        _applied = True
