"""Network tuning of pynetdicom's sockets, applied once, before the first association (the DICOM
server's start and the SCU call `tune_pynetdicom`: pynetdicom is not loaded before), and the
fast path of runs of C-STOREs (the sub-operations of C-MOVE and C-GET).

pynetdicom reads a PDU 4 KiB at a time (128 `recv` calls and copies for a 512x512 CT) and lets
the kernel delay its ACKs. Against DCMTK peers (which leave Nagle's algorithm on) a delayed ACK
stalls every C-STORE for 40 ms: 20 instances/s whatever the machine. Reading into one buffer
and re-arming TCP_QUICKACK after each read removes both costs. On the sending side, a socket
with Nagle's algorithm on holds back each PDU shorter than a segment until the previous one is
acknowledged: every association we request has it off (those we accept: dimse/server.py).
"""

from __future__ import annotations

import io
import logging
import queue
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any, TypeVar

from ..model.wire import encoded_body

log = logging.getLogger("orthanc_py.dicomnet")
T = TypeVar("T")
R = TypeVar("R")

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


def _no_delay(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_socket(self: Any, address: Any) -> Any:
        """pynetdicom's socket for an association we request, without Nagle's delay."""
        sock = original(self, address)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        return sock

    return create_socket


def _shutdown_socket(self: Any) -> None:
    """pynetdicom's, closing the socket even when it was never connected (pynetdicom's own
    skips the close when `shutdown` fails, which leaked the socket of every refused connection)."""
    sock = self.socket
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


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
        transport.AssociationSocket._shutdown_socket = _shutdown_socket  # type: ignore[method-assign]
        transport.AssociationSocket._create_socket = _no_delay(  # type: ignore[method-assign]
            transport.AssociationSocket._create_socket
        )
        association.encode = _encoder(association.encode)
        _applied = True


# --------------------------------------------------------------------------- sub-operations
#
# pynetdicom sends each DIMSE message as P-DATA primitives through a queue to its DUL thread,
# which turns each into a PDU (a copy), runs the state machine and writes it (another copy):
# for a 512x512 CT at 16 KiB PDUs, ~34 hops per instance, and the DUL thread sleeps 1 ms
# whenever its queue is empty. Its `send_c_store` also pauses the association's reactor around
# each request, and a response that arrives while the reactor resumes is taken by the reactor
# (lost: the sub-operation then times out). For the C-STORE sub-operations of a C-MOVE or C-GET
# (a run of messages on an association in the "established" state, nothing else sending on it),
# the messages are written here, whole, by the thread that produces them.


def _pdv_pdus(context_id: int, data: bytes, command: bool, max_pdu: int) -> list[bytes]:
    """The P-DATA-TF PDUs (PS3.8 9.3.5) carrying one command or data set, each of at most the
    peer's maximum length (0: unlimited), as pynetdicom fragments them."""
    size = len(data)
    step = max_pdu - 6 if max_pdu > 6 else max(size, 1)
    more, last = (0x01, 0x03) if command else (0x00, 0x02)
    out = []
    view = memoryview(data)
    offset = 0
    while True:
        chunk = view[offset : offset + step]
        offset += step
        control = last if offset >= size else more
        n = len(chunk)
        out.append(b"\x04\x00" + (n + 6).to_bytes(4, "big") + (n + 2).to_bytes(4, "big") + bytes((context_id, control)))
        out.append(chunk)  # type: ignore[arg-type]
        if offset >= size:
            return out


def _send_all(sock: socket.socket, data: bytes, timeout: float | None) -> None:
    """`sock.sendall(data)`, failing (TimeoutError) when the peer accepts nothing for `timeout`
    seconds: pynetdicom leaves the sockets it connects blocking, and a peer that stops reading
    would hold the sender forever."""
    if timeout is None or isinstance(sock, ssl.SSLSocket):  # TLS sockets take no send flags
        sock.sendall(data)
        return
    view = memoryview(data)
    while view:
        try:
            n = sock.send(view, socket.MSG_DONTWAIT)
        except BlockingIOError:
            if not select.select([], [sock], [], timeout)[1]:
                raise TimeoutError(f"the peer accepted no data for {timeout} s") from None
            continue
        view = view[n:]


class DirectSender:
    """Writes the DIMSE messages of one association straight to its socket (see above), and
    sends C-STOREs of stored bytes on it without pausing its reactor. Installed with
    `install()` (as the association's `dimse.send_msg` and `send_c_store`, the methods
    pynetdicom's C-MOVE and C-GET services call), removed with `remove()`. Whatever cannot go
    this way (the association left the established state, the socket failed) goes through
    pynetdicom's own path.

    `move_originator`: the AET that asked for the C-MOVE these C-STOREs serve. pynetdicom's
    C-MOVE SCP names its own AET as the Move Originator; PS3.7 (and Orthanc) name the AET
    that invoked the C-MOVE, which is what lets the requestor match them to its request."""

    def __init__(self, assoc: Any, move_originator: str | None = None) -> None:
        self.assoc = assoc
        self.move_originator = move_originator
        self._contexts: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self._broken = False

    def install(self) -> None:
        self.assoc.dimse.send_msg = self.send_msg
        self.assoc.send_c_store = self.send_c_store

    def remove(self) -> None:
        for owner, name in ((self.assoc.dimse, "send_msg"), (self.assoc, "send_c_store")):
            if name in vars(owner):
                delattr(owner, name)

    def _socket(self) -> Any:
        dul = self.assoc.dul
        if self._broken or dul.state_machine.current_state != "Sta6":
            return None
        return getattr(dul.socket, "socket", None)

    def send_msg(self, primitive: Any, context_id: int) -> None:
        """pynetdicom's `DIMSEServiceProvider.send_msg`, written by the calling thread."""
        from pynetdicom.dimse import _RQ_TO_MESSAGE, _RSP_TO_MESSAGE, DIMSEServiceProvider
        from pynetdicom.dsutils import encode

        sock = self._socket()
        if sock is None:
            DIMSEServiceProvider.send_msg(self.assoc.dimse, primitive, context_id)
            return
        if primitive.MessageIDBeingRespondedTo is None:
            msg = _RQ_TO_MESSAGE[primitive.__class__]()
        else:
            msg = _RSP_TO_MESSAGE[primitive.__class__]()
        msg.primitive_to_message(primitive)
        msg.context_id = context_id
        max_pdu = int(self.assoc.dimse.maximum_pdu_size or 0)
        parts = _pdv_pdus(context_id, encode(msg.command_set, True, True) or b"", True, max_pdu)
        data = msg.data_set.getvalue() if msg.data_set is not None else b""
        if data:
            parts += _pdv_pdus(context_id, data, False, max_pdu)
        timeout = self.assoc.dimse_timeout
        try:
            with self._lock:
                _send_all(sock, b"".join(parts), timeout)
        except OSError as exc:
            # the peer went away, or stopped reading: the connection is shut down, so that
            # pynetdicom's DUL ends the association and the response wait returns at once
            self._broken = True
            log.warning("DIMSE message not sent: %s", exc)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def send_c_store(
        self,
        dataset: Any,
        msg_id: int = 1,
        priority: int = 2,
        originator_aet: str | None = None,
        originator_id: int | None = None,
    ) -> Any:
        """pynetdicom's `Association.send_c_store` for a dataset (the stored bytes as they are,
        `model.wire`), without pausing the reactor: the caller is the association's own
        reactor (C-GET) or the reactor was held from the start (`hold_reactor`)."""
        from pydicom.dataset import Dataset
        from pynetdicom.association import encode
        from pynetdicom.dimse_primitives import C_STORE

        assoc = self.assoc
        if not assoc.is_established:
            raise RuntimeError("The association is not established")
        sop_class = str(dataset.SOPClassUID)
        syntax = str(dataset.file_meta.TransferSyntaxUID)
        key = (sop_class, syntax)
        context = self._contexts.get(key)
        if context is None:
            context = self._contexts[key] = assoc._get_valid_context(sop_class, syntax, "scu")
        ts = context.transfer_syntax[0]
        body = encode(dataset, ts.is_implicit_VR, ts.is_little_endian, ts.is_deflated)
        if body is None:
            raise ValueError("Failed to encode the supplied dataset")
        req = C_STORE()
        req.MessageID = msg_id
        req.Priority = priority
        if originator_aet is not None and self.move_originator is not None:
            originator_aet = self.move_originator
        req.MoveOriginatorApplicationEntityTitle = originator_aet
        req.MoveOriginatorMessageID = originator_id
        req.AffectedSOPClassUID = sop_class
        req.AffectedSOPInstanceUID = str(dataset.SOPInstanceUID)
        req.DataSet = io.BytesIO(body)
        self.send_msg(req, int(context.context_id))
        _cx, rsp = assoc.dimse.get_msg(block=True)
        if rsp is None:
            assoc._handle_no_response()
            return Dataset()
        return assoc._check_received_status(rsp)


def hold_reactor(assoc: Any) -> None:
    """Keep the reactor of an association we requested from ever taking a message off its
    queue (called from EVT_ESTABLISHED, before the reactor starts): its DIMSE responses are
    read by `DirectSender.send_c_store`. Release and abort still work (pynetdicom resumes the
    reactor for them)."""
    assoc._reactor_checkpoint.clear()


def pause_reactor(assoc: Any) -> None:
    """Stop the reactor of an established association we requested from taking messages off
    its queue until `resume_reactor`, so that `DirectSender.send_c_store`
    reads the responses. Call it before sending anything: a reactor caught between its
    checkpoint and its read finds the queue empty."""
    assoc._reactor_checkpoint.clear()
    for _ in range(10000):  # the reactor checks every millisecond; 1 s at most
        if assoc._is_paused or not assoc.is_established:
            return
        time.sleep(0.0001)


def resume_reactor(assoc: Any) -> None:
    """Let the reactor paused by `pause_reactor` (or held by `hold_reactor`) run again: an idle
    pooled association notices the peer's release or abort."""
    assoc._reactor_checkpoint.set()


def read_ahead(load: Callable[[T], R], items: Sequence[T], depth: int = 1) -> Generator[R, None, None]:
    """`load(item)` for each item, in order, computed by a helper thread at most `depth` items
    ahead of the consumer, so that reading and parsing the next file overlaps the network
    exchange of the current one (one ahead is enough when parsing is faster than sending, and
    keeps at most three files in memory: the one sent, the one ready, the one being read). An
    exception of `load` is raised here, at its item (nothing after it is loaded); closing the
    iterator stops the thread."""
    results: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        for item in items:
            try:
                value: tuple[bool, Any] = (True, load(item))
            except Exception as exc:
                value = (False, exc)
            while not stop.is_set():
                try:
                    results.put(value, timeout=0.2)
                    break
                except queue.Full:
                    continue
            if stop.is_set() or not value[0]:
                return

    worker = threading.Thread(target=work, name="read-ahead", daemon=True)
    worker.start()
    try:
        for _ in items:
            while True:
                try:
                    ok, value = results.get(timeout=0.2)
                    break
                except queue.Empty:
                    if not worker.is_alive() and results.empty():
                        raise RuntimeError("the file reader stopped") from None
            if not ok:
                raise value
            yield value
    finally:
        stop.set()
