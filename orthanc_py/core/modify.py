"""Orthanc's DicomModification: a modify or anonymize request parsed once (`Modification`), then
applied to each pydicom Dataset of a resource (`apply`), with one map of new identifiers shared
by all the instances of the job so references stay consistent across a study.

Rules as Orthanc 1.12's (DicomModification::ParseModifyRequest/ParseAnonymizationRequest/Apply,
Orthanc Book "Anonymization and modification"): "Replace", "Remove" and "Keep" name tags by
keyword, "gggg,eeee" or paths into sequences ("Seq[0].Tag", "Seq[*].Tag", "(gggg,eeee)[1].X");
the four identifiers (PatientID and the three UIDs) may only be touched with "Force"; every UID
from the modification level down gets a new value unless kept or replaced. Anonymization starts
from a PS3.15 Basic Profile (`anonprofiles`), removes private tags unless "KeepPrivateTags", maps
PatientID to a UUID and every other UID it lists to new UIDs, inside sequences too.

`modifyfile.modify_bytes` applies a modification to the bytes of a file; `modifyjob` runs it over
the instances of a resource.
"""

from __future__ import annotations

import base64
import functools
import os
import random
import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import ORTHANC_VERSION
from ..errors import ErrorCode, OrthancError
from ..model import maintags as mt
from ..model.dictionary import TagDictionary
from ..model.enums import ResourceType
from ..model.lookup import parse_tag, vr_of
from .anonprofiles import DEFAULT_VERSION, ORTHANC_METHODS, PROFILES, deidentification_method

if TYPE_CHECKING:
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset

_IDENTIFIERS = (mt.PATIENT_ID, mt.STUDY_INSTANCE_UID, mt.SERIES_INSTANCE_UID, mt.SOP_INSTANCE_UID)
_UID_OF_LEVEL = {
    ResourceType.STUDY: mt.STUDY_INSTANCE_UID,
    ResourceType.SERIES: mt.SERIES_INSTANCE_UID,
    ResourceType.INSTANCE: mt.SOP_INSTANCE_UID,
}
# DCMTK's roots, as Orthanc's generated UIDs (and /tools/generate-uid) use.
_UID_ROOT = {
    ResourceType.STUDY: "1.2.276.0.7230010.3.1.2.",
    ResourceType.SERIES: "1.2.276.0.7230010.3.1.3.",
    ResourceType.INSTANCE: "1.2.276.0.7230010.3.1.4.",
}
DEIDENTIFICATION_METHOD = 0x00120063
PATIENT_IDENTITY_REMOVED = 0x00120062
_REFERENCED_IMAGE_SEQUENCE = 0x00081140
_SOURCE_IMAGE_SEQUENCE = 0x00082112
_REFERENCED_FRAME_OF_REFERENCE_SEQUENCE = 0x30060010
_RT_REFERENCED_STUDY_SEQUENCE = 0x30060012
_REFERENCED_SOP_INSTANCE_UID = 0x00081155
_INTEGER_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "AT"})
_FLOAT_VRS = frozenset({"FL", "FD"})
_BINARY_VRS = frozenset({"OB", "OW", "OD", "OF", "OL", "OV", "UN"})
_DCMTK_VR = {"xs": "US", "ox": "OW", "up": "UL", "lt": "OW", "na": "UN", "px": "OW"}
_PATH_TAG = re.compile(r"^\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)$")


@functools.cache
def _transfer_syntaxes() -> frozenset[str]:
    """Every transfer syntax pydicom knows (loaded with pydicom, on the first transcoding)."""
    from pydicom.uid import AllTransferSyntaxes

    return frozenset(str(uid) for uid in AllTransferSyntaxes)


def _bad(details: str | None = None) -> OrthancError:
    return OrthancError(ErrorCode.BAD_REQUEST, details)


