"""Numbered migrations: a database written before metadata revisions keeps working."""

from __future__ import annotations

import asyncio
import gzip
import json
import sqlite3
from pathlib import Path

import pytest

from orthanc_py.index import schema
from orthanc_py.index import sqlite as sqlite_index
from orthanc_py.index.base import Attachment, WholeLevel
from orthanc_py.index.sqlite import SqliteIndex
from orthanc_py.model.enums import ResourceType
from orthanc_py.model.lookup import parse_constraint


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
    key = "resource_id, 1" if version >= 6 else "public_id, 'p'"  # 6: changes name resources by internal id
    column, value = key.split(", ")
    conn.execute(f"INSERT INTO changes(change_type, level, {column}, date) VALUES (1, 1, {value}, '20260101T000000')")
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


DATA = Path(__file__).parent / "data"


def _snapshot(txn) -> dict:
    """What the index answers, as JSON (the expected file holds main's answers before 6)."""
    out: dict = {}
    for level in ResourceType:
        whole = WholeLevel(level)
        out[f"resources/{level.name}"] = [
            [
                r.id,
                int(r.level),
                r.public_id,
                r.parent_id,
                r.parent_public_id,
                sorted([t, v] for t, v in r.main_tags.items()),
            ]
            for r in txn.resources(whole)
        ]
        out[f"metadata/{level.name}"] = {
            str(k): {str(t): v for t, v in sorted(m.items())} for k, m in txn.metadata(whole).items()
        }
        out[f"labels/{level.name}"] = {str(k): v for k, v in txn.labels(whole).items()}
        out[f"attachments/{level.name}"] = {
            str(k): [[a.content_type, a.uuid, a.compressed_size, a.uncompressed_size] for a in v]
            for k, v in txn.attachments(whole).items()
        }
        out[f"summary/{level.name}"] = [
            [r[0], r[1], r[2], sorted([t, v] for t, v in r[3].items()), r[4], r[5]]
            for r in txn.level_summary(level, 15)
        ]
    out["changes"] = [[c.seq, c.change_type, int(c.level), c.public_id, c.date] for c in txn.changes(0, 100)]
    out["last_change"] = txn.last_change()
    out["feed"] = [list(r) for r in txn.feed(0, 100)]
    name = parse_constraint(0x00100010, "smi*", case_sensitive_pn=False)
    out["find/name"] = txn.find(ResourceType.STUDY, [name])
    out["find/series"] = txn.find(ResourceType.SERIES, [], parent=1)
    return out


def test_an_index_written_by_the_schema_5_server_reads_the_same_after_migration_6(tmp_path):
    """index-v5-main.sqlite was written by the server of schema 5 (8 uploads, a delete, a user
    metadata, a label); its answers then are in the expected file. Migration 6 (tags without
    rowid, changes by internal id, signatures stored once) must give the same answers, keep
    the change numbering, and leave the database writable."""
    path = tmp_path / "index.sqlite"
    path.write_bytes(gzip.decompress((DATA / "index-v5-main.sqlite.gz").read_bytes()))
    expected = json.loads((DATA / "index-v5-main.expected.json").read_text())

    async def run() -> None:
        index = SqliteIndex(path)
        try:
            got = json.loads(json.dumps(await index.read(_snapshot)))
            assert got == expected
            instance = expected["resources/INSTANCE"][0]
            signature = expected["metadata/INSTANCE"][str(instance[0])]["15"]
            summary = await index.read(lambda txn: txn.summary(instance[2], (15, 1)), short=True)
            assert summary is not None and summary.metadata[15] == signature  # its text, not its number
            await index.write(lambda txn: txn.delete_resource(instance[0]))
            after = await index.read(_snapshot)
            assert instance[3] not in [c[3] for c in after["changes"]] and after["last_change"] == 17
            assert after["feed"][-1][1:3] == ["delete", "deleted"]
            assert after["feed"][-1][6] == instance[2]
        finally:
            await index.close()

    asyncio.run(run())
    conn = sqlite3.connect(path)
    stored = {v for (v,) in conn.execute("SELECT value FROM metadata WHERE type = 15")}
    assert stored and all(v.isdigit() for v in stored)  # numbers of `signatures` rows
    assert "WITHOUT ROWID" in conn.execute("SELECT sql FROM sqlite_master WHERE name = 'tags'").fetchone()[0]
    conn.close()


