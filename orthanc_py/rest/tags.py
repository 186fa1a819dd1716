"""DICOM tags of resources as their files hold them: /shared-tags, /instances-tags, /module,
/module-patient, the `?requested-tags` of answers, and the options of tag renderings
(`?simplify`, `?short`, `?ignore-length`...)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..core import dicomfind as core_dicomfind
from ..core import extramain as core_extramain
from ..core import files as core_files
from ..core.context import ServerContext
from ..core.resources import ResourceInfo
from ..errors import ErrorCode, OrthancError
from ..model.dictionary import TagDictionary
from ..model.dictionary import parse_tag as dictionary_tag
from ..model.enums import ResourceType
from ..model.lookup import parse_tag
from ..model.modules import MODULE_TAGS
from ..model.tagtext import TagsOptions, simplify_full
from ..web.responses import bool_arg, json_bytes, json_response
from .common import ctx_of
from .render import tags_json

if TYPE_CHECKING:
    pass

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def requested_tags_arg(request: web.Request) -> list[int] | None:
    """`?requested-tags=0010,0010;PatientBirthDate` (or `requestedTags`, its pre-1.12 spelling)."""
    text = request.query.get("requested-tags")
    if text is None:
        text = request.query.get("requestedTags")
    return parse_requested_tags(text, ctx_of(request).dictionary)


def parse_requested_tags(text: str | None, dictionary: TagDictionary | None = None) -> list[int] | None:
    """`requested-tags=0010,0010;PatientBirthDate` -> tags, names as Orthanc knows them (DCMTK's
    dictionary and the `Dictionary` key); BAD_REQUEST on an unknown name."""
    if not text:
        return None
    out = []
    for part in text.split(";"):
        if part.strip():
            try:
                out.append(dictionary_tag(part.strip(), dictionary))
            except ValueError:
                try:
                    out.append(parse_tag(part))
                except ValueError as exc:
                    raise OrthancError(ErrorCode.BAD_REQUEST, f"Unknown DICOM tag: {part}") from exc
    return out


def _file_tags(ctx: Any, info: ResourceInfo) -> dict[str, Any]:
    """Worker thread: the full tags of one instance of the resource (Orthanc reads the file for
    requested tags that are not main tags)."""
    from ..model import orthancjson

    ds = core_dicomfind.representative_dataset_blocking(ctx, info.id, info.level)
    options = TagsOptions(ctx.dictionary, ctx.default_encoding)
    return orthancjson.orthanc_tags(ds, "full", options) if ds is not None else {}


async def requested_values(
    request: web.Request, infos: list[ResourceInfo], tags: list[int], fmt: str
) -> list[dict[str, Any]]:
    """`RequestedTags` of each resource (lists, single resources, /tools/find), rendered in the
    answer's format: main tags of the resource and its ancestors and the tags Orthanc computes
    come from the index (`core.dicomfind.index_values`), the others from the DICOM file of one of
    its instances.  A tag with no value anywhere is left out.  As Orthanc 1.12.5, a computed tag
    is only given at the level that computes it (`core.dicomfind.computed_at`): elsewhere it is
    left out, except that a count is taken from the file when the file is read for other tags."""

    ctx = ctx_of(request)
    known: dict[int, dict[int, str | None]] = {}
    missing: dict[int, list[int]] = {}
    stray: dict[ResourceType, list[int]] = {}
    for level in {i.level for i in infos}:
        ids = [i.id for i in infos if i.level is level]
        computed = [t for t in tags if t in core_dicomfind.COMPUTED_TAGS]
        elsewhere = [t for t in computed if not core_dicomfind.computed_at(t, level)]
        stray[level] = [t for t in elsewhere if t in core_dicomfind.COUNT_TAGS]
        wanted = [t for t in tags if t not in elsewhere]
        for rid, found, absent in await core_dicomfind.known_values(ctx, level, ids, wanted):
            known[rid], missing[rid] = found, absent
    sequences = (
        await core_extramain.requested_sequences(ctx, {i.id: i.level for i in infos}, tags)
        if ctx.main_tags.sequences
        else {}
    )
    out = []
    for info in infos:
        values = {t: v for t, v in known.get(info.id, {}).items() if v is not None}
        result = tags_json(values, None, fmt)
        absent = missing.get(info.id, [])
        stored = sequences.get(info.id)
        if stored:  # extra main sequences the index keeps
            result.update(simplify_full(stored, "simplify" if fmt == "human" else fmt))
            absent = [t for t in absent if f"{t >> 16:04x},{t & 0xFFFF:04x}" not in stored]
        if absent:
            absent = absent + stray[info.level]
            rendered = await ctx.run(_file_tags, ctx, info)
            picked = {k: rendered[k] for t in absent if (k := f"{t >> 16:04x},{t & 0xFFFF:04x}") in rendered}
            result.update(simplify_full(picked, "simplify" if fmt == "human" else fmt))
        out.append(result)
    return out


def tags_options(request: web.Request) -> TagsOptions:
    """How this request wants DICOM tags rendered: the server's dictionary and current
    `DefaultEncoding`, `?whole` (tags after the pixel data) and `?ignore-length=tag,tag`."""
    ctx = ctx_of(request)
    ignored: set[int] = set()
    for part in request.query.get("ignore-length", "").split(","):
        if part.strip():
            try:
                ignored.add(dictionary_tag(part.strip(), ctx.dictionary))
            except ValueError as exc:
                raise OrthancError(ErrorCode.UNKNOWN_DICOM_TAG, f"Unknown DICOM tag: {part}") from exc
    return plain_tags_options(ctx, bool_arg(request, "whole"), frozenset(ignored))


def plain_tags_options(ctx: ServerContext, whole: bool = False, ignored: frozenset[int] = frozenset()) -> TagsOptions:
    """The options of a request without arguments (the HTTP fast lane's), or with these."""
    return TagsOptions(ctx.dictionary, ctx.default_encoding, whole, ignored)


def dicom_format(request: web.Request) -> str:
    """`?simplify` / `?short` / default full, for the DICOM-tag routes."""
    if bool_arg(request, "simplify"):
        return "simplify"
    if bool_arg(request, "short"):
        return "short"
    return "full"


async def _rendered(
    request: web.Request,
    level: ResourceType,
    fmt: str,
    options: TagsOptions,
    with_pixels: bool,
    combine: Callable[[list[tuple[str, dict[str, Any]]]], Any],
) -> web.StreamResponse:
    """The tags of the instances of a resource (`with_pixels` False: read as pydicom's
    stop_before_pixels reads them), combined and written as JSON in one worker-thread hop."""
    from ..model import fasttags

    ctx = ctx_of(request)
    found = await core_files.instance_files(ctx, request.match_info["id"], level)

    def render() -> bytes:
        tags = [(f.public_id, fasttags.file_tags(core_files.read(ctx, f), fmt, options, with_pixels)) for f in found]
        return json_bytes(combine(tags))

    return web.Response(body=await ctx.run(render), content_type="application/json", charset="utf-8")


def _shared(fmt: str) -> Callable[[list[tuple[str, dict[str, Any]]]], dict[str, Any]]:
    def combine(rendered: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
        shared: dict[str, Any] | None = None
        for _pub, tags in rendered:
            if shared is None:
                shared = {k: v for k, v in tags.items() if v.get("Type") == "String"}
            else:
                shared = {k: v for k, v in shared.items() if tags.get(k) == v}
        return _reformat(shared or {}, fmt)

    return combine


def _shared_tags_handler(level: ResourceType) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        fmt = dicom_format(request)
        options = tags_options(request)
        return await _rendered(request, level, "full", options, False, _shared(fmt))

    return handler


def _reformat(full: dict[str, Any], fmt: str) -> dict[str, Any]:
    """Convert Orthanc's full tag JSON into ?simplify / ?short."""
    return simplify_full(full, fmt)


def _instances_tags_handler(level: ResourceType) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        fmt = dicom_format(request)
        options = tags_options(request)
        return await _rendered(request, level, fmt, options, True, dict)

    return handler


def _module_handler(level: ResourceType, module: ResourceType) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        from ..model import fasttags

        fmt = dicom_format(request)
        ctx = ctx_of(request)
        found = await core_files.instance_files(ctx, request.match_info["id"], level, first_only=True)
        if not found:
            return json_response({})
        options = tags_options(request)
        wanted = MODULE_TAGS[module]

        def render() -> bytes:
            tags = fasttags.file_tags(core_files.read(ctx, found[0]), "full", options, with_pixels=False)
            picked = {k: v for k, v in tags.items() if parse_tag(k) in wanted}
            return json_bytes(_reformat(picked, fmt) if fmt != "full" else picked)

        return web.Response(body=await ctx.run(render), content_type="application/json", charset="utf-8")

    return handler


def setup(router: web.UrlDispatcher) -> None:
    for level in ResourceType:
        base = f"/{level.plural}"
        if level is not ResourceType.INSTANCE:
            router.add_get(base + "/{id}/shared-tags", _shared_tags_handler(level))
            router.add_get(base + "/{id}/instances-tags", _instances_tags_handler(level))
        router.add_get(base + "/{id}/module", _module_handler(level, level))
        if level in (ResourceType.STUDY, ResourceType.SERIES, ResourceType.INSTANCE):
            router.add_get(base + "/{id}/module-patient", _module_handler(level, ResourceType.PATIENT))
