"""The storage contract: what core relies on from any `StorageArea` (storage/base.py).

Run on every area core may be given: each backend of storage/registry.py (opened from the
configuration as app.py opens it), the in-memory one, and the compression accessor in front of
either (storage/accessor.py: core only ever talks to the accessor). A later backend adds itself
to the registry and must pass these unchanged.
"""

from __future__ import annotations

import concurrent.futures

import pytest

from orthanc_py.config import from_raw
from orthanc_py.storage import registry
from orthanc_py.storage.accessor import NONE, ZLIB_WITH_SIZE, StorageAccessor
from orthanc_py.storage.memory import MemoryStorage

DICOM, ATTACHMENT = 1, 1025


def _make(kind: str, tmp_path):
    if kind == "memory":
        return MemoryStorage()
    if kind.startswith("accessor+"):
        return StorageAccessor(_make(kind.removeprefix("accessor+"), tmp_path), compression=True)
    backend = next(b for b in registry.BACKENDS if b.name == kind)
    return backend.open(from_raw({"StorageDirectory": str(tmp_path), "IndexDirectory": str(tmp_path)}))


KINDS = [b.name for b in registry.BACKENDS] + ["memory", "accessor+filesystem", "accessor+memory"]


@pytest.fixture(params=KINDS)
def area(request, tmp_path):
    return _make(request.param, tmp_path)


def test_create_read_range_remove(area):
    data = bytes(range(256)) * 40
    uuid = area.new_uuid()
    assert uuid != area.new_uuid()
    area.create(uuid, data, DICOM)
    assert area.read(uuid, DICOM) == data
    assert area.read_range(uuid, DICOM, 10, 20) == data[10:20]
    assert area.read_range(uuid, DICOM, len(data) - 3, len(data)) == data[-3:]
    path = area.path(uuid, DICOM)
    if path is not None:  # a plain file, sent as it is
        with open(path, "rb") as f:
            assert f.read() == data
    area.remove(uuid, DICOM)
    with pytest.raises(FileNotFoundError):
        area.read(uuid, DICOM)
    area.remove(uuid, DICOM)  # idempotent


def test_empty_blobs_and_a_missing_blob(area):
    uuid = area.new_uuid()
    area.create(uuid, b"", ATTACHMENT)
    assert area.read(uuid, ATTACHMENT) == b""
    with pytest.raises(FileNotFoundError):
        area.read(area.new_uuid(), DICOM)


def test_concurrent_writers_and_readers(area):
    """Core writes from several worker threads at once (ingest) and reads meanwhile."""
    blobs = {area.new_uuid(): bytes([n]) * (1000 + n) for n in range(32)}

    def roundtrip(item):
        uuid, data = item
        area.create(uuid, data, DICOM)
        return area.read(uuid, DICOM) == data

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert all(pool.map(roundtrip, blobs.items()))


@pytest.mark.parametrize("inner", ["filesystem", "memory"])
def test_the_accessor_compresses_and_reads_back_by_uuid_only(tmp_path, inner):
    acc = StorageAccessor(_make(inner, tmp_path), compression=False)
    data = b"DICM" + b"\0" * 5000
    plain = acc.write(data, DICOM, md5=True)
    assert plain.compression == NONE and plain.compressed_size == len(data)
    packed = acc.write(data, DICOM, compressed=True, md5=True)
    assert packed.compression == ZLIB_WITH_SIZE and packed.compressed_size < len(data)
    assert packed.uncompressed_md5 == plain.uncompressed_md5 != packed.compressed_md5
    assert acc.read_file(packed.uuid, DICOM, ZLIB_WITH_SIZE) == data
    assert acc.read_file_range(packed.uuid, DICOM, ZLIB_WITH_SIZE, 2, 6) == data[2:6]
    assert acc.read(packed.uuid, DICOM) == data  # the UUID-only path inflates it too
    assert acc.file_path(packed.uuid, DICOM, ZLIB_WITH_SIZE) is None
    assert acc.read_raw(packed.uuid, DICOM) != data
