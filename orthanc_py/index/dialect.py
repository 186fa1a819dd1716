"""The SQL dialect: the few spellings that differ between database engines.

Every statement of the index is written once, in the SQL that SQLite and PostgreSQL share,
with `?` parameters (a driver with another parameter style adapts them in its connection).
What the engines spell differently comes from here: upserts, wildcard matching, string
aggregation, the last number handed out by a sequence, the opening of a write transaction.
A new backend is a `Dialect`, its numbered migrations and a driver; not a rewrite.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one engine spells what standard SQL leaves open."""

    name: str
    """Also the folder of the engine's migrations (index/migrations/<name>/NNNN_*.sql)."""
    begin_write: str
    """Opens a write transaction that holds the write lock from the start."""
    no_limit: int | None = -1
    """The LIMIT argument that means "no limit" (with an OFFSET)."""

    def upsert(self, table: str, columns: str, keys: str) -> tuple[str, str]:
        """(prefix, suffix) around `VALUES (...)` of an insert replacing the row of same `keys`."""
        if self.name == "sqlite":
            return f"INSERT OR REPLACE INTO {table}({columns})", ""
        updates = ", ".join(
            f"{c} = EXCLUDED.{c}" for c in (c.strip() for c in columns.split(",")) if c not in keys.split(", ")
        )
        return f"INSERT INTO {table}({columns})", f" ON CONFLICT ({keys}) DO UPDATE SET {updates}"

    def insert_ignore(self, table: str, columns: str) -> tuple[str, str]:
        """(prefix, suffix) of an insert that keeps an existing row of the same key."""
        if self.name == "sqlite":
            return f"INSERT OR IGNORE INTO {table}({columns})", ""
        return f"INSERT INTO {table}({columns})", " ON CONFLICT DO NOTHING"

    def wildcard(self, column: str, pattern: str) -> tuple[str, str]:
        """SQL (one `?`) and argument matching a DICOM wildcard pattern (`*` any run, `?` one
        character), case-sensitively, able to use an index on `column` for a literal prefix."""
        if self.name == "sqlite":
            return f"{column} GLOB ?", pattern.replace("[", "[[]")  # only '[' is special to GLOB
        escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return f"{column} LIKE ? ESCAPE '\\'", escaped.replace("*", "%").replace("?", "_")

    def group_concat(self, expr: str, order: str) -> str:
        """Comma-joined values of `expr` over a group, in the order of `order` (SQLite walks
        the rows in the order of the index it searches, which the caller's `order` follows;
        PostgreSQL promises no order unless told)."""
        return f"group_concat({expr})" if self.name == "sqlite" else f"string_agg({expr}, ',' ORDER BY {order})"

    def json_array_agg(self, expr: str) -> str:
        """The text of a JSON array of the values of `expr` over a group (NULL over no rows)."""
        return f"json_group_array({expr})" if self.name == "sqlite" else f"CAST(json_agg({expr}) AS TEXT)"

    def json_object_agg(self, key: str, value: str) -> str:
        """The text of a JSON object of `key`: `value` pairs over a group (NULL over no rows in
        PostgreSQL, `{}` in SQLite)."""
        if self.name == "sqlite":
            return f"json_group_object({key}, {value})"
        return f"CAST(json_object_agg({key}, {value}) AS TEXT)"

    def as_text(self, expr: str) -> str:
        """`expr` compared as text (SQLite compares an integer with a text by affinity already;
        PostgreSQL has no integer = text operator)."""
        return expr if self.name == "sqlite" else f"CAST({expr} AS TEXT)"

    def new_id(self, table: str) -> str | None:
        """A query (one `?`: how many) handing out new keys of `table` that no other writer can
        take (PostgreSQL: its sequence, shared by every server on the database), or None: the
        only writer takes max + 1 itself (SQLite: one writer per file)."""
        return None if self.name == "sqlite" else f"SELECT nextval('{table}_id_seq') FROM generate_series(1, ?)"

    def last_sequence(self, table: str) -> str:
        """A query of the last number handed out to `table`'s autoincrement key (0 when none):
        numbers of deleted rows are not reused, so MAX() would not do."""
        if self.name == "sqlite":
            return f"SELECT seq FROM sqlite_sequence WHERE name='{table}'"
        return f"SELECT last_value FROM {table}_seq_seq WHERE is_called"


SQLITE = Dialect("sqlite", begin_write="BEGIN IMMEDIATE")
POSTGRESQL = Dialect("postgresql", begin_write="BEGIN", no_limit=None)
