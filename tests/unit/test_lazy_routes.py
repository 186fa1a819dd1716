"""rest/lazy.py: the REST areas imported on first use have the routes their own `setup` makes, and
the router is the same as with every area imported at start-up."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest
from aiohttp import web

from orthanc_py import rest
from orthanc_py.core.jobs import JobsEngine
from orthanc_py.rest.lazy import LazyArea, RecordingRouter, recorded
from orthanc_py.rest.routes import AREAS
from orthanc_py.web.router import application


def _table(app: web.Application) -> list[tuple[str, str, str]]:
    """Every route in the router's order: resource, method, and the resource's kind."""
    return [(r.resource.canonical, r.method, type(r.resource).__name__) for r in app.router.routes()]


def test_declared_routes_are_the_areas_own() -> None:
    """rest/routes.py is current (else: python scripts/gen_lazy_routes.py)."""
    assert set(AREAS) == set(rest.LAZY)
    for name in rest.LAZY:
        assert recorded(importlib.import_module(f"orthanc_py.rest.{name}")).calls == list(AREAS[name]), name


def test_router_is_the_same_as_with_every_area_imported() -> None:
    lazy, eager = application(), application()
    ctx = SimpleNamespace(jobs=JobsEngine())
    rest.setup(lazy, ctx)  # type: ignore[arg-type]
    for name in rest.ORDER:
        importlib.import_module(f"orthanc_py.rest.{name}").setup(eager.router)
    assert len(_table(lazy)) > 300
    assert _table(lazy) == _table(eager)
    assert [r.canonical for r in lazy.router.resources()] == [r.canonical for r in eager.router.resources()]
    for job_type in ("ResourceModification", "SplitStudy", "MergeStudy", "StorageCommitmentScp"):
        assert ctx.jobs.factory(job_type) is not None


def test_an_area_whose_routes_changed_is_refused_on_first_call() -> None:
    area = LazyArea("orthanc_py.rest.jobs", (("add_get", "/jobs-renamed"),))
    with pytest.raises(RuntimeError, match="regenerate"):
        area._load()


def test_recording_refuses_what_it_cannot_replay() -> None:
    router = RecordingRouter()
    with pytest.raises(TypeError):
        router.add_get("/x", lambda request: None, name="x")  # type: ignore[arg-type,return-value]
    with pytest.raises(AttributeError):
        router.add_static("/static", ".")  # type: ignore[attr-defined]
