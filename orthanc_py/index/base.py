"""The index protocol: what core may ask of a database backend (Orthanc's IDatabaseWrapper).

Core never sees SQL. It runs plain functions inside a transaction: `await index.write(fn)` runs
`fn(txn)` in one write transaction (a backend may batch several into one commit, or retry a whole
function), `await index.read(fn)` runs `fn(txn)` on a consistent snapshot. No network or storage
I/O happens inside those functions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ..model.enums import ResourceType
from ..model.lookup import TagConstraint

T = TypeVar("T")


@dataclass(slots=True)  # not frozen: built by the thousand in listings, and frozen __init__ is 4x slower
class ResourceRow:
    """One resource: internal id, level, public id, parent's public id and main tags."""

    id: int
    level: ResourceType
    public_id: str
    parent_id: int | None
    parent_public_id: str | None
    main_tags: dict[int, str]


@dataclass(frozen=True, slots=True)
class ResourceSummary:
    """One resource and what its own GET answer shows besides its row (Transaction.summary)."""

    row: ResourceRow
    children: list[str]
    """Public ids of its children, in creation order."""
    metadata: dict[int, str]
    """The metadata of the types asked for."""
    labels: list[str]
    """Sorted."""
    dicom: tuple[str, int] | None
    """(uuid, uncompressed size) of an instance's DICOM file."""
    is_protected: bool


@dataclass(frozen=True, slots=True)
class WholeLevel:
    """Stands for "every resource of this level" where bulk methods take ids (listing all
    studies this way costs one query per kind of data, not one per 500 ids)."""

    level: ResourceType


Ids = Sequence[int] | WholeLevel


@dataclass(frozen=True, slots=True)
class Attachment:
    """A stored file attached to a resource (Orthanc's FileInfo)."""

    content_type: int
    uuid: str
    compressed_size: int
    uncompressed_size: int
    compression: int = 1
    uncompressed_md5: str = ""
    compressed_md5: str = ""
    revision: int = 0


@dataclass(frozen=True, slots=True)
class Change:
    """An entry of the /changes log."""

    seq: int
    change_type: int
    level: ResourceType
    public_id: str
    date: str


@dataclass(frozen=True, slots=True)
class ExportedResource:
    """An entry of the /exports log."""

    seq: int
    level: ResourceType
    public_id: str
    remote_modality: str
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    date: str


@dataclass(frozen=True, slots=True)
class Deletion:
    """What a cascade delete removed: the files to delete after commit, the resources and the
    first ancestor left standing."""

    attachments: list[Attachment]
    deleted: list[tuple[ResourceType, str]]
    remaining_ancestor: tuple[ResourceType, str] | None


@dataclass(frozen=True, slots=True)
class OrderBy:
    """One ordering key of an extended find: a main DICOM tag or a metadata, ascending or not."""

    tag: int | None
    metadata: int | None
    ascending: bool
    cast: str = ""
    """"" compares the text; "int" or "float" the number it holds (DicomTagAsInt, MetadataAsFloat...)."""


@dataclass(frozen=True, slots=True)
class ExtTagRow:
    """An extended query tag (Azure DICOM) as the index keeps it."""

    key: int
    tag: int
    private_creator: str
    vr: str
    level: int
    status: str  # Adding | Ready | Deleting
    query_status: str  # Enabled | Disabled
    operation: str | None
    error_count: int


