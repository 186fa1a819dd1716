"""What the server does once its context is built, before it accepts requests."""

from __future__ import annotations

from .context import ServerContext
from .extquery_admin import resume


async def start(ctx: ServerContext) -> None:
    """Load what ingest needs from the index (extended query tags, whether any file is stored
    compressed) and start the periodic tasks."""
    await resume(ctx)
    if await ctx.index.read(lambda txn: txn.any_compressed()):
        ctx.storage.maybe_compressed = True
    ctx.start_tasks()
