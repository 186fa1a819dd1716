"""Orthanc's WebDAV tree: the stored resources as virtual folders, and an uploads folder.

Orthanc Book, "Accessing Orthanc from the file explorer using WebDAV"; Orthanc 1.10.1's
OrthancWebDav.cpp and WebDavStorage.cpp. Under `/webdav/`:

- `by-patients/{patient}/{study}/{series}/{instance public ID}.dcm`
- `by-studies/{study}/{series}/{instance public ID}.dcm`
- `by-dates/{YYYY}/{YYYY-MM}/{study}/{series}/{instance public ID}.dcm`
- `by-uids/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm`, with the virtual files
  `study.json` and `series.json` (the resource as GET /studies/{id} answers it)
- `uploads/`: files written there are stored as instances (a ZIP archive: each DICOM file it
  holds), then removed; folders may be created there, and empty ones go after 30 s without upload.

Folder names come from main DICOM tags through Orthanc's templates (`{{PatientID}} -
{{PatientName}}`...), kept to printable ASCII without slashes; equal names get " (1)", " (2)"...
As in Orthanc, the names of each listing are kept while the server runs, so that a folder keeps
its name when resources are added or removed beside it (`FolderNames`).

This module answers in folders (`Entry`) and files (`FileContent`) of core/webdav_files.py,
which also holds `uploads/`; rest/webdav.py speaks HTTP and XML. The quirks of Orthanc 1.10.1
kept here are named where they are.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ..errors import ErrorCode, OrthancError
from ..index.base import ResourceRow, Transaction, WholeLevel
from ..model.enums import FileContentType, MetadataType, ResourceType
from ..model.lookup import MatchKind, TagConstraint, parse_constraint
from .context import ServerContext
from .files import attachment_path, dicom_attachment, dicom_file, read_dicom
from .resources import ResourceInfo, delete, expand
from .webdav_files import (
    MIME_DICOM,
    MIME_JSON,
    Entry,
    FileContent,
    UploadsFolder,
    ingest_upload,
)

BY_PATIENTS = "by-patients"
BY_STUDIES = "by-studies"
BY_DATES = "by-dates"
BY_UIDS = "by-uids"
UPLOADS = "uploads"
STUDY_INFO = "study.json"
SERIES_INFO = "series.json"

T = TypeVar("T")

_PATIENT, _STUDY, _SERIES, _INSTANCE = (
    ResourceType.PATIENT,
    ResourceType.STUDY,
    ResourceType.SERIES,
    ResourceType.INSTANCE,
)
_BY_PATIENTS_NAMES: Mapping[ResourceType, str] = {
    _PATIENT: "{{PatientID}} - {{PatientName}}",
    _STUDY: "{{StudyDate}} - {{StudyDescription}}",
    _SERIES: "{{Modality}} - {{SeriesDescription}}",
}
_BY_STUDIES_NAMES: Mapping[ResourceType, str] = {
    _STUDY: "{{PatientID}} - {{PatientName}} - {{StudyDescription}}",
    _SERIES: _BY_PATIENTS_NAMES[_SERIES],
}
_STUDY_DATE = 0x00080020
_STUDY_UID, _SERIES_UID, _SOP_UID = 0x0020000D, 0x0020000E, 0x00080018
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")
_SEND_FROM_PATH_ABOVE = 16 << 20
"""DICOM files larger than this are sent from their path (memory does not grow with them)."""


def _metadata_time(value: str | None) -> str | None:
    """An Orthanc timestamp (`20231109T160739`) as `iso_time` writes it; None when absent or not
    a date (Orthanc then uses the present time)."""
    if not value:
        return None
    try:
        return datetime.datetime.strptime(value[:15], "%Y%m%dT%H%M%S").strftime("%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None


# ---------------------------------------------------------------- names of resource folders


@functools.lru_cache(maxsize=16)
def _template(template: str) -> tuple[tuple[str, int | None], ...]:
    """The `{{Keyword}}` placeholders of a template, with their tags."""
    from pydicom.datadict import tag_for_keyword

    return tuple((m.group(0), tag_for_keyword(m.group(1))) for m in _PLACEHOLDER.finditer(template))


def folder_name(template: str, tags: Mapping[int, str]) -> str:
    """A resource's folder name as Orthanc builds it: the template's `{{Keyword}}` replaced by
    main DICOM tags (blank when absent), then only printable ASCII (and newlines) kept, slashes
    and backslashes dropped, spaces trimmed at both ends."""
    name = template
    for placeholder, tag in _template(template):
        name = name.replace(placeholder, tags.get(tag, "") if tag is not None else "", 1)
    if not name.isascii() or not name.isprintable():
        name = "".join(c for c in name if c == "\n" or " " <= c < "\x7f")
    return name.replace("/", "").replace("\\", "").strip(" \t\n\v\f\r")


class FolderNames:
    """The names given to the resource folders of each listing, kept while the server runs (as
    Orthanc keeps them): a folder keeps its name as resources come and go beside it. The
    resources a listing shows for the first time are named in the order of their public IDs;
    a name already taken gets " (1)", " (2)"... The least recently used listings are forgotten
    past `capacity` (they are named again from scratch, as after a restart of Orthanc)."""

    def __init__(self, capacity: int = 20_000) -> None:
        self.capacity = capacity
        self._listings: OrderedDict[Hashable, dict[str, str]] = OrderedDict()
        self._lock = threading.Lock()  # index reads run in worker threads

    def named(self, key: Hashable, template: str, rows: Sequence[ResourceRow]) -> dict[str, ResourceRow]:
        """Folder name -> resource for the resources `rows` of the listing `key`."""
        current = {r.public_id: r for r in rows}
        with self._lock:
            known = self._listings.pop(key, None)
            if known is None:
                known = {}
            elif len(known) != len(current) or any(pid not in current for pid in known):
                known = {pid: name for pid, name in known.items() if pid in current}
            self._listings[key] = known
            if len(self._listings) > self.capacity:
                self._listings.popitem(last=False)
            if len(known) != len(current):
                taken = set(known.values())
                for pid in sorted(pid for pid in current if pid not in known):
                    base = folder_name(template, current[pid].main_tags)
                    name, count = base, 0
                    while name in taken:
                        count += 1
                        name = f"{base} ({count})"
                    known[pid] = name
                    taken.add(name)
            return {name: current[pid] for pid, name in known.items()}


@dataclass(frozen=True, slots=True)
class _View:
    """What every walk of the trees shares: the folder names given so far, and the limits of
    Orthanc's lookups (`LimitFindResults`, `LimitFindInstances`)."""

    names: FolderNames
    limit_results: int = 0
    limit_instances: int = 0

    def limited(self, level: ResourceType, items: list[T]) -> list[T]:
        """Orthanc's lookups (ServerContext::Apply) take at most the limit + 1 candidates."""
        limit = self.limit_instances if level is _INSTANCE else self.limit_results
        return items[: limit + 1] if limit else items

    def lookup(self, txn: Transaction, level: ResourceType, constraints: Sequence[TagConstraint]) -> list[int]:
        """What an Orthanc lookup visits: the matches in creation order, limited."""
        return self.limited(level, sorted(txn.find(level, constraints)))


