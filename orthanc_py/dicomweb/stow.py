"""STOW-RS (PS3.18 10.5): multipart/related of application/dicom parts (boundary quoted or not,
`type` present or not) or a single application/dicom body, each part through the one ingest path.
Answer as the Azure DICOM service does: 200 all stored, 202 some failed, 409 none stored."""

from __future__ import annotations

from typing import Any

from aiohttp import BodyPartReader, web

from ..core import ingest
from ..core.ingest import Origin, StoreStatus
from ..errors import ErrorCode, OrthancError
from ..model import maintags as mt
from ..model.enums import ResourceType
from ..model.parsing import parse
from ..web.appkeys import ctx_of
from ..web.responses import json_bytes

PROCESSING_FAILURE = 0xC000  # 49152
STUDY_MISMATCH = 43265  # the instance is not part of the study in the URL
ALREADY_EXISTS = 45070


def _ref(sop_class: str, sop_uid: str, url: str | None = None, reason: int | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "00081150": {"vr": "UI", "Value": [sop_class]} if sop_class else {"vr": "UI"},
        "00081155": {"vr": "UI", "Value": [sop_uid]} if sop_uid else {"vr": "UI"},
    }
    if url is not None:
        item["00081190"] = {"vr": "UR", "Value": [url]}
    if reason is not None:
        item["00081197"] = {"vr": "US", "Value": [reason]}
    return item


async def _parts(request: web.Request) -> Any:
    """The DICOM payloads of the request, one by one (multipart read part by part)."""
    ctype = request.headers.get("Content-Type", "")
    if ctype.lower().startswith("multipart/") and "boundary=" not in ctype.lower():
        # "Content-Type: multipart/related" without a boundary (accepted by the Azure DICOM
        # service): the boundary is the body's first line.
        for payload in _split_without_boundary(await request.read()):
            yield payload
        return
    if ctype.lower().startswith("multipart/"):
        try:
            reader = await request.multipart()
        except Exception as exc:
            raise OrthancError(ErrorCode.BAD_REQUEST, f"Bad multipart body: {exc}") from exc
        while True:
            try:
                part = await reader.next()
            except Exception as exc:
                raise OrthancError(ErrorCode.BAD_REQUEST, f"Bad multipart body: {exc}") from exc
            if part is None:
                return
            if isinstance(part, BodyPartReader):
                yield bytes(await part.read(decode=True))
    elif ctype.split(";")[0].strip().lower() in ("application/dicom", "application/octet-stream", ""):
        yield await request.read()
    else:
        raise OrthancError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"STOW-RS expects multipart/related or application/dicom, not {ctype}",
            http_status=415,
        )


def _split_without_boundary(body: bytes) -> list[bytes]:
    first, _, _rest = body.partition(b"\r\n")
    if not first.startswith(b"--") or len(first) < 3:
        raise OrthancError(ErrorCode.BAD_REQUEST, "Bad multipart body: no boundary")
    delimiter = b"\r\n" + first
    parts = []
    for chunk in (b"\r\n" + body).split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        _headers, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise OrthancError(ErrorCode.BAD_REQUEST, "Bad multipart body: a part has no headers end")
        parts.append(content)
    return parts


def _stow(prefix: str) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        ctx = ctx_of(request)
        only_study = request.match_info.get("study")
        base = f"{request.scheme}://{request.host}{prefix}"
        origin = Origin("RestApi", remote_ip=request.remote or "")
        stored: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        studies: set[str] = set()
        async for data in _parts(request):
            try:
                parsed = await ctx.run(parse, data)
                study_uid = parsed.main_tags[ResourceType.STUDY].get(mt.STUDY_INSTANCE_UID, "")
                series_uid = parsed.main_tags[ResourceType.SERIES].get(mt.SERIES_INSTANCE_UID, "")
                sop_uid = parsed.main_tags[ResourceType.INSTANCE].get(mt.SOP_INSTANCE_UID, "")
                if only_study is not None and study_uid != only_study:
                    failed.append(_ref(parsed.sop_class_uid, sop_uid, reason=STUDY_MISMATCH))
                    continue
                result = await ingest.store(ctx, data, origin)
            except OrthancError:
                failed.append(_ref("", "", reason=PROCESSING_FAILURE))
                continue
            url = f"{base}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"
            if result.status is StoreStatus.ALREADY_STORED:
                failed.append(_ref(parsed.sop_class_uid, sop_uid, reason=ALREADY_EXISTS))
                continue
            studies.add(study_uid)
            stored.append(_ref(parsed.sop_class_uid, sop_uid, url))
        body: dict[str, Any] = {}
        if len(studies) == 1 or only_study is not None:
            body["00081190"] = {"vr": "UR", "Value": [f"{base}/studies/{only_study or next(iter(studies))}"]}
        if stored:
            body["00081199"] = {"vr": "SQ", "Value": stored}
        if failed:
            body["00081198"] = {"vr": "SQ", "Value": failed}
        status = 200 if not failed else (202 if stored else 409)
        return web.Response(status=status, body=json_bytes(body), content_type="application/dicom+json")

    return handler


def setup(router: web.UrlDispatcher, prefix: str) -> None:
    router.add_post(prefix + "/studies", _stow(prefix))
    router.add_post(prefix + "/studies/{study}", _stow(prefix))
