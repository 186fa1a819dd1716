"""The DICOM SCP: pynetdicom's server threads bridged to core.

pynetdicom runs each association in its own thread. C-STORE runs the whole ingest in that thread
(`ingest.store_blocking`: parse, file, index), taking the received bytes as they are (no decode
and re-encode); only the bookkeeping that belongs to the event loop hops to it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from ..core import ingest
from ..core.context import ServerContext
from ..core.ingest import Origin
from . import status

log = logging.getLogger("orthanc_py.dimse")


class DicomServer:
    """C-ECHO and C-STORE SCP on DicomPort with DicomAet."""

    def __init__(self, ctx: ServerContext, loop: asyncio.AbstractEventLoop) -> None:
        self.ctx = ctx
        self.loop = loop
        s = ctx.settings
        ae = AE(ae_title=s.dicom_aet)
        ae.maximum_pdu_size = 0  # accept PDUs of any size: large PDUs mean fewer round trips
        ae.network_timeout = s.dicom_scp_timeout
        ae.acse_timeout = s.dicom_scp_timeout
        ae.dimse_timeout = s.dicom_scp_timeout
        ae.require_called_aet = s.dicom_check_called_aet
        ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
        for context in AllStoragePresentationContexts:
            if context.abstract_syntax is not None:
                ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        self.ae = ae
        self._server: Any = None
        self.port: int | None = None

    def start(self, host: str = "0.0.0.0", port: int | None = None) -> int:
        """Listen (port 0 picks a free port); returns the port."""
        handlers: list[Any] = [(evt.EVT_C_ECHO, self._on_echo), (evt.EVT_C_STORE, self._on_store)]
        self._server = self.ae.start_server(
            (host, self.ctx.settings.dicom_port if port is None else port), block=False, evt_handlers=handlers
        )
        bound: int = self._server.server_address[1]
        self.port = bound
        log.info("DICOM server listening on port %d as %s", bound, self.ctx.settings.dicom_aet)
        return bound

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _on_echo(self, event: Any) -> int:
        return status.SUCCESS

    def _on_store(self, event: Any) -> int:
        assoc = event.assoc
        origin = Origin(
            "DicomProtocol",
            remote_ip=str(assoc.requestor.address),
            remote_aet=str(assoc.requestor.ae_title).strip(),
            called_aet=str(assoc.acceptor.ae_title).strip(),
        )
        try:
            data = event.encoded_dataset(include_meta=True)
            ingest.store_blocking(self.ctx, data, origin, self.loop)
        except Exception as exc:
            log.warning("C-STORE from %s refused: %s", origin.remote_aet, exc)
            return status.store_failure(exc)
        return status.SUCCESS
