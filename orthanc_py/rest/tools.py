"""/tools/find, /tools/count-resources, /tools/lookup, /tools/labels."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..core import findspec, query
from ..core import resources as core_res
from ..core.content import all_labels as all_labels_of
from ..core.content import metadata_type
from ..core.context import ServerContext
from ..core.query import FindRequest, OrderBy
from ..errors import ErrorCode, OrthancError
from ..model import maintags as mt
from ..model.enums import ResourceType
from ..model.lookup import (
    TEXT_VRS,
    TagConstraint,
    parse_constraint,
    parse_tag,
    vr_of,
)
from ..web.responses import json_response, read_json, read_text
from .common import ctx_of
from .render import resource_json
from .tags import requested_values

RESPONSE_CONTENT = frozenset(
    {
        "MainDicomTags",
        "Metadata",
        "Children",
        "Parent",
        "Labels",
        "Status",
        "IsStable",
        "IsProtected",
        "Attachments",
        "RequestedTags",  # accepted: requested tags are answered whenever they are asked for
    }
)


def bad(details: str) -> OrthancError:
    return OrthancError(ErrorCode.BAD_REQUEST, details)


def _bool(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise bad(f'Field "{key}" should be a Boolean')
    return value


def _int(body: dict[str, Any], key: str) -> int:
    value = body.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f'Field "{key}" should be an integer')
    if value < 0:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f'Field "{key}" should be a positive integer')
    return value


def _strings(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad(f'Field "{key}" should be a list of strings')
    return value


_ORDER_TYPES = {
    "DicomTag": (False, ""),
    "DicomTagAsInt": (False, "int"),
    "DicomTagAsFloat": (False, "float"),
    "Metadata": (True, ""),
    "MetadataAsInt": (True, "int"),
    "MetadataAsFloat": (True, "float"),
}


def _query_constraint(req: FindRequest, key: str, value: Any, rules: findspec.QueryRules) -> None:
    """One entry of "Query", with Orthanc's rules (core.findspec: ranges on dates and times,
    lists, wildcards only on text VRs, case folding on text VRs)."""
    if not isinstance(value, str):
        raise bad(f'Tag "{key}" should be associated with a string')
    try:
        tag = parse_tag(key)
    except ValueError as exc:
        raise OrthancError(ErrorCode.UNKNOWN_DICOM_TAG, f"Unknown DICOM tag: {key}", http_status=400) from exc
    try:
        findspec.add_constraint(req, tag, value, rules)
    except findspec.WildcardNotAllowed as exc:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, str(exc)) from exc


def parse_find(body: Any, ctx: ServerContext) -> tuple[FindRequest, dict[str, Any]]:
    """Validate a /tools/find body into a FindRequest plus rendering options."""
    if not isinstance(body, dict):
        raise bad("The body must contain a JSON object")
    if not isinstance(body.get("Level"), str):
        raise bad('Field "Level" is missing, or should be a string')
    try:
        level = ResourceType.parse(body["Level"])
    except ValueError as exc:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE) from exc
    q = body.get("Query")
    if not isinstance(q, dict):
        raise bad('Field "Query" is missing, or should be a JSON object')
    # Orthanc's default is false whatever CaseSensitivePN (which is for DICOM queries only).
    case_sensitive = _bool(body, "CaseSensitive", False)
    req = FindRequest(level=level)
    rules = findspec.tools_find_rules(case_sensitive)
    for key, value in q.items():
        _query_constraint(req, key, value, rules)
    req.limit = _int(body, "Limit")
    req.since = _int(body, "Since")
    req.labels = _strings(body, "Labels")
    req.labels_mode = body.get("LabelsConstraint", "All")
    if req.labels_mode not in ("All", "Any", "None"):
        raise bad("Field 'LabelsConstraint' must be All, Any or None")
    for key, parent_level in (
        ("ParentPatient", ResourceType.PATIENT),
        ("ParentStudy", ResourceType.STUDY),
        ("ParentSeries", ResourceType.SERIES),
    ):
        if key in body:
            if not isinstance(body[key], str):
                raise bad(f"Field '{key}' must be a string")
            req.parent, req.parent_level = body[key], parent_level
    order_by = body.get("OrderBy", [])
    if not isinstance(order_by, list):
        raise bad("Field 'OrderBy' must be an array")
    for item in order_by:
        if not isinstance(item, dict) or not isinstance(item.get("Key"), str):
            raise bad("Items of 'OrderBy' must be objects with Type, Key and Direction")
        direction = str(item.get("Direction", "ASC")).upper()
        if direction not in ("ASC", "DESC"):
            raise bad("Direction must be ASC or DESC")
        kind = _ORDER_TYPES.get(item.get("Type", "DicomTag"))
        if kind is None:
            raise bad(f"OrderBy Type must be one of {', '.join(_ORDER_TYPES)}")
        is_metadata, cast = kind
        if is_metadata:
            mtype = metadata_type(ctx, item["Key"])
            req.order_by.append(OrderBy(None, mtype, direction == "ASC", cast))
        else:
            try:
                tag = parse_tag(item["Key"])
            except ValueError as exc:
                raise OrthancError(
                    ErrorCode.UNKNOWN_DICOM_TAG, f"Unknown DICOM tag: {item['Key']}", http_status=400
                ) from exc
            req.order_by.append(OrderBy(tag, None, direction == "ASC", cast))
    mq = body.get("MetadataQuery", {})
    if not isinstance(mq, dict):
        raise bad("Field 'MetadataQuery' must be a JSON object")
    for name, value in mq.items():
        mtype = metadata_type(ctx, name)
        if not isinstance(value, str):
            raise bad(f'Metadata "{name}" should be associated with a string')
        c = parse_constraint(0, value, True, star_is_universal=False)
        if c is not None:
            req.metadata_constraints.append((mtype, c))
    content = body.get("ResponseContent")
    if content is not None:
        if not isinstance(content, list) or not all(c in RESPONSE_CONTENT for c in content):
            raise bad("Bad value in 'ResponseContent'")
    requested = []
    for name in _strings(body, "RequestedTags"):
        try:
            requested.append(parse_tag(name))
        except ValueError as exc:
            raise OrthancError(ErrorCode.UNKNOWN_DICOM_TAG, f"Unknown DICOM tag: {name}", http_status=400) from exc
    fmt = "full" if _bool(body, "Full", False) else "short" if _bool(body, "Short", False) else "human"
    opts = {
        "expand": _bool(body, "Expand", False) or content is not None,
        "content": [c for c in content if c != "RequestedTags"] if content is not None else None,
        "requested": requested or None,
        "format": fmt,
        "case_sensitive_explicit": body.get("CaseSensitive") is True,
    }
    return req, opts


_IDENTIFIERS = frozenset(
    (mt.PATIENT_ID, mt.ACCESSION_NUMBER, mt.STUDY_INSTANCE_UID, mt.SERIES_INSTANCE_UID, mt.SOP_INSTANCE_UID)
)


def _folded_in_index(c: TagConstraint) -> bool:
    """Orthanc's index matches wildcards without case (SQL LIKE) and keeps identifiers
    upper-cased: a case-sensitive match there needs a second pass, which a "Since" offset
    cannot go through, so Orthanc refuses the combination."""
    if c.level is None:
        return False
    if c.tag in _IDENTIFIERS:
        return True
    return vr_of(c.tag) in TEXT_VRS and any("*" in v or "?" in v for v in c.values)


def _capped(limit: int, configured: int) -> int:
    """`Limit` within LimitFindResults/LimitFindInstances (0 means none), as Orthanc 1.12.5."""
    if configured and (not limit or limit > configured):
        return configured
    return limit


async def find(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    settings = ctx.settings
    req, opts = parse_find(await read_json(request), ctx)
    if req.since and opts["case_sensitive_explicit"] and any(_folded_in_index(c) for c in req.constraints):
        raise bad('"CaseSensitive" cannot be combined with "Since" on text values (the index matches them folded)')
    if req.since and any(c.level is None for c in req.constraints):
        raise bad('"Since" cannot be used when filtering on tags that are not main DICOM tags')
    req.limit = _capped(
        req.limit,
        settings.limit_find_instances if req.level is ResourceType.INSTANCE else settings.limit_find_results,
    )
    content = opts["content"]
    expanded = opts["expand"]
    with_meta = content is not None and "Metadata" in content
    with_att = content is not None and "Attachments" in content
    if not expanded:
        return json_response(await query.find(ctx, req, False))
    result = await query.find(ctx, req, True, with_metadata=with_meta, with_attachments=with_att)
    infos: list[Any] = list(result)
    fmt = opts["format"]
    if not opts["requested"]:
        return json_response([resource_json(i, fmt, None, content) for i in infos])
    values = await requested_values(request, infos, opts["requested"], fmt)
    return json_response([resource_json(i, fmt, v, content) for i, v in zip(infos, values, strict=True)])


async def count_resources(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    req, opts = parse_find(await read_json(request), ctx)
    if opts["case_sensitive_explicit"]:
        raise bad('"CaseSensitive" is not supported by /tools/count-resources')
    if any(c.level is None for c in req.constraints):  # Orthanc 1.12.5 counts in its index only
        raise bad("/tools/count-resources only filters on main DICOM tags")
    req.since = req.limit = 0  # a count is of every match
    return json_response({"Count": await query.count(ctx, req)})


async def lookup(request: web.Request) -> web.StreamResponse:
    """POST /tools/lookup: which resources have this PatientID, UID or AccessionNumber."""
    found = await core_res.lookup_identifier(ctx_of(request), (await read_text(request)).strip())
    return json_response([{"ID": pid, "Path": f"/{lv.plural}/{pid}", "Type": lv.label} for lv, pid in found])


async def all_labels(request: web.Request) -> web.StreamResponse:
    return json_response(await all_labels_of(ctx_of(request)))


def setup(router: web.UrlDispatcher) -> None:
    router.add_post("/tools/find", find)
    router.add_post("/tools/count-resources", count_resources)
    router.add_post("/tools/lookup", lookup)
    router.add_get("/tools/labels", all_labels)