@dataclass(frozen=True, slots=True)
class DicomPath:
    """A tag, possibly inside sequences: `prefix` holds (sequence tag, item index or None for
    every item), Orthanc's DicomPath."""

    prefix: tuple[tuple[int, int | None], ...]
    tag: int

    def matches(self, parents: tuple[tuple[int, int], ...], tag: int) -> bool:
        """Orthanc's DicomPath::IsMatch: the element at `parents` + `tag` is this path or lies
        inside the sequence this path names."""
        n = len(self.prefix)
        if len(parents) < n:
            return False
        for (want, index), (got, at) in zip(self.prefix, parents, strict=False):
            if want != got or (index is not None and index != at):
                return False
        return (tag if len(parents) == n else parents[n][0]) == self.tag


def _tag(token: str, dictionary: TagDictionary | None) -> int:
    token = token.strip()
    m = _PATH_TAG.match(token)
    if m:
        return (int(m.group(1), 16) << 16) | int(m.group(2), 16)
    try:
        return parse_tag(token)
    except ValueError:
        found = dictionary.tag_of(token) if dictionary is not None and token else None
        if found is None:
            raise OrthancError(ErrorCode.UNKNOWN_DICOM_TAG, f"Unknown DICOM tag: {token}", http_status=400) from None
        return found


def parse_path(text: Any, dictionary: TagDictionary | None = None) -> DicomPath:
    """Orthanc's DicomPath::Parse ("Seq[0].Sub[*].Tag")."""
    if not isinstance(text, str):
        raise _bad()
    tokens = text.split(".")
    prefix: list[tuple[int, int | None]] = []
    for token in tokens[:-1]:
        left, bracket, right = token.partition("[")
        if not bracket:
            raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, "Parent path doesn't contain an index")
        right = right.strip()
        if not left.strip():
            raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, "Parent path doesn't contain a tag")
        if not right.endswith("]"):
            raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, "Parent path doesn't contain the end of the index")
        index = right[:-1].strip()
        if index == "*":
            prefix.append((_tag(left, dictionary), None))
        elif index.isdigit():
            prefix.append((_tag(left, dictionary), int(index)))
        else:
            raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Not a valid index in a path: {index}")
    return DicomPath(tuple(prefix), _tag(tokens[-1], dictionary))


def _flag(body: dict[str, Any], key: str, default: bool = False) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f'Member "{key}" should be a Boolean value')
    return value


