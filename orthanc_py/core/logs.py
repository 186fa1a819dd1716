"""Orthanc's two paged logs, /changes and /exports: a page after a sequence number, the newest
entry, and clearing. Interfaces render the entries (`Change`, `ExportedResource`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..index.base import Change, ExportedResource, Transaction
from .context import ServerContext


@dataclass(frozen=True, slots=True)
class LogPage:
    """Entries of a log page; `done` when no entry follows; `last`: the sequence of the last
    entry given (the newest sequence of the log when the page is empty, as Orthanc 1.10.1)."""

    items: Sequence[Any]
    done: bool
    last: int


_FETCH: dict[str, Callable[[Transaction, int, int], Sequence[Any]]] = {
    "changes": lambda t, since, n: t.changes(since, n),
    "exports": lambda t, since, n: t.exports(since, n),
}
_LAST: dict[str, Callable[[Transaction], int]] = {
    "changes": lambda t: t.last_change(),
    "exports": lambda t: t.last_export(),
}


async def page(ctx: ServerContext, log: str, since: int, limit: int) -> LogPage:
    """Up to `limit` entries of log "changes" or "exports" after sequence `since`."""

    def run(txn: Transaction) -> LogPage:
        items = _FETCH[log](txn, since, limit + 1)
        done = len(items) <= limit
        items = items[:limit]
        return LogPage(items, done, items[-1].seq if items else _LAST[log](txn))

    return await ctx.index.read(run)


async def newest(ctx: ServerContext, log: str) -> LogPage:
    """The newest entry of a log (`?last`): for the changes, the newest one left; for the
    exports, the one at the newest sequence."""

    def run(txn: Transaction) -> LogPage:
        seq = _LAST[log](txn)
        if log == "changes":
            items: Sequence[Any] = txn.changes_before(1 << 62, 1)
            seq = items[-1].seq if items else seq
        else:
            items = _FETCH[log](txn, seq - 1, 1) if seq else []
        return LogPage(items, True, seq)

    return await ctx.index.read(run)


async def clear(ctx: ServerContext, log: str) -> None:
    """DELETE /changes or /exports."""
    await ctx.index.write(lambda txn: txn.clear_changes() if log == "changes" else txn.clear_exports())


__all__ = ["Change", "ExportedResource", "LogPage", "clear", "newest", "page"]
