"""Query/retrieve as an SCU: C-FIND against a modality, the answers kept as Orthanc's
`/queries/{id}` (in memory, the newest ones), and C-MOVE of an answer or a whole query."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ..errors import ErrorCode, OrthancError
from ..model import maintags as mt
from ..model.enums import ResourceType
from ..model.lookup import parse_tag, vr_of
from ..model.maintags import format_tag
from ..model.modality import Modality
from ..model.modules import MODULE_TAGS
from .context import ServerContext

MODEL_STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
MODEL_PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
MODEL_STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
MODEL_PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
MODEL_STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
MODEL_PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
QUERY_RETRIEVE_LEVEL = mt.tag(0x0008, 0x0052)
# The keys Orthanc adds (empty, "universal") to every C-FIND it sends, by level.
IDENTIFIER_KEYS = {
    ResourceType.PATIENT: ("PatientID",),
    ResourceType.STUDY: ("StudyInstanceUID", "AccessionNumber", "PatientID"),
    ResourceType.SERIES: ("StudyInstanceUID", "SeriesInstanceUID", "AccessionNumber", "PatientID"),
    ResourceType.INSTANCE: ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "AccessionNumber", "PatientID"),
}
# What a C-MOVE asks for, by level (Orthanc's DicomControlUserConnection::MoveInternal).
MOVE_KEYS = {
    ResourceType.PATIENT: (mt.PATIENT_ID,),
    ResourceType.STUDY: (mt.STUDY_INSTANCE_UID,),
    ResourceType.SERIES: (mt.STUDY_INSTANCE_UID, mt.SERIES_INSTANCE_UID),
    ResourceType.INSTANCE: (mt.STUDY_INSTANCE_UID, mt.SERIES_INSTANCE_UID, mt.SOP_INSTANCE_UID),
}
# What a retrieve job reports of each answer (Orthanc's DicomMoveScuJob::AddFindAnswer).
RETRIEVE_REPORTED = (
    QUERY_RETRIEVE_LEVEL,
    mt.PATIENT_ID,
    mt.STUDY_INSTANCE_UID,
    mt.SERIES_INSTANCE_UID,
    mt.SOP_INSTANCE_UID,
    mt.ACCESSION_NUMBER,
)
_COUNTERS = {
    ResourceType.PATIENT: (mt.tag(0x0020, 0x1200), mt.tag(0x0020, 0x1202), mt.tag(0x0020, 0x1204)),
    ResourceType.STUDY: (
        mt.tag(0x0008, 0x0061),
        mt.tag(0x0020, 0x1206),
        mt.tag(0x0020, 0x1208),
        mt.tag(0x0008, 0x0062),
    ),
    ResourceType.SERIES: (mt.tag(0x0020, 0x1209),),
    ResourceType.INSTANCE: (),
}
_NUMERIC_VRS = {"US": (0, 65535), "SS": (-32768, 32767), "UL": (0, 2**32 - 1), "SL": (-(2**31), 2**31 - 1)}
MAX_QUERIES = 100


@dataclass
class Query:
    """One C-FIND that was run against a modality: the query as asked, and the answers."""

    modality: str
    level: ResourceType
    query: dict[str, str]
    answers: list[Any] = field(default_factory=list)


class QueryRegistry:
    """The newest queries by id (Orthanc keeps a bounded number too)."""

    def __init__(self, size: int = MAX_QUERIES) -> None:
        self._items: OrderedDict[str, Query] = OrderedDict()
        self.size = max(1, size)

    def add(self, q: Query) -> str:
        qid = str(uuid.uuid4())
        self._items[qid] = q
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return qid

    def get(self, qid: str) -> Query:
        try:
            return self._items[qid]
        except KeyError:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE) from None

    def ids(self) -> list[str]:
        return list(self._items)

    def delete(self, qid: str) -> None:
        self.get(qid)
        del self._items[qid]


def allowed_tags(level: ResourceType) -> set[int]:
    """The keys a normalized query keeps (Orthanc's NormalizeFindQuery): the attributes of the
    level's DICOM module and of the modules above (model.modules, the tables behind /module),
    the level's computed counters, SpecificCharacterSet."""
    out = {mt.SPECIFIC_CHARACTER_SET, *_COUNTERS[level]}
    lv: ResourceType | None = level
    while lv is not None:
        out.update(MODULE_TAGS[lv])
        lv = lv.parent
    return out


# Main DICOM tags that Orthanc leaves out of the older find-{level} routes' templates (not in
# the level's DICOM module).
_NOT_IN_TEMPLATE = {
    ResourceType.STUDY: {mt.tag(0x0008, 0x0080), mt.tag(0x0032, 0x1032), mt.tag(0x0032, 0x1060)},
    ResourceType.SERIES: {
        mt.tag(0x0008, 0x0070),
        mt.tag(0x0008, 0x1010),
        mt.tag(0x0018, 0x0024),
        mt.tag(0x0018, 0x1090),
        mt.tag(0x0020, 0x1002),
        mt.tag(0x0054, 0x0081),
        mt.tag(0x0020, 0x0105),
        mt.tag(0x0054, 0x0101),
        mt.tag(0x0020, 0x0037),
        mt.tag(0x0054, 0x1000),
        mt.tag(0x0018, 0x1400),
        mt.tag(0x0018, 0x0010),
    },
}
_TEMPLATE_IDENTIFIERS = {
    ResourceType.PATIENT: (),
    ResourceType.STUDY: (mt.ACCESSION_NUMBER, mt.PATIENT_ID),
    ResourceType.SERIES: (mt.ACCESSION_NUMBER, mt.PATIENT_ID, mt.STUDY_INSTANCE_UID),
    ResourceType.INSTANCE: (mt.ACCESSION_NUMBER, mt.PATIENT_ID, mt.STUDY_INSTANCE_UID, mt.SERIES_INSTANCE_UID),
}


def find_template(level: ResourceType) -> list[int]:
    """The return keys of the older find-{level} routes (Orthanc's SetupFind*Template)."""
    tags = [t for t in mt.MAIN_TAGS[level] if t not in _NOT_IN_TEMPLATE.get(level, set())]
    return tags + [t for t in _TEMPLATE_IDENTIFIERS[level] if t not in tags]


def has_identifiers(level: ResourceType, values: dict[int, str]) -> bool:
    """Whether a find-{level} request names what Orthanc requires (values over two characters):
    the patient or accession number below the patient level, and each UID above the level."""

    def given(tag: int) -> bool:
        return len(values.get(tag, "")) > 2

    if level is ResourceType.PATIENT:
        return True
    if not (given(mt.ACCESSION_NUMBER) or given(mt.PATIENT_ID)):
        return False
    uids = {
        ResourceType.SERIES: (mt.STUDY_INSTANCE_UID,),
        ResourceType.INSTANCE: (mt.STUDY_INSTANCE_UID, mt.SERIES_INSTANCE_UID),
    }
    return all(given(t) for t in uids.get(level, ()))


def _element_value(tag: int, vr: str, value: str) -> Any:
    """The query value as the element's VR wants it; Orthanc's error for a number out of range."""
    if vr in _NUMERIC_VRS or vr in ("FL", "FD"):
        if value == "":
            return None
        try:
            number: float = float(value) if vr in ("FL", "FD") else int(value)
        except ValueError:
            number = float("nan")
        if vr in _NUMERIC_VRS:
            low, high = _NUMERIC_VRS[vr]
            if not (isinstance(number, int) and low <= number <= high):
                raise OrthancError(
                    ErrorCode.BAD_FILE_FORMAT,
                    f'While creating a DICOM instance, tag ({format_tag(tag)}) has out-of-range value: "{value}"',
                )
        elif number != number:
            raise OrthancError(
                ErrorCode.BAD_FILE_FORMAT,
                f'While creating a DICOM instance, tag ({format_tag(tag)}) has out-of-range value: "{value}"',
            )
        return number
    return value


def parse_query(query: Any, field: str = "Query") -> dict[int, str]:
    """A JSON object of DICOM tags (names or "gggg,eeee") to strings, as tags; Orthanc's
    BadFileFormat naming the field otherwise."""
    wrong = OrthancError(
        ErrorCode.BAD_FILE_FORMAT, f"Associative array of DICOM tags to strings expected in field: {field}"
    )
    if not isinstance(query, dict):
        raise wrong
    out: dict[int, str] = {}
    for key, value in query.items():
        try:
            tag = parse_tag(key)
        except ValueError:
            raise wrong from None
        if not isinstance(value, str):
            raise wrong
        out[tag] = value
    return out


def build_identifier(level: ResourceType, query: dict[str, Any], normalize: bool = True) -> Any:
    """The C-FIND identifier Orthanc sends: the query's keys (only those allowed at the level when
    normalized), the level's identifiers as empty return keys, and QueryRetrieveLevel."""

    tags = parse_query(query)
    if normalize:
        allowed = allowed_tags(level)
        tags = {t: v for t, v in tags.items() if t in allowed}
    ds = strings_dataset(tags)
    for keyword in IDENTIFIER_KEYS[level]:
        if keyword not in ds:
            setattr(ds, keyword, "")
    ds.QueryRetrieveLevel = level.qr_level
    return ds


async def run_query(
    ctx: ServerContext, modality_name: str, level: ResourceType, query: dict[str, Any], normalize: bool = True
) -> Query:
    """C-FIND on the modality (patient root at the patient level, study root otherwise)."""
    modality = ctx.modalities.get(modality_name)
    identifier = build_identifier(level, query, normalize)
    lua = ctx.lua
    if lua is not None and "OutgoingFindRequestFilter" in lua.events.defined:
        identifier = await ctx.run(lua.filter_identifier, "OutgoingFindRequestFilter", identifier, modality.aet)
    model = MODEL_PATIENT_ROOT_FIND if level is ResourceType.PATIENT else MODEL_STUDY_ROOT_FIND
    answers = await ctx.run(ctx.scu.find, modality, identifier, model)
    for answer in answers:
        _add_meta_quirk(answer)
    return Query(modality_name, level, {k: str(v) for k, v in query.items()}, answers)


def _add_meta_quirk(answer: Any) -> None:
    """Orthanc keeps each answer as a DICOM file, whose meta header repeats the SOP class and
    instance: its answers show (0002,0002) and (0002,0003) wherever those are present."""
    for source, meta in ((mt.SOP_CLASS_UID, mt.tag(0x0002, 0x0002)), (mt.SOP_INSTANCE_UID, mt.tag(0x0002, 0x0003))):
        if source in answer and answer[source].value:
            answer.add_new(meta, "UI", answer[source].value)


def answer_values(answer: Any) -> dict[int, str]:
    """The answer's (non-sequence) elements as strings, as Orthanc keeps C-FIND answers."""
    from ..model.parsing import element_text

    return {int(e.tag): element_text(e.value) or "" for e in answer if e.VR != "SQ" and (int(e.tag) >> 16) != 0x0002}


def strings_dataset(tags: dict[int, str]) -> Any:
    """A dataset of the given string values, each converted to its VR."""
    from pydicom.dataset import Dataset

    ds = Dataset()
    for tag, value in sorted(tags.items()):
        vr = vr_of(tag)
        if vr == "UN":
            vr = "LO"
        ds.add_new(tag, vr, _element_value(tag, vr, value))
    return ds


def move_keys(level: ResourceType, answer: dict[int, str]) -> dict[int, str]:
    """What a C-MOVE asks for an answer: the level's unique keys copied from the answer."""
    tags = {t: answer[t] for t in MOVE_KEYS[level] if t in answer}
    tags[QUERY_RETRIEVE_LEVEL] = level.qr_level
    return tags


async def retrieve(
    ctx: ServerContext, modality: Modality, level: ResourceType, identifiers: list[Any], target_aet: str
) -> list[list[str]]:
    """C-MOVE each identifier from the modality to `target_aet`: the public IDs of the
    instances each one brought here (when `target_aet` is ours), per identifier."""
    model = MODEL_PATIENT_ROOT_MOVE if level is ResourceType.PATIENT else MODEL_STUDY_ROOT_MOVE
    local_aet = modality.local_aet or ctx.settings.dicom_aet
    out = []
    for identifier in identifiers:
        message_id, received = ctx.retrievals.open(local_aet)
        try:
            await ctx.run(ctx.scu.move, modality, identifier, model, target_aet, message_id)
        finally:
            ctx.retrievals.close(local_aet, message_id)
        out.append(list(received))
    return out


async def retrieve_get(
    ctx: ServerContext, modality: Modality, level: ResourceType, identifiers: list[Any]
) -> list[list[str]]:
    """C-GET each identifier from the modality: the instances come back on our association and
    are stored here as if received by C-STORE. The public IDs received, per identifier."""
    import asyncio

    from . import ingest

    loop = asyncio.get_running_loop()
    model = MODEL_PATIENT_ROOT_GET if level is ResourceType.PATIENT else MODEL_STUDY_ROOT_GET
    origin = ingest.Origin(
        "DicomProtocol",
        remote_ip=modality.host,
        remote_aet=modality.aet,
        called_aet=modality.local_aet or ctx.settings.dicom_aet,
    )

    def store(data: bytes, _aet: str) -> str | None:
        return ingest.store_blocking(ctx, data, origin, loop).ids.instance

    out = []
    for identifier in identifiers:
        _status, received = await ctx.run(ctx.scu.get, modality, identifier, model, store)
        out.append(received)
    return out