@dataclass
class Modification:
    """A parsed request: what to remove, clear, replace, keep and map, and the map of new
    identifiers shared by every instance it is applied to (thread-safe)."""

    level: ResourceType = ResourceType.INSTANCE
    removals: set[int] = field(default_factory=set)
    clearings: set[int] = field(default_factory=set)
    uids: set[int] = field(default_factory=set)
    ranges: tuple[tuple[int, int, int, int], ...] = ()
    replacements: dict[int, Any] = field(default_factory=dict)
    keep: set[int] = field(default_factory=set)
    private_to_keep: set[int] = field(default_factory=set)
    keep_sequences: list[DicomPath] = field(default_factory=list)
    remove_sequences: list[DicomPath] = field(default_factory=list)
    sequence_replacements: list[tuple[DicomPath, Any]] = field(default_factory=list)
    remove_private_tags: bool = False
    keep_labels: bool = False
    keep_study_uid: bool = False
    keep_series_uid: bool = False
    keep_sop_uid: bool = False
    is_anonymization: bool = False
    private_creator: str = ""
    dictionary: TagDictionary | None = None
    uid_map: dict[tuple[ResourceType, str], str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _random: random.Random = field(default_factory=lambda: random.Random(os.urandom(32)), repr=False)

    # -- building (DicomModification::Keep/Remove/Clear/Replace) --

    def _not_orthanc(self) -> None:
        """An anonymization the request customized is no longer one of Orthanc's profiles: its
        DeidentificationMethod names Orthanc only (1.12.7; before, the tag was left out)."""
        if self.replacements.get(DEIDENTIFICATION_METHOD) in ORTHANC_METHODS:
            self.replacements[DEIDENTIFICATION_METHOD] = f"Orthanc {ORTHANC_VERSION}"

    def keep_tag(self, tag: int) -> None:
        self.keep.add(tag)
        for s in (self.removals, self.clearings, self.uids):
            s.discard(tag)
        self.replacements.pop(tag, None)
        if tag == mt.STUDY_INSTANCE_UID:
            self.keep_study_uid = True
        elif tag == mt.SERIES_INSTANCE_UID:
            self.keep_series_uid = True
        elif tag == mt.SOP_INSTANCE_UID:
            self.keep_sop_uid = True
        elif (tag >> 16) % 2 == 1:
            self.private_to_keep.add(tag)
        self._not_orthanc()

    def remove_tag(self, tag: int) -> None:
        self.removals.add(tag)
        for s in (self.clearings, self.uids, self.private_to_keep):
            s.discard(tag)
        self.replacements.pop(tag, None)
        self._not_orthanc()

    def replace_tag(self, tag: int, value: Any, safe: bool = False) -> None:
        for s in (self.clearings, self.removals, self.uids, self.private_to_keep):
            s.discard(tag)
        self.replacements[tag] = value
        if not safe:
            self._not_orthanc()

    def keep_path(self, path: DicomPath) -> None:
        if not path.prefix:
            self.keep_tag(path.tag)
        self.keep_sequences.append(path)
        self._not_orthanc()

    def remove_path(self, path: DicomPath) -> None:
        if not path.prefix:
            self.remove_tag(path.tag)
        else:
            self.remove_sequences.append(path)
            self._not_orthanc()

    def replace_path(self, path: DicomPath, value: Any) -> None:
        if not path.prefix:
            self.replace_tag(path.tag, value)
        else:
            self.sequence_replacements.append((path, value))
            self._not_orthanc()

    def set_level(self, level: ResourceType) -> None:
        self.uid_map.clear()
        self.level = level
        if level is not ResourceType.PATIENT:
            self._not_orthanc()

    # -- queries --

    def is_replaced(self, tag: int) -> bool:
        return tag in self.replacements

    def is_kept(self, tag: int) -> bool:
        return tag in self.keep

    def is_removed(self, tag: int) -> bool:
        if tag in self.removals:
            return True
        group, element = tag >> 16, tag & 0xFFFF
        return any(g0 <= group <= g1 and e0 <= element <= e1 for g0, g1, e0, e1 in self.ranges)

    def _manually_modified(self, tag: int) -> bool:
        return tag in self.clearings or self.is_removed(tag) or tag in self.replacements

    def map_identifier(self, original: str, level: ResourceType) -> str:
        """The new value of an identifier, the same for every instance of the job."""
        key = (level, original.strip(" \0"))
        with self._lock:
            found = self.uid_map.get(key)
            if found is None:
                if level is ResourceType.PATIENT:
                    found = str(uuid.UUID(int=self._random.getrandbits(128), version=4))
                else:  # 120 random bits after DCMTK's root: unique, and no system call per UID
                    found = _UID_ROOT[level] + str(self._random.getrandbits(120))
                self.uid_map[key] = found
            return found

    def _register(self, original: str, mapped: str, level: ResourceType) -> None:
        with self._lock:
            self.uid_map.setdefault((level, original.strip(" \0")), mapped)

    def checks_before_apply(self) -> None:
        """Orthanc refuses a removed identifier when the modification is applied, not when it
        is parsed: an asynchronous request gets its job, and the job fails on its first instance."""
        if any(self.is_removed(t) for t in _IDENTIFIERS):
            raise _bad("It is forbidden to remove one of the main Dicom identifiers")

    # -- serialisation for jobs that are rebuilt (SaveJobs): the uid map only --

    def export_map(self) -> list[list[str]]:
        with self._lock:
            return [[lv.label, k, v] for (lv, k), v in self.uid_map.items()]

    def import_map(self, rows: list[list[str]]) -> None:
        with self._lock:
            for lv, k, v in rows:
                self.uid_map[(ResourceType.parse(lv), k)] = v


# ---------------------------------------------------------------- parsing requests


def _list_of_tags(mod: Modification, body: dict[str, Any], key: str, force: bool, keep: bool) -> None:
    names = body.get(key)
    if names is None:
        return
    if not isinstance(names, list):
        raise _bad()
    for name in names:
        if not isinstance(name, str):
            raise _bad()
        path = parse_path(name, mod.dictionary)
        if not path.prefix and not force and path.tag in _IDENTIFIERS:
            verb = "kept" if keep else "removed"
            raise _bad(f'Marking tag "{name}" as to be {verb} requires the "Force" option to be set to true')
        if keep:
            mod.keep_path(path)
        else:
            mod.remove_path(path)


def _replacements(mod: Modification, body: dict[str, Any], force: bool) -> None:
    replace = body.get("Replace")
    if replace is None:
        return
    if not isinstance(replace, dict):
        raise _bad()
    for name, value in replace.items():
        path = parse_path(name, mod.dictionary)
        if not path.prefix and not force and path.tag in _IDENTIFIERS:
            raise _bad(f'Marking tag "{name}" as to be replaced requires the "Force" option to be set to true')
        mod.replace_path(path, value)


def _private_creator(mod: Modification, body: dict[str, Any]) -> None:
    if "PrivateCreator" in body:
        creator = body["PrivateCreator"]
        if not isinstance(creator, str):
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, 'The value of "PrivateCreator" must be a string')
        mod.private_creator = creator


