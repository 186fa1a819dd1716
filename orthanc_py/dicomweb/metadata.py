"""WADO-RS metadata (PS3.18 10.4.1.1.2): every instance of a study, series or instance in DICOM
JSON (or XML), binary values as BulkDataURI; series summaries are cached until a series changes."""

from __future__ import annotations

import io
from typing import Any

import orjson
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
from ..web.responses import json_bytes
from .headers import DICOM_JSON, MediaRange, parse_accept, public_base
from .targets import multipart_response, not_found, stored_syntax, url_files


def _metadata_of(data: bytes, base: str, pixel_vr: str | None = None) -> dict[str, Any]:
    """DICOM JSON of one instance as Orthanc's plugin writes it: every non-empty binary value
    by BulkDataURI (lowercase tag, nested ones with their item path). `data` may stop right
    before the pixel data element, whose VR is then `pixel_vr` (reading only the header is what
    makes a cold /metadata fast)."""
    import pydicom

    from ..model import webjson

    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    study, series, sop = (str(ds.get(k, "")) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"))
    url = f"{base}/studies/{study}/series/{series}/instances/{sop}"

    def bulk(elem: Any, path: str) -> str:
        return f"{url}/bulk/{path}{elem.tag:08x}"

    out: dict[str, Any] = webjson.to_json_dict(ds, bulk, 0)
    if "7FE00010" not in out and pixel_vr is not None:
        out["7FE00010"] = {"vr": pixel_vr, "BulkDataURI": f"{url}/bulk/7fe00010"}
    return out


_LONG_VRS = frozenset(("OB", "OW", "OF", "OD", "OL", "OV", "UN", "SQ", "UT", "UC", "UR"))


def _instance_metadata(ctx: Any, f: core_files.InstanceFile, base: str) -> dict[str, Any]:
    """Metadata of one stored instance, reading its header only when the index knows where the
    pixel data starts and nothing follows it (elements after the pixel data, such as private
    groups 7FE1, make the whole file read: Orthanc lists them too)."""
    pixel_offset, syntax, size = f.pixel_offset, stored_syntax(f), f.size
    if pixel_offset is None or syntax in (ts.DEFLATED_LE, ts.EXPLICIT_BE):  # offsets not usable as is
        return _metadata_of(core_files.read(ctx, f), base)
    head = core_files.read_head(ctx, f, pixel_offset + 12)
    # Implicit VR: pixel data is OW (PS3.5 A.1); explicit: the VR written in the element header
    written = head[pixel_offset + 4 : pixel_offset + 6].decode("ascii", "replace")
    if syntax == ts.IMPLICIT_LE:
        header, length = 8, int.from_bytes(head[pixel_offset + 4 : pixel_offset + 8], "little")
    elif written in _LONG_VRS:
        header, length = 12, int.from_bytes(head[pixel_offset + 8 : pixel_offset + 12], "little")
    else:
        header, length = 8, int.from_bytes(head[pixel_offset + 6 : pixel_offset + 8], "little")
    if length != 0xFFFFFFFF and pixel_offset + header + length < size:
        return _metadata_of(core_files.read(ctx, f), base)
    pixel_vr = "OW" if syntax == ts.IMPLICIT_LE else written
    return _metadata_of(head[:pixel_offset], base, pixel_vr)


def metadata_handler(prefix: str) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        """GET .../metadata: every instance in DICOM JSON, large binary values as BulkDataURI.
        Study and series requests are answered from per-series summaries kept until the series
        changes; only the first request reads the files."""
        xml = _metadata_wants_xml(request.headers.get("Accept"))
        ctx = ctx_of(request)
        base = public_base(request, prefix)
        if "instance" in request.match_info:
            found = await url_files(request)

            def render() -> bytes:
                return json_bytes([_metadata_of(core_files.read(ctx, f), base) for f in found])

            if xml:
                return _xml_parts(orjson.loads(await ctx.run(render)))
            return web.Response(body=await ctx.run(render), content_type="application/dicom+json")
        req = FindRequest(level=ResourceType.SERIES)
        for key, tag in (("study", mt.STUDY_INSTANCE_UID), ("series", mt.SERIES_INSTANCE_UID)):
            uid = request.match_info.get(key)
            if uid is not None:
                req.constraints.append(TagConstraint(tag, mt.LEVEL_OF_TAG[tag], MatchKind.EQUAL, (uid,), True))

        series = await core_query.series_files(ctx, req)
        if not series:
            raise not_found(request)
        variant = ("dicomweb-metadata", base)

        def render_series(files: list[core_files.InstanceFile]) -> bytes:
            return b",".join(orjson.dumps(_instance_metadata(ctx, f, base)) for f in files)

        blobs = []
        for pub, files in series:
            blob = ctx.series_cache.get(pub, variant)
            if blob is None:
                blob = await ctx.run(render_series, files)
                ctx.series_cache.put(pub, variant, blob)
            if blob:
                blobs.append(blob)
        body = b"[" + b",".join(blobs) + b"]"
        if xml:
            return _xml_parts(orjson.loads(body))
        return web.Response(body=body, content_type="application/dicom+json")

    return handler


def _metadata_wants_xml(header: str | None) -> bool:
    """Whether a metadata request asks for DICOM XML, as Orthanc's plugin reads Accept: JSON
    when any of the listed media types is DICOM JSON (or */*), XML for multipart/related with
    type application/dicom+xml, 400 for anything else."""
    if header is None or not header.strip():
        return False
    ranges = [r.strip() for r in header.split(",")]
    if any(r.split(";")[0].strip().lower() in (*DICOM_JSON, "*/*") for r in ranges):
        return False
    (only,) = parse_accept(header)[:1] or [MediaRange("")]
    if len(ranges) == 1 and only.media == "multipart/related" and only.type == "application/dicom+xml":
        if only.syntax is not None:
            raise OrthancError(ErrorCode.BAD_REQUEST, f"Cannot change the transfer syntax of metadata: {header}")
        return True
    raise OrthancError(ErrorCode.BAD_REQUEST, f"Cannot generate this content type for metadata: {header}")


def _xml_parts(datasets: list[dict[str, Any]]) -> web.Response:
    """Each instance's metadata as one application/dicom+xml part."""
    from .webxml import to_xml

    return multipart_response([to_xml(d) for d in datasets], "application/dicom+xml")
