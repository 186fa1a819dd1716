"""A storage area in memory: for unit tests and throw-away servers."""

from __future__ import annotations

import uuid as uuidlib


class MemoryStorage:
    """Blobs in a dict; same semantics as the filesystem storage."""

    def __init__(self) -> None:
        self._blobs: dict[tuple[str, int], bytes] = {}

    def new_uuid(self) -> str:
        return str(uuidlib.uuid4())

    def path(self, uuid: str, content_type: int) -> str | None:
        return None

    def create(self, uuid: str, data: bytes, content_type: int) -> None:
        self._blobs[(uuid, content_type)] = bytes(data)

    def read(self, uuid: str, content_type: int) -> bytes:
        try:
            return self._blobs[(uuid, content_type)]
        except KeyError:
            raise FileNotFoundError(uuid) from None

    def read_range(self, uuid: str, content_type: int, start: int, end: int) -> bytes:
        return self.read(uuid, content_type)[start:end]

    def remove(self, uuid: str, content_type: int) -> None:
        self._blobs.pop((uuid, content_type), None)
