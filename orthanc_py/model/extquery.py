"""Extended query tags (the Azure DICOM service's way to make more attributes searchable):
what a tag definition may be, and which values of a file can be indexed for it.

Values are kept in the index's `tags` table like main DICOM tags, under the tag number for a
standard tag and under a negative number (minus the definition's key) for a private tag, so two
private creators using the same element number never mix.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Any

from . import maintags as mt
from .enums import ResourceType
from .lookup import keyword_of, parse_tag, vr_of

MAX_TAGS = 128
SUPPORTED_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "PN", "SH", "SL", "SS", "TM", "UI", "UL", "US"}
)
RANGE_VRS = frozenset({"DA", "DT", "TM"})
INTEGER_VRS = frozenset({"IS", "SL", "SS", "UL", "US"})
FLOAT_VRS = frozenset({"DS", "FL", "FD"})
LEVELS = {"study": ResourceType.STUDY, "series": ResourceType.SERIES, "instance": ResourceType.INSTANCE}
LEVEL_NAMES = {v: k.capitalize() for k, v in LEVELS.items()}
_MAX_LENGTH = {
    "AE": 16,
    "AS": 4,
    "CS": 16,
    "DA": 8,
    "DS": 16,
    "DT": 26,
    "IS": 12,
    "LO": 64,
    "SH": 16,
    "TM": 14,
    "UI": 64,
}
_PATTERNS = {
    "AS": re.compile(r"\d{3}[DWMY]"),
    "CS": re.compile(r"[A-Z0-9_ ]*"),
    "UI": re.compile(r"[0-9.]*"),
    "IS": re.compile(r"[ ]*[+-]?\d+[ ]*"),
    "DS": re.compile(r"[ ]*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?[ ]*"),
    "TM": re.compile(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?"),
    "DT": re.compile(r"\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?"),
}


class InvalidDefinition(ValueError):
    """A tag definition the server refuses (answered 400)."""


@dataclass(frozen=True)
class Definition:
    """A validated, normalized extended query tag to add."""

    tag: int
    vr: str
    private_creator: str
    level: ResourceType

    @property
    def path(self) -> str:
        return f"{self.tag:08X}"


def is_private(tag: int) -> bool:
    return bool((tag >> 16) & 1)


def storage_tag(tag: int, private_creator: str, key: int) -> int:
    """The number the values are indexed under (see the module docstring)."""
    return -key if private_creator else tag


def parse_path(text: str) -> int:
    """A tag path: eight hex digits or a keyword; InvalidDefinition otherwise (no sequences)."""
    text = (text or "").strip()
    if re.fullmatch(r"[0-9A-Fa-f]{8}", text):
        return int(text, 16)
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", text):
        try:
            return parse_tag(text)
        except ValueError:
            pass
    raise InvalidDefinition(
        f"The extended query tag '{text}' is invalid as it cannot be parsed into a valid Dicom Tag."
    )


def _field(item: dict[str, Any], name: str) -> Any:
    """A property of a request item, matched without regard to case (as the Azure service does)."""
    for key, value in item.items():
        if key.lower() == name.lower():
            return value
    return None


def parse_definitions(body: Any, already_searchable: frozenset[int]) -> list[Definition]:
    """Validate the body of POST /extendedquerytags (an array of {Path, VR, PrivateCreator, Level})."""
    if not isinstance(body, list) or not body:
        raise InvalidDefinition("The extended query tag(s) is missing.")
    out: list[Definition] = []
    seen: set[tuple[int, str]] = set()
    for item in body:
        if not isinstance(item, dict):
            raise InvalidDefinition("Each extended query tag must be a JSON object.")
        path, level_text = _field(item, "Path"), _field(item, "Level")
        for name, value in (("Path", path), ("Level", level_text)):
            if not isinstance(value, str) or not value.strip():
                raise InvalidDefinition(
                    f"The Dicom Tag Property {name} must be specified and must not be null, empty or whitespace."
                )
        level = LEVELS.get(level_text.strip().lower())
        if level is None:
            raise InvalidDefinition(
                f"Input Dicom Tag Level '{level_text}' is invalid. It must have value 'Study', 'Series' or 'Instance'."
            )
        tag = parse_path(path)
        if tag in already_searchable:
            raise InvalidDefinition(f"The query tag '{path}' is already supported.")
        creator = _field(item, "PrivateCreator") or ""
        if not isinstance(creator, str) or len(creator) > 64 or "\\" in creator:
            raise InvalidDefinition(f"The private creator for tag '{path}' is not a valid LO value.")
        creator = creator.strip()
        private = is_private(tag)
        if private and (tag & 0xFFFF) <= 0x00FF:
            if creator:
                raise InvalidDefinition(f"The private creator is not empty for private identification code '{path}'.")
            raise InvalidDefinition(f"The extended query tag '{path}' is a private identification code.")
        if private and not creator:
            raise InvalidDefinition(f"The private creator for private tag '{path}' is missing.")
        if not private and creator:
            raise InvalidDefinition(f"The private creator is not empty for standard tag '{path}'.")
        vr_text = _field(item, "VR")
        known = "UN" if private else vr_of(tag)
        if vr_text is None or (isinstance(vr_text, str) and not vr_text.strip()):
            if known == "UN":
                raise InvalidDefinition(f"The vr for tag '{path}' is missing.")
            vr = known.split(" or ")[0]
        else:
            if not isinstance(vr_text, str) or not re.fullmatch(r"[A-Za-z]{2}", vr_text.strip()):
                raise InvalidDefinition(f"The VR code '{vr_text}' for tag '{path}' is invalid.")
            vr = vr_text.strip().upper()
            if known != "UN" and vr not in known.split(" or "):
                raise InvalidDefinition(
                    f"The VR code '{vr}' is incorrectly specified for '{path}'. The expected VR code for it is "
                    f"'{known}'. Retry this request either with the correct VR code or without specifying it."
                )
        if vr not in SUPPORTED_VRS:
            raise InvalidDefinition(f"The VR code '{vr}' specified for tag '{path}' is not supported.")
        if (tag, creator) in seen:
            raise InvalidDefinition(f"The extended query tag '{path}' has been specified before.")
        seen.add((tag, creator))
        out.append(Definition(tag, vr, creator, level))
    return out


def keyword(tag: int) -> str | None:
    return None if is_private(tag) else keyword_of(tag)


def normalize_number(vr: str, text: str) -> str:
    """Integers and decimals compare as numbers: "0003" and "3" are one value."""
    if vr in INTEGER_VRS:
        return str(int(text.strip()))
    if vr in FLOAT_VRS:
        return repr(float(text.strip()))
    return text


def check_value(vr: str, text: str) -> str | None:
    """Why `text` cannot be indexed under `vr` (None when it can), in the Azure service's words."""
    if "\\" in text:
        return "Dicom element has multiple values. We only support indexing single value dicom element."
    limit = _MAX_LENGTH.get(vr)
    if limit is not None and len(text) > limit:
        return "Value exceeds maximum length."
    if vr == "PN":
        groups = text.split("=")
        if len(groups) > 3:
            return "Value contains more than 3 groups."
        if any(len(g) > 64 for g in groups):
            return "One or more group of person name exceeds maximum length of 64."
        if any(len(g.split("^")) > 5 for g in groups):
            return "Value contains more than 5 components."
    elif vr == "DA":
        try:
            datetime.datetime.strptime(text, "%Y%m%d")
        except ValueError:
            return "Value is not a valid DA."
    elif vr in ("LO", "SH"):
        if any(ch in text for ch in "\r\n\f"):
            return "Value contains invalid character."
    elif vr in _PATTERNS and not _PATTERNS[vr].fullmatch(text):
        return f"Value is not a valid {vr}."
    return None


