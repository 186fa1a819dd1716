"""Global properties of the index (Orthanc's GlobalProperties table): small named strings a
feature keeps across restarts, such as the DICOMweb servers when ServersInDatabase is on."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from ..index.base import Index, Transaction
from .context import ServerContext

log = logging.getLogger("orthanc_py.properties")


async def read(ctx: ServerContext, key: str) -> str | None:
    """The property's value (None when never written)."""

    def run(txn: Transaction) -> str | None:
        return txn.property(key)

    return await ctx.index.read(run)


async def write(ctx: ServerContext, key: str, value: str) -> None:
    """Store the property (replacing its value) in one transaction."""

    def run(txn: Transaction) -> None:
        txn.set_property(key, value)

    await ctx.index.write(run)


def load_registry(index: Index, key: str, what: str) -> dict[str, Any]:
    """Blocking (while the server is built): a registry kept in the index as a JSON object
    (OrthancPeersInDatabase, DicomModalitiesInDatabase); none yet or unreadable: empty, logged
    as Orthanc logs it."""
    stored = index.read_blocking(lambda txn: txn.property(key))
    try:
        value = json.loads(stored) if stored else {}
    except ValueError:
        value = None
    if not isinstance(value, dict):
        log.error("Cannot unserialize the list of %s from the database", what)
        return {}
    return value


async def save_registry(index: Index, key: str, entries: Mapping[str, Any]) -> None:
    """Write a registry as `load_registry` reads it (entries sorted by name)."""
    text = json.dumps(dict(sorted(entries.items())))
    await index.write(lambda txn: txn.set_property(key, text))
