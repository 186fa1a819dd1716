"""Route resolution that tries only the routes a path can match.

aiohttp indexes dynamic routes by their literal prefix and tries every route of that prefix in
registration order: `/instances/{id}` is tried after the fifteen other `/instances/{id}/...`
routes, each a regular expression (~10 us of the ~40 us a GET /instances/{id} costs). Orthanc's
routes differ by their number of path components and their last literal component, so each
prefix's routes are grouped by those two; a request tries, still in registration order, only
the routes of its group. Anything not matched that way is resolved by aiohttp itself, so 404s,
405s and routes with free-form patterns behave exactly as before.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractResource, UrlMappingMatchInfo

_FREE_FORM = re.compile(r"\{[^}]*:")  # a variable with its own regex may span components


class _Bucket:
    """The routes of one literal prefix, grouped by (components, last literal component)."""

    def __init__(self, resources: Sequence[AbstractResource]) -> None:
        shapes: list[tuple[int, str | None] | None] = []
        for r in resources:
            canonical = r.canonical
            if _FREE_FORM.search(canonical):
                shapes.append(None)  # may match any path of the prefix
            else:
                last = canonical.rpartition("/")[2]
                shapes.append((canonical.count("/"), None if "{" in last else last))
        self.groups: dict[tuple[int, str | None], tuple[AbstractResource, ...]] = {}
        self.free = tuple(r for r, s in zip(resources, shapes, strict=True) if s is None)
        keys: set[tuple[int, str | None]] = {s for s in shapes if s is not None}
        keys |= {(s[0], None) for s in shapes if s is not None}
        for key in keys:
            self.groups[key] = tuple(
                r
                for r, s in zip(resources, shapes, strict=True)
                if s is None or (s[0] == key[0] and (s[1] is None or s[1] == key[1]))
            )

    def candidates(self, path: str) -> tuple[AbstractResource, ...]:
        n = path.count("/")
        last = path.rpartition("/")[2]
        hit = self.groups.get((n, last))
        if hit is None:
            hit = self.groups.get((n, None), self.free)
        return hit


class OrthancRouter(web.UrlDispatcher):
    """aiohttp's dispatcher, with the search above (built when the application is frozen)."""

    def __init__(self) -> None:
        super().__init__()
        self._buckets: dict[str, _Bucket] | None = None

    def freeze(self) -> None:
        super().freeze()
        index: dict[str, list[AbstractResource]] | None = getattr(self, "_resource_index", None)
        if index is not None and not getattr(self, "_matched_sub_app_resources", None):
            self._buckets = {key: _Bucket(resources) for key, resources in index.items()}

    async def resolve(self, request: web.Request) -> UrlMappingMatchInfo:
        buckets = self._buckets
        if buckets is not None:
            path = request.rel_url.path_safe
            part = path
            while part:
                bucket = buckets.get(part)
                if bucket is not None:
                    for resource in bucket.candidates(path):
                        match, _allowed = await resource.resolve(request)
                        if match is not None:
                            return match
                if part == "/":
                    break
                part = part.rpartition("/")[0] or "/"
        return await super().resolve(request)  # not found, wrong method: as aiohttp answers


def application(**kwargs: Any) -> web.Application:
    """`web.Application(**kwargs)` with the OrthancRouter (`router=` is marked deprecated by
    aiohttp, which offers no other way to a custom dispatcher; its own is used if refused)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return web.Application(router=OrthancRouter(), **kwargs)
        except TypeError:
            return web.Application(**kwargs)
