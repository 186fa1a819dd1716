"""The DICOM data dictionary as Orthanc sees it: DCMTK's, plus the `Dictionary` configuration key.

Orthanc names tags and guesses the VR of implicit-VR elements through DCMTK's dictionary
(`DcmTag::getTagName`), so `/tags` answers `FullFidelity` (DCMTK) where pydicom would say
`Fullfidelity`, and `Unknown Tag & Data` for tags DCMTK 3.6.7 does not know.  The DCMTK facts are
shipped as package data, `dcmtk_dictionary.txt.gz` (generated); they are parsed on first use only,
as names are needed when rendering answers, never on ingest.

Lookups follow DCMTK's `DcmDataDictionary::findEntry`: an exact entry first (a private one must
have the same private creator; a private entry registered with an element below 0x100 matches
that low byte in any block), then the repeating ranges, the narrowest first.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

UNKNOWN_TAG_NAME = "Unknown Tag & Data"  # DCMTK's DcmTag_ERROR_TagName


@dataclass(frozen=True, slots=True)
class Entry:
    """One dictionary entry: VR (DCMTK's, e.g. "xs", "ox", "up" for context-dependent VRs) and name."""

    vr: str
    name: str


@dataclass(frozen=True, slots=True)
class _Range:
    group_lo: int
    group_hi: int
    group_parity: str
    elem_lo: int
    elem_hi: int
    elem_parity: str
    entry: Entry

    def contains(self, group: int, elem: int) -> bool:
        return _in(group, self.group_lo, self.group_hi, self.group_parity) and _in(
            elem, self.elem_lo, self.elem_hi, self.elem_parity
        )

    @property
    def span(self) -> int:
        return (self.group_hi - self.group_lo + 1) * (self.elem_hi - self.elem_lo + 1)


def _in(value: int, lo: int, hi: int, parity: str) -> bool:
    if not lo <= value <= hi:
        return False
    if parity == "e":
        return value % 2 == 0
    if parity == "o":
        return value % 2 == 1
    return True


@dataclass(frozen=True)
class TagDictionary:
    """DCMTK's dictionary with Orthanc's user-defined entries on top (immutable once built)."""

    public: Mapping[int, Entry]
    private: Mapping[tuple[int, str, int], Entry]  # (group, creator, element or its low byte)
    repeating: tuple[_Range, ...]
    private_ranges: tuple[tuple[int, int, str, str, int, Entry], ...]
    by_name: Mapping[str, int] = field(default_factory=dict)

    def lookup(self, tag: int, creator: str | None = None) -> Entry | None:
        """The entry DCMTK finds for a tag (with its private creator, if any), or None."""
        group, elem = tag >> 16, tag & 0xFFFF
        if creator:
            found = self.private.get((group, creator, elem))
            if found is None and elem > 0xFF:
                found = self.private.get((group, creator, elem & 0xFF))
            if found is not None:
                return found
            for glo, ghi, parity, owner, element, entry in self.private_ranges:
                if owner == creator and element in (elem, elem & 0xFF) and _in(group, glo, ghi, parity):
                    return entry
            return None
        found = self.public.get(tag)
        if found is not None:
            return found
        for rng in self.repeating:
            if rng.contains(group, elem):
                return rng.entry
        return None

    def name(self, tag: int, creator: str | None = None) -> str:
        """Orthanc's name of a tag: the dictionary name, "Unknown Tag & Data" if none."""
        entry = self.lookup(tag, creator)
        return entry.name if entry is not None else UNKNOWN_TAG_NAME

    def vr(self, tag: int, creator: str | None = None) -> str | None:
        """The dictionary VR of a tag (DCMTK's spelling), None when unknown."""
        entry = self.lookup(tag, creator)
        return entry.vr if entry is not None else None

    def tag_of(self, name: str) -> int | None:
        """The tag of a dictionary name (DCMTK's `findTagFromName`), None when unknown."""
        return self.by_name.get(name)

    def without_private(self) -> TagDictionary:
        """`LoadPrivateDictionary: false`: DCMTK's private entries left out."""
        return TagDictionary(self.public, {}, self.repeating, (), self.by_name)

    def with_entries(self, entries: Mapping[str, Any], default_private_creator: str = "") -> TagDictionary:
        """This dictionary plus the `Dictionary` configuration key of Orthanc.

        Each key is a tag ("0009,1001"), each value `[VR, name, min, max, (private creator)]`; a
        private tag without a creator takes `DefaultPrivateCreator`.  ValueError on a bad entry
        (Orthanc refuses to start).
        """
        if not entries:
            return self
        public = dict(self.public)
        private = dict(self.private)
        by_name = dict(self.by_name)
        for key, value in entries.items():
            tag = _parse_key(key)
            if not isinstance(value, list) or len(value) < 2 or not all(isinstance(v, str) for v in value[:2]):
                raise ValueError(f"Dictionary: bad entry for {key}: {value!r}")
            vr, name = value[0].upper(), value[1]
            if len(vr) != 2:
                raise ValueError(f"Dictionary: bad VR for {key}: {value[0]!r}")
            creator = str(value[4]) if len(value) >= 5 else default_private_creator
            entry = Entry(vr, name)
            group, elem = tag >> 16, tag & 0xFFFF
            if group % 2 == 1 and creator:
                private[(group, creator, elem)] = entry
            else:
                public[tag] = entry
            by_name.setdefault(name, tag)
        return TagDictionary(public, private, self.repeating, self.private_ranges, by_name)


def _parse_key(key: str) -> int:
    text = key.strip()
    if len(text) == 9 and text[4] == ",":
        text = text[:4] + text[5:]
    if len(text) != 8:
        raise ValueError(f"Dictionary: bad tag {key!r}")
    try:
        return int(text, 16)
    except ValueError:
        raise ValueError(f"Dictionary: bad tag {key!r}") from None


# Orthanc's own names for a few main DICOM tags, whatever DCMTK's version calls them
# (FromDcmtkBridge's "patches for important tags"; 0010,1000 is RETIRED_ in DCMTK 3.6.7).
_ORTHANC_PATCHES = {
    0x00080050: "AccessionNumber",
    0x00080018: "SOPInstanceUID",
    0x00100020: "PatientID",
    0x0020000E: "SeriesInstanceUID",
    0x0020000D: "StudyInstanceUID",
    0x7FE00010: "PixelData",
    0x00541330: "ImageIndex",
    0x00200013: "InstanceNumber",
    0x00540081: "NumberOfSlices",
    0x00280008: "NumberOfFrames",
    0x00181090: "CardiacNumberOfImages",
    0x00201002: "ImagesInAcquisition",
    0x00100010: "PatientName",
    0x00200032: "ImagePositionPatient",
    0x00200037: "ImageOrientationPatient",
    0x00101000: "OtherPatientIDs",
}


def _dcmtk_sections() -> dict[str, list[str]]:
    """The lines of each section ([PUBLIC], [REPEATING], [PRIVATE]) of the shipped table."""
    raw = (resources.files(__package__) / "dcmtk_dictionary.txt.gz").read_bytes()
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in gzip.decompress(raw).decode("utf-8").splitlines():
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
        elif line and not line.startswith("#"):
            current.append(line)
    return sections


@cache
def dcmtk() -> TagDictionary:
    """DCMTK's own dictionary (dicom.dic + private.dic) with Orthanc's patched names, parsed once."""
    sections = _dcmtk_sections()
    public: dict[int, Entry] = {}
    by_name: dict[str, int] = {}
    for line in sections["PUBLIC"]:
        tag_text, vr, name = line.split("\t")
        tag = int(tag_text, 16)
        public[tag] = Entry(vr, name)
        by_name.setdefault(name, tag)
    for tag, name in _ORTHANC_PATCHES.items():
        public[tag] = Entry(public[tag].vr, name)
        by_name.setdefault(name, tag)
    ranges: list[_Range] = []
    for line in sections["REPEATING"]:
        glo, ghi, gp, elo, ehi, ep, vr, name = line.split("\t")
        ranges.append(_Range(int(glo, 16), int(ghi, 16), gp, int(elo, 16), int(ehi, 16), ep, Entry(vr, name)))
        by_name.setdefault(name, (int(glo, 16) << 16) | int(elo, 16))
    ranges.sort(key=lambda r: r.span)  # DCMTK puts a subset before its superset
    private: dict[tuple[int, str, int], Entry] = {}
    private_ranges: list[tuple[int, int, str, str, int, Entry]] = []
    for line in sections["PRIVATE"]:
        glo, ghi, gp, creator, elem, vr, name = line.split("\t")
        entry = Entry(vr, name)
        if glo == ghi:
            private.setdefault((int(glo, 16), creator, int(elem, 16)), entry)
        else:
            private_ranges.append((int(glo, 16), int(ghi, 16), gp, creator, int(elem, 16), entry))
    return TagDictionary(public, private, tuple(ranges), tuple(private_ranges), by_name)


__all__ = ["UNKNOWN_TAG_NAME", "Entry", "TagDictionary", "dcmtk"]


def parse_tag(text: str, dictionary: TagDictionary | None = None) -> int:
    """Orthanc's FromDcmtkBridge::ParseTag: "gggg,eeee", "gggg-eeee", "ggggeeee" or a dictionary name.

    Raises ValueError for an unknown name (Orthanc answers 500 "Unknown DICOM tag").
    """
    hexa = text
    if len(text) == 9 and text[4] in ",-":
        hexa = text[:4] + text[5:]
    if len(hexa) == 8 and all(c in "0123456789abcdefABCDEF" for c in hexa):
        return int(hexa, 16)
    if text in {"GenericGroupLength", "PrivateGroupLength", "PrivateCreator", UNKNOWN_TAG_NAME}:
        raise ValueError(f"Unknown DICOM tag: {text}")
    tag = (dictionary or dcmtk()).tag_of(text)
    if tag is None:
        raise ValueError(f"Unknown DICOM tag: {text}")
    return tag
