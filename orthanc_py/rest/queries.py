"""Query/retrieve SCU routes: /modalities/{id}/query, /find-*, /move and /queries/..."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..core import jobtypes
from ..core import queries as core_q
from ..core.jobs import request_priority, request_synchronous
from ..errors import ErrorCode, OrthancError
from ..model import maintags as mt
from ..model.enums import ResourceType
from ..model.lookup import keyword_of
from ..model.maintags import format_tag
from ..model.modality import Modality
from ..web.responses import bool_arg, json_response, read_json, read_text, text_response
from .common import ctx_of
from .tags import dicom_format


def _level(body: dict[str, Any]) -> ResourceType:
    if "Level" not in body:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "The JSON body must contain field Level")
    try:
        return ResourceType.parse(str(body["Level"]))
    except ValueError as exc:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE) from exc


def _normalize(body: dict[str, Any]) -> bool:
    value = body.get("Normalize", True)
    if not isinstance(value, bool):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, 'Field "Normalize" must be a Boolean')
    return value


async def query(request: web.Request) -> web.StreamResponse:
    """POST /modalities/{id}/query: C-FIND, answers kept under /queries/{qid}."""
    ctx = ctx_of(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Must provide a JSON object")
    level = _level(body)
    q = body.get("Query", {})
    if not isinstance(q, dict):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "The field Query must contain a JSON object")
    core_q.parse_query(q)
    result = await core_q.run_query(ctx, request.match_info["id"], level, q, _normalize(body))
    qid = ctx.queries.add(result)
    return json_response({"ID": qid, "Path": f"/queries/{qid}"})


def _template_query(level: ResourceType, body: dict[str, Any], above: dict[int, str] | None = None) -> dict[str, str]:
    """The level's template of return keys with the body's values for them (other keys of the
    body are ignored), the identifiers of a parent answer over both (Orthanc's
    SetupFind*Template + MergeQueryAndTemplate + CopyTagIfExists)."""
    tags = {t: "" for t in core_q.find_template(level)}
    tags.update((t, v) for t, v in core_q.parse_query(body).items() if t in tags)  # others are ignored
    tags.update(above or {})
    return {format_tag(t): v for t, v in tags.items()}


async def _find_body(request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise OrthancError(ErrorCode.BAD_REQUEST, "The body must contain a JSON object")
    core_q.parse_query(body)
    return body


def _find_route(level: ResourceType) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        """POST /modalities/{id}/find-{level} (Orthanc's older API): the level's template of return
        keys merged with the body, the identifiers above the level required; answers simplified."""
        from ..model import orthancjson

        ctx = ctx_of(request)
        query = _template_query(level, await _find_body(request))
        if not core_q.has_identifiers(level, core_q.parse_query(query)):
            return web.Response(status=400)  # Orthanc answers nothing (an empty 400)
        result = await core_q.run_query(ctx, request.match_info["id"], level, query)
        return json_response([orthancjson.orthanc_tags(a, "simplify") for a in result.answers])

    return handler


async def find_hierarchy(request: web.Request) -> web.StreamResponse:
    """POST /modalities/{id}/find (Orthanc's older API): the patients the body matches, each with
    its "Studies", each with its "Series" (one C-FIND per parent, the body applied at each level)."""
    from ..model import orthancjson

    ctx = ctx_of(request)
    name = request.match_info["id"]
    body = await _find_body(request)

    async def level_answers(level: ResourceType, above: dict[int, str]) -> list[tuple[dict[str, Any], dict[int, str]]]:
        result = await core_q.run_query(ctx, name, level, _template_query(level, body, above))
        return [(orthancjson.orthanc_tags(a, "simplify"), core_q.answer_values(a)) for a in result.answers]

    patients = []
    for patient, p_values in await level_answers(ResourceType.PATIENT, {}):
        studies = []
        p_keys = {t: p_values[t] for t in (mt.PATIENT_ID,) if t in p_values}
        for study, s_values in await level_answers(ResourceType.STUDY, p_keys):
            s_keys = {**p_keys, **{t: s_values[t] for t in (mt.STUDY_INSTANCE_UID,) if t in s_values}}
            study["Series"] = [series for series, _v in await level_answers(ResourceType.SERIES, s_keys)]
            studies.append(study)
        patient["Studies"] = studies
        patients.append(patient)
    return json_response(patients)


def _strings_json(tags: dict[int, str], fmt: str) -> dict[str, Any]:
    """Tags whose values are plain strings, in Orthanc's full/short/simplify rendering."""
    out: dict[str, Any] = {}
    for tag, value in sorted(tags.items()):
        name = keyword_of(tag) or "Unknown Tag & Data"
        if fmt == "simplify":
            out[name] = value
        elif fmt == "short":
            out[format_tag(tag)] = value
        else:
            out[format_tag(tag)] = {"Name": name, "Type": "String", "Value": value}
    return out


async def _retrieve_body(request: web.Request) -> tuple[dict[str, Any], ResourceType, list[dict[int, str]]]:
    """The body of /modalities/{id}/move and /get: {"Level", "Resources": [{keys}], ...}; the
    identifiers carry the level's QueryRetrieveLevel."""
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("Resources"), list) or "Level" not in body:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Must provide a JSON body containing fields Resources and Level")
    level = _level(body)
    identifiers = []
    for keys in body["Resources"]:
        tags = core_q.parse_query(keys, "Resources elements")
        tags[core_q.QUERY_RETRIEVE_LEVEL] = level.qr_level
        identifiers.append(tags)
    return body, level, identifiers


async def move(request: web.Request) -> web.StreamResponse:
    """POST /modalities/{id}/move: C-MOVE of {"Level", "Resources": [{keys}], "TargetAet"}."""
    ctx = ctx_of(request)
    body, level, identifiers = await _retrieve_body(request)
    target = str(body.get("TargetAet") or ctx.settings.dicom_aet)
    modality = ctx.modalities.get(request.match_info["id"])
    return await _run_retrieve(request, modality, level, identifiers, target, body, direct=True)


async def get(request: web.Request) -> web.StreamResponse:
    """POST /modalities/{id}/get (C-GET SCU, Orthanc 1.12.6): {"Level", "Resources": [{keys}]};
    the instances are stored here. Answers, per resource, the IDs received ("Details")."""
    ctx = ctx_of(request)
    body, level, items = await _retrieve_body(request)
    modality = ctx.modalities.get(request.match_info["id"])

    spec = {
        "Target": modality.to_json(),
        "Level": level.label,
        "Identifiers": [jobtypes.keys_json(i) for i in items],
        "Content": {
            "Description": "REST API",
            "LocalAet": modality.local_aet or ctx.settings.dicom_aet,
            "Query": [_strings_json(i, "short") for i in items],
            "RemoteAet": modality.aet,
        },
        "Permissive": body.get("Permissive") is True,
    }
    run = jobtypes.get_job(ctx, spec)
    priority = request_priority(body)
    if not request_synchronous(body):
        job = ctx.jobs.submit(jobtypes.GET_JOB, run, priority, spec=spec, user_data=body.get("UserData"))
        return json_response({"ID": job.id, "Path": f"/jobs/{job.id}"})
    return json_response(await run())


async def list_queries(request: web.Request) -> web.StreamResponse:
    return json_response(ctx_of(request).queries.ids())


async def get_query(request: web.Request) -> web.StreamResponse:
    ctx_of(request).queries.get(request.match_info["qid"])
    return json_response(["answers", "level", "modality", "query", "retrieve"])


async def delete_query(request: web.Request) -> web.StreamResponse:
    ctx_of(request).queries.delete(request.match_info["qid"])
    return json_response({})


async def answers(request: web.Request) -> web.StreamResponse:
    from ..model import orthancjson

    q = ctx_of(request).queries.get(request.match_info["qid"])
    if bool_arg(request, "expand"):
        fmt = dicom_format(request)
        return json_response([orthancjson.orthanc_tags(a, fmt) for a in q.answers])
    return json_response([str(i) for i in range(len(q.answers))])


def _answer(request: web.Request) -> tuple[core_q.Query, Any]:
    q = ctx_of(request).queries.get(request.match_info["qid"])
    try:
        index = int(request.match_info["index"])
    except ValueError:
        raise OrthancError(ErrorCode.BAD_PARAMETER_TYPE, "Syntax error in some user-supplied data") from None
    if not 0 <= index < len(q.answers):
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE)
    return q, q.answers[index]