def value_of(ds: Any, tag: int, private_creator: str, vr: str) -> tuple[str | None, str | None]:
    """(indexable text, error) of the attribute in a pydicom dataset; (None, None) when absent or empty."""
    if private_creator:
        try:
            block = ds.private_block(tag >> 16, private_creator)
        except KeyError:
            return None, None
        full = block.get_tag(tag & 0xFF)
    else:
        full = tag
    elem = ds.get(full)
    if elem is None or elem.value is None or elem.value == "":
        return None, None
    if elem.VR not in ("UN", vr) and vr not in elem.VR.split(" or "):
        return None, "Dicom element has unexpected VR."
    value = elem.value
    if elem.VR == "UN" and isinstance(value, bytes):
        value = value.decode("latin-1").rstrip(" \x00")
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        if len(value) != 1:
            return None, "Dicom element has multiple values. We only support indexing single value dicom element."
        value = value[0]
    if isinstance(value, bytes | bytearray):
        return None, "Dicom element has unexpected VR."
    text = str(value).rstrip(" \x00")
    if not text:
        return None, None
    error = check_value(vr, text)
    if error is not None:
        return None, error
    try:
        return normalize_number(vr, text), None
    except ValueError:
        return None, f"Value is not a valid {vr}."


# What the Azure DICOM service refuses as "already supported": the attributes its QIDO-RS always
# searches (ManufacturerModelName left out: Azure's own documentation adds it as an example).
AZURE_CORE_TAGS = frozenset(
    (
        0x00080020,  # StudyDate
        0x0020000D,  # StudyInstanceUID
        0x00081030,  # StudyDescription
        0x00080050,  # AccessionNumber
        0x00100020,  # PatientID
        0x00100010,  # PatientName
        0x00080090,  # ReferringPhysicianName
        0x00100030,  # PatientBirthDate
        0x0020000E,  # SeriesInstanceUID
        0x00080060,  # Modality
        0x00400244,  # PerformedProcedureStepStartDate
        0x00080018,  # SOPInstanceUID
    )
)


def default_searchable() -> frozenset[int]:
    """Attributes refused as "already supported". Orthanc's other main DICOM tags are accepted
    but need no values of their own: the index searches them already."""
    return AZURE_CORE_TAGS


def indexed_already(tag: int, private_creator: str) -> bool:
    """A main DICOM tag: its values are in the index whatever the extended query tags."""
    return not private_creator and tag in mt.ALL_MAIN_TAGS
