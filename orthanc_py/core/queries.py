"""Query/retrieve as an SCU: C-FIND against a modality, the answers kept as Orthanc's
`/queries/{id}` (in memory, the newest ones), and C-MOVE of an answer or a whole query."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ..errors import ErrorCode, OrthancError
from ..model.enums import ResourceType
from ..model.lookup import parse_tag, vr_of
from .context import ServerContext

MODEL_STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
MODEL_PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
MODEL_STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
MODEL_PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
IDENTIFIER_KEYS = {
    ResourceType.PATIENT: ("PatientID",),
    ResourceType.STUDY: ("StudyInstanceUID", "AccessionNumber", "PatientID"),
    ResourceType.SERIES: ("StudyInstanceUID", "SeriesInstanceUID"),
    ResourceType.INSTANCE: ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"),
}
MAX_QUERIES = 100


@dataclass
class Query:
    """One C-FIND that was run against a modality, with its answers."""

    modality: str
    level: ResourceType
    query: dict[str, str]
    answers: list[Any] = field(default_factory=list)


class QueryRegistry:
    """The newest queries by id (Orthanc keeps a bounded number too)."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, Query] = OrderedDict()

    def add(self, q: Query) -> str:
        qid = str(uuid.uuid4())
        self._items[qid] = q
        while len(self._items) > MAX_QUERIES:
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


def build_identifier(level: ResourceType, query: dict[str, Any]) -> Any:
    """The C-FIND identifier: the query's keys, plus the level's identifiers as return keys."""
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.QueryRetrieveLevel = level.qr_level
    for key, value in query.items():
        if not isinstance(value, str):
            raise OrthancError(ErrorCode.BAD_REQUEST, f'Tag "{key}" should be associated with a string')
        try:
            tag = parse_tag(key)
        except ValueError as exc:
            raise OrthancError(ErrorCode.UNKNOWN_DICOM_TAG) from exc
        ds.add_new(tag, vr_of(tag) if vr_of(tag) != "UN" else "LO", value)
    for keyword in IDENTIFIER_KEYS[level]:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


async def run_query(ctx: ServerContext, modality_name: str, level: ResourceType, query: dict[str, Any]) -> Query:
    modality = ctx.modalities.get(modality_name)
    identifier = build_identifier(level, query)
    model = MODEL_PATIENT_ROOT_FIND if level is ResourceType.PATIENT else MODEL_STUDY_ROOT_FIND
    answers = await ctx.run(ctx.scu.find, modality, identifier, model)
    return Query(modality_name, level, {k: str(v) for k, v in query.items()}, answers)


def move_identifier(level: ResourceType, answer: Any) -> Any:
    """What a C-MOVE asks for an answer: the level's unique keys copied from the answer."""
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.QueryRetrieveLevel = level.qr_level
    for keyword in IDENTIFIER_KEYS[level]:
        if keyword in answer and (keyword != "AccessionNumber"):
            setattr(ds, keyword, answer.get(keyword))
    return ds


async def retrieve(ctx: ServerContext, q: Query, answers: list[Any], target_aet: str) -> None:
    """C-MOVE each answer from the modality to `target_aet` (default: ourselves)."""
    modality = ctx.modalities.get(q.modality)
    model = MODEL_PATIENT_ROOT_MOVE if q.level is ResourceType.PATIENT else MODEL_STUDY_ROOT_MOVE
    for answer in answers:
        await ctx.run(ctx.scu.move, modality, move_identifier(q.level, answer), model, target_aet)
