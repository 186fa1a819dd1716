"""Modification of one instance (POST /instances/{id}/modify): Orthanc's DicomModification for
the single-instance case. The answer is the modified file; nothing is stored.

Rules as Orthanc's (DicomModification::ParseModifyRequest/Apply): "Replace", "Remove" and "Keep"
name top-level tags (keyword or "gggg,eeee"); PatientID and the three UIDs may only be touched
with "Force"; the level of the modification follows the highest identifier replaced (PatientID:
patient, StudyInstanceUID: study, SeriesInstanceUID: series, otherwise instance), and every UID
below that level gets a new value unless kept or replaced.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from ..errors import ErrorCode, OrthancError
from ..model import maintags as mt
from ..model.enums import ResourceType
from ..model.lookup import parse_tag, vr_of
from .context import ServerContext
from .files import read_dicom

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
_INTEGER_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV"})
_FLOAT_VRS = frozenset({"FL", "FD"})


def _bad(details: str) -> OrthancError:
    return OrthancError(ErrorCode.BAD_REQUEST, details)


@dataclass
class Modification:
    """A parsed modification request."""

    replace: dict[int, Any] = field(default_factory=dict)
    remove: list[int] = field(default_factory=list)
    keep: set[int] = field(default_factory=set)
    remove_private_tags: bool = False
    private_creator: str = ""

    @property
    def level(self) -> ResourceType:
        """Orthanc's DetectModifyLevel: the highest identifier replaced."""
        for tag, level in (
            (mt.PATIENT_ID, ResourceType.PATIENT),
            (mt.STUDY_INSTANCE_UID, ResourceType.STUDY),
            (mt.SERIES_INSTANCE_UID, ResourceType.SERIES),
        ):
            if tag in self.replace:
                return level
        return ResourceType.INSTANCE


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f'Member "{key}" should be a Boolean value')
    return value


def _tag(name: Any) -> int:
    if not isinstance(name, str):
        raise _bad("Tags must be given by name or as gggg,eeee")
    try:
        return parse_tag(name)
    except ValueError as exc:
        raise OrthancError(ErrorCode.UNKNOWN_DICOM_TAG, f"Unknown DICOM tag: {name}", http_status=400) from exc


def _tags(body: dict[str, Any], key: str, force: bool, verb: str) -> list[int]:
    names = body.get(key, [])
    if not isinstance(names, list):
        raise _bad(f'"{key}" must be a list of tags')
    out = []
    for name in names:
        tag = _tag(name)
        if tag in _IDENTIFIERS and not force:
            raise _bad(f'Marking tag "{name}" as to be {verb} requires the "Force" option to be set to true')
        out.append(tag)
    return out


def parse_request(body: Any) -> Modification:
    """Validate the JSON body of a modify request (BadFileFormat/BadRequest as Orthanc)."""
    if not isinstance(body, dict):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
    force = _flag(body, "Force")
    mod = Modification(remove_private_tags=_flag(body, "RemovePrivateTags"))
    mod.remove = _tags(body, "Remove", force, "removed")
    replace = body.get("Replace", {})
    if not isinstance(replace, dict):
        raise _bad('"Replace" must be a JSON object')
    for name, value in replace.items():
        tag = _tag(name)
        if tag in _IDENTIFIERS and not force:
            raise _bad(f'Marking tag "{name}" as to be replaced requires the "Force" option to be set to true')
        mod.replace[tag] = value
    mod.keep = set(_tags(body, "Keep", force, "kept"))
    creator = body.get("PrivateCreator", "")
    if not isinstance(creator, str):
        raise _bad('"PrivateCreator" must be a string')
    mod.private_creator = creator
    if any(t in mod.remove for t in _IDENTIFIERS):
        raise _bad("It is forbidden to remove one of the main Dicom identifiers")
    if not force:
        level = mod.level
        if level is ResourceType.INSTANCE and any(t in mod.replace for t in _IDENTIFIERS[:3]):
            raise _bad("When modifying an instance, its parent identifiers cannot be manually modified")
    return mod


def _element(tag: int, value: Any) -> DataElement:
    """A new element from a JSON value: a string (numbers converted for binary VRs), a number,
    null (empty), or an array of objects for a sequence."""
    vr = vr_of(tag).split(" or ")[0]
    if vr == "UN" and (tag >> 16) % 2 == 1:
        vr = "LO"  # a private tag outside the dictionary: a string, as Orthanc writes it
    if value is None:
        return DataElement(tag, vr, None)
    if vr == "SQ":
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise _bad(f"The value of sequence {mt.format_tag(tag)} must be an array of objects")
        items = []
        for item in value:
            child = Dataset()
            for name, sub in item.items():
                sub_tag = _tag(name)
                child.add(_element(sub_tag, sub))
            items.append(child)
        return DataElement(tag, vr, items)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _bad(f"Bad value for tag {mt.format_tag(tag)}")
    text = str(value)
    try:
        if vr in _INTEGER_VRS:
            return DataElement(tag, vr, [int(v) for v in text.split("\\")] if "\\" in text else int(text))
        if vr in _FLOAT_VRS:
            return DataElement(tag, vr, [float(v) for v in text.split("\\")] if "\\" in text else float(text))
    except ValueError as exc:
        raise _bad(f"Bad value for tag {mt.format_tag(tag)}: {text}") from exc
    return DataElement(tag, vr, text)


def apply(ds: Dataset, mod: Modification) -> None:
    """Modify `ds` in place, in Orthanc's order: private tags, removals, replacements, new UIDs."""
    if mod.remove_private_tags:
        ds.remove_private_tags()
    for tag in mod.remove:
        if tag in ds:
            del ds[tag]
    for tag, value in mod.replace.items():
        ds[tag] = _element(tag, value)
    for level, tag in _UID_OF_LEVEL.items():
        if level >= mod.level and tag not in mod.replace and tag not in mod.keep:
            ds[tag] = DataElement(tag, "UI", generate_uid(prefix=_UID_ROOT[level]))
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", meta.get("MediaStorageSOPInstanceUID", ""))
        if "SOPClassUID" in ds:
            meta.MediaStorageSOPClassUID = ds.SOPClassUID


def _modify_bytes(data: bytes, mod: Modification) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    apply(ds, mod)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


async def modify_instance(ctx: ServerContext, public_id: str, body: Any) -> bytes:
    """The modified copy of an instance's DICOM file."""
    mod = parse_request(body)
    data = await read_dicom(ctx, public_id)
    return await ctx.run(_modify_bytes, data, mod)