# ---------------------------------------------------------------- the nodes of the three trees


@dataclass(frozen=True, slots=True)
class _Resources:
    """Folders for resources of one level: every one, the children of one, or the studies of a
    month (`dates`: the StudyDate range)."""

    level: ResourceType
    names: Mapping[ResourceType, str]
    tree: str
    """by-patients, by-studies or by-dates: each keeps its own folder names, as in Orthanc."""
    parent: int | None = None
    dates: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class _Instances:
    """A series' folder: one `{public ID}.dcm` file per instance."""

    series: int
    series_public_id: str


@dataclass(frozen=True, slots=True)
class _Years:
    pass


@dataclass(frozen=True, slots=True)
class _Months:
    year: str


_Node = _Resources | _Instances | _Years | _Months
_ROOTS: Mapping[str, _Node] = {
    BY_PATIENTS: _Resources(_PATIENT, _BY_PATIENTS_NAMES, BY_PATIENTS),
    BY_STUDIES: _Resources(_STUDY, _BY_STUDIES_NAMES, BY_STUDIES),
    BY_DATES: _Years(),
}


def _date_constraint(low: str, high: str) -> TagConstraint:
    return TagConstraint(_STUDY_DATE, _STUDY, MatchKind.RANGE, (low, high))


def _rows_of(txn: Transaction, view: _View, node: _Resources) -> list[ResourceRow]:
    if node.dates is not None:
        return txn.resources(view.lookup(txn, _STUDY, [_date_constraint(*node.dates)]))
    if node.parent is not None:
        return txn.resources([cid for cid, _pub in txn.children([node.parent]).get(node.parent, ())])
    return txn.resources(WholeLevel(node.level))