def detect_level(mod: Modification) -> ResourceType:
    """Orthanc's DetectModifyLevel: the highest identifier replaced."""
    for tag, level in (
        (mt.PATIENT_ID, ResourceType.PATIENT),
        (mt.STUDY_INSTANCE_UID, ResourceType.STUDY),
        (mt.SERIES_INSTANCE_UID, ResourceType.SERIES),
    ):
        if tag in mod.replacements:
            return level
    return ResourceType.INSTANCE


def parse_modify(
    body: Any,
    level: ResourceType | None,
    dictionary: TagDictionary | None = None,
    default_private_creator: str = "",
) -> Modification:
    """A modify request (Orthanc's ParseModifyRequest) at `level`, or at the level its
    replaced identifiers say when `level` is None (single instance, bulk without "Level")."""
    if not isinstance(body, dict):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
    mod = Modification(dictionary=dictionary, private_creator=default_private_creator)
    force = _flag(body, "Force")
    if _flag(body, "RemovePrivateTags"):
        mod.remove_private_tags = True
    mod.keep_labels = _flag(body, "KeepLabels")
    _list_of_tags(mod, body, "Remove", force, keep=False)
    _replacements(mod, body, force)
    _list_of_tags(mod, body, "Keep", force, keep=True)
    _private_creator(mod, body)
    # Orthanc 1.12 checks the identifiers above the level while the level is still "Instance"
    # (ParseModifyRequest runs before SetLevel): only "Force" guards them in effect.
    mod.set_level(detect_level(mod) if level is None else level)
    return mod


