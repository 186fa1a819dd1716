"""The find compiler: a find at one level -> one SELECT of resource ids and its arguments.

Pure (no connection): what a constraint becomes in SQL is tested against `model.lookup.matches`
on the same cases (tests/unit/test_findsql.py). Tags of the level or above are matched on the
resource or on its ancestors (joined up the parent chain); tags of lower levels as EXISTS over
descendants. Every tag condition is an indexed lookup in `tags` (tag, value) or (tag, norm).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..model.enums import ResourceType
from ..model.lookup import MatchKind, TagConstraint, normalize
from ..model.maintags import LEVEL_OF_TAG
from .base import OrderBy
from .dialect import SQLITE, Dialect


def stored_level(tag_level: ResourceType | None, level: ResourceType) -> int:
    """The level whose rows hold a main tag for a find at `level`: each study keeps its own
    copy of the patient tags, so below the patient level they are matched on the study (two
    studies of one PatientID may name the patient differently)."""
    if tag_level is None:
        return int(level)
    if tag_level is ResourceType.PATIENT and level is not ResourceType.PATIENT:
        return int(ResourceType.STUDY)
    return int(tag_level)


SIGNATURE = 15
"""MetadataType.MAIN_DICOM_TAGS_SIGNATURE: its rows hold the number of a `signatures` row."""


def metadata_value(alias: str, metadata_type: int, dialect: Dialect = SQLITE) -> str:
    """The SQL of a metadata row's value as read (a signature's text, not its number)."""
    if metadata_type != SIGNATURE:
        return f"{alias}.value"
    key = dialect.as_text("s.id")
    return f"COALESCE((SELECT s.value FROM signatures s WHERE {key} = {alias}.value), {alias}.value)"


def tag_condition(c: TagConstraint, args: list[Any], col: str = "value", dialect: Dialect = SQLITE) -> str:
    """SQL on one column (`value`, or `norm` for folded values) for one constraint, its values
    taken as they are."""

    def single(v: str) -> str:
        if "*" in v or "?" in v:
            sql, arg = dialect.wildcard(col, v)
            args.append(arg)
            return sql
        args.append(v)
        return f"{col} = ?"

    if c.kind is MatchKind.RANGE:
        low, high = c.values
        parts = []
        if low:
            parts.append(f"{col} >= ?")
            args.append(low)
        if high:
            parts.append(f"{col} <= ?")
            args.append(high)
        return " AND ".join(parts) or "1=1"
    if c.kind is MatchKind.LIST:
        return "(" + " OR ".join(single(v) for v in c.values) + ")"
    return single(c.values[0])


def tag_subquery(c: TagConstraint, args: list[Any], dialect: Dialect = SQLITE) -> str:
    """Ids of the resources whose `tags` rows match one constraint. A case-insensitive one
    compares the folded query with both columns (`norm` holds the folded value only where it
    differs from `value`), as two indexed searches rather than one OR the engine may scan."""
    if c.case_sensitive or c.kind is MatchKind.RANGE:
        args.append(c.tag)
        return f"SELECT resource_id FROM tags WHERE tag = ? AND {tag_condition(c, args, dialect=dialect)}"
    folded = TagConstraint(c.tag, c.level, c.kind, tuple(normalize(v) for v in c.values), True)
    args.append(c.tag)
    first = f"SELECT resource_id FROM tags WHERE tag = ? AND {tag_condition(folded, args, dialect=dialect)}"
    args.append(c.tag)
    second = f"SELECT resource_id FROM tags WHERE tag = ? AND {tag_condition(folded, args, 'norm', dialect)}"
    return f"{first} UNION ALL {second}"


def compile_find(
    level: ResourceType,
    constraints: Sequence[TagConstraint],
    *,
    parent: tuple[int, int] | None = None,
    labels: Sequence[str] = (),
    labels_mode: str = "All",
    metadata_constraints: Sequence[tuple[int, TagConstraint]] = (),
    order_by: Sequence[OrderBy] = (),
    since: int = 0,
    limit: int = 0,
    dialect: Dialect = SQLITE,
) -> tuple[str, list[Any]]:
    """SELECT of the ids of the resources of `level` that match, in Orthanc's order, and its
    arguments. `parent` is (internal id, level) of the resource the find is restricted to."""
    joins: list[str] = []
    join_args: list[Any] = []
    where: list[str] = ["r.level = ?"]
    args: list[Any] = [int(level)]
    joined: dict[int, str] = {int(level): "r"}

    def alias_for(target: int) -> str:
        cur = int(level)
        alias = "r"
        while cur > target:
            cur -= 1
            if cur not in joined:
                name = f"a{cur}"
                joins.append(f"JOIN resources {name} ON {name}.id = {alias}.parent_id")
                joined[cur] = name
            alias = joined[cur]
        return alias

    for c in constraints:
        tag_level = stored_level(c.level, level)
        sub_args: list[Any] = []
        subquery = tag_subquery(c, sub_args, dialect)
        if tag_level <= int(level):
            where.append(f"{alias_for(tag_level)}.id IN ({subquery})")
        else:  # a descendant at that level must match
            frm = ["resources d1"]
            for depth in range(2, tag_level - int(level) + 1):
                frm.append(f"JOIN resources d{depth} ON d{depth}.parent_id = d{depth - 1}.id")
            last = f"d{tag_level - int(level)}"
            where.append(
                f"EXISTS (SELECT 1 FROM {' '.join(frm)} WHERE d1.parent_id = r.id AND {last}.id IN ({subquery}))"
            )
        args.extend(sub_args)
    if parent is not None:
        parent_id, parent_level = parent
        where.append(f"{alias_for(parent_level)}.id = ?")
        args.append(parent_id)
    for mtype, c in metadata_constraints:
        sub_args = [mtype]
        cond = tag_condition(c, sub_args, metadata_value("m", mtype, dialect), dialect)
        where.append(f"r.id IN (SELECT m.resource_id FROM metadata m WHERE m.type = ? AND {cond})")
        args.extend(sub_args)
    if labels:  # "None" with no label matches everything (Orthanc 1.12.5; 1.12.11 changed it)
        marks = ",".join("?" * len(labels))
        if labels_mode == "All":
            for label in labels:
                where.append("r.id IN (SELECT resource_id FROM labels WHERE label = ?)")
                args.append(label)
        elif labels_mode == "Any":
            where.append(f"r.id IN (SELECT resource_id FROM labels WHERE label IN ({marks}))")
            args.extend(labels)
        else:
            where.append(f"r.id NOT IN (SELECT resource_id FROM labels WHERE label IN ({marks}))")
            args.extend(labels)
    order_sql: list[str] = []
    for i, o in enumerate(order_by):
        direction = "ASC" if o.ascending else "DESC"
        if o.tag is not None:
            tl = stored_level(LEVEL_OF_TAG.get(o.tag, level), level)
            target = alias_for(tl) if tl <= int(level) else "r"
            joins.append(f"LEFT JOIN tags o{i} ON o{i}.resource_id = {target}.id AND o{i}.tag = ?")
            join_args.append(o.tag)
        elif o.metadata is not None:
            joins.append(f"LEFT JOIN metadata o{i} ON o{i}.resource_id = r.id AND o{i}.type = ?")
            join_args.append(o.metadata)
        else:
            continue
        column = metadata_value(f"o{i}", o.metadata, dialect) if o.metadata is not None else f"o{i}.value"
        value = {"int": f"CAST({column} AS INTEGER)", "float": f"CAST({column} AS REAL)"}.get(o.cast, column)
        # Resources without the key come last whatever the direction (as Orthanc's SQL does).
        order_sql.append(f"o{i}.value IS NULL, {value} {direction}")
    sql = "SELECT r.id FROM resources r " + " ".join(joins) + " WHERE " + " AND ".join(where)
    sql += " ORDER BY " + ", ".join([*order_sql, "r.public_id"])
    if limit > 0 or since > 0:
        sql += " LIMIT ? OFFSET ?"
        args += [limit if limit > 0 else dialect.no_limit, since]
    # Join arguments come before WHERE arguments in the SQL text.
    return sql, [*join_args, *args]