def test_migrations_are_numbered_sql_files_shipped_as_package_data():
    """index/migrations/sqlite/NNNN_*.sql, numbered 1..n, declared in setup.cfg."""
    from importlib import resources

    names = sorted(p.name for p in resources.files("orthanc_py.index").joinpath("migrations", "sqlite").iterdir())
    assert names[0].startswith("0001_") and len(schema.migrations("sqlite")) == len(names) >= 5
    setup = (Path(__file__).parents[2] / "setup.cfg").read_text()
    assert "orthanc_py.index = migrations/*/*.sql" in setup


def test_a_version_7_database_gains_recycling_order_and_size_totals(tmp_path):
    """Migration 8: existing patients enter the recycling order by creation (protected ones do
    not), and the size totals start from the attachments already there; its triggers then keep
    the totals through inserts, replacements and deletions."""
    path = tmp_path / "index.sqlite"
    _database_at(path, 7)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("INSERT INTO resources(id, level, public_id, parent_id, main_tags) VALUES (2, 1, 'q', NULL, '[]')")
    conn.execute("INSERT INTO resources(id, level, public_id, parent_id, main_tags) VALUES (3, 1, 'r', NULL, '[]')")
    conn.execute("INSERT INTO protected(resource_id) VALUES (2)")
    conn.execute("INSERT INTO attachments VALUES (1, 1, 'u1', 100, 300, 2, '', '', 0)")
    conn.execute("INSERT INTO attachments VALUES (3, 1, 'u3', 50, 50, 1, '', '', 0)")
    conn.close()

    async def run() -> None:
        index = SqliteIndex(path)
        try:
            assert await index.read(lambda txn: txn.total_sizes()) == (150, 350)
            assert await index.read(lambda txn: txn.patient_to_recycle(None)) == 1
            assert await index.read(lambda txn: txn.patient_to_recycle(1)) == 3
            await index.write(lambda txn: txn.tag_recent_patient(1))  # 1 received an instance
            assert await index.read(lambda txn: txn.patient_to_recycle(None)) == 3
            await index.write(lambda txn: txn.set_protected(2, False))  # back, as the most recent
            await index.write(lambda txn: txn.set_protected(3, True))
            assert await index.read(lambda txn: txn.patient_to_recycle(None)) == 1
            assert await index.read(lambda txn: txn.patient_to_recycle(1)) == 2
            await index.write(lambda txn: txn.add_attachment(3, Attachment(1, "u4", 70, 70, 1)))  # replaces u3
            assert await index.read(lambda txn: txn.disk_size()) == 170
            await index.write(lambda txn: txn.delete_resource(1))
            assert await index.read(lambda txn: txn.total_sizes()) == (70, 70)
            assert await index.read(lambda txn: txn.patient_to_recycle(None)) == 2
        finally:
            await index.close()

    asyncio.run(run())


def test_migration_statements_keep_trigger_bodies_whole():
    script = (
        "CREATE TABLE t (a INTEGER);\nCREATE TRIGGER x AFTER INSERT ON t BEGIN\n"
        "  UPDATE t SET a = 1;\n  DELETE FROM t WHERE a = 2;\nEND;\nDROP TABLE u;"
    )
    got = schema.statements(script)
    assert len(got) == 3 and got[1].startswith("CREATE TRIGGER x") and got[1].endswith("END")
    with pytest.raises(ValueError):
        schema.statements("CREATE TRIGGER y AFTER INSERT ON t BEGIN UPDATE t SET a = 1;")
