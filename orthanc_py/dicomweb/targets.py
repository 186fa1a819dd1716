"""What a WADO URL names: the instances' files (404 as Orthanc's plugin words it), and the
multipart/related answers the WADO routes share."""

from __future__ import annotations

import uuid

from aiohttp import web

from ..core import files as core_files
from ..core import query as core_query
from ..core.query import FindRequest
from ..errors import ErrorCode, OrthancError
from ..imaging import transcode as ts
from ..model import maintags as mt
from ..model.enums import ResourceType
from ..model.lookup import MatchKind, TagConstraint
from ..web.appkeys import ctx_of


def request_for(study: str | None, series: str | None, instance: str | None) -> FindRequest:
    """The resources named by UIDs (any of them may be omitted), at the level of the deepest
    one: their files are the instances under them (`core.query.matched_files`).

    A study URL asked at the instance level had the index scan every instance for the one
    study (8 ms with 20,000 instances stored, most of a WADO-RS study retrieve); at the
    study level it is one lookup (0.6 ms)."""
    level = (
        ResourceType.INSTANCE
        if instance or not (study or series)
        else ResourceType.SERIES
        if series
        else ResourceType.STUDY
    )
    req = FindRequest(level=level)
    for uid, tag in ((study, mt.STUDY_INSTANCE_UID), (series, mt.SERIES_INSTANCE_UID), (instance, mt.SOP_INSTANCE_UID)):
        if uid:
            req.constraints.append(TagConstraint(tag, mt.LEVEL_OF_TAG[tag], MatchKind.EQUAL, (uid,), True))
    return req


def url_request(request: web.Request) -> FindRequest:
    m = request.match_info
    return request_for(m.get("study"), m.get("series"), m.get("instance"))


def stored_syntax(f: core_files.InstanceFile) -> str:
    """The transfer syntax a file is stored in (Explicit VR Little Endian when not recorded)."""
    return f.transfer_syntax or ts.EXPLICIT_LE


async def url_files(request: web.Request, req: FindRequest | None = None) -> list[core_files.InstanceFile]:
    """The files of the instances named by the URL (or `req`); 404 when there is none."""
    found = await core_query.matched_files(ctx_of(request), req or url_request(request), meta=True)
    if not found:
        if req is None:
            raise not_found(request)
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, "No such DICOM resource", http_status=404)
    return _in_order(found)


def _in_order(found: list[core_files.InstanceFile]) -> list[core_files.InstanceFile]:
    """The instances by public ID, the order of an instance-level find (the order of parts
    does not depend on the level the URL was looked up at)."""
    found.sort(key=lambda f: f.public_id)
    return found


def url_files_blocking(request: web.Request) -> list[core_files.InstanceFile]:
    """`url_files` from a worker thread (for a route that goes on to read the files there)."""
    found = core_query.matched_files_blocking(ctx_of(request), url_request(request), meta=True)
    if not found:
        raise not_found(request)
    return _in_order(found)


def not_found(request: web.Request) -> OrthancError:
    """Orthanc's plugin's 404: the deepest level the URL names."""
    m = request.match_info
    level, uid = next(((k, m[k]) for k in ("instance", "series", "study") if k in m), ("study", ""))
    return OrthancError(ErrorCode.INEXISTENT_ITEM, f"Accessing an inexistent {level} with WADO-RS: {uid}")


def part_head(boundary: str, part_type: str, length: int, location: str | None = None) -> bytes:
    """The delimiter and headers of one part of a multipart/related answer."""
    where = f"Content-Location: {location}\r\n" if location else ""
    return f"--{boundary}\r\nContent-Type: {part_type}\r\n{where}Content-Length: {length}\r\n\r\n".encode()


def multipart_response(parts: list[bytes], part_type: str, locations: list[str] | None = None) -> web.Response:
    boundary = uuid.uuid4().hex
    chunks = []
    for i, p in enumerate(parts):
        chunks.append(part_head(boundary, part_type, len(p), locations[i] if locations else None))
        chunks.append(p)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return web.Response(
        body=b"".join(chunks),
        headers={"Content-Type": f'multipart/related; type="{part_type}"; boundary={boundary}'},
    )
