"""Numbered migrations: a database written before metadata revisions keeps working."""

from __future__ import annotations

import asyncio
import sqlite3

from orthanc_py.index import sqlite as sqlite_index
from orthanc_py.index.base import Attachment
from orthanc_py.index.sqlite import SqliteIndex
from orthanc_py.model.enums import ResourceType


def test_a_version_3_database_gains_metadata_revisions(tmp_path):
    path = tmp_path / "index.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(sqlite_index.MIGRATIONS[:3], start=1):
        for stmt in script.split(";"):
            if stmt.strip():
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
        for stmt in script.split(";"):
            if stmt.strip():
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
