"""Lookup constraints: one representation of a DICOM query, shared by /tools/find, C-FIND and QIDO-RS.

Each interface parses its input into `TagConstraint`s with `parse_constraint`, which applies the
PS3.4 C.2.2.2 matching rules (universal, single value, wildcard, range, list of values); the index
compiles them to SQL and `matches` evaluates them in Python for tags the index does not hold.
"""

from __future__ import annotations

import enum
import fnmatch
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from .enums import ResourceType
from .maintags import DICTIONARY_VR, KEYWORD_TO_MAIN_TAG, LEVEL_OF_TAG, MAIN_TAGS

RANGE_VRS = frozenset({"DA", "DT", "TM"})
TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
"""The VRs on which wildcards are defined (PS3.4 C.2.2.2.4) and where case can matter."""


class MatchKind(enum.Enum):
    EQUAL = "equal"
    WILDCARD = "wildcard"
    RANGE = "range"
    LIST = "list"


@dataclass(frozen=True, slots=True)
class TagConstraint:
    """A constraint on one tag: `values` holds one value (EQUAL/WILDCARD), (low, high) for RANGE
    with "" meaning open, or the alternatives of a LIST (each may hold wildcards)."""

    tag: int
    level: ResourceType | None
    kind: MatchKind
    values: tuple[str, ...]
    case_sensitive: bool = True


def normalize(text: str) -> str:
    """Case- and accent-insensitive form of a value (Orthanc's identifier normalization)."""
    if text.isascii():
        return text.upper()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).upper()


_TAG_RE = re.compile(r"^\(?([0-9a-fA-F]{4})[,|-]?([0-9a-fA-F]{4})\)?$")


@lru_cache(maxsize=4096)
def parse_tag(text: str) -> int:
    """Accept "0010,0010", "00100010", "0010-0010", "(0010,0010)" or a keyword ("PatientName").

    ValueError when the text names no tag.
    """
    m = _TAG_RE.match(text.strip())
    if m:
        return (int(m.group(1), 16) << 16) | int(m.group(2), 16)
    keyword = text.strip()
    main = KEYWORD_TO_MAIN_TAG.get(keyword)  # the same as pydicom's, without importing it
    if main is not None:
        return main
    from pydicom.datadict import tag_for_keyword

    # pydicom's dictionary has entries without a keyword: "" must not name one of them
    t = tag_for_keyword(keyword) if keyword else None
    if t is None:
        raise ValueError(f"Unknown DICOM tag: {text}")
    return int(t)


_QIDO_VRS = {
    0x00080056: "CS",  # InstanceAvailability
    0x00080061: "CS",  # ModalitiesInStudy
    0x00081190: "UR",  # RetrieveURL
    0x00201206: "IS",  # NumberOfStudyRelatedSeries
    0x00201208: "IS",  # NumberOfStudyRelatedInstances
    0x00201209: "IS",  # NumberOfSeriesRelatedInstances
    0x00280010: "US",  # Rows
    0x00280011: "US",  # Columns
}
"""pydicom's dictionary VR of the other tags QIDO-RS answers by default (tests/unit/test_maintags.py)."""


@lru_cache(maxsize=4096)
def vr_of(tag: int) -> str:
    """The dictionary VR of a tag ("UN" for private or unknown tags)."""
    vr = DICTIONARY_VR.get(tag) or _QIDO_VRS.get(tag)  # no pydicom import for these
    if vr is not None:
        return vr
    from pydicom.datadict import dictionary_VR

    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


@lru_cache(maxsize=4096)
def keyword_of(tag: int) -> str | None:
    """The DICOM keyword of a tag, or None for private/unknown tags."""
    main = LEVEL_OF_TAG.get(tag)
    if main is not None:
        return MAIN_TAGS[main][tag]
    from pydicom.datadict import keyword_for_tag

    kw = keyword_for_tag(tag)
    return kw or None


def parse_constraint(
    tag: int,
    text: str,
    case_sensitive_pn: bool = True,
    star_is_universal: bool = True,
    any_text_vr: bool = False,
) -> TagConstraint | None:
    """Turn a query value into a constraint; None means universal matching.

    An empty value is universal. "*" is universal in DICOM; Orthanc's /tools/find treats it as
    "the tag is present" (`star_is_universal=False`). PN values match case-insensitively unless
    `case_sensitive_pn`; with `any_text_vr` (Orthanc's /tools/find "CaseSensitive") that choice
    applies to every text VR. Ranges apply to DA/DT/TM.
    """
    vr = vr_of(tag)
    folds = vr in TEXT_VRS if any_text_vr else vr == "PN"
    case_sensitive = not (folds and not case_sensitive_pn)
    level = LEVEL_OF_TAG.get(tag)
    if text == "" or (text == "*" and star_is_universal):
        return None
    if "\\" in text:
        return TagConstraint(tag, level, MatchKind.LIST, tuple(text.split("\\")), case_sensitive)
    if vr in RANGE_VRS and "-" in text:
        low, _, high = text.partition("-")
        if low == "" and high == "":
            return None
        return TagConstraint(tag, level, MatchKind.RANGE, (low, high), case_sensitive)
    if "*" in text or "?" in text:
        return TagConstraint(tag, level, MatchKind.WILDCARD, (text,), case_sensitive)
    return TagConstraint(tag, level, MatchKind.EQUAL, (text,), case_sensitive)


@lru_cache(maxsize=1024)
def _wildcard_regex(pattern: str, case_sensitive: bool) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern).replace("(?s:", "(?s:", 1), 0 if case_sensitive else re.I)


def _one(pattern: str, value: str, case_sensitive: bool) -> bool:
    if not case_sensitive:
        pattern, value = normalize(pattern), normalize(value)
    if "*" in pattern or "?" in pattern:
        # fnmatch treats [ ] as classes; DICOM does not: escape them first.
        escaped = pattern.replace("[", "[[]")
        return _wildcard_regex(escaped, True).match(value) is not None
    return pattern == value


def matches(constraint: TagConstraint, value: str | None) -> bool:
    """Evaluate a constraint on a stored value (None: the resource lacks the tag: no match)."""
    if value is None:
        return False
    kind = constraint.kind
    if kind is MatchKind.RANGE:
        low, high = constraint.values
        return (low == "" or value >= low) and (high == "" or value <= high)
    if kind is MatchKind.LIST:
        return any(_one(v, value, constraint.case_sensitive) for v in constraint.values)
    return _one(constraint.values[0], value, constraint.case_sensitive)
