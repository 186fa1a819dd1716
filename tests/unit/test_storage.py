"""The filesystem storage: Orthanc's layout, atomic writes, and the page-cache window."""

from __future__ import annotations

import os
import uuid as uuid_module

from orthanc_py.storage import filesystem
from orthanc_py.storage.filesystem import FilesystemStorage, _RecentFiles


def test_layout_and_round_trip(tmp_path):
    storage = FilesystemStorage(tmp_path)
    uuid = "0123abcd-0000-4000-8000-000000000000"
    storage.create(uuid, b"x" * 10, 1)
    assert (tmp_path / "01" / "23" / uuid).read_bytes() == b"x" * 10
    assert storage.read_range(uuid, 1, 2, 5) == b"xxx"
    assert not [p for p in (tmp_path / "01" / "23").iterdir() if p.name.endswith(".tmp")]


def test_recent_window_pushes_out_the_oldest_files():
    recent = _RecentFiles(budget=100)
    assert recent.add("a", 60) == []
    assert recent.add("b", 30) == []
    assert recent.add("c", 30) == ["a"]
    assert recent.add("d", 200) == ["b", "c", "d"]


def test_files_pushed_out_of_the_window_are_dropped_from_the_cache(tmp_path, monkeypatch):
    dropped: list[str] = []
    monkeypatch.setattr(filesystem, "RECENT_WINDOW", 3 * filesystem.DROP_CACHE_MIN)
    monkeypatch.setattr(filesystem, "_drop_cached", dropped.append)
    storage = FilesystemStorage(tmp_path)
    big = os.urandom(filesystem.DROP_CACHE_MIN)
    uuids = [f"{i:08x}-0000-4000-8000-000000000000" for i in range(5)]
    for u in uuids:
        storage.create(u, big, 1)
    storage.create("ffffffff-0000-4000-8000-000000000000", b"small", 1)  # small files are not tracked
    assert dropped == [storage.path(u, 1) for u in uuids[:2]]
    assert all(storage.read(u, 1) == big for u in uuids)


def test_new_uuids_share_their_folder_in_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(filesystem, "FILES_PER_FOLDER", 4)
    storage = FilesystemStorage(tmp_path)
    uuids = [storage.new_uuid() for _ in range(12)]
    assert len(set(uuids)) == 12
    for u in uuids:  # still version-4 UUIDs, as Orthanc names its files
        assert uuid_module.UUID(u).version == 4 and str(uuid_module.UUID(u)) == u
    runs = [{u[:4] for u in uuids[i : i + 4]} for i in range(0, 12, 4)]
    assert all(len(run) == 1 for run in runs)  # one folder per run of FILES_PER_FOLDER files


def test_new_uuids_are_random_version_4(tmp_path):
    storage = FilesystemStorage(tmp_path)
    uuids = [storage.new_uuid() for _ in range(4000)]
    assert len(set(uuids)) == len(uuids)
    for u in uuids:
        parsed = uuid_module.UUID(u)
        assert parsed.version == 4 and parsed.variant == uuid_module.RFC_4122 and str(parsed) == u
    assert {u[19] for u in uuids} == set("89ab")  # every variant digit occurs
    assert len({u[9:13] for u in uuids}) > 3000  # the digits after the folder vary
