"""The only home of Orthanc's PascalCase JSON keys for resources, changes, exports and statistics."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..core.content import Attachment
from ..core.logs import Change, ExportedResource
from ..core.resources import ResourceInfo
from ..model.dictionary import UNKNOWN_TAG_NAME, dcmtk
from ..model.enums import METADATA_NAMES, ChangeType, MetadataType, ResourceType
from ..model.maintags import MAIN_TAGS, format_tag
from ..model.tagtext import simplify_full

TAG_FORMATS = ("human", "short", "full")


def tags_json(
    tags: dict[int, str], level: ResourceType | None, fmt: str, sequences: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Main DICOM tags as Orthanc prints them: by keyword (default), by "gggg,eeee" (?short) or
    full ({"Name", "Type", "Value"}); `sequences`: the extra main sequences, full JSON by
    "gggg,eeee" (`ExtraMainDicomTags`)."""
    if sequences:
        out = tags_json(tags, level, fmt)
        out.update(simplify_full(sequences, "simplify" if fmt == "human" else fmt))
        return out
    names = MAIN_TAGS[level] if level is not None else {}
    if fmt == "short":
        return {format_tag(t): v for t, v in tags.items()}
    if fmt == "full":
        return {
            format_tag(t): {
                "Name": names.get(t) or dcmtk().name(t),
                "Type": "String",
                "Value": v,
            }
            for t, v in tags.items()
        }
    try:  # hot path (expanded listings): every main tag has a name
        return {MAIN_NAMES[t]: v for t, v in tags.items()}
    except KeyError:
        return {names.get(t) or _known_name(t) or format_tag(t): v for t, v in tags.items()}


def _known_name(tag: int) -> str | None:
    name = dcmtk().name(tag)
    return None if name == UNKNOWN_TAG_NAME else name


MAIN_NAMES = {t: name for level_tags in MAIN_TAGS.values() for t, name in level_tags.items()}


# Per-level keys of the default rendering (computed once: enum properties cost per call).
_LEVEL_KEYS = {
    level: (
        level.label,
        None if level.parent is None else "Parent" + level.parent.label,
        None
        if level.child is None
        else {"Study": "Studies", "Series": "Series", "Instance": "Instances"}[level.child.label],
    )
    for level in ResourceType
}


_DERIVED_FROM = (
    ("AnonymizedFrom", int(MetadataType.ANONYMIZED_FROM)),
    ("ModifiedFrom", int(MetadataType.MODIFIED_FROM)),
)


def _full_json(info: ResourceInfo, fmt: str) -> dict[str, Any]:
    """Every default field of a resource: the one place of their rules."""
    level = info.level
    label, parent_key, children_key = _LEVEL_KEYS[level]
    out: dict[str, Any] = {
        "ID": info.public_id,
        "Type": label,
        "MainDicomTags": tags_json(info.main_tags, level, fmt, info.main_sequences),
        "Labels": info.labels,
    }
    if parent_key is not None:
        out[parent_key] = info.parent
    if children_key is not None:
        out[children_key] = info.children
    for key, mtype in _DERIVED_FROM:  # a modified or anonymized copy names its source
        if mtype in info.metadata:
            out[key] = info.metadata[mtype]
    if level is ResourceType.INSTANCE:
        out["FileSize"] = info.file_size
        out["FileUuid"] = info.file_uuid
        out["IndexInSeries"] = info.index_in_series
        return out
    out["IsStable"] = info.is_stable
    out["LastUpdate"] = info.last_update
    if level is ResourceType.PATIENT:
        out["IsProtected"] = info.is_protected
    elif level is ResourceType.STUDY:
        out["PatientMainDicomTags"] = tags_json(info.patient_main_tags or {}, ResourceType.PATIENT, fmt)
    elif level is ResourceType.SERIES:
        out["ExpectedNumberOfInstances"] = info.expected_instances
        out["Status"] = info.series_status
    return out


# Which ResponseContent item (1.12.5 /tools/find) each field belongs to; ID and Type always come,
# the instance's file fields only in the default answer.
_CONTENT_OF = {
    "MainDicomTags": "MainDicomTags",
    "PatientMainDicomTags": "MainDicomTags",
    "Labels": "Labels",
    "IsStable": "IsStable",
    "LastUpdate": "Metadata",
    "IsProtected": "IsProtected",
    "ExpectedNumberOfInstances": "Status",
    "Status": "Status",
    "AnonymizedFrom": "Metadata",
    "ModifiedFrom": "Metadata",
    **{key: "Parent" for _label, key, _children in _LEVEL_KEYS.values() if key is not None},
    **{key: "Children" for _label, _parent, key in _LEVEL_KEYS.values() if key is not None},
}


