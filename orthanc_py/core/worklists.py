"""Modality worklists served from a folder, as Orthanc does with its ModalityWorklists plugin.

Configuration (the plugin's section): `"Worklists": {"Enable": true, "Database": folder,
"FilterIssuerAet": false, "LimitAnswers": 0}`. A C-FIND on the Modality Worklist Information
Model is matched against every `*.wl` file of the folder, read at each query (users drop and
remove files while the server runs). Matching is Orthanc's hierarchical matcher: each non-empty
plain key of the query is a constraint the worklist must meet (single value, wildcards on text
VRs, ranges on dates and times, lists of values; PN case-insensitive unless CaseSensitivePN), a
sequence key with one item constrains the items of the worklist's sequence (one must match),
and an empty key or sequence only asks for the value. An answer holds the keys of the query
that the worklist has (sequence items filtered the same way), minus SOPInstanceUID, in the
DefaultEncoding in force (what it cannot encode is dropped). Lua's
IncomingWorklistRequestFilter(query, origin) may rewrite the query first.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from ..errors import ErrorCode, OrthancError
from ..model.charsets import ENCODINGS, python_codec
from ..model.lookup import vr_of
from ..model.orthancjson import orthanc_tags, parse_tag
from ..model.parsing import element_text
from .context import ServerContext

log = logging.getLogger("orthanc_py.worklists")

WORKLIST_FIND = "1.2.840.10008.5.1.4.31"
"""Modality Worklist Information Model - FIND."""

_SPECIFIC_CHARACTER_SET = 0x00080005
_SOP_INSTANCE_UID = 0x00080018
_SCHEDULED_STEP = 0x00400100
_STATION_AET = 0x00400001
_REFERENCED_SEQUENCES = (0x00081110, 0x00081120)  # ReferencedStudySequence, ReferencedPatientSequence
_REFERENCED_SOP = (0x00081150, 0x00081155)
_WILDCARD_VRS = frozenset(("AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"))
_RANGE_VRS = frozenset(("DA", "DT", "TM"))
_TEXT_VRS = frozenset(("SH", "LO", "ST", "LT", "UT", "PN", "UC"))
_BINARY_VRS = frozenset(("OB", "OD", "OF", "OL", "OV", "OW", "UN"))


@dataclass(frozen=True, slots=True)
class WorklistOptions:
    """The "Worklists" section of the configuration."""

    enabled: bool = False
    database: str = ""
    filter_issuer_aet: bool = False
    limit_answers: int = 0

    @classmethod
    def of(cls, section: Any) -> WorklistOptions:
        if not isinstance(section, Mapping) or not section.get("Enable", False):
            return cls()
        database = section.get("Database")
        if not isinstance(database, str) or not database:
            raise ValueError('The configuration option "Worklists.Database" must contain a path')
        limit = section.get("LimitAnswers", 0)
        return cls(True, database, bool(section.get("FilterIssuerAet", False)), int(limit) if limit else 0)


class _Constraint:
    """One constraint of Orthanc's DicomTagConstraint on a plain element."""

    def __init__(self, tag: int, vr: str, query: str, case_sensitive_pn: bool) -> None:
        self.tag = tag
        self.case_sensitive = case_sensitive_pn if vr == "PN" else True
        self.low: str | None = None
        self.high: str | None = None
        self.values: frozenset[str] | None = None
        self.regex: re.Pattern[str] | None = None
        if vr in _RANGE_VRS and "-" in query:
            low, _, high = query.partition("-")
            self.low = self._norm(low) if low else None
            self.high = self._norm(high) if high else None
        elif "\\" in query:
            self.values = frozenset(self._norm(v) for v in query.split("\\"))
        elif vr in _WILDCARD_VRS and ("*" in query or "?" in query):
            pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in query)
            self.regex = re.compile(pattern, re.DOTALL if self.case_sensitive else re.DOTALL | re.IGNORECASE)
        else:
            self.values = frozenset((self._norm(query),))

    def _norm(self, text: str) -> str:
        return text if self.case_sensitive else text.upper()

    def matches(self, item: Dataset) -> bool:
        elem = item.get(self.tag)
        if elem is None or elem.VR in _BINARY_VRS or elem.VR == "SQ":
            return False
        value = element_text(elem.value)
        if value is None:
            return False
        if self.regex is not None:
            return self.regex.fullmatch(value) is not None
        value = self._norm(value)
        if self.values is not None:
            return value in self.values
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


