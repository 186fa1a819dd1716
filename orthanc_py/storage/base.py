"""The storage-area protocol: a few operations on opaque blobs named by UUID (Orthanc's IStorageArea).

Methods are synchronous: core calls them from worker threads, never on the event loop.
"""

from __future__ import annotations

from typing import Protocol


class StorageArea(Protocol):
    """Create, read (whole or a range), and remove blobs named by a UUID and an attachment type."""

    def new_uuid(self) -> str:
        """A fresh UUID for a blob about to be created (the storage may choose where it lands)."""
        ...

    def create(self, uuid: str, data: bytes, content_type: int) -> None:
        """Store `data` durably before returning (a crash afterwards must not lose it)."""
        ...

    def read(self, uuid: str, content_type: int) -> bytes:
        """The whole blob; FileNotFoundError when it is missing."""
        ...

    def read_range(self, uuid: str, content_type: int, start: int, end: int) -> bytes:
        """Bytes [start, end) of the blob, without reading the rest."""
        ...

    def remove(self, uuid: str, content_type: int) -> None:
        """Delete the blob; a missing blob is not an error (delete is idempotent)."""
        ...

    def path(self, uuid: str, content_type: int) -> str | None:
        """A filesystem path when the blob is a plain file (lets HTTP send it with sendfile)."""
        ...
