"""The change feed of the Azure DICOM service (instances created and deleted, in order), as the
index keeps it; rows are (sequence, action, state, study, series, sop, instance public id,
timestamp)."""

from __future__ import annotations

from typing import Any

from .context import ServerContext


async def page(ctx: ServerContext, offset: int, limit: int) -> list[tuple[Any, ...]]:
    """Up to `limit` entries after sequence `offset`."""
    return await ctx.index.read(lambda txn: txn.feed(offset, limit))


async def latest(ctx: ServerContext) -> tuple[Any, ...] | None:
    """The newest entry (None when the feed is empty)."""
    return await ctx.index.read(lambda txn: txn.feed_latest())
