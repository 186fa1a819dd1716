"""Global properties of the index (Orthanc's GlobalProperties table): small named strings a
feature keeps across restarts, such as the DICOMweb servers when ServersInDatabase is on."""

from __future__ import annotations

from ..index.base import Transaction
from .context import ServerContext


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