def parse_anonymize(
    body: Any,
    dictionary: TagDictionary | None = None,
    default_private_creator: str = "",
) -> tuple[Modification, bool]:
    """An anonymization request (Orthanc's ParseAnonymizationRequest); also whether the caller
    must give PatientName its "AnonymizedN" value (the request does not name it)."""
    if not isinstance(body, dict):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
    force = _flag(body, "Force")
    version = body.get("DicomVersion", DEFAULT_VERSION)
    if not isinstance(version, str):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
    profile = PROFILES.get(version)
    if profile is None:
        raise OrthancError(
            ErrorCode.PARAMETER_OUT_OF_RANGE, f"Unknown specific version of the DICOM standard: {version}"
        )
    mod = Modification(
        level=ResourceType.PATIENT,
        removals=set(profile.removals),
        clearings=set(profile.clearings),
        uids=set(profile.uids) | {mt.PATIENT_ID, mt.PATIENT_NAME},
        ranges=profile.ranges,
        remove_private_tags=True,
        is_anonymization=True,
        dictionary=dictionary,
        private_creator=default_private_creator,
    )
    mod.replacements[DEIDENTIFICATION_METHOD] = deidentification_method(version)
    mod.replacements[PATIENT_IDENTITY_REMOVED] = "YES"
    if _flag(body, "KeepPrivateTags"):
        mod.remove_private_tags = False
        mod._not_orthanc()
    mod.keep_labels = _flag(body, "KeepLabels")
    _list_of_tags(mod, body, "Remove", force, keep=False)
    _replacements(mod, body, force)
    _list_of_tags(mod, body, "Keep", force, keep=True)
    _private_creator(mod, body)
    return mod, mt.PATIENT_NAME in mod.uids


def parse_transcode(body: dict[str, Any], instance: bool) -> str | None:
    """The "Transcode" transfer syntax of a request, checked (Orthanc's answers for an unknown
    one differ between an instance and a resource job)."""
    if "Transcode" not in body:
        return None
    target = body["Transcode"]
    if not isinstance(target, str):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, 'The value of "Transcode" must be a string')
    if target not in _transfer_syntaxes():
        if instance:
            raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Unknown transfer syntax: {target}")
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f"Unknown transfer syntax UID: {target}")
    return target


# ---------------------------------------------------------------- applying


def _vr(mod: Modification, tag: int, current: str | None) -> str:
    vr: str | None = None
    if mod.dictionary is not None:
        vr = mod.dictionary.vr(tag, mod.private_creator or None)
    if vr is None or vr == "UN":
        vr = vr_of(tag).split(" or ")[0]
    vr = _DCMTK_VR.get(vr, vr)
    if vr == "UN":
        if current and current != "UN":
            return current
        if (tag >> 16) % 2 == 1:
            return "LO"  # a private tag outside every dictionary: a string, as Orthanc writes it
    return vr


def _binary(text: str) -> bytes:
    """A binary value from JSON: a data URI is decoded (Orthanc's decodeDataUriScheme)."""
    if text.startswith("data:") and ";base64," in text:
        try:
            return base64.b64decode(text.split(";base64,", 1)[1])
        except ValueError as exc:
            raise _bad("Bad data URI") from exc
    return text.encode("latin-1", "replace")


def make_element(mod: Modification, tag: int, value: Any, current: str | None = None) -> DataElement:
    """A new element from a JSON value (FromDcmtkBridge::FromJson): a string (numbers for
    binary VRs), a number, null (empty), or an array of objects for a sequence."""
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    vr = _vr(mod, tag, current)
    if value is None:
        return DataElement(tag, vr, None if vr != "SQ" else DicomSequence([]))
    if vr == "SQ":
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise _bad(f"The value of sequence {mt.format_tag(tag)} must be an array of objects")
        items = []
        for item in value:
            child = Dataset()
            for name, sub in item.items():
                sub_tag = _tag(name, mod.dictionary)
                child.add(make_element(mod, sub_tag, sub))
            items.append(child)
        return DataElement(tag, vr, DicomSequence(items))
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _bad(f"Bad value for tag {mt.format_tag(tag)}")
    text = str(value)
    try:
        if vr == "AT":
            tags = [_tag(t, mod.dictionary) for t in text.split("\\")]
            return DataElement(tag, vr, tags if len(tags) > 1 else tags[0])
        if vr in _INTEGER_VRS:
            return DataElement(tag, vr, [int(v) for v in text.split("\\")] if "\\" in text else int(text))
        if vr in _FLOAT_VRS:
            return DataElement(tag, vr, [float(v) for v in text.split("\\")] if "\\" in text else float(text))
    except (ValueError, OrthancError) as exc:
        raise _bad(f"Bad value for tag {mt.format_tag(tag)}: {text}") from exc
    if vr in _BINARY_VRS:
        return DataElement(tag, vr, _binary(text))
    return DataElement(tag, vr, text)


