"""OrthancRouter picks, for every route of the real application, the route aiohttp's own search
picks (same handler, same variables), and leaves 404/405 to aiohttp."""

from __future__ import annotations

import asyncio
import re

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from orthanc_py.app import build_app
from orthanc_py.web.router import OrthancRouter

ID = "8f0dd56c-6dc37c73-a4849308-1c5911e8-0273d3cd"


def _concrete(canonical: str) -> list[str]:
    """Paths a route's pattern matches (variables replaced by an Orthanc id, a word, a number;
    free-form tails by one and two components)."""
    out = set()
    for value in (ID, "file"):
        path = re.sub(r"\{[^}:]+\}", value, canonical)
        for tail in ("x", "a/b"):
            out.add(re.sub(r"\{[^}]*:[^}]*\}", tail, path))
    return sorted(out)


def _key(info: object) -> object:
    error = getattr(info, "http_exception", None)
    if error is not None:
        return type(error), sorted(getattr(error, "allowed_methods", ()))
    return getattr(info, "route", None), dict(info)  # type: ignore[call-overload]


async def _mismatches(app: web.Application, requests: list[tuple[str, str]]) -> list[tuple[str, str]]:
    router = app.router
    assert isinstance(router, OrthancRouter)
    bad = []
    for method, path in requests:
        request = make_mocked_request(method, path, app=app)
        if _key(await router.resolve(request)) != _key(await web.UrlDispatcher.resolve(router, request)):
            bad.append((method, path))
    return bad


def test_every_route_resolves_as_aiohttp_does(server):
    app = build_app(server.ctx)
    app.freeze()
    canonicals = {r.canonical for r in app.router.resources()}
    assert len(canonicals) > 300
    paths = [p for c in sorted(canonicals) for p in _concrete(c)]
    paths += ["/", "/nothing", "/instances/", f"/instances/{ID}/", f"/instances/{ID}/nope", "/tools/nope/deeper"]
    requests = [(m, p) for p in paths for m in ("GET", "POST", "PUT", "DELETE")]
    assert len(requests) > 2000
    assert asyncio.run(_mismatches(app, requests)) == []


def test_search_is_narrowed(server):
    """A GET /instances/{id} tries one route, not every /instances/{id}/... route."""
    app = build_app(server.ctx)
    app.freeze()
    buckets = app.router._buckets  # type: ignore[attr-defined]
    bucket = buckets["/instances"]
    assert sum(len(g) for g in bucket.groups.values()) > 20
    assert len(bucket.candidates(f"/instances/{ID}")) <= 2
    assert len(bucket.candidates(f"/instances/{ID}/file")) <= 3