def _named(txn: Transaction, view: _View, node: _Resources) -> dict[str, ResourceRow]:
    template = node.names[node.level]
    return view.names.named((node.tree, template, node.parent, node.dates), template, _rows_of(txn, view, node))


def _child(node: _Resources, row: ResourceRow) -> _Node:
    if node.level is _SERIES:
        return _Instances(row.id, row.public_id)
    return _Resources(ResourceType(int(node.level) + 1), node.names, node.tree, parent=row.id)


def _studies_of_months(year: str) -> _Resources:
    return _Resources(_STUDY, _BY_STUDIES_NAMES, BY_DATES, dates=(year + "0101", year + "1231"))


def _walk(txn: Transaction, view: _View, node: _Node, path: Sequence[str]) -> tuple[_Node | None, list[str]]:
    """Follow `path` from `node`: (the node reached, the rest of the path below a series' folder).
    (None, []) when a resource folder of the path does not exist (Orthanc then lists it as an
    empty folder, has no file there, and accepts its deletion)."""
    for i, name in enumerate(path):
        if isinstance(node, _Instances):
            return node, list(path[i:])
        if isinstance(node, _Resources):
            row = _named(txn, view, node).get(name)
            if row is None:
                return None, []
            node = _child(node, row)
        elif isinstance(node, _Years):
            if len(name) != 4:  # Orthanc 1.10.1: "Parameter out of range" for any other name
                raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE)
            node = _Months(name)
        else:
            if len(name) != 7:  # Orthanc 1.10.1: an internal error for a name not like YYYY-MM
                raise OrthancError(ErrorCode.INTERNAL_ERROR)
            year, month = name[:4], name[5:7]  # Orthanc reads the year from this name, not the parent's
            node = _Resources(_STUDY, _BY_STUDIES_NAMES, BY_DATES, dates=(year + month + "01", year + month + "31"))
    return node, []


def _last_updates(txn: Transaction, rows: Sequence[ResourceRow]) -> dict[int, dict[int, str]]:
    return txn.metadata([r.id for r in rows], (MetadataType.LAST_UPDATE,))


def _instance_files(txn: Transaction, ids: Sequence[int], name: Callable[[ResourceRow], str]) -> list[Entry]:
    """Files for instances with a DICOM attachment: size, reception date."""
    rows = sorted(txn.resources(ids), key=lambda r: r.id)  # creation order, as Orthanc's lookups
    atts = txn.attachments([r.id for r in rows])
    meta = txn.metadata([r.id for r in rows], (MetadataType.RECEPTION_DATE,))
    out = []
    for r in rows:
        dicom = next((a for a in atts.get(r.id, ()) if a.content_type == FileContentType.DICOM), None)
        if dicom is None:
            continue
        when = _metadata_time(meta.get(r.id, {}).get(MetadataType.RECEPTION_DATE))
        out.append(Entry(name(r), False, when, size=dicom.uncompressed_size, mime=MIME_DICOM))
    return out


def _list_node(txn: Transaction, view: _View, node: _Node) -> list[Entry]:
    if isinstance(node, _Resources):
        named = _named(txn, view, node)
        meta = _last_updates(txn, list(named.values()))
        return [
            Entry(name, True, _metadata_time(meta.get(row.id, {}).get(MetadataType.LAST_UPDATE)))
            for name, row in sorted(named.items())
        ]
    if isinstance(node, _Instances):
        kids = [cid for cid, _pub in txn.children([node.series]).get(node.series, ())]
        return _instance_files(txn, kids, lambda r: r.public_id + ".dcm")
    if isinstance(node, _Years):
        dates = (r.main_tags.get(_STUDY_DATE, "") for r in txn.resources(WholeLevel(_STUDY)))
        return [Entry(y, True) for y in sorted({d[:4] for d in dates if len(d) == 8})]
    rows = _rows_of(txn, view, _studies_of_months(node.year))
    dates = (r.main_tags.get(_STUDY_DATE, "") for r in rows)
    return [Entry(f"{node.year}-{m}", True) for m in sorted({d[4:6] for d in dates if len(d) == 8})]