def _elem_vr(ds: Dataset, tag: int) -> str:
    raw = ds.get_item(tag)
    vr = getattr(raw, "VR", None) if raw is not None else None
    if vr is None:
        vr = vr_of(tag).split(" or ")[0]
    return str(vr)


def element_text(ds: Dataset, tag: int) -> str:
    """The value of a top-level element as text ("" when absent or empty)."""
    value = ds[tag].value if tag in ds else None
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def _clear(ds: Dataset, tag: int) -> None:
    from pydicom.dataelem import DataElement
    from pydicom.sequence import Sequence as DicomSequence

    if tag in ds:
        vr = _elem_vr(ds, tag)
        ds[tag] = DataElement(tag, vr, DicomSequence([]) if vr == "SQ" else None)


def _relationships(mod: Modification, ds: Dataset) -> None:
    """Orthanc's RelationshipsVisitor (step 7 of Apply, anonymization only): first-level UIDs of
    the profile get mapped values; inside sequences, removed/cleared/private tags go, and UIDs
    (StudyInstanceUID and the others) are mapped with the same map as the main identifiers."""
    from pydicom.dataelem import DataElement

    for tag in list(ds.keys()):
        vr = _elem_vr(ds, tag)
        if vr == "SQ":
            for index, item in enumerate(ds[tag].value or ()):
                _visit_item(mod, item, ((int(tag), index),))
        elif tag in mod.uids and not mod._manually_modified(tag):
            value = element_text(ds, tag)
            level = ResourceType.PATIENT if tag in (mt.PATIENT_ID, mt.PATIENT_NAME) else ResourceType.INSTANCE
            ds[tag] = DataElement(tag, ds[tag].VR, mod.map_identifier(value, level))


def _kept_in_sequence(mod: Modification, parents: tuple[tuple[int, int], ...], tag: int) -> bool:
    return any(p.matches(parents, tag) for p in mod.keep_sequences)


def _visit_item(mod: Modification, ds: Dataset, parents: tuple[tuple[int, int], ...]) -> None:
    from pydicom.dataelem import DataElement

    for key in list(ds.keys()):
        tag = int(key)
        vr = _elem_vr(ds, tag)
        kept = _kept_in_sequence(mod, parents, tag)
        if not kept and mod.is_anonymization:
            if (mod.remove_private_tags and (tag >> 16) % 2 == 1) or mod.is_removed(tag):
                del ds[tag]
                continue
            if tag in mod.clearings:
                if vr in ("SQ",) or vr in _BINARY_VRS or vr in _INTEGER_VRS or vr in _FLOAT_VRS:
                    del ds[tag]  # only strings can be cleared inside sequences (Orthanc)
                else:
                    ds[tag] = DataElement(tag, vr, "")
                continue
        if vr == "SQ":
            for index, item in enumerate(ds[tag].value or ()):
                _visit_item(mod, item, (*parents, (tag, index)))
            continue
        if kept:
            continue
        level: ResourceType | None = None
        if tag == mt.STUDY_INSTANCE_UID:
            level = ResourceType.STUDY
        elif tag == mt.SERIES_INSTANCE_UID:
            level = ResourceType.SERIES
        elif tag == mt.SOP_INSTANCE_UID:
            level = ResourceType.INSTANCE
        elif tag in mod.uids:
            if tag in (mt.PATIENT_ID, mt.PATIENT_NAME):
                level = ResourceType.PATIENT
            elif (
                len(parents) == 2
                and parents[0][0] == _REFERENCED_FRAME_OF_REFERENCE_SEQUENCE
                and parents[1][0] == _RT_REFERENCED_STUDY_SEQUENCE
                and tag == _REFERENCED_SOP_INSTANCE_UID
            ):
                level = ResourceType.STUDY  # RT-STRUCT: this "SOP instance" is a study
            else:
                level = ResourceType.INSTANCE
        if level is not None:
            ds[tag] = DataElement(tag, vr, mod.map_identifier(element_text(ds, tag), level))


