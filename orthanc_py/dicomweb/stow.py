"""STOW-RS (PS3.18 10.5): multipart/related of application/dicom parts (boundary quoted or not,
`type` present or not) or a single application/dicom body, each part through the one ingest path.
Answer as the Azure DICOM service does: 200 all stored, 202 some failed, 409 none stored."""

from __future__ import annotations

import asyncio
import base64
import logging
import quopri
import zlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ..core import ingest
from ..core.ingest import Origin, StoreStatus, StudyMismatch
from ..errors import ErrorCode, OrthancError
from ..model import maintags as mt
from ..model.enums import ResourceType
from ..web.appkeys import ctx_of
from ..web.responses import json_bytes, read_body
from .headers import public_base

PROCESSING_FAILURE = 0xC000  # 49152
OUT_OF_RESOURCES = 0xA700  # 42752: the storage is full or cannot be written
STUDY_MISMATCH = 43265  # the instance is not part of the study in the URL
ALREADY_EXISTS = 45070
log = logging.getLogger("orthanc_py.stow")


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
        async for payload in _multipart(request.content, _boundary(ctype)):
            yield payload
    elif ctype.split(";")[0].strip().lower() in ("application/dicom", "application/octet-stream", ""):
        yield await read_body(request)
    else:
        raise OrthancError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"STOW-RS expects multipart/related or application/dicom, not {ctype}",
            http_status=415,
        )


def _bad(details: str) -> OrthancError:
    return OrthancError(ErrorCode.BAD_REQUEST, f"Bad multipart body: {details}")


def _boundary(ctype: str) -> bytes:
    for param in ctype.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "boundary":
            value = value.strip().strip('"')
            if value:
                return value.encode("latin-1")
    raise _bad("no boundary")


_MAX_PART_HEADERS = 64 * 1024


async def _multipart(stream: Any, boundary: bytes) -> AsyncIterator[bytes]:
    """The part bodies of a multipart stream, one at a time (memory holds one part and what the
    client sent ahead). Read in the chunks the connection delivers and searched with bytes.find:
    aiohttp's reader scans 8 KiB at a time in Python, a quarter of STOW-RS's CPU per instance."""
    delimiter = b"--" + boundary
    marker = b"\r\n" + delimiter
    buf = bytearray()

    async def more(what: str) -> None:
        chunk = await stream.readany()
        if not chunk:
            raise _bad(what)
        buf.extend(chunk)

    while True:  # preamble: the body may start with the delimiter itself
        if len(buf) >= len(delimiter) and buf.startswith(delimiter):
            start = 0
            break
        found = buf.find(marker)
        if found >= 0:
            start = found + 2
            break
        await more("no boundary delimiter")
    del buf[: start + len(delimiter)]
    while True:
        while len(buf) < 2:
            await more("truncated after a delimiter")
        if buf[:2] == b"--":  # close delimiter: drain the epilogue
            while await stream.readany():
                pass
            return
        head_end = buf.find(b"\r\n\r\n")
        while head_end < 0:
            if len(buf) > _MAX_PART_HEADERS:
                raise _bad("part headers too long")
            await more("truncated part headers")
            head_end = buf.find(b"\r\n\r\n")
        headers = bytes(buf[:head_end]).decode("latin-1").lower()
        del buf[: head_end + 4]
        searched = 0
        while True:
            end = buf.find(marker, searched)
            if end < 0:
                searched = max(searched, len(buf) - len(marker) + 1)
                await more("truncated part")
                continue
            while len(buf) < end + len(marker) + 2:
                await more("truncated part")
            after = buf[end + len(marker) : end + len(marker) + 2]
            if after in (b"\r\n", b"--") or after[:1] in (b" ", b"\t"):
                break
            searched = end + 1  # "--boundary" followed by more text is not a delimiter (RFC 2046)
        body = bytes(memoryview(buf)[:end])
        del buf[: end + len(marker)]
        yield _decoded(headers, body)


def _decoded(headers: str, body: bytes) -> bytes:
    """A part's body without its transfer or content encoding (rare in STOW-RS, but allowed)."""
    fields = dict(line.partition(":")[::2] for line in headers.split("\r\n") if ":" in line)
    transfer = fields.get("content-transfer-encoding", "").strip()
    if transfer == "base64":
        try:
            body = base64.b64decode(body)
        except ValueError as exc:  # binascii.Error
            raise _bad("a base64 part does not decode") from exc
    elif transfer == "quoted-printable":
        body = quopri.decodestring(body)
    encoding = fields.get("content-encoding", "").strip()
    if encoding in ("gzip", "deflate"):
        try:
            body = zlib.decompress(body, 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
        except zlib.error as exc:
            raise _bad(f"cannot {encoding}-decode a part") from exc
    return body


_UID_TAGS = {
    ResourceType.STUDY: mt.STUDY_INSTANCE_UID,
    ResourceType.SERIES: mt.SERIES_INSTANCE_UID,
    ResourceType.INSTANCE: mt.SOP_INSTANCE_UID,
}


def _uid(parsed: Any, level: ResourceType) -> str:
    return str(parsed.main_tags[level].get(_UID_TAGS[level], ""))


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
        base = public_base(request, prefix)
        origin = Origin("RestApi", remote_ip=request.remote or "")
        stored: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        studies: set[str] = set()
        # Parts are read while earlier ones are being stored (a few in flight), and answered in order.
        limit = asyncio.Semaphore(4)

        async def one(data: bytes) -> tuple[str, dict[str, Any], str]:
            try:
                result = await ingest.store(ctx, data, origin, only_study)
            except StudyMismatch as err:
                p = err.parsed
                return "failed", _ref(p.sop_class_uid, _uid(p, ResourceType.INSTANCE), reason=STUDY_MISMATCH), ""
            except OrthancError as err:
                out_of_resources = err.code in (ErrorCode.FULL_STORAGE, ErrorCode.FILE_STORAGE_CANNOT_WRITE)
                return "failed", _ref("", "", reason=OUT_OF_RESOURCES if out_of_resources else PROCESSING_FAILURE), ""
            except Exception:  # never lose the answer for the other parts
                log.exception("STOW-RS: cannot store a part")
                return "failed", _ref("", "", reason=PROCESSING_FAILURE), ""
            finally:
                limit.release()
            p = result.parsed
            study_uid = _uid(p, ResourceType.STUDY)
            sop_uid = _uid(p, ResourceType.INSTANCE)
            if result.status is StoreStatus.ALREADY_STORED:
                return "failed", _ref(p.sop_class_uid, sop_uid, reason=ALREADY_EXISTS), ""
            url = f"{base}/studies/{study_uid}/series/{_uid(p, ResourceType.SERIES)}/instances/{sop_uid}"
            return "stored", _ref(p.sop_class_uid, sop_uid, url), study_uid

        tasks = []
        async for data in _parts(request):
            await limit.acquire()
            tasks.append(asyncio.ensure_future(one(data)))
        for kind, ref, study_uid in await asyncio.gather(*tasks):
            (stored if kind == "stored" else failed).append(ref)
            if study_uid:
                studies.add(study_uid)
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