def _deletions(txn: Transaction, view: _View, node: _Node) -> list[tuple[ResourceType, str]]:
    """What deleting a whole folder deletes (Orthanc deletes every instance below it: the
    resources of the folder go with them)."""
    if isinstance(node, _Resources):
        return [(node.level, r.public_id) for r in _rows_of(txn, view, node)]
    if isinstance(node, _Instances):
        return [(_SERIES, node.series_public_id)]
    if isinstance(node, _Years):
        return [d for e in _list_node(txn, view, node) for d in _deletions(txn, view, _Months(e.name))]
    out = []
    for e in _list_node(txn, view, node):
        y, m = e.name[:4], e.name[5:7]
        out.extend(
            _deletions(txn, view, _Resources(_STUDY, _BY_STUDIES_NAMES, BY_DATES, dates=(y + m + "01", y + m + "31")))
        )
    return out


def _uid_folders(txn: Transaction, rows: Sequence[ResourceRow], uid_tag: int) -> list[Entry]:
    """`by-uids` folders named by a UID, dated by the resource's LastUpdate."""
    rows = [r for r in rows if r.main_tags.get(uid_tag)]
    meta = _last_updates(txn, rows)
    last = MetadataType.LAST_UPDATE
    return [Entry(r.main_tags[uid_tag], True, _metadata_time(meta.get(r.id, {}).get(last))) for r in rows]


def _uid_constraints(path: Sequence[str]) -> list[TagConstraint]:
    """`by-uids/{study}/{series}/{sop}`: the UIDs as Orthanc's lookups read them."""
    out = []
    for tag, text in zip((_STUDY_UID, _SERIES_UID, _SOP_UID), path, strict=False):
        c = parse_constraint(tag, text, star_is_universal=False)
        if c is not None:
            out.append(c)
    return out


def _odd_last(ids: list[int]) -> int | None:
    """Orthanc's visitors keep a match, drop it at the next, keep the third...: the answer is the
    last match when their count is odd, none otherwise."""
    return ids[-1] if len(ids) % 2 == 1 else None


# ---------------------------------------------------------------- the whole tree


JsonRenderer = Callable[[ResourceInfo], bytes]
"""Turns a resource into the bytes of its `study.json` / `series.json` (rest/webdav.py)."""


