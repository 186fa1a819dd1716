"""Routes shared by the four levels: /patients, /studies, /series, /instances, their relatives,
statistics, protection, ordered slices (tags read from files: tags.py; metadata and labels:
metadata.py). The level is a parameter, not a copy."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..core import content as core_content
from ..core import resources as core_res
from ..core.context import ServerContext
from ..core.resources import ResourceInfo
from ..errors import ErrorCode, OrthancError
from ..model.enums import ResourceType
from ..web import lanec
from ..web.fastlane import FastAnswer, FastRoute
from ..web.responses import JSON_HEAD, bool_arg, json_bytes, json_response, read_text, text_response
from .common import ctx_of, empty_404, since_limit, tag_format
from .render import MAIN_NAMES, resource_json, resource_statistics_json, resources_json
from .tags import requested_tags_arg, requested_values
from .tags import setup as setup_tags

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def render_infos(
    request: web.Request,
    infos: list[ResourceInfo],
    requested: list[int] | None,
    fmt: str,
    content: list[str] | None = None,
) -> list[dict[str, Any]]:
    if requested is None:
        if content is None:
            return resources_json(infos, fmt)
        return [resource_json(i, fmt, None, content) for i in infos]
    values = await requested_values(request, infos, requested, fmt)
    return [resource_json(i, fmt, v, content) for i, v in zip(infos, values, strict=True)]


def _level_handlers(level: ResourceType) -> dict[str, Handler]:
    async def list_all(request: web.Request) -> web.StreamResponse:
        ctx = ctx_of(request)
        expanded = bool_arg(request, "expand")  # Orthanc 1.12.2+: "?expand=false" too
        since, limit = since_limit(request)
        result = await core_res.list_level(ctx, level, since, limit, expanded)
        if not expanded:
            return json_response(result)
        requested = requested_tags_arg(request)
        return json_response(await render_infos(request, result, requested, tag_format(request)))  # type: ignore[arg-type]

    async def get_one(request: web.Request) -> web.StreamResponse:
        try:
            info = await core_res.get(ctx_of(request), request.match_info["id"], level)
        except OrthancError as err:
            if err.code is ErrorCode.UNKNOWN_RESOURCE:
                return empty_404()
            raise
        if not request.query_string:  # the common case: no options to read
            return json_response(resource_json(info))  # as fast_get answers it
        requested = requested_tags_arg(request)
        return json_response((await render_infos(request, [info], requested, tag_format(request)))[0])

    async def delete_one(request: web.Request) -> web.StreamResponse:
        try:
            deletion = await core_res.delete(ctx_of(request), request.match_info["id"], level)
        except OrthancError as err:
            if err.code is ErrorCode.UNKNOWN_RESOURCE:
                return empty_404()
            raise
        remaining = None
        if deletion.remaining_ancestor is not None:
            lv, pid = deletion.remaining_ancestor
            remaining = {"ID": pid, "Path": f"/{lv.plural}/{pid}", "Type": lv.label}
        return json_response({"RemainingAncestor": remaining})

    async def statistics(request: web.Request) -> web.StreamResponse:
        s = await core_res.statistics(ctx_of(request), request.match_info["id"], level)
        return json_response(resource_statistics_json(level, s))

    return {"list": list_all, "get": get_one, "delete": delete_one, "statistics": statistics}


def fast_get(ctx: ServerContext, level: ResourceType) -> FastRoute:
    """GET /{level}/{id} in the HTTP fast lane: `get_one`'s answer to a plain request (the
    first read of a patient, study or instance rendered in C where that is possible)."""
    closers = lanec.Closers()
    fast = lanec.resource_route(
        core_res.lane_resource_source(ctx, level, closers), closers, int(level), _c_names(ctx, level)
    )

    def route(public_id: str, accept: str | None) -> FastAnswer | None:
        try:
            return JSON_HEAD, core_res.rendered_now(ctx, public_id, level, _fast_body, fast)
        except (OrthancError, BlockingIOError):
            return None

    return route


def _c_names(ctx: ServerContext, level: ResourceType) -> dict[int, tuple[bytes, int]]:
    """The names of main tags as `resource_json` gives them (render.MAIN_NAMES), and where a
    study's tags go (its own, its patient's copy: core.resources._split_study_tags)."""
    if level is not ResourceType.STUDY:
        return {tag: (name.encode(), lanec.MAIN) for tag, name in MAIN_NAMES.items()}
    study, patient = ctx.main_tags.study_and_patient
    return {
        tag: (name.encode(), (lanec.MAIN if tag in study else 0) | (lanec.PATIENT_COPY if tag in patient else 0))
        for tag, name in MAIN_NAMES.items()
    }


def _fast_body(info: ResourceInfo) -> bytes:
    return json_bytes(resource_json(info))


def _relative_handler(level: ResourceType, target: ResourceType) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        ctx = ctx_of(request)
        if target > level and not bool_arg(request, "expand", True):  # children, ?expand=false (1.12.2+)
            return json_response(await core_res.relatives(ctx, request.match_info["id"], level, target, expanded=False))
        infos = await core_res.relatives(ctx, request.match_info["id"], level, target, expanded=True)
        requested = requested_tags_arg(request)
        rendered = await render_infos(request, infos, requested, tag_format(request))  # type: ignore[arg-type]
        if target < level:  # a parent is answered as an object, children as a list
            if not rendered:
                raise core_res.unknown(request.match_info["id"])
            return json_response(rendered[0])
        return json_response(rendered)

    return handler


async def patient_protected(request: web.Request) -> web.StreamResponse:
    protected = await core_content.is_protected(ctx_of(request), request.match_info["id"])
    return text_response("1" if protected else "0")


async def set_patient_protected(request: web.Request) -> web.StreamResponse:
    body = await read_text(request)
    if body not in ("0", "1"):
        raise OrthancError(ErrorCode.BAD_REQUEST, "Expected 0 or 1")
    await core_content.set_protected(ctx_of(request), request.match_info["id"], body == "1")
    return text_response("")


_RELATIVE_NAMES = {
    ResourceType.PATIENT: "patient",
    ResourceType.STUDY: "study",
    ResourceType.SERIES: "series",
    ResourceType.INSTANCE: "instances",
}
_CHILD_NAMES = {
    ResourceType.STUDY: "studies",
    ResourceType.SERIES: "series",
    ResourceType.INSTANCE: "instances",
}


def _floats(text: str | None, n: int) -> list[float] | None:
    if not text:
        return None
    try:
        values = [float(v) for v in text.split("\\")]
    except ValueError:
        return None
    return values if len(values) == n else None


@dataclass
class _Slice:
    id: str
    pos: list[float] | None
    ori: list[float] | None
    index: int | None
    frames: int
    key: float = 0.0


async def slice_order(ctx: ServerContext, series_id: str) -> tuple[list[_Slice], bool]:
    """The instances of a series in Orthanc's slice order (SliceOrdering), and whether they
    form a volume: sorted along the slice normal when every one has a position and a parallel
    orientation, else by IndexInSeries (CannotOrderSlices when some have none)."""
    infos = await core_res.relatives(ctx, series_id, ResourceType.SERIES, ResourceType.INSTANCE)
    items: list[_Slice] = []
    for info in infos:
        assert isinstance(info, ResourceInfo)
        tags = info.main_tags
        frames = _floats(tags.get(0x00280008), 1)
        items.append(
            _Slice(
                info.public_id,
                _floats(tags.get(0x00200032), 3),
                _floats(tags.get(0x00200037), 6),
                info.index_in_series,
                int(frames[0]) if frames else 1,
            )
        )
    volume = False
    if len(items) > 1 and all(i.pos and i.ori for i in items):
        normals = [_normal(i.ori) for i in items if i.ori]
        n0 = normals[0]
        if all(abs(abs(_dot(n, n0)) - 1.0) < 1e-6 for n in normals):
            for i in items:
                i.key = _dot(n0, i.pos or [0.0, 0.0, 0.0])
            items.sort(key=lambda i: i.key)
            volume = all(b.key - a.key > 1e-6 for a, b in itertools.pairwise(items))
    if not volume:
        if not items or any(i.index is None for i in items):
            raise OrthancError(ErrorCode.CANNOT_ORDER_SLICES)
        items.sort(key=lambda i: i.index or 0)
    return items, volume


async def ordered_slices(request: web.Request) -> web.StreamResponse:
    """GET /series/{id}/ordered-slices: instances sorted along the slice normal when every one
    has a position and a parallel orientation ("Volume"), else by IndexInSeries ("Sequence")."""
    items, volume = await slice_order(ctx_of(request), request.match_info["id"])
    return json_response(
        {
            "Dicom": [f"/instances/{i.id}/file" for i in items],
            "Slices": [f"/instances/{i.id}/frames/{f}" for i in items for f in range(i.frames)],
            "SlicesShort": [[i.id, 0, i.frames] for i in items],
            "Type": "Volume" if volume else "Sequence",
        }
    )


def _normal(o: list[float]) -> tuple[float, float, float]:
    r, c = o[:3], o[3:]
    return (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])


def _dot(a: tuple[float, ...] | list[float], b: tuple[float, ...] | list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def setup(router: web.UrlDispatcher) -> None:
    router.add_get("/series/{id}/ordered-slices", ordered_slices)
    for level in ResourceType:
        base = f"/{level.plural}"
        h = _level_handlers(level)
        router.add_get(base, h["list"])
        router.add_get(base + "/{id}", h["get"])
        router.add_delete(base + "/{id}", h["delete"])
        router.add_get(base + "/{id}/statistics", h["statistics"])
        for target in ResourceType:
            if target == level:
                continue
            name = _RELATIVE_NAMES[target] if target < level else _CHILD_NAMES[target]
            router.add_get(f"{base}/{{id}}/{name}", _relative_handler(level, target))
    router.add_get("/patients/{id}/protected", patient_protected)
    router.add_put("/patients/{id}/protected", set_patient_protected)
    setup_tags(router)