def _walk(ds: Dataset, prefix: tuple[tuple[int, int | None], ...]) -> list[Dataset]:
    """The items a path prefix names (every item for "[*]")."""
    found = [ds]
    for tag, index in prefix:
        nxt: list[Dataset] = []
        for item in found:
            if tag in item and _elem_vr(item, tag) == "SQ":
                seq = item[tag].value or []
                if index is None:
                    nxt.extend(seq)
                elif index < len(seq):
                    nxt.append(seq[index])
        found = nxt
    return found


def _remove_private(ds: Dataset, keep: set[int]) -> None:
    for tag in [t for t in ds.keys() if t.is_private and int(t) not in keep]:
        del ds[tag]


def _set(mod: Modification, ds: Dataset, tag: int, value: Any) -> None:
    if (tag & 0xFFFF) == 0:
        return  # group lengths are the writer's business
    current = _elem_vr(ds, tag) if tag in ds else None
    ds[tag] = make_element(mod, tag, value, current)


def apply(ds: Dataset, mod: Modification) -> None:
    """Modify `ds` in place, in Orthanc's order (DicomModification::Apply): relationships of
    replaced UIDs, private tags, clearings, removals, replacements, new main UIDs, UIDs inside
    sequences (anonymization), then the paths into sequences. The other helpers (merge, split,
    create-dicom) call this with their own `Modification`."""
    from pydicom.dataelem import DataElement

    mod.checks_before_apply()
    if mod.is_anonymization:
        for tag, level in (
            (mt.STUDY_INSTANCE_UID, ResourceType.STUDY),
            (mt.SERIES_INSTANCE_UID, ResourceType.SERIES),
            (mt.SOP_INSTANCE_UID, ResourceType.INSTANCE),
        ):
            if tag in mod.replacements:
                mod._register(element_text(ds, tag), str(mod.replacements[tag]), level)
    if mod.remove_private_tags:
        _remove_private(ds, mod.private_to_keep)
    # clearings, then removals (a tag is in one of them at most): one pass over the elements,
    # the profiles list hundreds of tags a file does not have
    removals, clearings, ranges = mod.removals, mod.clearings, mod.ranges
    for key in list(ds.keys()):
        tag = int(key)
        if tag in removals or (ranges and mod.is_removed(tag)):
            del ds[key]
        elif tag in clearings:
            _clear(ds, tag)
    for tag, value in mod.replacements.items():
        _set(mod, ds, tag, value)
    for level, tag in _UID_OF_LEVEL.items():
        if level < mod.level or tag in mod.replacements:
            continue
        kept = {
            ResourceType.STUDY: mod.keep_study_uid,
            ResourceType.SERIES: mod.keep_series_uid,
            ResourceType.INSTANCE: mod.keep_sop_uid,
        }[level]
        if not kept:
            ds[tag] = DataElement(tag, "UI", mod.map_identifier(element_text(ds, tag), level))
    if mod.is_anonymization:
        _relationships(mod, ds)
    for path in mod.remove_sequences:
        for item in _walk(ds, path.prefix):
            if path.tag in item:
                del item[path.tag]
    for path, value in mod.sequence_replacements:
        for item in _walk(ds, path.prefix):
            _set(mod, item, path.tag, value)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        if "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if "SOPClassUID" in ds:
            meta.MediaStorageSOPClassUID = ds.SOPClassUID
