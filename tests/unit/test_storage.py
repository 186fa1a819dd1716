"""The filesystem storage: Orthanc's layout, atomic writes, and the page-cache window."""

from __future__ import annotations

import errno
import os
import shutil
import uuid as uuid_module

import pytest

from orthanc_py.storage import filesystem
from orthanc_py.storage.filesystem import FilesystemStorage, _RecentFiles

UUID = "0123abcd-0000-4000-8000-000000000000"


@pytest.fixture(params=["c", "python"])
def io_path(request, monkeypatch):
    """Each storage test runs through the C helper and through the pure-Python fallback."""
    if request.param == "python":
        monkeypatch.setattr(filesystem, "_fastio", None)
    elif filesystem._fastio is None:
        pytest.fail("the C helper _fastio is not built (setup.py; a C compiler is needed)")
    return request.param


def test_the_c_helper_is_built_where_a_compiler_exists():
    if shutil.which("cc") or shutil.which("gcc"):
        assert filesystem._fastio is not None


def test_write_and_read_through_each_path(tmp_path, io_path):
    storage = FilesystemStorage(tmp_path)
    data = os.urandom(3 * filesystem.DROP_CACHE_MIN + 17)
    storage.create(UUID, data, 1)
    assert (tmp_path / "01" / "23" / UUID).read_bytes() == data
    assert storage.read(UUID, 1) == data
    assert storage.read_range(UUID, 1, 5, 9) == data[5:9]
    storage.create("0123abcd-0000-4000-8000-000000000001", b"", 1)  # empty files too
    assert storage.read("0123abcd-0000-4000-8000-000000000001", 1) == b""
    assert sorted(p.name for p in (tmp_path / "01" / "23").iterdir()) == [UUID, UUID[:-1] + "1"]


def test_a_failed_write_leaves_nothing_and_raises_oserror(tmp_path, io_path):
    storage = FilesystemStorage(tmp_path)
    (tmp_path / "01" / "23" / UUID).mkdir(parents=True)  # the target name is taken by a folder
    with pytest.raises(OSError) as info:
        storage.create(UUID, b"data", 1)
    assert info.value.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST)
    assert [p.name for p in (tmp_path / "01" / "23").iterdir()] == [UUID]  # no temporary file left


def test_reading_a_missing_file_is_file_not_found(tmp_path, io_path):
    storage = FilesystemStorage(tmp_path)
    with pytest.raises(FileNotFoundError):
        storage.read(UUID, 1)
    filesystem._drop_cached(str(tmp_path / "missing"))  # dropping a deleted file is not an error


def test_a_folder_pruned_meanwhile_is_made_again(tmp_path, io_path):
    storage = FilesystemStorage(tmp_path)
    other = "0123abcd-0000-4000-8000-0000000000ff"
    storage.create(other, b"1", 1)
    storage.remove(other, 1)  # prunes 01/23 and 01 (as Orthanc does) ...
    assert not (tmp_path / "01").exists()
    storage._made.add(str(tmp_path / "01" / "23"))  # ... while another thread still counts on it
    storage.create(UUID, b"2", 1)
    assert storage.read(UUID, 1) == b"2"


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
    monkeypatch.setattr(filesystem, "_fastio", None)  # the C helper drops them itself (next test)
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


def test_the_c_helper_drops_the_files_it_is_given(tmp_path, monkeypatch):
    fastio = filesystem._fastio
    assert fastio is not None
    calls: list[tuple] = []

    class Spy:
        read_file = staticmethod(fastio.read_file)

        def write_file(self, *args):
            calls.append(args[4])
            fastio.write_file(*args)

    monkeypatch.setattr(filesystem, "RECENT_WINDOW", 2 * filesystem.DROP_CACHE_MIN)
    monkeypatch.setattr(filesystem, "_fastio", Spy())
    storage = FilesystemStorage(tmp_path)
    big = os.urandom(filesystem.DROP_CACHE_MIN)
    uuids = [f"{i:08x}-0000-4000-8000-000000000000" for i in range(4)]
    for u in uuids:
        storage.create(u, big, 1)
    assert calls == [(), (), (os.fsencode(storage.path(uuids[0], 1)),), (os.fsencode(storage.path(uuids[1], 1)),)]
    fastio.write_file(
        os.fsencode(str(tmp_path / "t")), os.fsencode(str(tmp_path / "f")), b"x", True, (b"/nonexistent/file",)
    )  # dropping a file deleted meanwhile is not an error
    assert (tmp_path / "f").read_bytes() == b"x"
    with pytest.raises(TypeError):
        fastio.write_file(b"a", b"b", b"x", True, ("not bytes",))
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