def resources_json(infos: list[ResourceInfo], fmt: str = "human") -> list[dict[str, Any]]:
    """`resource_json` of many resources (expanded listings)."""
    return [_full_json(i, fmt) for i in infos]


def resource_json(
    info: ResourceInfo,
    fmt: str = "human",
    requested: dict[str, Any] | None = None,
    content: Iterable[str] | None = None,
) -> dict[str, Any]:
    """GET /{level}/{id} (and each item of an expanded list). `content` restricts the fields
    (the 1.12.5 ResponseContent of /tools/find)."""
    out = _full_json(info, fmt)
    if content is not None:
        want = set(content)
        out = {k: v for k, v in out.items() if k in ("ID", "Type") or _CONTENT_OF.get(k) in want}
        if "Metadata" in want:
            out["Metadata"] = metadata_json(info.metadata, info.metadata_names)
        if "Attachments" in want:
            out["Attachments"] = [attachment_json(a) for a in info.attachments]
    if requested is not None:
        out["RequestedTags"] = requested
    return out


def metadata_name(mtype: int, user: Mapping[int, str] | None = None) -> str:
    """Orthanc's name of a metadata: built-in, else from `UserMetadata` (`user`), else its number."""
    name = METADATA_NAMES.get(mtype) or (user.get(mtype) if user else None)
    return name if name is not None else str(mtype)


def metadata_json(meta: dict[int, str], user: Mapping[int, str] | None = None) -> dict[str, str]:
    return {metadata_name(t, user): v for t, v in sorted(meta.items())}


def attachment_json(a: Attachment) -> dict[str, Any]:
    return {
        "CompressedMD5": a.compressed_md5,
        "CompressedSize": a.compressed_size,
        "ContentType": a.content_type,
        "Revision": a.revision,
        "UncompressedMD5": a.uncompressed_md5,
        "UncompressedSize": a.uncompressed_size,
        "Uuid": a.uuid,
    }


def change_json(c: Change) -> dict[str, Any]:
    return {
        "ChangeType": ChangeType(c.change_type).label,
        "Date": c.date,
        "ID": c.public_id,
        "Path": f"/{c.level.plural}/{c.public_id}",
        "ResourceType": c.level.label,
        "Seq": c.seq,
    }


def export_json(e: ExportedResource) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Date": e.date,
        "ID": e.public_id,
        "Path": f"/{e.level.plural}/{e.public_id}",
        "RemoteModality": e.remote_modality,
        "ResourceType": e.level.label,
        "Seq": e.seq,
        "PatientID": e.patient_id,
    }
    if e.level >= ResourceType.STUDY:
        out["StudyInstanceUID"] = e.study_uid
    if e.level >= ResourceType.SERIES:
        out["SeriesInstanceUID"] = e.series_uid
    if e.level >= ResourceType.INSTANCE:
        out["SOPInstanceUID"] = e.sop_uid
    return out


def size_mb(n: int) -> int:
    return n // (1024 * 1024)


def resource_statistics_json(level: ResourceType, s: dict[str, int]) -> dict[str, Any]:
    """/{level}/{id}/statistics: counts of descendants and sizes (sizes as strings, like Orthanc)."""
    out: dict[str, Any] = {}
    for lv in ("Study", "Series", "Instance"):
        if lv in s:
            out["Count" + {"Study": "Studies", "Series": "Series", "Instance": "Instances"}[lv]] = s[lv]
    out.update(
        {
            "DiskSize": str(s["disk"]),
            "DiskSizeMB": size_mb(s["disk"]),
            "UncompressedSize": str(s["uncompressed"]),
            "UncompressedSizeMB": size_mb(s["uncompressed"]),
            "DicomDiskSize": str(s["dicom_disk"]),
            "DicomDiskSizeMB": size_mb(s["dicom_disk"]),
            "DicomUncompressedSize": str(s["dicom_uncompressed"]),
            "DicomUncompressedSizeMB": size_mb(s["dicom_uncompressed"]),
        }
    )
    return out


def global_statistics_json(s: dict[str, int]) -> dict[str, Any]:
    return {
        "CountInstances": s["instances"],
        "CountPatients": s["patients"],
        "CountSeries": s["series"],
        "CountStudies": s["studies"],
        "TotalDiskSize": str(s["disk"]),
        "TotalDiskSizeMB": size_mb(s["disk"]),
        "TotalUncompressedSize": str(s["uncompressed"]),
        "TotalUncompressedSizeMB": size_mb(s["uncompressed"]),
    }
