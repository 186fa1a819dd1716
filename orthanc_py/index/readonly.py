"""The index of a server started with "ReadOnly": true (Orthanc 1.12.5): every read as the
backend answers it, every write refused with Orthanc's ReadOnly error, so that a second server
can serve an index and a storage another one owns (a replica, an archive on read-only media)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import read_only_refused as refused
from .base import Index
from .writer import fail_soon

T = TypeVar("T")


class ReadOnlyIndex:
    """Wraps an `Index`: reads go through, writes raise `refused()`."""

    def __init__(self, inner: Index) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def write(self, fn: Callable[[Any], T]) -> T:
        raise refused()

    def write_blocking(self, fn: Callable[[Any], T]) -> T:
        raise refused()

    def write_soon(
        self,
        fn: Callable[[Any], Any],
        fut: asyncio.Future[Any],
        after: Callable[[Any, BaseException | None], Any] | None = None,
    ) -> None:
        fail_soon(fut, refused(), after)

    def save_jobs(self, rows: Any) -> None:
        raise refused()

    def delete_jobs(self, ids: Any) -> None:
        raise refused()
