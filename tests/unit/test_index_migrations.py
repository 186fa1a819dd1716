"""Numbered migrations: a database written before metadata revisions keeps working."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from orthanc_py.index import schema
from orthanc_py.index import sqlite as sqlite_index
from orthanc_py.index.base import Attachment
from orthanc_py.index.sqlite import SqliteIndex
from orthanc_py.model.enums import ResourceType


def test_a_version_3_database_gains_metadata_revisions(tmp_path):
    path = tmp_path / "index.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(sqlite_index.MIGRATIONS[:3], start=1):
        for stmt in schema.statements(script):
            conn.execute(stmt)
        conn.execute(f"PRAGMA user_version={number}")
    conn.execute("INSERT INTO resources(id, level, public_id, parent_id, main_tags) VALUES (1, 1, 'p', NULL, '[]')")
    conn.execute("INSERT INTO metadata(resource_id, type, value) VALUES (1, 1024, 'old')")
    conn.execute("INSERT INTO attachments VALUES (1, 1024, 'u', 3, 9, 2, '', '', 0)")
    conn.close()

    async def run() -> None:
        index = SqliteIndex(path)
        try:
            assert await index.read(lambda txn: txn.metadata_entry(1, 1024)) == ("old", 0)
            assert await index.read(lambda txn: txn.any_compressed()) is True
            await index.write(lambda txn: txn.set_metadata(1, 1024, "new", 1))
            assert await index.read(lambda txn: txn.metadata_entry(1, 1024)) == ("new", 1)
            assert await index.read(lambda txn: txn.attachments([1])[1]) == [Attachment(1024, "u", 3, 9, 2)]
            assert await index.read(lambda txn: txn.lookup("p")) == (1, ResourceType.PATIENT)
        finally:
            await index.close()

    asyncio.run(run())
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(sqlite_index.MIGRATIONS)
    conn.close()


def test_a_version_4_database_gains_folded_values_for_case_insensitive_finds(tmp_path):
    path = tmp_path / "index.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(sqlite_index.MIGRATIONS[:4], start=1):
        for stmt in schema.statements(script):
            conn.execute(stmt)
        conn.execute(f"PRAGMA user_version={number}")
    assert "ext_tags" in {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}  # 3: extended query tags
    conn.execute("INSERT INTO resources(id, level, public_id, parent_id, main_tags) VALUES (1, 2, 's', NULL, '[]')")
    rows = [(1, 0x00080050, "acc-1", None), (1, 0x0020000D, "1.2.3", None), (1, 0x00081030, "BRAIN", None)]
    conn.executemany("INSERT INTO tags(resource_id, tag, value, norm) VALUES (?,?,?,?)", rows)
    conn.close()
    asyncio.run(SqliteIndex(path).close())  # migrates on opening
    conn = sqlite3.connect(path)
    norms = dict(conn.execute("SELECT tag, norm FROM tags").fetchall())
    # only text values whose folded form differs get one
    assert norms == {0x00080050: "ACC-1", 0x0020000D: None, 0x00081030: None}
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(sqlite_index.MIGRATIONS)
    conn.close()


def _database_at(path, version: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.create_function("orthanc_fold", 2, sqlite_index._norm_of, deterministic=True)
    for number, script in enumerate(sqlite_index.MIGRATIONS[:version], start=1):
        for stmt in schema.statements(script):
            conn.execute(stmt)
        conn.execute(f"PRAGMA user_version={number}")
    conn.execute("INSERT INTO resources(id, level, public_id, parent_id, main_tags) VALUES (1, 1, 'p', NULL, '[]')")
    norm = sqlite_index._norm_of(0x00100010, "Doe^John") if version >= 5 else None  # as each version wrote it
    conn.execute("INSERT INTO tags(resource_id, tag, value, norm) VALUES (1, 1048592, 'Doe^John', ?)", (norm,))
    conn.execute("INSERT INTO changes(change_type, level, public_id, date) VALUES (1, 1, 'p', '20260101T000000')")
    conn.close()


@pytest.mark.parametrize("version", range(1, len(sqlite_index.MIGRATIONS) + 1))
def test_a_database_of_every_schema_version_opens_and_keeps_its_rows(tmp_path, version):
    """Each released schema version (1 .. today) is brought to the last one on opening."""
    from orthanc_py.model.lookup import parse_constraint

    path = tmp_path / "index.sqlite"
    _database_at(path, version)

    async def run() -> None:
        index = SqliteIndex(path)
        try:
            assert await index.read(lambda txn: txn.lookup("p")) == (1, ResourceType.PATIENT)
            assert await index.read(lambda txn: txn.last_change()) == 1
            name = parse_constraint(0x00100010, "doe*", case_sensitive_pn=False)
            assert await index.read(lambda txn: txn.find(ResourceType.PATIENT, [name])) == [1]
            await index.write(lambda txn: txn.set_metadata(1, 1024, "v", 1))
            assert await index.read(lambda txn: txn.metadata_entry(1, 1024)) == ("v", 1)
        finally:
            await index.close()

    asyncio.run(run())
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(sqlite_index.MIGRATIONS)
    conn.close()


def test_migrations_are_numbered_sql_files_shipped_as_package_data():
    """index/migrations/sqlite/NNNN_*.sql, numbered 1..n, declared in setup.cfg."""
    from importlib import resources
    from pathlib import Path

    names = sorted(p.name for p in resources.files("orthanc_py.index").joinpath("migrations", "sqlite").iterdir())
    assert names[0].startswith("0001_") and len(schema.migrations("sqlite")) == len(names) >= 5
    setup = (Path(__file__).parents[2] / "setup.cfg").read_text()
    assert "orthanc_py.index = migrations/*/*.sql" in setup