class Transaction(Protocol):
    """Operations available inside `read` (queries only) and `write` (everything)."""

    # --- queries
    def lookup(self, public_id: str) -> tuple[int, ResourceType] | None: ...
    def lookup_many(self, public_ids: Sequence[str]) -> dict[str, tuple[int, ResourceType]]: ...
    def resources(self, ids: Ids) -> list[ResourceRow]: ...
    def summary(
        self, public_id: str, metadata_types: Sequence[int], level: ResourceType | None = None
    ) -> ResourceSummary | None:
        """One resource by public id with its children, metadata of `metadata_types`, labels,
        DICOM attachment and protection, in one round trip (GET /{level}/{id}). `level`: the
        level the caller wants (a resource at another level may come back with those fields
        that its own level cannot have left empty)."""
        ...

    def list_ids(self, level: ResourceType, since: int = 0, limit: int = 0) -> list[int]: ...
    def list_public_ids(self, level: ResourceType, since: int = 0, limit: int = 0) -> list[str]:
        """`list_ids`' resources by public id (GET /patients etc., not expanded)."""
        ...

    def children(self, ids: Ids) -> dict[int, list[tuple[int, str]]]: ...
    def descendants(self, resource_id: int, level: ResourceType) -> list[int]: ...
    def ancestor(self, resource_id: int, level: ResourceType) -> int | None: ...
    def metadata(self, ids: Ids, types: Iterable[int] | None = None) -> dict[int, dict[int, str]]: ...
    def metadata_entry(self, resource_id: int, metadata_type: int) -> tuple[str, int] | None:
        """(value, revision) of one metadata, None when absent."""
        ...

    def any_compressed(self) -> bool:
        """Whether some attachment is stored compressed."""
        ...

    def labels(self, ids: Ids) -> dict[int, list[str]]: ...
    def level_summary(
        self, level: ResourceType, metadata_type: int
    ) -> list[tuple[int, str, str | None, dict[int, str], list[str], str | None]]: ...
    def all_labels(self) -> list[str]: ...
    def attachments(self, ids: Ids) -> dict[int, list[Attachment]]: ...
    def attachment_of(self, public_id: str, content_type: int) -> tuple[int, ResourceType, Attachment | None] | None:
        """(internal id, level, the attachment of that type or None) of a resource by public id,
        in one statement (the lookup of GET /instances/{id}/file); None for an unknown id."""
        ...

    def find(
        self,
        level: ResourceType,
        constraints: Sequence[TagConstraint],
        *,
        parent: int | None = None,
        labels: Sequence[str] = (),
        labels_mode: str = "All",
        metadata_constraints: Sequence[tuple[int, TagConstraint]] = (),
        order_by: Sequence[OrderBy] = (),
        since: int = 0,
        limit: int = 0,
    ) -> list[int]: ...
    def count(self, level: ResourceType) -> int: ...
    def total_sizes(self) -> tuple[int, int]: ...
    def resource_statistics(self, resource_id: int, level: ResourceType) -> dict[str, int]: ...
    def changes(self, since: int, limit: int) -> list[Change]: ...
    def changes_before(self, before: int, limit: int) -> list[Change]: ...
    def last_change(self) -> int: ...
    def exports(self, since: int, limit: int) -> list[ExportedResource]: ...
    def last_export(self) -> int: ...
    def property(self, key: str) -> str | None: ...
    def is_protected(self, patient_id: int) -> bool: ...
    def disk_size(self) -> int:
        """Total compressed size of every attachment (kept up to date: no sum over the table)."""
        ...

    def patient_to_recycle(self, avoid: int | None) -> int | None:
        """The first unprotected patient of the recycling order other than `avoid` (None: none)."""
        ...

    def protected_among(self, patient_ids: Sequence[int]) -> set[int]: ...

    # --- writes
    def create_resource(
        self, public_id: str, level: ResourceType, parent_id: int | None, main_tags: dict[int, str]
    ) -> int: ...
    def set_main_tags(self, resource_id: int, main_tags: dict[int, str]) -> None:
        """Replace the main DICOM tags of a resource (reconstruction), searchable values included."""
        ...

    def set_metadata(self, resource_id: int, metadata_type: int, value: str, revision: int = 0) -> None: ...
    def set_metadata_many(self, rows: Sequence[tuple[int, int, str]]) -> None: ...
    def delete_metadata(self, resource_id: int, metadata_type: int) -> bool: ...
    def add_attachment(self, resource_id: int, attachment: Attachment) -> None: ...
    def set_attachment_md5(
        self, resource_id: int, content_type: int, uuid: str, md5: str, compressed_md5: str
    ) -> None: ...
    def delete_attachment(self, resource_id: int, content_type: int) -> Attachment | None: ...
    def log_change(self, change_type: int, level: ResourceType, public_id: str, date: str) -> None: ...
    def log_changes(self, rows: Sequence[tuple[int, ResourceType, str, str]]) -> None: ...
    def log_export(self, entry: ExportedResource) -> None: ...
    def delete_resource(self, resource_id: int) -> Deletion: ...
    def clear_changes(self) -> None: ...
    def log_feed(
        self,
        action: str,
        study: str,
        series: str,
        sop: str,
        instance_id: str,
        timestamp: str,
        replaces: bool = True,
    ) -> None: ...
    def feed(self, offset: int, limit: int) -> list[tuple[Any, ...]]: ...
    def feed_latest(self) -> tuple[Any, ...] | None: ...
    def clear_exports(self) -> None: ...
    def ext_tags(self) -> list[ExtTagRow]: ...
    def add_ext_tag(self, tag: int, private_creator: str, vr: str, level: int, operation: str) -> int: ...
    def update_ext_tag(self, key: int, **fields: Any) -> None: ...
    def delete_ext_tag(self, key: int, storage_tag: int | None) -> None: ...
    def add_tag_values(self, rows: Sequence[tuple[int, int, str, str | None]]) -> None: ...
    def add_ext_errors(self, key: int, rows: Sequence[tuple[str, str, str, str, str, str]]) -> None: ...
    def ext_errors(self, key: int, offset: int, limit: int) -> list[tuple[str, str, str, str, str]]: ...
    def add_label(self, resource_id: int, label: str) -> None: ...
    def remove_label(self, resource_id: int, label: str) -> None: ...
    def set_property(self, key: str, value: str) -> None: ...
    def set_protected(self, patient_id: int, protected: bool) -> None: ...
    def tag_recent_patient(self, patient_id: int) -> None:
        """The patient received an instance: last in the recycling order (unless protected)."""
        ...

    def saved_jobs(self) -> list[tuple[str, str]]:
        """SaveJobs: (job id, the job as JSON) of every saved job."""
        ...

    def save_jobs(self, rows: Sequence[tuple[str, str]]) -> None: ...
    def delete_jobs(self, ids: Sequence[str]) -> None: ...


