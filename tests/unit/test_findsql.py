"""The find compiler against the matching rules of model.lookup, on the same cases.

`compile_find` is pure: its SQL runs here on an in-memory SQLite, and on PostgreSQL (a schema of
the session's throwaway cluster), each holding one study per value, and must select exactly the
studies whose value `matches` (the rule C-FIND, QIDO-RS and /tools/find share). Its tag
conditions are indexed lookups, never a scan of `tags`.
"""

from __future__ import annotations

import sqlite3

import pytest

from orthanc_py.index import schema
from orthanc_py.index.base import OrderBy
from orthanc_py.index.dialect import POSTGRESQL, SQLITE
from orthanc_py.index.findsql import compile_find
from orthanc_py.index.sqlite import SQL_FUNCTIONS
from orthanc_py.index.transaction import SqlTransaction
from orthanc_py.model.enums import ResourceType
from orthanc_py.model.lookup import matches, parse_constraint

NAME, DESCRIPTION, ACCESSION, DATE = 0x00100010, 0x00081030, 0x00080050, 0x00080020

VALUES = {
    NAME: ["DOE^JOHN", "Doe^Jane", "Müller^Jürgen", "MULLER^HANS", "O'Brien^Pat", "doe", "", "A[1]^B", "X?Y"],
    DESCRIPTION: ["Brain MRI", "BRAIN CT", "brain", "Chest [PA]", "Ösophagus", "knee*", "a_b%c"],
    ACCESSION: ["acc-1", "ACC-1", "ACC-10", "B2", "a%", "a_"],
    DATE: ["20200101", "20200615", "20201231", "20210101", "19991231"],
}

QUERIES = {
    NAME: [
        "DOE^JOHN",
        "doe*",
        "DOE*",
        "*^J*",
        "M?ller*",
        "MULLER*",
        "d?e",
        "A[1]*",
        "X?Y",
        "*",
        "O'Brien*",
        "doe\\Doe^Jane",
    ],
    DESCRIPTION: [
        "brain*",
        "BRAIN*",
        "*ct",
        "Chest [PA]",
        "Chest*]",
        "ösophagus",
        "knee*",
        "a_b%c",
        "a?b?c",
        "*MRI\\brain",
    ],
    ACCESSION: ["acc-1", "ACC-1*", "a%", "a?", "a_", "B2\\acc-1"],
    DATE: ["20200101-20201231", "-20200101", "20210101-", "20200615", "2020*", "19991231\\20210101"],
}


def _fill(conn, dialect):
    txn = SqlTransaction(conn, dialect)
    ids: dict[int, dict[int, str]] = {}
    for tag, values in VALUES.items():
        for n, v in enumerate(values):
            rid = txn.create_resource(f"{tag:08x}-{n}", ResourceType.STUDY, None, {tag: v})
            ids[rid] = {tag: v}
    return ids


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def db(request):
    """(connection, {id: tags}, dialect) of a database holding one study per value."""
    if request.param == "postgresql":
        from orthanc_py.index.postgres import PostgresSettings, connect

        pg = connect(PostgresSettings.from_section(request.getfixturevalue("postgresql").section()))
        schema.migrate_postgresql(pg)
        yield pg, _fill(pg, POSTGRESQL), POSTGRESQL
        pg.close()
        return
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for name, (nargs, fn) in SQL_FUNCTIONS.items():
        conn.create_function(name, nargs, fn, deterministic=True)
    for script in schema.migrations("sqlite"):
        for stmt in schema.statements(script):
            conn.execute(stmt)
    yield conn, _fill(conn, SQLITE), SQLITE
    conn.close()


def _cases():
    for tag, queries in QUERIES.items():
        for q in queries:
            for case_sensitive in (True, False):
                yield tag, q, case_sensitive


@pytest.mark.parametrize(("tag", "query", "case_sensitive"), list(_cases()))
def test_the_sql_selects_what_the_matching_rules_match(db, tag, query, case_sensitive):
    conn, ids, dialect = db
    c = parse_constraint(tag, query, case_sensitive_pn=case_sensitive, star_is_universal=False, any_text_vr=True)
    assert c is not None
    sql, args = compile_find(ResourceType.STUDY, [c], dialect=dialect)
    got = {r[0] for r in conn.execute(sql, args)}
    expected = {rid for rid, tags in ids.items() if matches(c, tags.get(tag))}
    assert got == expected, (query, case_sensitive)


def test_tag_conditions_are_index_lookups(db):
    conn, _ids, dialect = db
    if dialect is POSTGRESQL:  # its planner scans tables this small: ask what it would do at scale
        conn.execute("SET enable_seqscan = off")
    try:
        for tag, query, case_sensitive in _cases():
            c = parse_constraint(
                tag, query, case_sensitive_pn=case_sensitive, star_is_universal=False, any_text_vr=True
            )
            sql, args = compile_find(ResourceType.STUDY, [c], dialect=dialect)
            if dialect is SQLITE:
                plan = " | ".join(r[-1] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, args))
                assert "SCAN tags" not in plan, (query, plan)
            else:
                plan = " | ".join(r[0] for r in conn.execute("EXPLAIN " + sql, args))
                assert "Seq Scan on tags" not in plan, (query, plan)
            assert "tags_value" in plan or "tags_norm" in plan, (query, plan)
    finally:
        if dialect is POSTGRESQL:
            conn.execute("RESET enable_seqscan")


def test_levels_parent_labels_order_and_paging_compile_to_one_statement():
    """Upper-level tags join up the parent chain, lower-level ones are EXISTS over descendants;
    arguments follow the order of their `?` in the text."""
    modality = parse_constraint(0x00080060, "CT")
    name = parse_constraint(NAME, "DOE*", case_sensitive_pn=True)
    sql, args = compile_find(
        ResourceType.SERIES,
        [name],
        parent=(7, int(ResourceType.PATIENT)),
        labels=("a", "b"),
        labels_mode="Any",
        order_by=(OrderBy(DATE, None, False),),
        since=10,
        limit=5,
    )
    assert sql.count("?") == len(args)
    assert "JOIN resources a2 ON a2.id = r.parent_id" in sql and "a1.id = ?" in sql
    assert args[0] == DATE and args[-2:] == [5, 10]
    sql, args = compile_find(ResourceType.STUDY, [modality])
    assert "EXISTS (SELECT 1 FROM resources d1" in sql and sql.count("?") == len(args)
    assert compile_find(ResourceType.STUDY, [], since=3)[1][-2:] == [-1, 3]


def test_another_dialect_changes_only_its_spellings():
    """PostgreSQL: LIKE with escapes for wildcards, NULL as "no limit"."""
    c = parse_constraint(ACCESSION, "a_%*", case_sensitive_pn=True)
    sql, args = compile_find(ResourceType.STUDY, [c], since=2, dialect=POSTGRESQL)
    assert "LIKE ? ESCAPE" in sql and "GLOB" not in sql
    assert "a\\_\\%%" in args and args[-2:] == [None, 2]
    assert compile_find(ResourceType.STUDY, [c], dialect=SQLITE)[0].count("GLOB") == 1
