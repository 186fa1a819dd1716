"""REST areas whose module is imported when one of their routes is first called.

Most servers never call the routes of modification, archives, WebDAV, modalities, peers, jobs,
attachments, metadata and the like, yet importing their modules (and the core modules only they
use) costs ~1.6 MB of an idle server's memory. Each such area's routes are declared up front in
`rest/routes.py` (generated from the area's own `setup`, and checked against it by
tests/unit/test_lazy_routes.py): at start-up the same router calls are made, in the same order,
with a small handler per route that, on its first call, imports the module, runs its `setup` on a
`RecordingRouter` to get the real handlers, and from then on hands each request to its real
handler. The router is the same as when the modules are imported at start (same resources,
methods, order), so matching, 404 and 405 answers do not change.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# One router call of an area's `setup`: ("add_get" | "add_post" | "add_put" | "add_delete", path),
# ("add_resource", pattern) or ("add_route", index of the add_resource call among the calls, method).
Call = tuple[Any, ...]

_ADDS = ("add_get", "add_post", "add_put", "add_delete")


class _RecordedResource:
    def __init__(self, router: RecordingRouter, index: int) -> None:
        self.router, self.index = router, index

    def add_route(self, method: str, handler: Handler) -> None:
        self.router.record(("add_route", self.index, method), handler)


class RecordingRouter:
    """Takes the calls an area's `setup` makes on the router: `calls`, and the handler of each
    call that adds a route (`handlers`, None for add_resource)."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.handlers: list[Handler | None] = []

    def record(self, call: Call, handler: Handler | None) -> None:
        self.calls.append(call)
        self.handlers.append(handler)

    def __getattr__(self, name: str) -> Any:
        if name not in _ADDS:
            raise AttributeError(f"a lazily imported REST area's setup may not call router.{name}")

        def add(path: str, handler: Handler, **kwargs: Any) -> None:
            if kwargs:
                raise TypeError(f"router.{name}({path!r}, ...): keyword arguments are not recorded")
            self.record((name, path), handler)

        return add

    def add_resource(self, pattern: str, **kwargs: Any) -> _RecordedResource:
        if kwargs:
            raise TypeError(f"router.add_resource({pattern!r}, ...): keyword arguments are not recorded")
        self.record(("add_resource", pattern), None)
        return _RecordedResource(self, len(self.calls) - 1)


def recorded(module: ModuleType) -> RecordingRouter:
    """The router calls of `module.setup`."""
    router = RecordingRouter()
    module.setup(router)
    return router


class LazyArea:
    """One REST module, imported on the first call of one of its routes (see the module doc)."""

    def __init__(self, module: str, calls: tuple[Call, ...]) -> None:
        self.module, self.calls = module, calls
        self._handlers: list[Handler | None] | None = None

    def register(self, router: web.UrlDispatcher) -> None:
        """Make the area's router calls, each route with a handler that loads the area first."""
        resources: dict[int, Any] = {}
        for i, call in enumerate(self.calls):
            if call[0] == "add_resource":
                resources[i] = router.add_resource(call[1])
            elif call[0] == "add_route":
                resources[call[1]].add_route(call[2], self._handler(i))
            else:
                getattr(router, call[0])(call[1], self._handler(i))

    def _handler(self, i: int) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            handler = self._handlers[i] if self._handlers is not None else self._load()[i]
            assert handler is not None
            return await handler(request)

        return handle

    def _load(self) -> list[Handler | None]:
        """Import the module and take its handlers, which must come from the declared calls."""
        router = recorded(importlib.import_module(self.module))
        if tuple(router.calls) != self.calls:
            raise RuntimeError(f"the routes of {self.module} differ from rest/routes.py (regenerate it)")
        self._handlers = router.handlers
        return router.handlers


def job_factory_on_first_use(jobs: Any, job_type: str, register: Callable[[], None]) -> Callable[[dict[str, Any]], Any]:
    """A job factory for `jobs.register(job_type, ...)` that first runs `register` (which imports
    the module of that job type and registers its real factory), then builds with the real one."""

    def build(spec: dict[str, Any]) -> Any:
        register()
        factory = jobs.factory(job_type)
        if factory is None or factory is build:
            raise RuntimeError(f"no factory registered for {job_type} jobs")
        return factory(spec)

    return build
