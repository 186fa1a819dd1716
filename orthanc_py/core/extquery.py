"""Extended query tags: make more attributes searchable by QIDO-RS through the index.

Adding tags starts a re-index job (visible in /jobs and as an Azure operation) that reads the
header of every stored instance and indexes the values; instances stored meanwhile are indexed
by ingest. Values that cannot be indexed (wrong VR, too long, several values) are recorded as
errors and make the tag's QueryStatus Disabled, as the Azure DICOM service does.

This module holds what is read on every request: the definitions in memory, the values ingest
indexes, the QIDO-RS constraints. Changing the definitions (and the re-index job) is in
extquery_admin.py.
"""

from __future__ import annotations

from typing import Any

from ..errors import ErrorCode, OrthancError
from ..index.base import ExtTagRow, Transaction
from ..model import extquery as eq
from ..model.enums import ResourceType
from ..model.lookup import MatchKind, TagConstraint, normalize, parse_constraint
from .context import ServerContext

JOB_TYPE = "ReindexExtendedQueryTags"


def _conflict(message: str) -> OrthancError:
    return OrthancError(ErrorCode.BAD_SEQUENCE_OF_CALLS, message, http_status=409)


def _not_found(path: str) -> OrthancError:
    return OrthancError(
        ErrorCode.UNKNOWN_RESOURCE,
        f"The specified extended query tag with tag path {path} cannot be found.",
        http_status=404,
    )


def _bad(message: str) -> OrthancError:
    return OrthancError(ErrorCode.BAD_REQUEST, message)


class ExtQueryTags:
    """The definitions, kept in memory (read at start, refreshed after each change) so ingest
    and QIDO look them up without a query."""

    def __init__(self) -> None:
        self.rows: list[ExtTagRow] = []

    def refresh(self, txn: Transaction) -> None:
        self.rows = txn.ext_tags()

    def active(self) -> list[ExtTagRow]:
        """Tags whose values are indexed on ingest (being added or ready; main DICOM tags are
        indexed anyway)."""
        return [
            r for r in self.rows if r.status in ("Adding", "Ready") and not eq.indexed_already(r.tag, r.private_creator)
        ]

    def by_tag(self, tag: int) -> ExtTagRow | None:
        return next((r for r in self.rows if r.tag == tag), None)

    def running_operation(self) -> str | None:
        return next((r.operation for r in self.rows if r.operation), None)


def storage_tag(row: ExtTagRow) -> int:
    return eq.storage_tag(row.tag, row.private_creator, row.key)


def _norm(row: ExtTagRow, text: str) -> str | None:
    return normalize(text) if row.vr == "PN" else None


# --- ingest


def values_for_ingest(ctx: ServerContext, data: bytes, dataset: Any) -> list[tuple[int, ResourceType, str, str | None]]:
    """(storage tag, level, value, normalized) of the active tags for a file being stored; a value
    that cannot be indexed is left out (the instance is still stored)."""
    rows = ctx.ext_tags.active()
    if not rows:
        return []
    if dataset is None:
        import io

        import pydicom

        try:
            dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
        except Exception:  # the file passed ingest's own parser; be lenient here
            return []
    out = []
    for row in rows:
        text, error = eq.value_of(dataset, row.tag, row.private_creator, row.vr)
        if text is not None and error is None:
            out.append((storage_tag(row), ResourceType(row.level), text, _norm(row, text)))
    return out


# --- the REST services


def entry_json(row: ExtTagRow, base: str) -> dict[str, Any]:
    """An extended query tag as the Azure service answers it (camelCase, no null fields)."""
    out: dict[str, Any] = {"path": f"{row.tag:08X}", "vr": row.vr}
    if row.private_creator:
        out["privateCreator"] = row.private_creator
    out["level"] = eq.LEVEL_NAMES[ResourceType(row.level)]
    out["status"] = row.status
    out["queryStatus"] = row.query_status
    if row.error_count:
        out["errors"] = {"count": row.error_count, "href": f"{base}/extendedquerytags/{row.tag:08X}/errors"}
    if row.operation:
        op = row.operation.replace("-", "")
        out["operation"] = {"id": op, "href": f"{base}/operations/{op}"}
    return out


def lookup(ctx: ServerContext, path: str) -> ExtTagRow:
    try:
        tag = eq.parse_path(path)
    except eq.InvalidDefinition as exc:
        raise _bad(str(exc)) from exc
    row = ctx.ext_tags.by_tag(tag)
    if row is None:
        raise _not_found(path)
    return row


# --- QIDO-RS


def query_levels(level: ResourceType, scope: ResourceType | None) -> set[ResourceType]:
    """Levels of the tags a QIDO request may filter on (Azure: /studies takes study tags,
    /series study and series tags, /instances all; a scoped request only the levels below its scope)."""
    allowed = {lv for lv in (ResourceType.STUDY, ResourceType.SERIES, ResourceType.INSTANCE) if lv <= level}
    if scope is not None:
        allowed = {lv for lv in allowed if lv > scope}
    return allowed


def constraint(
    ctx: ServerContext, tag: int, value: str, level: ResourceType, scope: ResourceType | None, fuzzy: bool
) -> tuple[TagConstraint | None, bool] | None:
    """The index constraint for a QIDO filter on an extended query tag and whether the tag has
    errors; None when `tag` is no extended query tag (400 when it cannot be queried)."""
    row = ctx.ext_tags.by_tag(tag)
    if row is None or eq.indexed_already(row.tag, row.private_creator):
        return None
    if row.status != "Ready" or ResourceType(row.level) not in query_levels(level, scope):
        raise _bad(f"Invalid QIDO-RS query. AttributeId {tag:08X} is not queryable.")
    if row.query_status != "Enabled":
        raise _bad(f"Query is disabled on specified attribute '{tag:08X}'.")
    if value == "":
        raise _bad(f"AttributeId '{tag:08X}' has empty string value that is not supported.")
    key = storage_tag(row)
    lv = ResourceType(row.level)
    if row.vr in eq.RANGE_VRS and "-" in value:
        low, _, high = value.partition("-")
        if not low and not high:
            raise _bad(f"Invalid range value '{value}' for {tag:08X}.")
        return TagConstraint(key, lv, MatchKind.RANGE, (low, high)), row.error_count > 0
    if row.vr in eq.INTEGER_VRS or row.vr in eq.FLOAT_VRS:
        try:
            value = eq.normalize_number(row.vr, value)
        except ValueError:
            raise _bad(f"The value '{value}' of {tag:08X} is not a valid {row.vr} value.") from None
        return TagConstraint(key, lv, MatchKind.EQUAL, (value,)), row.error_count > 0
    if row.vr == "PN":
        if fuzzy and not value.endswith("*"):
            value += "*"
        c = parse_constraint(tag, value, False)
        if c is None:
            return None, row.error_count > 0
        return TagConstraint(key, lv, c.kind, c.values, row.private_creator != "" or c.case_sensitive), (
            row.error_count > 0
        )
    return TagConstraint(key, lv, MatchKind.EQUAL, (value,)), row.error_count > 0
