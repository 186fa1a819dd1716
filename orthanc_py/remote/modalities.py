"""DICOM SCU towards remote modalities (pynetdicom): C-ECHO and C-STORE through a pool of
associations kept open for a few seconds, so that a stream of single-instance stores
(auto-routing) does not open an association per instance.

Blocking calls: core runs them in worker threads.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ErrorCode, OrthancError
from ..imaging.transcode import EXPLICIT_BE, EXPLICIT_LE, IMPLICIT_LE
from ..model.filemeta import file_meta_bytes
from ..model.modality import Modality
from ..model.tls import DicomTls
from ..model.wire import for_peer, stored_dataset, wire_syntax
from .dicomnet import DirectSender, pause_reactor, read_ahead, resume_reactor, tune_pynetdicom

log = logging.getLogger("orthanc_py.scu")

VERIFICATION = "1.2.840.10008.1.1"
# What a C-GET SCU accepts the instances in: uncompressed first, then the usual compressions
# (an instance is kept as the peer sends it).
GET_SYNTAXES = [
    EXPLICIT_LE,
    IMPLICIT_LE,
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.5",
]
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"


@dataclass(frozen=True)
class StoreItem:
    """One instance to send: where its bytes are, and what the association must support."""

    sop_class_uid: str
    transfer_syntax: str
    path: str | None
    load: Callable[[], bytes]


@dataclass
class _Pooled:
    assoc: Any
    contexts: frozenset[tuple[str, str]]
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_used: float = field(default_factory=time.monotonic)
    sock: Any = None


def _load(item: StoreItem) -> Any:
    """The dataset to send for `item` (`model.wire`), or the error met reading it (a file that
    cannot be sent fails its C-STORE, not the whole store)."""
    try:
        return stored_dataset(item.load())
    except (AttributeError, ValueError, KeyError, OSError) as exc:
        return exc


class DimseFailure(OrthancError):
    """A C-MOVE or C-GET the peer answered with a failure status (kept in `status`: Orthanc
    1.12.10 reports it per resource as "DimseErrorStatus")."""

    def __init__(self, status: int, details: str, *, http_status: int | None = None) -> None:
        super().__init__(
            ErrorCode.NETWORK_PROTOCOL,
            details,
            http_status=http_status,
            payload={"Content": {"DimseErrorStatus": status}, "Type": "Dimse"},
        )
        self.status = status


def _network_error(modality: Modality, details: str) -> OrthancError:
    return OrthancError(ErrorCode.NETWORK_PROTOCOL, f'DicomAssociation - connecting to AET "{modality.aet}": {details}')


class DicomScu:
    """C-ECHO / C-STORE SCU with an association pool (Orthanc's DicomAssociationCloseDelay)."""

    def __init__(self, local_aet: str, timeout: float, close_delay: float = 5.0, tls: DicomTls | None = None) -> None:
        tune_pynetdicom()
        self.local_aet = local_aet
        self.timeout = timeout
        self.close_delay = close_delay
        self.tls = tls
        self._tls_context: ssl.SSLContext | None = None
        self._pool: dict[tuple[str, str, int, str], _Pooled] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="scu-reaper", daemon=True)
        self._reaper.start()

    def _ae(self, modality: Modality, timeout: float | None) -> Any:
        from pynetdicom import AE

        ae = AE(ae_title=modality.local_aet or self.local_aet)
        t = timeout or modality.timeout or self.timeout
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = t
        return ae

    @staticmethod
    def _probe(modality: Modality, timeout: float | None) -> None:
        """Probe the TCP port first: a clear, quick error for an unreachable peer (and pynetdicom
        leaks the socket of a refused connection)."""
        try:
            with socket.create_connection((modality.host, modality.port), timeout=timeout or 10):
                pass
        except ConnectionRefusedError as exc:  # DCMTK's words, as Orthanc reports them
            raise _network_error(modality, "TCP Initialization Error: Connection refused") from exc
        except OSError as exc:
            raise _network_error(modality, f"cannot connect to {modality.host}:{modality.port} ({exc})") from exc

    def tls_args(self, modality: Modality) -> tuple[ssl.SSLContext, str] | None:
        """pynetdicom's `tls_args` towards a modality with UseDicomTls (None without); the host
        goes as SNI only, no host name is checked (as DCMTK)."""
        if not modality.use_dicom_tls:
            return None
        if self.tls is None:
            raise OrthancError(
                ErrorCode.BAD_SEQUENCE_OF_CALLS,
                f"DICOM TLS is not enabled in the configuration, cannot connect to modality {modality.aet}",
            )
        if self._tls_context is None:
            self._tls_context = self.tls.client_context()
        return self._tls_context, modality.host

    def _associate(self, ae: Any, modality: Modality) -> Any:
        self._probe(modality, ae.connection_timeout)
        assoc = ae.associate(modality.host, modality.port, ae_title=modality.aet, tls_args=self.tls_args(modality))
        if not assoc.is_established:
            reason = "association rejected" if assoc.is_rejected else "cannot connect"
            # pynetdicom leaves the socket of a refused connection open: close it
            raw = getattr(getattr(assoc.dul, "socket", None), "socket", None)
            if raw is not None:
                raw.close()
            raise _network_error(modality, reason)
        sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        return assoc

    def echo(self, modality: Modality, timeout: float | None = None, check_find: bool = False) -> None:
        """C-ECHO; raises OrthancError(NETWORK_PROTOCOL) when the peer is unreachable or refuses.
        `check_find`: also a study-level C-FIND (Orthanc's CheckFind / DicomEchoChecksFind), so
        that a peer that answers echoes but not queries fails here."""
        ae = self._ae(modality, timeout)
        ae.add_requested_context(VERIFICATION)
        if check_find:
            ae.add_requested_context(STUDY_ROOT_FIND)
        assoc = self._associate(ae, modality)
        try:
            status = assoc.send_c_echo()
            if not status or getattr(status, "Status", None) != 0x0000:
                raise _network_error(modality, "C-ECHO failed")
            if check_find:
                from pydicom.dataset import Dataset

                if not any(str(cx.abstract_syntax) == STUDY_ROOT_FIND for cx in assoc.accepted_contexts):
                    raise _network_error(modality, "the modality does not accept C-FIND")

                query = Dataset()
                query.QueryRetrieveLevel = "STUDY"
                query.StudyInstanceUID = ""
                for st, _ident in assoc.send_c_find(query, STUDY_ROOT_FIND):
                    code = getattr(st, "Status", None)
                    if code is None or code not in (0x0000, 0xFF00, 0xFF01):
                        raise _network_error(modality, "C-FIND failed while checking the modality")
        finally:
            if assoc.is_established:
                assoc.release()

    def find(self, modality: Modality, identifier: Any, model: str) -> list[Any]:
        """C-FIND SCU: the answers (pydicom Datasets); OrthancError when the peer fails."""
        ae = self._ae(modality, None)
        ae.add_requested_context(model)
        assoc = self._associate(ae, modality)
        answers: list[Any] = []
        try:
            for st, ident in assoc.send_c_find(identifier, model):
                code = getattr(st, "Status", None)
                if code is None:
                    raise _network_error(modality, "no answer to C-FIND")
                if code in (0xFF00, 0xFF01):
                    if ident is not None:
                        answers.append(ident)
                elif code != 0x0000:
                    raise OrthancError(
                        ErrorCode.NETWORK_PROTOCOL,
                        f'C-FIND SCU to AET "{modality.aet}" has failed with DIMSE status 0x{code:04X}'
                        + (" (unable to process - invalid query ?)" if code == 0xC000 else ""),
                        http_status=422 if code == 0xC000 else None,
                    )
        finally:
            assoc.release()
        return answers

    def move(self, modality: Modality, identifier: Any, model: str, target_aet: str, message_id: int = 1) -> int:
        """C-MOVE SCU: ask the modality to send the matches to `target_aet`; the final status.
        `message_id` comes back as the Move Originator Message ID of the C-STOREs it causes."""
        ae = self._ae(modality, None)
        ae.add_requested_context(model)
        assoc = self._associate(ae, modality)
        final = 0xC000
        try:
            for st, _ident in assoc.send_c_move(identifier, target_aet, model, msg_id=message_id):
                code = getattr(st, "Status", None)
                if code is None:
                    raise _network_error(modality, "no answer to C-MOVE")
                final = code
        finally:
            assoc.release()
        if final not in (0x0000, 0xB000):
            raise DimseFailure(
                final,
                f'C-MOVE SCU to AET "{modality.aet}" has failed with DIMSE status 0x{final:04X}'
                + (" (unable to process - resource not found ?)" if final == 0xC000 else ""),
                http_status=422 if final == 0xC000 else None,
            )
        return final

    def get(
        self, modality: Modality, identifier: Any, model: str, on_instance: Callable[[bytes, str], str | None]
    ) -> tuple[int, list[str]]:
        """C-GET SCU: the matches come back on our association as C-STORE sub-operations;
        `on_instance(file bytes, calling AET)` stores each one and gives its public ID (None: refused).
        Returns the final status and the IDs received."""
        from pynetdicom import StoragePresentationContexts, build_role, evt

        received: list[str] = []

        def on_store(event: Any) -> int:
            req = event.request
            data = file_meta_bytes(
                str(req.AffectedSOPClassUID), str(req.AffectedSOPInstanceUID), str(event.context.transfer_syntax)
            )
            try:
                public_id = on_instance(data + req.DataSet.getvalue(), modality.aet)
            except Exception as exc:
                log.warning("C-GET: an instance from %s was not stored: %s", modality.aet, exc)
                public_id = None
            if public_id is None:
                return 0xA700
            received.append(public_id)
            return 0x0000

        ae = self._ae(modality, None)
        ae.add_requested_context(model)
        roles = []
        for cx in StoragePresentationContexts[:126]:  # 128 contexts at most, the model included
            if cx.abstract_syntax is not None:
                ae.add_requested_context(cx.abstract_syntax, GET_SYNTAXES)
                roles.append(build_role(cx.abstract_syntax, scp_role=True))
        self._probe(modality, ae.connection_timeout)
        assoc = ae.associate(
            modality.host,
            modality.port,
            ae_title=modality.aet,
            ext_neg=roles,
            evt_handlers=[(evt.EVT_C_STORE, on_store)],
            tls_args=self.tls_args(modality),
        )
        if not assoc.is_established:
            raise _network_error(modality, "association rejected" if assoc.is_rejected else "cannot connect")
        final = 0xC000
        try:
            for st, _ident in assoc.send_c_get(identifier, model):
                code = getattr(st, "Status", None)
                if code is None:
                    raise _network_error(modality, "no answer to C-GET")
                final = code
        finally:
            if assoc.is_established:
                assoc.release()
        if final not in (0x0000, 0xB000):
            raise DimseFailure(final, f'C-GET SCU to AET "{modality.aet}" has failed with DIMSE status 0x{final:04X}')
        return final, received

    def store(
        self,
        modality: Modality,
        items: Iterable[StoreItem],
        move_originator_aet: str = "",
        move_originator_id: int | None = None,
        on_progress: Callable[[int], None] | None = None,
        permissive: bool = False,
    ) -> tuple[int, int]:
        """Send the instances; returns (sent, failed). Raises OrthancError when no association can
        be made and, unless `permissive`, at the first instance the peer does not store (as
        Orthanc's DicomModalityStore job). Files go as stored (no decode) when the peer accepts
        their transfer syntax."""
        items = list(items)
        # as Orthanc proposes: the stored syntax, Explicit VR Little Endian (its preferred one),
        # Implicit VR Little Endian and Explicit VR Big Endian
        wanted = frozenset(
            (i.sop_class_uid, ts) for i in items for ts in (i.transfer_syntax, EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE)
        )
        pooled = self._checkout(modality, wanted)
        sent = failed = 0
        # the C-STOREs written by this thread, the reactor held while they run (see dicomnet)
        sender = DirectSender(pooled.assoc)
        pause_reactor(pooled.assoc)
        sender.install()
        loaded = read_ahead(_load, items)
        try:
            for n, (item, ds) in enumerate(zip(items, loaded, strict=True)):
                problem = self._send(pooled, item, ds, move_originator_aet, move_originator_id)
                if problem is None:
                    sent += 1
                elif permissive:
                    log.warning("C-STORE to %s: %s", modality.aet, problem)
                    failed += 1
                elif isinstance(problem, tuple):  # the peer answered with a failure status
                    raise DimseFailure(problem[0], problem[1].replace("{aet}", modality.aet))
                else:
                    raise OrthancError(ErrorCode.NETWORK_PROTOCOL, problem.replace("{aet}", modality.aet))
                if on_progress is not None:
                    on_progress(n + 1)
        except OrthancError:
            self._discard(modality, pooled)
            raise
        except Exception as exc:
            self._discard(modality, pooled)
            raise _network_error(modality, str(exc)) from exc
        finally:
            loaded.close()
            sender.remove()
            resume_reactor(pooled.assoc)
            pooled.last_used = time.monotonic()
            key = (modality.aet, modality.host, modality.port, modality.local_aet)
            with self._lock:
                in_pool = self._pool.get(key) is pooled
            if pooled.lock.locked():
                pooled.lock.release()
            if not in_pool:  # a second, concurrent association: not kept
                self._close(pooled)
        return sent, failed

    def _send(
        self, pooled: _Pooled, item: StoreItem, ds: Any, originator: str, originator_id: int | None
    ) -> str | tuple[int, str] | None:
        """One C-STORE of `ds` (`_load`: the file read as ingest accepted it, or why it could not
        be read), its stored bytes sent as they are when the peer accepted their transfer
        syntax, else transcoded. None when the peer stored it, else why not (Orthanc's words;
        "{aet}" stands for the peer's AET), with the peer's status when it answered one."""
        assoc = pooled.assoc
        kwargs: dict[str, Any] = {}
        if originator:
            kwargs["originator_aet"] = originator
            kwargs["originator_id"] = originator_id or 0
        try:
            if isinstance(ds, Exception):
                raise ds
            sop = str(ds.get("SOPClassUID", "") or item.sop_class_uid)
            accepted = [
                str(ts) for cx in assoc.accepted_contexts if cx.abstract_syntax == sop for ts in cx.transfer_syntax
            ]
            if not for_peer(ds, accepted):
                return (
                    'DicomAssociation - C-STORE to AET "{aet}": No accepted presentation context for '
                    f"SOP class {sop} with transfer syntax {wire_syntax(ds)}"
                )
            status = assoc.send_c_store(ds, **kwargs)
        except (AttributeError, ValueError, KeyError, OSError) as exc:  # a dataset pynetdicom cannot send
            if not assoc.is_established:
                raise OrthancError(ErrorCode.NETWORK_PROTOCOL, "The association was aborted") from exc
            return f'C-STORE SCU to AET "{{aet}}" cannot send the instance: {exc}'
        if not assoc.is_established:
            raise OrthancError(ErrorCode.NETWORK_PROTOCOL, "The association was aborted")
        code = getattr(status, "Status", None) if status else None
        if code is None:
            return 'C-STORE SCU to AET "{aet}" has received no answer'
        if code in (0x0000, 0xB000, 0xB007, 0xB006):
            return None
        return code, f'C-STORE SCU to AET "{{aet}}" has failed with DIMSE status 0x{code:04X}'

    def _checkout(self, modality: Modality, wanted: frozenset[tuple[str, str]]) -> _Pooled:
        key = (modality.aet, modality.host, modality.port, modality.local_aet)
        with self._lock:
            pooled = self._pool.get(key)
            if pooled is not None and pooled.assoc.is_established and wanted <= pooled.contexts:
                if pooled.lock.acquire(blocking=False):
                    return pooled
            if pooled is not None and not pooled.lock.locked():
                self._close(pooled)
                self._pool.pop(key, None)
        contexts = wanted | (pooled.contexts if pooled is not None else frozenset())
        ae = self._ae(modality, None)
        # One presentation context per (SOP class, transfer syntax): the peer accepts each it
        # supports, so a file goes as stored whenever possible (a context with several syntaxes
        # gets only one accepted).
        if len(contexts) > 128:
            raise _network_error(modality, "too many SOP classes for one association")
        for sop, ts in sorted(contexts):
            ae.add_requested_context(sop, [ts])
        assoc = self._associate(ae, modality)
        fresh = _Pooled(assoc, contexts, sock=getattr(getattr(assoc.dul, "socket", None), "socket", None))
        fresh.lock.acquire()
        with self._lock:
            if key not in self._pool or not self._pool[key].lock.locked():
                old = self._pool.get(key)
                if old is not None:
                    self._close(old)
                self._pool[key] = fresh
        return fresh

    def close_association(self, modality: Modality) -> None:
        """Release the idle pooled association to `modality`, if any (Orthanc closes its C-STORE
        association before the storage commitment request: a peer may serve one at a time)."""
        key = (modality.aet, modality.host, modality.port, modality.local_aet)
        with self._lock:
            pooled = self._pool.get(key)
            if pooled is None or pooled.lock.locked():
                return
            del self._pool[key]
        self._close(pooled)

    def _discard(self, modality: Modality, pooled: _Pooled) -> None:
        key = (modality.aet, modality.host, modality.port, modality.local_aet)
        with self._lock:
            if self._pool.get(key) is pooled:
                del self._pool[key]
        self._close(pooled)

    @staticmethod
    def _close(pooled: _Pooled) -> None:
        try:
            if pooled.assoc.is_established:
                pooled.assoc.release()
        except Exception:
            log.debug("release failed", exc_info=True)
        # a peer that went away makes pynetdicom drop its socket without closing it
        if pooled.sock is not None:
            try:
                pooled.sock.close()
            except OSError:
                log.debug("closing the socket failed", exc_info=True)

    def _reap(self) -> None:
        while not self._stop.wait(0.5):
            now = time.monotonic()
            with self._lock:
                idle = [
                    (k, p)
                    for k, p in self._pool.items()
                    if not p.lock.locked() and now - p.last_used >= self.close_delay
                ]
                for k, _p in idle:
                    del self._pool[k]
            for _k, p in idle:
                self._close(p)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            pooled = list(self._pool.values())
            self._pool.clear()
        for p in pooled:
            self._close(p)