_ANSWER_ROUTES = {
    # Orthanc 1.10.1 lists "query-study" although the route is "query-studies"
    ResourceType.PATIENT: ["content", "retrieve", "query-study", "query-series", "query-instances"],
    ResourceType.STUDY: ["content", "retrieve", "query-series", "query-instances"],
    ResourceType.SERIES: ["content", "retrieve", "query-instances"],
    ResourceType.INSTANCE: ["content", "retrieve"],
}


async def answer(request: web.Request) -> web.StreamResponse:
    q, _a = _answer(request)
    return json_response(_ANSWER_ROUTES[q.level])


async def answer_content(request: web.Request) -> web.StreamResponse:
    from ..model import orthancjson

    _q, a = _answer(request)
    return json_response(orthancjson.orthanc_tags(a, dicom_format(request)))


async def _target(request: web.Request) -> str:
    raw = await read_text(request)
    body = await read_json(request)
    if isinstance(body, dict):
        return str(body.get("TargetAet") or ctx_of(request).settings.dicom_aet)
    if isinstance(body, str):
        return body or ctx_of(request).settings.dicom_aet
    return raw or ctx_of(request).settings.dicom_aet


async def _run_retrieve(
    request: web.Request,
    modality: Modality,
    level: ResourceType,
    items: list[dict[int, str]],
    target: str,
    body: Any,
    direct: bool = False,
) -> web.StreamResponse:
    """C-MOVE now, or as a job when the body asks for "Asynchronous": true. `items` are the answers
    (or, `direct`, the identifiers to send as they are); the job reports them as "Query"."""
    ctx = ctx_of(request)
    options = body if isinstance(body, dict) else {}
    fmt = "full" if options.get("Full") is True else "simplify" if options.get("Simplify") is True else "short"
    if direct:
        reported = items
        identifiers = items
    else:
        reported = [{t: v for t, v in i.items() if t in core_q.RETRIEVE_REPORTED} for i in items]
        identifiers = [core_q.move_keys(level, i) for i in items]
    spec = {
        "Target": modality.to_json(),
        "Level": level.label,
        "Identifiers": [jobtypes.keys_json(i) for i in identifiers],
        "TargetAet": target,
        "Content": {
            "Description": "REST API",
            "LocalAet": modality.local_aet or ctx.settings.dicom_aet,
            "Query": [_strings_json(r, fmt) for r in reported],
            "RemoteAet": modality.aet,
            "TargetAet": target,  # Orthanc 1.12.10
        },
        "DetailsQuery": [_strings_json(r, "short") for r in reported],
        "Permissive": options.get("Permissive") is True,
    }
    run = jobtypes.move_job(ctx, spec)
    priority = request_priority(options)
    if not request_synchronous(options):
        job = ctx.jobs.submit(jobtypes.MOVE_JOB, run, priority, spec=spec, user_data=options.get("UserData"))
        return json_response({"ID": job.id, "Path": f"/jobs/{job.id}"})
    try:
        return json_response(await run())
    except OrthancError as err:
        if direct:
            raise
        # /queries/.../retrieve runs as a job even when it waits for it: its failure is a 500
        raise OrthancError(err.code, err.details, http_status=err.code.http_status, payload=err.payload) from err


