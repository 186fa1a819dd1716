"""What the server does once its context is built, before it accepts requests."""

from __future__ import annotations

from .context import ServerContext
from .extquery_admin import resume
from .jobtypes import register_job_types


async def start(ctx: ServerContext) -> None:
    """Load what ingest needs from the index (extended query tags, whether any file is stored
    compressed), take up the jobs saved by the previous run (SaveJobs), and start the periodic
    tasks."""
    register_job_types(ctx)
    await ctx.jobs.start(ctx.index if ctx.settings.save_jobs else None)
    await resume(ctx)
    if await ctx.index.read(lambda txn: txn.any_compressed()):
        ctx.storage.maybe_compressed = True
    ctx.start_tasks()
