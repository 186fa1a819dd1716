"""Fixtures shared by the integration tests: a pynetdicom storage SCP as a DICOM peer."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]


class StoreSCP:
    """A pynetdicom storage SCP recording what it receives and how many associations it saw."""

    def __init__(self) -> None:
        self.received: dict[str, bytes] = {}
        self.associations = 0
        ae = AE(ae_title="STORESCP")
        ae.add_supported_context(Verification)
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax)
        self._lock = threading.Lock()
        self.server = ae.start_server(
            ("127.0.0.1", 0),
            block=False,
            evt_handlers=[
                (evt.EVT_C_STORE, self._store),
                (evt.EVT_ACCEPTED, self._accepted),
                (evt.EVT_C_ECHO, lambda e: 0),
            ],
        )
        self.port = self.server.server_address[1]

    def _accepted(self, event) -> None:
        with self._lock:
            self.associations += 1

    def _store(self, event) -> int:
        data = event.encoded_dataset(include_meta=True)
        with self._lock:
            self.received[str(event.request.AffectedSOPInstanceUID)] = data
        return 0

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def scp() -> Iterator[StoreSCP]:
    s = StoreSCP()
    yield s
    s.stop()
