"""The DICOM SCP: pynetdicom's server (AE, presentation contexts, negotiation) bridged to core.

The services themselves are in dimse/handlers.py. pynetdicom runs each association in its own
thread. C-STORE runs the whole ingest in that thread
(`ingest.store_blocking`: parse, file, index), taking the received bytes as they are (no decode
and re-encode); only the bookkeeping that belongs to the event loop hops to it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from functools import partial
from typing import Any

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

from ..core.context import ServerContext
from . import storagecommitment
from .handlers import DicomHandlers

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
    return preferred_first(list(accepted) or list(ALL_TRANSFER_SYNTAXES[:3]))


_STORAGE_UIDS = frozenset(str(cx.abstract_syntax) for cx in AllStoragePresentationContexts)


class _SharedContexts(list[Any]):
    """A list whose deep copy shares its (read-only) items."""

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return list(self)


class DicomServer:
    """C-ECHO and C-STORE SCP on DicomPort with DicomAet."""

    def __init__(self, ctx: ServerContext, loop: asyncio.AbstractEventLoop) -> None:
        self.ctx = ctx
        self.loop = loop
        self.handlers = DicomHandlers(ctx, loop)
        s = ctx.settings
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
        # Storage commitment: both roles, as Orthanc (requests come from an SCU, reports from
        # an SCP that proposes the SCP role on the association it opens)
        ae.add_supported_context(
            storagecommitment.SOP_CLASS, preferred_first(ALL_TRANSFER_SYNTAXES[:4]), scu_role=True, scp_role=True
        )
        self._accepted = ctx.accepted_transfer_syntaxes
        self._storage_syntaxes = storage_syntaxes(self._accepted)
        for context in AllStoragePresentationContexts:
            if context.abstract_syntax is not None:
                # scp_role: a C-GET requestor receives the instances on its own association
                ae.add_supported_context(context.abstract_syntax, self._storage_syntaxes, scu_role=True, scp_role=True)
        self.ae = ae
        self._base_contexts: list[Any] = []
        self._server: Any = None
        self.port: int | None = None

    def start(self, host: str = "0.0.0.0", port: int | None = None) -> int:
        """Listen (port 0 picks a free port); returns the port."""
        handlers: list[Any] = [
            (evt.EVT_CONN_OPEN, self._on_connection),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_ECHO, self.handlers.on_echo),
            (evt.EVT_C_STORE, self.handlers.on_store),
            (evt.EVT_C_FIND, self.handlers.on_find),
            (evt.EVT_C_MOVE, self.handlers.on_move),
            (evt.EVT_C_GET, self.handlers.on_get),
            (evt.EVT_ACSE_RECV, self.handlers.on_acse_recv),
            (evt.EVT_N_ACTION, partial(storagecommitment.on_n_action, self.handlers)),
            (evt.EVT_N_EVENT_REPORT, partial(storagecommitment.on_n_event_report, self.handlers)),
        ]
        self._server = self.ae.start_server(
            (host, self.ctx.settings.dicom_port if port is None else port), block=False, evt_handlers=handlers
        )
        # pynetdicom deep-copies the supported contexts for every association (~40 ms for all
        # storage classes x all transfer syntaxes); negotiation only reads them, so share them.
        self._server.contexts = _SharedContexts(self._server.contexts)
        self._base_contexts = list(self._server.contexts)
        bound: int = self._server.server_address[1]
        self.port = bound
        log.info("DICOM server listening on port %d as %s", bound, self.ctx.settings.dicom_aet)
        return bound

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

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
                if str(cx.abstract_syntax) in _STORAGE_UIDS:
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
