"""Which instances each C-MOVE we send brings back (Orthanc 1.12.10's "ReceivedInstancesIds").

Every C-MOVE of a retrieve gets its own DIMSE message ID; the C-STORE sub-operations the moving
modality sends us carry that ID and our AET as their Move Originator, so a C-STORE received
with them is counted for that C-MOVE. C-STOREs arrive on the DICOM server's threads."""

from __future__ import annotations

import threading

FIRST_MESSAGE_ID = 1000
"""IDs below this are left to ordinary requests (Orthanc starts its retrieve IDs here too)."""


class RetrievalTracker:
    """The C-MOVEs in flight, by (originator AET, message ID)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = FIRST_MESSAGE_ID - 1
        self._open: dict[tuple[str, int], list[str]] = {}

    def open(self, local_aet: str) -> tuple[int, list[str]]:
        """A message ID for the next C-MOVE sent as `local_aet`, and the list its received
        instances are appended to (until `close`)."""
        with self._lock:
            while True:
                self._last = self._last + 1 if self._last < 0xFFFE else FIRST_MESSAGE_ID
                key = (local_aet, self._last)
                if key not in self._open:
                    received: list[str] = []
                    self._open[key] = received
                    return self._last, received

    def close(self, local_aet: str, message_id: int) -> None:
        with self._lock:
            self._open.pop((local_aet, message_id), None)

    def received(self, originator_aet: str, message_id: int, instance_id: str) -> None:
        """A C-STORE sub-operation of a C-MOVE has stored `instance_id` (no-op when the move
        is not one of ours)."""
        with self._lock:
            found = self._open.get((originator_aet, message_id))
            if found is not None and instance_id not in found:
                found.append(instance_id)
