"""/tools/find, /tools/count-resources, /tools/lookup, /tools/labels."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..core import query
from ..core.query import FindRequest
from ..errors import ErrorCode, OrthancError
from ..index.base import OrderBy, Transaction
from ..model import maintags as mt
from ..model.enums import METADATA_BY_NAME, ResourceType
from ..model.lookup import MatchKind, TagConstraint, parse_constraint, parse_tag, vr_of
from ..model.maintags import format_tag
from ..web.responses import json_response, read_json, read_text
from .common import ctx_of
from .render import resource_json
from .resources import requested_values

MODALITIES_IN_STUDY = mt.tag(0x0008, 0x0061)
MODALITY = mt.tag(0x0008, 0x0060)
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
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f'Field "{key}" should be a positive integer')
    return int(value)


def _strings(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad(f'Field "{key}" should be a list of strings')
    return value


def parse_find(body: Any, case_sensitive_default: bool) -> tuple[FindRequest, dict[str, Any]]:
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
    case_sensitive = _bool(body, "CaseSensitive", case_sensitive_default)
    req = FindRequest(level=level)
    for key, value in q.items():
        if not isinstance(value, str):
            raise bad(f'Tag "{key}" should be associated with a string')
        try:
            tag = parse_tag(key)
        except ValueError as exc:
            raise OrthancError(ErrorCode.UNKNOWN_DICOM_TAG) from exc
        if tag == MODALITIES_IN_STUDY:
            tag = MODALITY
        if vr_of(tag) in ("DA", "DT", "TM") and ("*" in value or "?" in value):
            raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Wildcards are not allowed on tag {format_tag(tag)}")
        c = parse_constraint(tag, value, case_sensitive, star_is_universal=False)
        if c is not None:
            req.constraints.append(c)
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
    for item in body.get("OrderBy", []) or []:
        if not isinstance(item, dict) or "Key" not in item:
            raise bad("Items of 'OrderBy' must be objects with Type, Key and Direction")
        direction = str(item.get("Direction", "ASC")).upper()
        if direction not in ("ASC", "DESC"):
            raise bad("Direction must be ASC or DESC")
        kind = item.get("Type", "DicomTag")
        if kind == "DicomTag":
            try:
                req.order_by.append(OrderBy(parse_tag(str(item["Key"])), None, direction == "ASC"))
            except ValueError as exc:
                raise bad(f"Unknown DICOM tag: {item['Key']}") from exc
        elif kind == "Metadata":
            name = str(item["Key"])
            mtype = METADATA_BY_NAME.get(name) or (int(name) if name.isdigit() else None)
            if mtype is None:
                raise bad(f"Unknown metadata: {name}")
            req.order_by.append(OrderBy(None, mtype, direction == "ASC"))
        else:
            raise bad("OrderBy Type must be DicomTag or Metadata")
    mq = body.get("MetadataQuery", {})
    if not isinstance(mq, dict):
        raise bad("Field 'MetadataQuery' must be a JSON object")
    for name, value in mq.items():
        mtype = METADATA_BY_NAME.get(name) or (int(name) if name.isdigit() else None)
        if mtype is None or not isinstance(value, str):
            raise bad(f"Bad metadata constraint: {name}")
        if value not in ("", "*"):
            kind2 = MatchKind.WILDCARD if ("*" in value or "?" in value) else MatchKind.EQUAL
            req.metadata_constraints.append((mtype, TagConstraint(0, None, kind2, (value,), True)))
    content = body.get("ResponseContent")
    if content is not None:
        if not isinstance(content, list) or not all(c in RESPONSE_CONTENT for c in content):
            raise bad("Bad value in 'ResponseContent'")
    requested = []
    for name in _strings(body, "RequestedTags"):
        try:
            requested.append(parse_tag(name))
        except ValueError as exc:
            raise OrthancError(ErrorCode.UNKNOWN_DICOM_TAG, f"Unknown DICOM tag: {name}") from exc
    fmt = "full" if _bool(body, "Full", False) else "short" if _bool(body, "Short", False) else "human"
    opts = {
        "expand": _bool(body, "Expand", False) or content is not None,
        "content": content,
        "requested": requested or None,
        "format": fmt,
    }
    return req, opts


async def find(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    req, opts = parse_find(await read_json(request), ctx.settings.case_sensitive_pn)
    content = opts["content"]
    expanded = opts["expand"]
    with_meta = content is not None and "Metadata" in content
    with_att = content is not None and "Attachments" in content
    result = await query.find(ctx, req, expanded, with_metadata=with_meta, with_attachments=with_att)
    if not expanded:
        return json_response(result)
    infos: list[Any] = list(result)
    if opts["requested"]:
        values = await requested_values(request, infos, opts["requested"], opts["format"])
        return json_response([resource_json(i, opts["format"], v, content) for i, v in zip(infos, values, strict=True)])
    return json_response([resource_json(i, opts["format"], None, content) for i in infos])


async def count_resources(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    req, _ = parse_find(await read_json(request), ctx.settings.case_sensitive_pn)
    return json_response({"Count": await query.count(ctx, req)})


_LOOKUP_TAGS = (
    mt.PATIENT_ID,
    mt.STUDY_INSTANCE_UID,
    mt.ACCESSION_NUMBER,
    mt.SERIES_INSTANCE_UID,
    mt.SOP_INSTANCE_UID,
)


async def lookup(request: web.Request) -> web.StreamResponse:
    """POST /tools/lookup: which resources have this PatientID, UID or AccessionNumber."""
    ctx = ctx_of(request)
    text = await read_text(request)

    def run(txn: Transaction) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        seen: set[int] = set()
        for tag in _LOOKUP_TAGS:
            level = mt.LEVEL_OF_TAG[tag]
            c = TagConstraint(tag, level, MatchKind.EQUAL, (text,), True)
            for rid in txn.find(level, [c]):
                if rid not in seen:
                    seen.add(rid)
                    for row in txn.resources([rid]):
                        out.append(
                            {
                                "ID": row.public_id,
                                "Path": f"/{row.level.plural}/{row.public_id}",
                                "Type": row.level.label,
                            }
                        )
        return out

    return json_response(await ctx.index.read(run))


async def all_labels(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    return json_response(await ctx.index.read(lambda txn: txn.all_labels()))


def setup(router: web.UrlDispatcher) -> None:
    router.add_post("/tools/find", find)
    router.add_post("/tools/count-resources", count_resources)
    router.add_post("/tools/lookup", lookup)
    router.add_get("/tools/labels", all_labels)