class Matcher:
    """Orthanc's HierarchicalMatcher over a worklist query (see the module's docstring)."""

    def __init__(self, query: Dataset, case_sensitive_pn: bool) -> None:
        self.flat: list[int] = []
        self.constraints: list[_Constraint] = []
        self.sequences: dict[int, Matcher | None] = {}
        for elem in query:
            tag = int(elem.tag)
            if tag == _SPECIFIC_CHARACTER_SET or tag & 0xFFFF == 0:  # the encoding, group lengths
                continue
            if tag in self.sequences or tag in self.flat:
                raise OrthancError(ErrorCode.BAD_REQUEST, "Two constraints on the same tag")
            if elem.VR == "SQ":
                items = list(elem.value or ())
                if not items or (len(items) == 1 and len(items[0]) == 0):
                    self.sequences[tag] = None  # universal: return the whole sequence
                elif len(items) == 1:
                    self.sequences[tag] = Matcher(items[0], case_sensitive_pn)
                else:
                    raise OrthancError(ErrorCode.BAD_REQUEST, "A sequence key with more than one item")
                continue
            self.flat.append(tag)
            if elem.VR in _BINARY_VRS:
                if elem.value:
                    log.warning("worklist query: the non-empty binary key %08X is ignored", tag)
                continue
            value = element_text(elem.value)
            if value:
                self.constraints.append(_Constraint(tag, elem.VR, value, case_sensitive_pn))
        self.flat.sort()

    def matches(self, item: Dataset) -> bool:
        if not all(c.matches(item) for c in self.constraints):
            return False
        for tag, sub in self.sequences.items():
            if sub is None:
                continue
            elem = item.get(tag)
            if elem is None or elem.VR != "SQ":
                continue  # a worklist without the sequence is not refused on it (as Orthanc)
            if not any(sub.matches(child) for child in elem.value):
                return False
        return True

    def extract(self, item: Dataset, codec: Codec) -> Dataset:
        """The keys of the query the worklist has, text re-encoded by `codec`."""
        out = Dataset()
        for tag in self.flat:
            elem = item.get(tag)
            if elem is not None:
                out.add(codec.element(elem))
        for tag, sub in sorted(self.sequences.items()):
            elem = item.get(tag)
            if elem is None or elem.VR != "SQ":
                continue
            children = [
                codec.whole(child) if sub is None else sub.extract(child, codec)
                for child in elem.value
                if sub is None or sub.matches(child)
            ]
            out.add(DataElement(tag, "SQ", Sequence(children)))
        return out


class Codec:
    """Text of a worklist (decoded by pydicom with the file's character set) written in the
    answers' character set; what it cannot hold is dropped, as Orthanc's ChangeEncoding does."""

    def __init__(self, default_encoding: str) -> None:
        self.term = ENCODINGS.get(default_encoding) or "ISO_IR 100"
        self.codec = python_codec(self.term)

    def element(self, elem: DataElement) -> DataElement:
        if elem.VR == "SQ":
            return DataElement(elem.tag, "SQ", Sequence([self.whole(child) for child in elem.value]))
        if elem.VR in _TEXT_VRS and elem.value not in (None, ""):
            text = element_text(elem.value)
            if text is not None:
                return DataElement(elem.tag, elem.VR, text.encode(self.codec, "ignore"))
        return DataElement(elem.tag, elem.VR, elem.value)

    def whole(self, item: Dataset) -> Dataset:
        out = Dataset()
        for elem in item:
            if int(elem.tag) != _SPECIFIC_CHARACTER_SET:
                out.add(self.element(elem))
        return out


def fix_query(query: Dataset) -> None:
    """DCMTK's worklist rule Orthanc applies: a ReferencedStudySequence or
    ReferencedPatientSequence holding one item with an empty ReferencedSOPClassUID and
    ReferencedSOPInstanceUID asks for the sequence, not for empty references."""
    for tag in _REFERENCED_SEQUENCES:
        elem = query.get(tag)
        if elem is None or elem.VR != "SQ" or len(elem.value) != 1:
            continue
        item = elem.value[0]
        if all(t in item and not item[t].value for t in _REFERENCED_SOP):
            elem.value = Sequence([])


def _filter_issuer(query: Dataset, issuer_aet: str) -> None:
    """FilterIssuerAet: a query naming no ScheduledStationAETitle asks for the caller's."""
    step = query.get(_SCHEDULED_STEP)
    if step is None:
        query.add(DataElement(_SCHEDULED_STEP, "SQ", Sequence([Dataset()])))
        step = query[_SCHEDULED_STEP]
    if step.VR != "SQ" or len(step.value) != 1:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
    item = step.value[0]
    current = element_text(item[_STATION_AET].value) if _STATION_AET in item else ""
    if not current or current == "*":
        item.add(DataElement(_STATION_AET, "AE", issuer_aet))
    pregnancy = query.get(0x001021C0)
    if pregnancy is not None and not pregnancy.value:
        del query[0x001021C0]


def _worklist_files(folder: str) -> Iterator[str]:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise OrthancError(ErrorCode.DIRECTORY_EXPECTED, f"Inexistent folder of worklists: {folder}") from exc
    for entry in entries:
        if entry.name.lower().endswith(".wl") and entry.is_file():
            yield entry.path


def _read(path: str, default_term: str | None) -> Dataset | None:
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as exc:  # a file being written, or not DICOM: skipped as the plugin does
        log.warning("worklist %s cannot be read: %s", path, exc)
        return None
    if _SPECIFIC_CHARACTER_SET not in ds and default_term:
        ds.SpecificCharacterSet = default_term  # decoded with DefaultEncoding, as Orthanc reads it
    return ds


