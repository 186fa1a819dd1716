"""STOW-RS (PS3.18 10.5): multipart/related of application/dicom parts (boundary quoted or not,
`type` present or not) or a single application/dicom body, each part through the one ingest path.
Answer as Orthanc's DICOMweb plugin does under /dicom-web, as the Azure DICOM service does
under its own prefixes."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import quopri
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..core import ingest
from ..core.ingest import Origin, StoreStatus
from ..errors import ErrorCode, OrthancError
from ..model import maintags as mt
from ..model.dicomfile import ParsedInstance
from ..model.enums import ResourceType
from ..web.appkeys import ctx_of
from ..web.responses import json_bytes, read_body
from . import status as stow_status
from .headers import AZURE_PREFIXES, public_base

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
    client sent ahead)."""
    async for _headers, body in multipart_parts(stream, boundary):
        yield body


async def multipart_parts(stream: Any, boundary: bytes) -> AsyncIterator[tuple[str, bytes]]:
    """Each part of a multipart stream as (its headers in lower case, its decoded body). Read in
    the chunks the connection delivers and searched with bytes.find: aiohttp's reader scans
    8 KiB at a time in Python, a quarter of STOW-RS's CPU per instance."""
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
        yield headers, _decoded(headers, body)


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


class _StudyMismatch(Exception):
    """The part belongs to another study than the URL's (nothing stored)."""

    def __init__(self, parsed: ParsedInstance) -> None:
        super().__init__("The instance is not part of the study of the URL")
        self.parsed = parsed


class _MissingTags(Exception):
    """The part lacks one of the UIDs Orthanc's plugin requires (nothing stored)."""

    def __init__(self, parsed: ParsedInstance) -> None:
        super().__init__("Missing a mandatory tag in the DICOM file")
        self.parsed = parsed


def _checks(only_study: str | None, orthanc: bool) -> ingest.Check:
    """What a part must satisfy before it is written: Orthanc's plugin first requires the four
    UIDs (SOP class, SOP instance, series, study), then the study of the URL."""

    def check(parsed: ParsedInstance) -> None:
        if orthanc and not parsed.sop_class_uid:
            raise _MissingTags(parsed)
        if only_study is not None and _uid(parsed, ResourceType.STUDY) != only_study:
            raise _StudyMismatch(parsed)

    return check


def _sop_uids(data: bytes) -> tuple[str, str]:
    """SOP class and instance UIDs of a part the ingest refused ("" when unreadable)."""
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True, specific_tags=[0x00080016, 0x00080018])
        return str(ds.get("SOPClassUID", "") or ""), str(ds.get("SOPInstanceUID", "") or "")
    except Exception:  # anything pydicom cannot read is simply "not DICOM"
        return "", ""


@dataclass(slots=True)
class _Outcome:
    kind: str  # "stored", "failed" (store failed), "conflict" (other study), "bad" (bad syntax)
    ref: dict[str, Any] | None
    study_uid: str = ""  # the study of a part that passed the checks


def _seq(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}


def _orthanc_answer(base: str, outcomes: list[_Outcome]) -> tuple[int, dict[str, Any]]:
    """The answer of Orthanc's DICOMweb plugin (1.19+): FailedSOPSequence only when a part
    failed, ReferencedSOPSequence always (empty or not), the study of the first part that passed
    the checks; 400 for a part that is not DICOM or lacks a UID, else 409 for a part of another
    study, else 400 when every part failed, 202 when some did."""
    body: dict[str, Any] = {"00080005": {"vr": "CS", "Value": ["ISO_IR 192"]}}
    first = next((o.study_uid for o in outcomes if o.study_uid), None)
    if first is not None:
        body["00081190"] = {"vr": "UR", "Value": [f"{base}/studies/{first}"]}
    failed = [o.ref for o in outcomes if o.kind != "stored" and o.ref is not None]
    stored = [o.ref for o in outcomes if o.kind == "stored" and o.ref is not None]
    if failed:
        body["00081198"] = _seq(failed)
    body["00081199"] = _seq(stored)
    kinds = {o.kind for o in outcomes}
    if "bad" in kinds:
        return 400, body
    if "conflict" in kinds:
        return 409, body
    if failed:
        return (202 if stored else 400), body
    return 200, body


