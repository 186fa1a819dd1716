"""Orthanc peers: the registry of OrthancPeers, changed at run time by PUT/DELETE (in memory, as
Orthanc does when OrthancPeersInDatabase is off)."""

from __future__ import annotations

import logging
from typing import Any

from ..errors import ErrorCode, OrthancError
from ..model.peer import Peer, parse_peer

log = logging.getLogger("orthanc_py.peers")


class PeerRegistry:
    """Known peers by symbolic name."""

    def __init__(self, configured: dict[str, Any]) -> None:
        self._items: dict[str, Peer] = {}
        for name, value in configured.items():
            try:
                self._items[name] = parse_peer(value)
            except ValueError as exc:
                log.error("OrthancPeers: ignoring %r: %s", name, exc)

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str) -> Peer:
        try:
            return self._items[name]
        except KeyError:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"No peer with symbolic name: {name}") from None

    def put(self, name: str, value: Any) -> Peer:
        try:
            peer = parse_peer(value)
        except ValueError as exc:
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, str(exc)) from exc
        self._items[name] = peer
        return peer

    def delete(self, name: str) -> None:
        """Deleting an unknown peer is not an error in Orthanc."""
        self._items.pop(name, None)
