"""QIDO-RS (PS3.18 10.6): search for studies, series and instances through the core find engine,
answered in DICOM JSON with the attributes PS3.18 Table 10.6.3-3 requires per level."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..core import extquery, findspec
from ..core.query import FindRequest, find_answers
from ..errors import ErrorCode, OrthancError
from ..model import maintags as mt
from ..model import qidojson
from ..model.enums import ResourceType
from ..model.lookup import parse_constraint, parse_tag, vr_of
from ..web.appkeys import ctx_of
from ..web.responses import json_bytes
from .headers import AZURE_PREFIXES, DICOM_JSON, choose, public_base
from .targets import multipart_response
from .webxml import to_xml

_XML_TYPES = ("application/dicom+xml", "application/xml", "text/xml")

# The attributes answered per level, as Orthanc's DICOMweb plugin answers them (PS3.18 Table
# 6.7.1-2, less the attributes that are not main DICOM tags: InstanceAvailability, Timezone
# Offset From UTC, the Performed Procedure Step and Request Attribute ones, which would cost a
# file read per answer). Series and instances also get their study's attributes unless the
# query names a StudyInstanceUID; instances, their series' unless it names a SeriesInstanceUID.
STUDY_FIELDS = (
    0x00080020,
    0x00080030,
    0x00080050,
    0x00080061,
    0x00080090,
    0x00100010,
    0x00100020,
    0x00100030,
    0x00100040,
    0x0020000D,
    0x00200010,
    0x00201206,
    0x00201208,
)
SERIES_FIELDS = (0x00080060, 0x0008103E, 0x0020000E, 0x00200011, 0x00201209)
INSTANCE_FIELDS = (0x00080016, 0x00080018, 0x00200013, 0x00280010, 0x00280011, 0x00280100, 0x00280008)
LEVEL_FIELDS = {
    ResourceType.STUDY: STUDY_FIELDS,
    ResourceType.SERIES: SERIES_FIELDS,
    ResourceType.INSTANCE: INSTANCE_FIELDS,
}
_COMPUTED = {0x00080061, 0x00201206, 0x00201208, 0x00201209}  # only at their own level


def default_fields(level: ResourceType, filtered: set[int]) -> list[int]:
    """The attributes of `level` answered without includefield, given the tags the query
    string filters on (filters taken from the URL path do not count, as in Orthanc's plugin)."""
    fields = list(LEVEL_FIELDS[level])
    if level is not ResourceType.STUDY and mt.STUDY_INSTANCE_UID not in filtered:
        fields += [t for t in STUDY_FIELDS if t not in _COMPUTED]
    if level is ResourceType.INSTANCE and mt.SERIES_INSTANCE_UID not in filtered:
        fields += [t for t in SERIES_FIELDS if t not in _COMPUTED]
    return fields


RETRIEVE_URL = 0x00081190
INSTANCE_AVAILABILITY = 0x00080056
SPECIFIC_CHARACTER_SET = 0x00080005
_CONTROL = {"limit", "offset", "includefield", "fuzzymatching"}


def _int_param(request: web.Request, name: str) -> int:
    text = request.query.get(name, "0") or "0"
    try:
        value = int(text)
    except ValueError:
        raise OrthancError(ErrorCode.BAD_REQUEST, f"Bad value for {name}: {text}") from None
    if value < 0:
        raise OrthancError(ErrorCode.BAD_REQUEST, f"Bad value for {name}: {text}")
    return value


def _search(level: ResourceType, prefix: str) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        accept = request.headers.get("Accept")
        # Orthanc's plugin answers XML (one multipart part per match) for exactly these Accept values
        xml = prefix not in AZURE_PREFIXES and (accept or "").strip().lower() in _XML_TYPES
        if not xml:
            choose(accept, DICOM_JSON, ("application/*",), "QIDO-RS answers DICOM JSON")
        ctx = ctx_of(request)
        req = FindRequest(level=level)
        fields: list[int] = []
        filtered: set[int] = set()
        include_all = False
        flagged: list[str] = []  # extended query tags with indexing errors
        scope = (
            ResourceType.SERIES
            if "series" in request.match_info
            else ResourceType.STUDY
            if "study" in request.match_info
            else None
        )
        fuzzy = request.query.get("fuzzymatching", "false").lower() == "true"
        rules = findspec.qido_rules(fuzzy)
        for key, value in request.query.items():
            if key in _CONTROL:
                if key == "includefield":
                    for name in value.split(","):
                        name = name.strip()
                        if name == "all":
                            include_all = True
                        elif name:
                            try:
                                fields.append(parse_tag(name))
                            except ValueError:
                                raise OrthancError(ErrorCode.BAD_REQUEST, f"Unknown tag: {name}") from None
                continue
            try:
                tag = parse_tag(key)
            except ValueError:
                raise OrthancError(ErrorCode.BAD_REQUEST, f"Unknown query attribute: {key}") from None
            fields.append(tag)
            filtered.add(tag)
            ext = extquery.constraint(ctx, tag, value, level, scope, fuzzy)
            if ext is not None:
                ext_constraint, erroneous = ext
                if ext_constraint is not None:
                    req.constraints.append(ext_constraint)
                if erroneous:
                    flagged.append(key)
                continue
            findspec.add_constraint(req, tag, value, rules)
        for route_key, tag in (("study", mt.STUDY_INSTANCE_UID), ("series", mt.SERIES_INSTANCE_UID)):
            uid = request.match_info.get(route_key)
            if uid is not None:
                fields.append(tag)
                c = parse_constraint(tag, uid)
                if c is not None:
                    req.constraints.append(c)
        fields += default_fields(level, filtered)
        req.since = _int_param(request, "offset")
        req.limit = _int_param(request, "limit")
        if include_all:
            fields += [
                t
                for lv in (ResourceType.PATIENT, ResourceType.STUDY, ResourceType.SERIES, level)
                if lv <= level
                for t in mt.MAIN_TAGS[lv]
            ]
        wanted = list(
            dict.fromkeys(t for t in fields if t not in (RETRIEVE_URL, INSTANCE_AVAILABILITY, SPECIFIC_CHARACTER_SET))
        )

        unknown = [t for t in wanted if vr_of(t) == "UN"]

        sequences = [t for t in wanted if vr_of(t) == "SQ"]
        rows = await find_answers(ctx, req, wanted, unknown, sequences)
        base = public_base(request, prefix)
        out = []
        for values, file_vrs, seqs in rows:
            # the answers are in UTF-8, whatever the files' character sets (Orthanc's plugin)
            item: dict[str, Any] = {f"{SPECIFIC_CHARACTER_SET:08X}": {"vr": "CS", "Value": ["ISO_IR 192"]}}
            for t in sorted(wanted):
                v = values.get(t)
                if t in seqs:  # the sequences includefield names (DICOMweb plugin 1.17+)
                    item[f"{t:08X}"] = seqs[t]
                elif v is not None:
                    item[f"{t:08X}"] = qidojson.from_text(t, v, file_vrs.get(t))
            study_uid = values.get(mt.STUDY_INSTANCE_UID) or ""
            url = f"{base}/studies/{study_uid}"
            if level is not ResourceType.STUDY:
                url += f"/series/{values.get(mt.SERIES_INSTANCE_UID) or ''}"
            if level is ResourceType.INSTANCE:
                url += f"/instances/{values.get(mt.SOP_INSTANCE_UID) or ''}"
            item[f"{RETRIEVE_URL:08X}"] = {"vr": "UR", "Value": [url]}
            out.append(item)
        if xml:
            return multipart_response([to_xml(item) for item in out], "application/dicom+xml")
        response = web.Response(body=json_bytes(out), content_type="application/dicom+json")
        if flagged:
            response.headers["erroneous-dicom-attributes"] = ",".join(flagged)
        return response

    return handler


def setup(router: web.UrlDispatcher, prefix: str) -> None:
    router.add_get(prefix + "/studies", _search(ResourceType.STUDY, prefix))
    router.add_get(prefix + "/series", _search(ResourceType.SERIES, prefix))
    router.add_get(prefix + "/instances", _search(ResourceType.INSTANCE, prefix))
    router.add_get(prefix + "/studies/{study}/series", _search(ResourceType.SERIES, prefix))
    router.add_get(prefix + "/studies/{study}/instances", _search(ResourceType.INSTANCE, prefix))
    router.add_get(prefix + "/studies/{study}/series/{series}/instances", _search(ResourceType.INSTANCE, prefix))