def _azure_answer(base: str, outcomes: list[_Outcome], only_study: str | None) -> tuple[int, dict[str, Any]]:
    """The Azure DICOM service's answer: 200 all stored, 202 some failed, 409 none stored; a
    sequence only when it has items."""
    stored = [o.ref for o in outcomes if o.kind == "stored" and o.ref is not None]
    failed = [o.ref for o in outcomes if o.kind != "stored" and o.ref is not None]
    studies = {o.study_uid for o in outcomes if o.kind == "stored"}
    body: dict[str, Any] = {}
    if len(studies) == 1 or only_study is not None:
        body["00081190"] = {"vr": "UR", "Value": [f"{base}/studies/{only_study or next(iter(studies))}"]}
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": stored}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    return (200 if not failed else (202 if stored else 409)), body


def _stow(prefix: str) -> Any:
    """Under Orthanc's prefix (/dicom-web) the answers are those of Orthanc's DICOMweb plugin;
    under the Azure prefixes (/v1, /v2, /dicom-web/v1, /dicom-web/v2), those of the Azure
    DICOM service (statuses 202/409, reasons 43265 and 45070)."""
    orthanc = prefix not in AZURE_PREFIXES

    async def handler(request: web.Request) -> web.StreamResponse:
        ctx = ctx_of(request)
        only_study = request.match_info.get("study")
        base = public_base(request, prefix)
        origin = Origin("RestApi", remote_ip=request.remote or "")
        check = _checks(only_study, orthanc)
        # Parts are read while earlier ones are being stored (a few in flight), and answered in order.
        limit = asyncio.Semaphore(4)

        async def one(data: bytes) -> _Outcome:
            try:
                result = await ingest.store(ctx, data, origin, check)
            except _StudyMismatch as err:
                p = err.parsed
                reason = stow_status.study_mismatch_reason(orthanc)
                return _Outcome("conflict", _ref(p.sop_class_uid, _uid(p, ResourceType.INSTANCE), reason=reason))
            except _MissingTags:  # no SOP class UID: Orthanc lists no failed item
                return _Outcome("bad", None)
            except OrthancError as err:
                reason = stow_status.failure_reason(err, orthanc)
                if orthanc:
                    sop_class, sop = await ctx.run(_sop_uids, data)
                    if stow_status.storage_failed(err):
                        return _Outcome("failed", _ref(sop_class, sop, reason=reason))
                    # not DICOM, or a required UID is missing: an item only when both SOP UIDs are known
                    return _Outcome("bad", _ref(sop_class, sop, reason=reason) if sop_class and sop else None)
                return _Outcome("failed", _ref("", "", reason=reason))
            except Exception as exc:  # never lose the answer for the other parts
                log.exception("STOW-RS: cannot store a part")
                return _Outcome("failed", _ref("", "", reason=stow_status.failure_reason(exc, orthanc)))
            finally:
                limit.release()
            p = result.parsed
            study_uid = _uid(p, ResourceType.STUDY)
            sop_uid = _uid(p, ResourceType.INSTANCE)
            if result.status is StoreStatus.ALREADY_STORED and not orthanc:
                return _Outcome("failed", _ref(p.sop_class_uid, sop_uid, reason=stow_status.ALREADY_EXISTS))
            url = f"{base}/studies/{study_uid}/series/{_uid(p, ResourceType.SERIES)}/instances/{sop_uid}"
            return _Outcome("stored", _ref(p.sop_class_uid, sop_uid, url), study_uid)

        tasks = []
        async for data in _parts(request):
            await limit.acquire()
            tasks.append(asyncio.ensure_future(one(data)))
        outcomes = list(await asyncio.gather(*tasks))
        if orthanc:
            status, body = _orthanc_answer(base, outcomes)
        else:
            status, body = _azure_answer(base, outcomes, only_study)
        return web.Response(status=status, body=json_bytes(body), content_type="application/dicom+json")

    return handler


def setup(router: web.UrlDispatcher, prefix: str) -> None:
    router.add_post(prefix + "/studies", _stow(prefix))
    router.add_post(prefix + "/studies/{study}", _stow(prefix))
