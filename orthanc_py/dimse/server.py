"""The DICOM SCP: pynetdicom's server (AE, presentation contexts, negotiation) bridged to core.

The services themselves are in dimse/handlers.py. pynetdicom runs each association in its own
thread. C-STORE runs the whole ingest in that thread
(`ingest.store_blocking`: parse, file, index), taking the received bytes as they are (no decode
and re-encode); only the bookkeeping that belongs to the event loop hops to it.

DicomPort listens from the start as a plain socket watched by the event loop; pynetdicom, its AE
and the handlers are built on the first association (~7 MB and ~40 ms of CPU that a server
nobody sends DICOM to never pays), and every accepted connection is handed to pynetdicom's
threaded server as its own acceptor loop would.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..core.context import ServerContext

log = logging.getLogger("orthanc_py.dimse")


def _register_as_storage(uid: str) -> None:
    """Tell pynetdicom that an unknown SOP class is a storage class (its C-STORE handler)."""
    from pynetdicom.service_class import StorageServiceClass
    from pynetdicom.sop_class import register_uid, uid_to_service_class

    if uid_to_service_class(uid) is StorageServiceClass:
        return
    keyword = "OrthancPyUnknownStorage" + "".join(c for c in uid if c.isdigit())[-20:]
    try:
        register_uid(uid, keyword, StorageServiceClass)
    except ValueError:  # already registered under this keyword
        log.debug("cannot register %s", uid, exc_info=True)


EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
IMPLICIT_LE = "1.2.840.10008.1.2"
# The order Orthanc prefers when a requestor proposes several syntaxes in one context
# (pynetdicom accepts the first of the acceptor's list that the requestor proposed).
PREFERRED = (EXPLICIT_LE, EXPLICIT_BE, IMPLICIT_LE)


def preferred_first(syntaxes: list[str] | tuple[str, ...]) -> list[str]:
    """The syntaxes with Explicit VR Little Endian, then Big Endian, then Implicit VR first."""
    return [ts for ts in PREFERRED if ts in syntaxes] + [ts for ts in syntaxes if ts not in PREFERRED]


def storage_syntaxes(accepted: tuple[str, ...]) -> list[str]:
    """The transfer syntaxes offered to C-STORE requestors: what AcceptedTransferSyntaxes matched
    (never none: an SCP that accepts no syntax at all would refuse every association)."""
    from pynetdicom import ALL_TRANSFER_SYNTAXES

    return preferred_first(list(accepted) or list(ALL_TRANSFER_SYNTAXES[:3]))


class _SharedContexts(list[Any]):
    """A list whose deep copy shares its (read-only) items."""

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return list(self)


def _handed_over_server_class() -> type:
    """pynetdicom's threaded association server, minus its own socket: DicomServer accepts the
    connections and gives each to `process_request` (what the server's accept loop does)."""
    from pynetdicom.transport import ThreadedAssociationServer

    class HandedOverServer(ThreadedAssociationServer):
        def finish_request(self, request: Any, client_address: Any) -> None:
            """In the association's thread: with DICOM TLS, the handshake first (a peer that
            fails it is dropped, as DCMTK drops it)."""
            tls = self.ssl_context
            if tls is not None:
                try:
                    request.settimeout(self.ae.acse_timeout or 30)
                    request = tls.wrap_socket(request, server_side=True)
                    request.settimeout(None)
                except OSError as exc:  # ssl.SSLError included
                    log.warning("DICOM TLS handshake with %s failed: %s", client_address[0], exc)
                    request.close()
                    return
            super().finish_request(request, client_address)

        def server_bind(self) -> None:
            if self.socket is not None:
                self.socket.close()  # the listening socket is DicomServer's

        def server_activate(self) -> None:
            pass

        def server_close(self) -> None:
            pass

        def shutdown(self) -> None:
            if self in self.ae._servers:
                self.ae._servers.remove(self)

    return HandedOverServer


class DicomServer:
    """C-ECHO, C-STORE, C-FIND, C-MOVE and C-GET SCP on DicomPort with DicomAet."""

    def __init__(
        self, ctx: ServerContext, loop: asyncio.AbstractEventLoop, prepare: Callable[[], None] | None = None
    ) -> None:
        """`prepare` runs once before pynetdicom's server is built (app.py: `tune_pynetdicom`)."""
        self.ctx = ctx
        self.loop = loop
        self._prepare = prepare
        self._sock: socket.socket | None = None
        self._server: Any = None  # pynetdicom's server, built on the first association
        self._building: asyncio.Future[Any] | None = None
        self._waiting: list[tuple[socket.socket, Any]] = []  # accepted while pynetdicom loads
        self._base_contexts: list[Any] = []
        self._storage_uids: frozenset[str] = frozenset()
        self._accepted: tuple[str, ...] = ()
        self._storage_syntaxes: list[str] = []
        self.port: int | None = None
        tls = ctx.settings.dicom_tls
        # built now: unreadable certificates stop the start-up, as Orthanc's
        self._tls: ssl.SSLContext | None = tls.server_context() if tls is not None else None

    def start(self, host: str = "0.0.0.0", port: int | None = None) -> int:
        """Listen (port 0 picks a free port); returns the port. Runs on the event loop."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, self.ctx.settings.dicom_port if port is None else port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.loop.add_reader(sock.fileno(), self._accept)
        bound: int = sock.getsockname()[1]
        self.port = bound
        log.info("DICOM server listening on port %d as %s", bound, self.ctx.settings.dicom_aet)
        return bound

    def stop(self) -> None:
        """Stop listening (call it on the event loop); running associations finish on their own."""
        if self._sock is not None:
            self.loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        for conn, _ in self._waiting:
            conn.close()
        self._waiting.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _accept(self) -> None:
        """Accept what is pending; the first connection starts building pynetdicom's server."""
        while self._sock is not None:
            try:
                conn, address = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. out of file descriptors: try again on the next readiness
                log.warning("cannot accept a DICOM connection", exc_info=True)
                return
            conn.setblocking(True)
            if self._server is not None:
                self._hand_over(conn, address)
                continue
            self._waiting.append((conn, address))
            if self._building is None:
                self._building = self.loop.run_in_executor(None, self._build)
                self._building.add_done_callback(self._built)

    def _built(self, future: asyncio.Future[Any]) -> None:
        self._building = None
        if future.cancelled() or future.exception() is not None:
            log.error("cannot start the DICOM server", exc_info=None if future.cancelled() else future.exception())
            for conn, _ in self._waiting:
                conn.close()
        elif self._sock is not None:  # not stopped meanwhile
            self._server = future.result()
            for conn, address in self._waiting:
                self._hand_over(conn, address)
        self._waiting.clear()

    def _hand_over(self, conn: socket.socket, address: Any) -> None:
        try:
            self._server.process_request(conn, address)  # starts the association's thread
        except Exception:
            log.exception("cannot start a DICOM association")
            conn.close()

    def _build(self) -> Any:
        """pynetdicom's AE with our contexts and handlers, and its server (in a worker thread)."""
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import (  # type: ignore[attr-defined]
            PatientRootQueryRetrieveInformationModelFind,
            PatientRootQueryRetrieveInformationModelGet,
            PatientRootQueryRetrieveInformationModelMove,
            StudyRootQueryRetrieveInformationModelFind,
            StudyRootQueryRetrieveInformationModelGet,
            StudyRootQueryRetrieveInformationModelMove,
            Verification,
        )

        from ..core.worklists import WORKLIST_FIND
        from . import storagecommitment
        from .handlers import DicomHandlers

        if self._prepare is not None:
            self._prepare()
        handlers = DicomHandlers(self.ctx, self.loop)
        s = self.ctx.settings
        ae = AE(ae_title=s.dicom_aet)
        ae.maximum_pdu_size = 0  # accept PDUs of any size: large PDUs mean fewer round trips
        ae.maximum_associations = 256  # Orthanc queues associations rather than refusing them
        ae.network_timeout = s.dicom_scp_timeout
        ae.acse_timeout = s.dicom_scp_timeout
        ae.dimse_timeout = s.dicom_scp_timeout
        ae.require_called_aet = s.dicom_check_called_aet
        ae.add_supported_context(Verification, preferred_first(ALL_TRANSFER_SYNTAXES))
        for model in (
            PatientRootQueryRetrieveInformationModelFind,
            StudyRootQueryRetrieveInformationModelFind,
            PatientRootQueryRetrieveInformationModelMove,
            StudyRootQueryRetrieveInformationModelMove,
            PatientRootQueryRetrieveInformationModelGet,
            StudyRootQueryRetrieveInformationModelGet,
        ):
            ae.add_supported_context(model, preferred_first(ALL_TRANSFER_SYNTAXES[:4]))
        if self.ctx.settings.worklists.get("Enable"):  # as Orthanc: only with a worklist handler
            ae.add_supported_context(WORKLIST_FIND, preferred_first(ALL_TRANSFER_SYNTAXES[:4]))
        # Storage commitment: both roles, as Orthanc (requests come from an SCU, reports from
        # an SCP that proposes the SCP role on the association it opens)
        ae.add_supported_context(
            storagecommitment.SOP_CLASS, preferred_first(ALL_TRANSFER_SYNTAXES[:4]), scu_role=True, scp_role=True
        )
        self._accepted = self.ctx.accepted_transfer_syntaxes
        self._storage_syntaxes = storage_syntaxes(self._accepted)
        self._storage_uids = frozenset(str(cx.abstract_syntax) for cx in AllStoragePresentationContexts)
        for context in AllStoragePresentationContexts:
            if context.abstract_syntax is not None:
                # scp_role: a C-GET requestor receives the instances on its own association
                ae.add_supported_context(context.abstract_syntax, self._storage_syntaxes, scu_role=True, scp_role=True)
        events: list[Any] = [
            (evt.EVT_CONN_OPEN, self._on_connection),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_ECHO, handlers.on_echo),
            (evt.EVT_C_STORE, handlers.on_store),
            (evt.EVT_C_FIND, handlers.on_find),
            (evt.EVT_C_MOVE, handlers.on_move),
            (evt.EVT_C_GET, handlers.on_get),
            (evt.EVT_ACSE_RECV, handlers.on_acse_recv),
            (evt.EVT_N_ACTION, partial(storagecommitment.on_n_action, handlers)),
            (evt.EVT_N_EVENT_REPORT, partial(storagecommitment.on_n_event_report, handlers)),
        ]
        assert self._sock is not None
        server = ae.make_server(
            self._sock.getsockname(),
            evt_handlers=events,
            server_class=_handed_over_server_class(),
            ssl_context=self._tls,
        )
        ae._servers.append(server)
        # pynetdicom deep-copies the supported contexts for every association (~40 ms for all
        # storage classes x all transfer syntaxes); negotiation only reads them, so share them.
        server.contexts = _SharedContexts(server.contexts)
        self._base_contexts = list(server.contexts)
        return server

    def _on_connection(self, event: Any) -> None:
        """No Nagle delay: a DIMSE response is several small writes, and waiting for the peer's
        delayed ACK between them costs 40 ms per message."""
        try:
            sock = event.assoc.dul.socket.socket
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (AttributeError, OSError):
            log.debug("cannot set TCP_NODELAY", exc_info=True)

    def _current_contexts(self) -> list[Any]:
        """The supported contexts with the storage transfer syntaxes now accepted
        (PUT /tools/accepted-transfer-syntaxes changes them between associations)."""
        accepted = self.ctx.accepted_transfer_syntaxes
        if accepted != self._accepted:
            from pynetdicom.presentation import build_context

            syntaxes = storage_syntaxes(accepted)
            contexts = []
            for cx in self._base_contexts:
                if str(cx.abstract_syntax) in self._storage_uids:
                    new = build_context(cx.abstract_syntax, syntaxes)
                    new.scu_role, new.scp_role = True, True
                    contexts.append(new)
                else:
                    contexts.append(cx)
            self._server.contexts = _SharedContexts(contexts)
            self._storage_syntaxes, self._accepted = syntaxes, accepted
        return list(self._server.contexts)

    def _on_requested(self, event: Any) -> None:
        """Negotiate with the settings now in force: the accepted transfer syntaxes, and
        (UnknownSopClassAccepted) the abstract syntaxes we do not know, accepted as storage."""
        acceptor = event.assoc.acceptor
        if self.ctx.accepted_transfer_syntaxes != self._accepted:
            acceptor.supported_contexts = self._current_contexts()
        if not self.ctx.unknown_sop_class_accepted:
            return
        from pynetdicom.presentation import build_context

        known = {str(cx.abstract_syntax) for cx in acceptor.supported_contexts}
        requested = event.assoc.requestor.primitive.presentation_context_definition_list or []
        extra = []
        for cx in requested:
            syntax = str(cx.abstract_syntax)
            if syntax not in known:
                known.add(syntax)
                _register_as_storage(syntax)
                new = build_context(syntax, self._storage_syntaxes)
                new.scu_role, new.scp_role = True, True
                extra.append(new)
        if extra:
            acceptor.supported_contexts = list(acceptor.supported_contexts) + extra
