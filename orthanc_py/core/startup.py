"""What the server does once its context is built, before it accepts requests."""

from __future__ import annotations

from .context import ServerContext
from .extquery_admin import resume
from .jobtypes import register_job_types
from .recycling import at_start as recycle_at_start


async def start(ctx: ServerContext) -> None:
    """Load what ingest needs from the index (extended query tags, whether any file is stored
    compressed), take up the jobs saved by the previous run (SaveJobs), recycle what the storage
    limits no longer allow, and start the periodic tasks. "ReadOnly": nothing of it that writes
    (no saved jobs, no reindexing resumed, no recycling)."""
    writable = not ctx.settings.read_only
    register_job_types(ctx)
    await ctx.jobs.start(ctx.index if ctx.settings.save_jobs and writable else None)
    if writable:
        await resume(ctx)
    if await ctx.index.read(lambda txn: txn.any_compressed()):
        ctx.storage.maybe_compressed = True
    if writable:
        await recycle_at_start(ctx)
    ctx.start_tasks()