async def retrieve_answer(request: web.Request) -> web.StreamResponse:
    """POST /queries/{qid}/answers/{i}/retrieve: C-MOVE one answer (body: target AET or options)."""
    q, a = _answer(request)
    target = await _target(request)
    modality = ctx_of(request).modalities.get(q.modality)
    answers = [core_q.answer_values(a)]
    return await _run_retrieve(request, modality, q.level, answers, target, await read_json(request))


async def retrieve_all(request: web.Request) -> web.StreamResponse:
    """POST /queries/{qid}/retrieve: C-MOVE every answer."""
    q = ctx_of(request).queries.get(request.match_info["qid"])
    target = await _target(request)
    modality = ctx_of(request).modalities.get(q.modality)
    answers = [core_q.answer_values(a) for a in q.answers]
    return await _run_retrieve(request, modality, q.level, answers, target, await read_json(request))


async def query_level(request: web.Request) -> web.StreamResponse:
    return text_response(ctx_of(request).queries.get(request.match_info["qid"]).level.label)


async def query_modality(request: web.Request) -> web.StreamResponse:
    return text_response(ctx_of(request).queries.get(request.match_info["qid"]).modality)


async def query_query(request: web.Request) -> web.StreamResponse:
    """GET /queries/{qid}/query: the query as it was asked (before normalization)."""
    q = ctx_of(request).queries.get(request.match_info["qid"])
    return json_response(_strings_json(core_q.parse_query(q.query), dicom_format(request)))