class Index(Protocol):
    """A database backend: transactions as functions."""

    async def read(self, fn: Callable[[Transaction], T], short: bool = False) -> T:
        """Run `fn` on a snapshot. `short`: the caller knows `fn` is a bounded point read
        (one resource, one attachment): the backend may run it without a thread hop."""
        ...

    async def write(self, fn: Callable[[Transaction], T]) -> T: ...
    def read_now(self, fn: Callable[[Transaction], T], *, single: bool = False) -> T:
        """A `short` read done on the calling thread (the event loop) right now, or
        BlockingIOError when that would wait: the HTTP fast lane then leaves the request to the
        ordinary path. `single`: `fn` runs one statement (which is a snapshot by itself: the
        backend may leave out the transaction around it)."""
        ...

    def read_now_cached(
        self, key: Hashable, fn: Callable[[Transaction], T], size: Callable[[T], int], *, single: bool = False
    ) -> T:
        """`read_now`, or the value `fn` gave under the same `key` when nothing has been
        committed since, by any connection or process (a bounded cache; `size(value)`: its
        bytes). The value is shared by every call that finds it: immutable, or never changed."""
        ...

    def read_blocking(self, fn: Callable[[Transaction], T]) -> T:
        """`read` for code already running in a worker thread (blocks that thread)."""
        ...

    def write_blocking(self, fn: Callable[[Transaction], T]) -> T:
        """`write` for code already running in a worker thread (blocks that thread). `fn` may be
        run twice (a batch retried function by function), so it acts on the transaction only."""
        ...

    def write_soon(
        self,
        fn: Callable[[Transaction], Any],
        fut: asyncio.Future[Any],
        after: Callable[[Any, BaseException | None], Any] | None = None,
    ) -> None:
        """`write_blocking` without the wait, from a worker thread: `fn` is queued and `fut`
        settled after the commit with what `after(result, error)` returns or raises (run in
        the committing thread; without `after`, with `fn`'s result or error)."""
        ...

    async def close(self) -> None: ...
