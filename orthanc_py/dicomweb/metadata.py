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
from ..model import qidojson
from ..model.charsets import ENCODINGS
from ..model.dictionary import parse_tag as dictionary_tag
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

        mode = metadata_mode(ctx, "study" if "series" not in request.match_info else "series")
        if mode != "Full":
            extrapolated = _extrapolated_tags(ctx) if mode == "Extrapolate" else None
            summaries = await core_query.series_main_tags(ctx, req, extrapolated)
            if not summaries:
                raise not_found(request)
            charset = ENCODINGS.get(ctx.default_encoding)
            items = [_main_tags_item(tags, seqs, charset) for _pub, maps in summaries for tags, seqs in maps]
            if xml:
                return _xml_parts(items)
            return web.Response(body=json_bytes(items), content_type="application/dicom+json")
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


_MODES = ("Full", "MainDicomTags", "Extrapolate")


def metadata_mode(ctx: Any, level: str) -> str:
    """The DICOMweb plugin's `StudiesMetadata` / `SeriesMetadata` option: "Full" (every file is
    read), "MainDicomTags" (the main DICOM tags of the index only, `ExtraMainDicomTags`
    included: no file is read) or "Extrapolate" (MainDicomTags completed by the values most of a
    few instances of each series and study give the `...ExtrapolatedTags`)."""
    section = ctx.settings.raw.get("DicomWeb")
    key = "StudiesMetadata" if level == "study" else "SeriesMetadata"
    value = section.get(key, "Full") if isinstance(section, dict) else "Full"
    if value not in _MODES:
        raise OrthancError(
            ErrorCode.PARAMETER_OUT_OF_RANGE,
            f'Bad value for option "{key}": Should be either "Full" or "MainDicomTags" or "Extrapolate"',
        )
    return str(value)


def _extrapolated_tags(ctx: Any) -> tuple[list[int], list[int]]:
    """`SeriesMetadataExtrapolatedTags` and `StudiesMetadataExtrapolatedTags` (names or
    "gggg,eeee"; an unknown one is ParameterOutOfRange, as the plugin answers)."""
    section = ctx.settings.raw.get("DicomWeb")
    out: list[list[int]] = []
    for key in ("SeriesMetadataExtrapolatedTags", "StudiesMetadataExtrapolatedTags"):
        names = section.get(key, []) if isinstance(section, dict) else []
        tags = []
        for name in names if isinstance(names, list) else []:
            try:
                tags.append(dictionary_tag(str(name), ctx.dictionary))
            except ValueError:
                raise OrthancError(
                    ErrorCode.PARAMETER_OUT_OF_RANGE, f'Unknown DICOM tag in option "{key}" of DICOMweb: {name}'
                ) from None
        out.append(tags)
    return out[0], out[1]


def _main_tags_item(tags: dict[int, str], sequences: dict[str, Any], charset: str | None) -> dict[str, Any]:
    """One instance in DICOM JSON from what the index keeps (the plugin's MainDicomTags mode,
    which has Orthanc create a DICOM file from these tags: the default encoding's Specific
    Character Set, no BulkDataURI, no RetrieveURL)."""
    out: dict[str, Any] = {}
    if charset is not None:
        out["00080005"] = {"vr": "CS", "Value": [charset]}
    for t, v in tags.items():
        out[f"{t:08X}"] = qidojson.from_text(t, v)
    for key, node in sequences.items():
        out[key.replace(",", "").upper()] = _sequence_from_full(node)
    return dict(sorted(out.items()))


def _sequence_from_full(node: dict[str, Any]) -> dict[str, Any]:
    """A sequence in Orthanc's full JSON ({"Name", "Type", "Value"}) in DICOM JSON."""
    items = []
    for item in node.get("Value") or ():
        out: dict[str, Any] = {}
        for key, sub in item.items():
            t = int(key.replace(",", ""), 16)
            kind = sub.get("Type")
            if kind == "Sequence":
                out[f"{t:08X}"] = _sequence_from_full(sub)
            elif kind == "String":
                out[f"{t:08X}"] = qidojson.from_text(t, sub.get("Value", ""))
            elif kind == "Null":
                out[f"{t:08X}"] = qidojson.from_text(t, "")
        items.append(dict(sorted(out.items())))
    return {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}


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