@dataclass(slots=True)
class WorklistAnswers:
    answers: list[Dataset]
    complete: bool


def find(
    options: WorklistOptions,
    query: Dataset,
    issuer_aet: str,
    default_encoding: str,
    case_sensitive_pn: bool,
) -> WorklistAnswers:
    """Blocking: the worklists of the folder matching `query` (already through Lua's filter)."""
    fix_query(query)
    if options.filter_issuer_aet:
        _filter_issuer(query, issuer_aet)
    matcher = Matcher(query, case_sensitive_pn)
    codec = Codec(default_encoding)
    answers: list[Dataset] = []
    for path in _worklist_files(options.database):
        ds = _read(path, codec.term)
        if ds is None or not matcher.matches(ds):
            continue
        answer = matcher.extract(ds, codec)
        if _SOP_INSTANCE_UID in answer:  # as Orthanc: worklist answers never carry it
            del answer[_SOP_INSTANCE_UID]
        answer.SpecificCharacterSet = codec.term
        # LimitAnswers as the plugin counts: the match after the limit is answered too, and
        # the answers are marked incomplete
        if options.limit_answers and len(answers) >= options.limit_answers:
            answers.append(answer)
            return WorklistAnswers(answers, False)
        answers.append(answer)
    return WorklistAnswers(answers, True)


_INT_VRS = frozenset(("US", "SS", "UL", "SL", "UV", "SV", "AT"))


def _element_from_json(tag: int, value: Any, ctx: ServerContext) -> DataElement | None:
    vr = vr_of(tag)
    if isinstance(value, list):
        items = [_dataset_from_json(v, ctx) for v in value if isinstance(v, dict)]
        return DataElement(tag, "SQ", Sequence(items))
    if not isinstance(value, str):
        return None
    if vr in ("UN", "SQ"):
        vr = "LO"
    if vr in _INT_VRS or vr in ("FL", "FD"):
        parts = [p for p in value.split("\\") if p.strip()]
        try:
            numbers = [int(p) if vr in _INT_VRS else float(p) for p in parts]
        except ValueError:
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f"Bad value for tag {tag:08X}: {value}") from None
        return DataElement(tag, vr, numbers[0] if len(numbers) == 1 else (numbers or None))
    return DataElement(tag, vr, value)


def _dataset_from_json(obj: Mapping[str, Any], ctx: ServerContext) -> Dataset:
    """A query as Lua returns it: {"gggg,eeee" or name: string, or a list of items}."""
    ds = Dataset()
    for key, value in obj.items():
        try:
            tag = parse_tag(str(key), ctx.dictionary)
        except ValueError:
            raise OrthancError(ErrorCode.UNKNOWN_DICOM_TAG, f"Unknown DICOM tag: {key}") from None
        elem = _element_from_json(tag, value, ctx)
        if elem is not None:
            ds.add(elem)
    return ds


def lua_filtered(ctx: ServerContext, query: Dataset, origin: dict[str, str]) -> Dataset:
    """Blocking: the query through Lua's IncomingWorklistRequestFilter(query, origin), which
    gets and returns the query as Orthanc's short JSON (sequences as lists of items)."""
    lua = ctx.lua
    if lua is None or "IncomingWorklistRequestFilter" not in lua.events.defined:
        return query
    out = lua.filter_json("IncomingWorklistRequestFilter", orthanc_tags(query, "short"), origin)
    if out == []:
        return Dataset()
    if not isinstance(out, dict):
        raise OrthancError(ErrorCode.LUA_BAD_OUTPUT, "Lua: IncomingWorklistRequestFilter must return a table")
    return _dataset_from_json(out, ctx)


def serve(ctx: ServerContext, query: Dataset, origin: dict[str, str]) -> WorklistAnswers:
    """Blocking: a worklist C-FIND received by the SCP (its identifier and Orthanc's origin)."""
    options = WorklistOptions.of(ctx.settings.worklists)
    if not options.enabled:
        raise OrthancError(ErrorCode.NO_WORKLIST_HANDLER)
    query = lua_filtered(ctx, query, origin)
    return find(options, query, origin["RemoteAet"], ctx.default_encoding, ctx.settings.case_sensitive_pn)


async def find_on_modality(ctx: ServerContext, modality_name: str, query: Mapping[str, Any]) -> list[Dataset]:
    """POST /modalities/{id}/find-worklist: a worklist C-FIND SCU with the query as Orthanc
    builds it from JSON (tags by name or number, sequences as lists of items, in the
    DefaultEncoding unless the query names its SpecificCharacterSet)."""
    modality = ctx.modalities.get(modality_name)
    identifier = _dataset_from_json(query, ctx)
    if _SPECIFIC_CHARACTER_SET not in identifier:
        identifier.SpecificCharacterSet = Codec(ctx.default_encoding).term
    answers: list[Dataset] = await ctx.run(ctx.scu.find, modality, identifier, WORKLIST_FIND)
    return answers