class WebDavTree:
    """The `/webdav/` tree of one server (Orthanc's OrthancWebDav). Paths are lists of decoded
    components below `/webdav`."""

    def __init__(self, ctx: ServerContext, render_json: JsonRenderer, allow_delete: bool, allow_upload: bool) -> None:
        self.ctx = ctx
        self.render_json = render_json
        self.allow_delete = allow_delete
        self.allow_upload = allow_upload
        self.uploads = UploadsFolder()
        self.view = _View(FolderNames(), ctx.settings.limit_find_results, ctx.settings.limit_find_instances)

    # -- reading

    async def is_existing_folder(self, path: Sequence[str]) -> bool:
        if not path:
            return True
        head = path[0]
        if head == BY_UIDS:
            return len(path) <= 3 and (len(path) != 3 or path[2] != STUDY_INFO)
        if head in _ROOTS:
            return await self.list_collection(path) is not None
        if self.allow_upload and head == UPLOADS:
            return self.uploads.is_folder(path[1:])
        return False

    async def folder(self, path: Sequence[str], depth: int) -> list[Entry] | None:
        """PROPFIND of a folder: None when `path` is no folder, else its items (none at depth 0).
        One walk of the index where Orthanc checks the folder, then lists it."""
        if path and path[0] in _ROOTS:
            entries = await self.list_collection(path)
            return entries if entries is None or depth else []
        if not await self.is_existing_folder(path):
            return None
        return await self.list_collection(path) if depth else []

    async def list_collection(self, path: Sequence[str]) -> list[Entry] | None:
        """The content of a folder; None when `path` is not one."""
        if not path:
            names = [BY_DATES, BY_PATIENTS, BY_STUDIES, BY_UIDS] + ([UPLOADS] if self.allow_upload else [])
            return [Entry(n, True) for n in names]
        head = path[0]
        if head == BY_UIDS:
            return await self._list_uids(path)
        if head in _ROOTS:
            root, rest = _ROOTS[head], path[1:]

            def run(txn: Transaction) -> list[Entry] | None:
                node, below = _walk(txn, self.view, root, rest)
                if node is None:
                    return []  # Orthanc: an unknown resource folder is an empty folder
                if below:
                    return None
                return _list_node(txn, self.view, node)

            return await self.ctx.index.read(run)
        if self.allow_upload and head == UPLOADS:
            return self.uploads.list(path[1:])
        return None

    async def _list_uids(self, path: Sequence[str]) -> list[Entry] | None:
        if len(path) > 3:
            return None
        out: list[Entry] = []
        if len(path) >= 2:
            info = STUDY_INFO if len(path) == 2 else SERIES_INFO
            virtual = await self.get_file([*path, info], with_data=False)
            if virtual is not None:
                out.append(Entry(info, False, size=virtual.size, mime=virtual.mime))
        level = (_STUDY, _SERIES, _INSTANCE)[len(path) - 1]
        constraints = _uid_constraints(path[1:])
        uid_tag = (_STUDY_UID, _SERIES_UID, _SOP_UID)[len(path) - 1]

        def run(txn: Transaction) -> list[Entry]:
            # Orthanc 1.10.1 lists what a lookup matches in creation order
            if not constraints:  # every study
                # Orthanc 1.10.1: the first studies created (up to its limit), by public ID
                rows = self.view.limited(level, sorted(txn.resources(WholeLevel(level)), key=lambda r: r.id))
                return _uid_folders(txn, sorted(rows, key=lambda r: r.public_id), uid_tag)
            ids = self.view.lookup(txn, level, constraints)
            if level is _INSTANCE:

                def sop(r: ResourceRow) -> str:
                    return r.main_tags.get(_SOP_UID, "") + ".dcm"

                rows_with_uid = [r.id for r in txn.resources(ids) if r.main_tags.get(_SOP_UID)]
                return _instance_files(txn, rows_with_uid, sop)
            return _uid_folders(txn, sorted(txn.resources(ids), key=lambda r: r.id), uid_tag)

        out.extend(await self.ctx.index.read(run))
        return out

    async def get_file(self, path: Sequence[str], with_data: bool = True) -> FileContent | None:
        """A file of the tree (None: there is none at `path`)."""
        if not path:
            return None
        head = path[0]
        if head == BY_UIDS:
            return await self._uid_file(path, with_data)
        if head in _ROOTS:
            root, rest = _ROOTS[head], path[1:]
            found = await self.ctx.index.read(lambda txn: _walk(txn, self.view, root, rest))
            node, below = found
            if not isinstance(node, _Instances) or len(below) != 1 or not below[0].endswith(".dcm"):
                return None
            # Orthanc 1.10.1 serves any instance by its ID here, in whatever series folder
            return await self._instance_file(below[0][:-4], with_data)
        if self.allow_upload and head == UPLOADS:
            return self.uploads.get(path[1:])
        return None

    async def _instance_file(self, public_id: str, with_data: bool) -> FileContent | None:
        path = None
        try:
            if with_data:
                att, data = await dicom_file(self.ctx, public_id, _SEND_FROM_PATH_ABOVE)
                if data is None:
                    path = attachment_path(self.ctx, att)
                    if path is None:
                        data = await read_dicom(self.ctx, public_id)
            else:
                att, data = await dicom_attachment(self.ctx, public_id), None
        except OrthancError:
            return None
        received = await self.ctx.index.read(lambda txn: _reception(txn, public_id))
        return FileContent(MIME_DICOM, att.uncompressed_size, received, data, path)

    async def _uid_file(self, path: Sequence[str], with_data: bool) -> FileContent | None:
        if len(path) == 3 and path[2] == STUDY_INFO:
            level = _STUDY
        elif len(path) == 4 and path[3] == SERIES_INFO:
            level = _SERIES
        elif len(path) == 4 and path[3].endswith(".dcm"):
            level = _INSTANCE
        else:
            return None
        uids = [*path[1:3], path[3][:-4]] if level is _INSTANCE else list(path[1 : int(level)])
        constraints = _uid_constraints(uids)
        ctx = self.ctx

        def run(txn: Transaction) -> ResourceInfo | str | None:
            chosen = _odd_last(self.view.lookup(txn, level, constraints))
            if chosen is None:
                return None
            if level is _INSTANCE:
                return txn.resources([chosen])[0].public_id
            return expand(txn, ctx, [chosen])[0]

        found = await ctx.index.read(run)
        if found is None:
            return None
        if isinstance(found, str):
            return await self._instance_file(found, with_data)
        body = self.render_json(found)
        return FileContent(MIME_JSON, len(body), None, body)

    # -- writing

    async def store_file(self, path: Sequence[str], data: bytes) -> bool:
        """PUT: only into `uploads/`; a non-empty file is then ingested, and removed."""
        if not (self.allow_upload and path and path[0] == UPLOADS):
            return False
        sub = list(path[1:])
        stored = self.uploads.store(sub, data)
        if stored is None:
            return False
        if data:
            self.uploads.last_upload = time.time()
            try:
                await ingest_upload(self.ctx, data)
            finally:
                self.uploads.delete(sub, only=stored)
                self.uploads.last_upload = time.time()
        return True

    async def create_folder(self, path: Sequence[str]) -> bool:
        """MKCOL: only below `uploads/`."""
        if self.allow_upload and path and path[0] == UPLOADS:
            return self.uploads.create_folder(path[1:])
        return False

    async def delete_item(self, path: Sequence[str]) -> bool:
        """DELETE: resources when `WebDavDeleteAllowed` (a whole folder: all below it), files and
        folders of `uploads/`."""
        if not path:
            return False
        head = path[0]
        if head == BY_UIDS and 2 <= len(path) <= 4:
            return self.allow_delete and await self._delete_uids(path)
        if head in _ROOTS:
            return self.allow_delete and await self._delete_in_tree(_ROOTS[head], path[1:])
        if self.allow_upload and head == UPLOADS:
            return self.uploads.delete(path[1:])
        return False

    async def _delete_uids(self, path: Sequence[str]) -> bool:
        level = _STUDY
        uids = list(path[1:])
        if len(path) >= 3:
            if path[2] == STUDY_INFO:
                return True  # a virtual file: accepted, so that deleting a folder goes on
            level = _SERIES
        if len(path) == 4:
            if path[3] == SERIES_INFO:
                return True
            if not path[3].endswith(".dcm"):
                return False
            uids[2] = path[3][:-4]
            level = _INSTANCE
        constraints = _uid_constraints(uids)

        def run(txn: Transaction) -> list[str]:
            return [r.public_id for r in txn.resources(self.view.lookup(txn, level, constraints))]

        await self._delete_all([(level, pid) for pid in await self.ctx.index.read(run)])
        return True

    async def _delete_in_tree(self, root: _Node, path: Sequence[str]) -> bool:
        def run(txn: Transaction) -> list[tuple[ResourceType, str]] | str | bool:
            node, below = _walk(txn, self.view, root, path)
            if node is None:
                return True  # Orthanc: nothing there, nothing to do
            if not below:
                return _deletions(txn, self.view, node)
            if len(below) == 1 and below[0].endswith(".dcm"):
                return below[0][:-4]  # an instance, by its public ID
            return False

        plan = await self.ctx.index.read(run)
        if isinstance(plan, bool):
            return plan
        if isinstance(plan, str):
            try:
                await delete(self.ctx, plan, _INSTANCE)
            except OrthancError:
                return False  # Orthanc: no such instance
            return True
        await self._delete_all(plan)
        return True

    async def _delete_all(self, resources: Sequence[tuple[ResourceType, str]]) -> None:
        for level, public_id in resources:
            try:
                await delete(self.ctx, public_id, level)
            except OrthancError:
                pass  # already gone with another one
            await asyncio.sleep(0)


def _reception(txn: Transaction, public_id: str) -> str | None:
    hit = txn.lookup(public_id)
    if hit is None:
        return None
    return _metadata_time(
        txn.metadata([hit[0]], (MetadataType.RECEPTION_DATE,)).get(hit[0], {}).get(MetadataType.RECEPTION_DATE)
    )