def _child_query(child: ResourceType) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        """POST /queries/{qid}/answers/{i}/query-{children}: a new query one level down, restricted
        to the answer's identifiers; the body's "Query" adds keys."""
        ctx = ctx_of(request)
        q, a = _answer(request)
        if child <= q.level:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
        body = await read_json(request)
        extra = body.get("Query", {}) if isinstance(body, dict) else {}
        if not isinstance(extra, dict):
            raise OrthancError(ErrorCode.BAD_REQUEST, 'Field "Query" must be a JSON object')
        values = core_q.answer_values(a)
        keys = {format_tag(t): values[t] for t in core_q.MOVE_KEYS[q.level] if t in values}
        normalize = _normalize(body) if isinstance(body, dict) else True
        result = await core_q.run_query(ctx, q.modality, child, {**extra, **keys}, normalize)
        qid = ctx.queries.add(result)
        return json_response({"ID": qid, "Path": f"/queries/{qid}"})

    return handler


async def find_worklist(request: web.Request) -> web.StreamResponse:
    """POST /modalities/{id}/find-worklist: {"Query": {...}, "Short"/"Full": bool} (Orthanc
    1.9.5+), or the query itself (earlier versions): the answers as JSON."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Must provide a JSON object")
    fmt = "simplify"
    query = body
    if "Query" in body:
        query = body["Query"]
        if not isinstance(query, dict):
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "The field Query must contain a JSON object")
        fmt = "full" if body.get("Full") is True else "short" if body.get("Short") is True else "simplify"
    from ..core import worklists  # pydicom: imported for the first worklist query
    from ..model import orthancjson

    answers = await worklists.find_on_modality(ctx_of(request), request.match_info["id"], query)
    return json_response([orthancjson.orthanc_tags(a, fmt) for a in answers])


def setup(router: web.UrlDispatcher) -> None:
    router.add_post("/modalities/{id}/query", query)
    router.add_post("/modalities/{id}/find", find_hierarchy)
    router.add_post("/modalities/{id}/find-patient", _find_route(ResourceType.PATIENT))
    router.add_post("/modalities/{id}/find-study", _find_route(ResourceType.STUDY))
    router.add_post("/modalities/{id}/find-series", _find_route(ResourceType.SERIES))
    router.add_post("/modalities/{id}/find-instance", _find_route(ResourceType.INSTANCE))
    router.add_post("/modalities/{id}/find-worklist", find_worklist)
    router.add_post("/modalities/{id}/move", move)
    router.add_post("/modalities/{id}/get", get)
    router.add_get("/queries", list_queries)
    router.add_get("/queries/{qid}", get_query)
    router.add_delete("/queries/{qid}", delete_query)
    router.add_get("/queries/{qid}/answers", answers)
    router.add_get("/queries/{qid}/answers/{index}", answer)
    router.add_get("/queries/{qid}/answers/{index}/content", answer_content)
    router.add_post("/queries/{qid}/answers/{index}/retrieve", retrieve_answer)
    router.add_post("/queries/{qid}/answers/{index}/query-studies", _child_query(ResourceType.STUDY))
    router.add_post("/queries/{qid}/answers/{index}/query-series", _child_query(ResourceType.SERIES))
    router.add_post("/queries/{qid}/answers/{index}/query-instances", _child_query(ResourceType.INSTANCE))
    router.add_post("/queries/{qid}/retrieve", retrieve_all)
    router.add_get("/queries/{qid}/level", query_level)
    router.add_get("/queries/{qid}/modality", query_modality)
    router.add_get("/queries/{qid}/query", query_query)
