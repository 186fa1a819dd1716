"""Bulk operations on lists of resources given by public ID (/tools/bulk-content,
/tools/bulk-delete): unknown IDs are skipped, as Orthanc skips them."""

from __future__ import annotations

from collections.abc import Sequence

from ..index.base import Transaction
from ..model.enums import ResourceType
from ..model.ids import is_public_id
from .context import ServerContext
from .resources import ResourceInfo, delete, expand


def _at_level(txn: Transaction, public_ids: Sequence[str], level: ResourceType) -> list[int]:
    """Each resource moved up or down the hierarchy to `level` (ancestor above, all descendants
    below), without duplicates, in first-seen order."""
    known = txn.lookup_many([p for p in public_ids if is_public_id(p)])
    seen: dict[int, None] = {}
    for pid in public_ids:
        hit = known.get(pid)
        if hit is None:
            continue
        rid, lv = hit
        if lv == level:
            seen[rid] = None
        elif lv < level:
            seen.update(dict.fromkeys(txn.descendants(rid, level)))
        else:
            ancestor = txn.ancestor(rid, level)
            if ancestor is not None:
                seen[ancestor] = None
    return list(seen)


async def content(
    ctx: ServerContext, public_ids: Sequence[str], level: ResourceType | None, with_metadata: bool
) -> list[ResourceInfo]:
    """The expanded resources, each at its own level or all at `level`."""

    def run(txn: Transaction) -> list[ResourceInfo]:
        if level is not None:
            ids = _at_level(txn, public_ids, level)
        else:
            known = txn.lookup_many([p for p in public_ids if is_public_id(p)])
            ids = [known[p][0] for p in public_ids if p in known]
        infos = {i.id: i for i in expand(txn, ctx, ids, with_metadata=with_metadata)}
        return [infos[i] for i in ids if i in infos]

    return await ctx.index.read(run)


async def delete_many(ctx: ServerContext, public_ids: Sequence[str]) -> None:
    """Delete each resource at its own level (with its descendants and emptied ancestors)."""
    for pid in dict.fromkeys(public_ids):
        if not is_public_id(pid):
            continue
        hit = await ctx.index.read(lambda txn, p=pid: txn.lookup(p))  # type: ignore[misc]
        if hit is None:
            continue  # unknown, or gone with a resource deleted before it
        await delete(ctx, pid, hit[1])