@pytest.mark.parametrize("helper", [True, False], ids=["c-helper", "python"])
def test_read_cached_gives_small_cached_files_and_nothing_else(tmp_path, monkeypatch, helper):
    """`read_cached` (the event loop's read) answers a small file in the page cache, and None
    whenever the worker-thread read must decide: too large, wrong size, missing, compressed;
    the same with the C helper's read and without."""
    if not helper:
        monkeypatch.setattr(filesystem, "_read_cached_c", None)
    elif filesystem._read_cached_c is None:
        pytest.skip("the C helper is not built")
    from orthanc_py.storage.accessor import NONE, ZLIB_WITH_SIZE, StorageAccessor

    fs = FilesystemStorage(tmp_path, sync=False)
    data = os.urandom(9000)
    fs.create(UUID, data, 1)
    fs.read(UUID, 1)  # in the page cache now
    assert fs.read_cached(UUID, 1, len(data)) == data
    assert fs.read_cached(UUID, 1, len(data) - 1) is None  # longer than the index says
    assert fs.read_cached(UUID, 1, len(data) + 1) is None  # shorter
    assert fs.read_cached("ffff" + UUID[4:], 1, 10) is None
    big = os.urandom(filesystem.CACHED_READ_MAX + 1)
    fs.create("abcd" + UUID[4:], big, 1)
    assert fs.read_cached("abcd" + UUID[4:], 1, len(big)) is None
    acc = StorageAccessor(fs)
    assert acc.read_file_cached(UUID, 1, NONE, len(data)) == data
    assert acc.read_file_cached(UUID, 1, ZLIB_WITH_SIZE, len(data)) is None
    monkeypatch.setattr(filesystem, "_NOWAIT", None)  # no RWF_NOWAIT here: always the thread
    assert fs.read_cached(UUID, 1, len(data)) is None


def test_read_cached_keeps_small_files_read_until_removed(tmp_path, monkeypatch):
    """A small file `read_cached` gave twice is kept by uuid (a file never changes under its
    uuid) within SMALL_FILES_BUDGET, oldest out; `remove` and `create` drop it."""
    if filesystem._NOWAIT is None:
        pytest.skip("no RWF_NOWAIT here")
    monkeypatch.setattr(filesystem, "SMALL_FILES_BUDGET", 25000)
    fs = FilesystemStorage(tmp_path, sync=False)
    uuids = [f"{i:04x}" + UUID[4:] for i in range(3)]
    blobs = [os.urandom(10000) for _ in uuids]
    for u, b in zip(uuids, blobs, strict=True):
        fs.create(u, b, 1)
        fs.read(u, 1)
    assert fs.read_cached(uuids[0], 1, 10000) == blobs[0]
    os.unlink(fs.path(uuids[0], 1))  # read once: not kept
    assert fs.read_cached(uuids[0], 1, 10000) is None
    fs.create(uuids[0], blobs[0], 1)
    fs.read(uuids[0], 1)
    assert fs.read_cached(uuids[0], 1, 10000) == blobs[0]  # the second read: kept
    os.unlink(fs.path(uuids[0], 1))  # behind the storage's back: still served from memory
    assert fs.read_cached(uuids[0], 1, 10000) == blobs[0]
    assert fs.read_cached(uuids[0], 1, 9999) is None  # another size: read, and not found
    for u, b in zip(uuids[1:], blobs[1:], strict=True):
        assert fs.read_cached(u, 1, 10000) == fs.read_cached(u, 1, 10000) == b
    assert fs.read_cached(uuids[0], 1, 10000) is None  # over the budget: the oldest went
    os.unlink(fs.path(uuids[1], 1))
    assert fs.read_cached(uuids[1], 1, 10000) == blobs[1]
    fs.remove(uuids[1], 1)
    assert fs.read_cached(uuids[1], 1, 10000) is None
    fs.create(uuids[2], b"x" * 10000, 1)
    fs.read(uuids[2], 1)
    assert fs.read_cached(uuids[2], 1, 10000) == b"x" * 10000
    assert fs.read_cached(uuids[2], 1, 10000) == b"x" * 10000
