"""The storage accessor: Orthanc's zlib-with-size format, MD5s, and UUID-only reads."""

from __future__ import annotations

import hashlib
import os
import zlib

import pytest

from orthanc_py.storage import accessor as acc
from orthanc_py.storage.memory import MemoryStorage


def test_the_format_is_orthancs_size_prefix_then_zlib():
    data = b"DICM" * 1000
    blob = acc.compress(data)
    assert blob[:8] == len(data).to_bytes(8, "little")  # little endian, as Orthanc 1.9.0+ writes it
    assert zlib.decompress(blob[8:]) == data
    assert blob[8:] == zlib.compress(data, 6)  # Orthanc's compressor level: byte-identical files
    assert acc.uncompress(blob) == data
    assert acc.compress(b"") == b"" and acc.uncompress(b"") == b""  # Orthanc keeps empty files empty


@pytest.mark.parametrize("bad", [b"1234567", len(b"abc").to_bytes(8, "little") + b"not zlib"])
def test_a_corrupted_blob_is_a_value_error(bad):
    with pytest.raises(ValueError):
        acc.uncompress(bad)
    wrong_size = (10).to_bytes(8, "little") + zlib.compress(b"abc")
    with pytest.raises(ValueError, match="size"):
        acc.uncompress(wrong_size)


def test_write_compressed_and_plain_with_md5s():
    area = MemoryStorage()
    a = acc.StorageAccessor(area, compression=True)
    data = os.urandom(100) + b"\0" * 5000
    f = a.write(data, 1024, md5=True)
    assert f.compression == acc.ZLIB_WITH_SIZE and f.uncompressed_size == len(data)
    blob = area.read(f.uuid, 1024)
    assert f.compressed_size == len(blob) < len(data)
    assert f.uncompressed_md5 == hashlib.md5(data).hexdigest() and f.compressed_md5 == hashlib.md5(blob).hexdigest()
    assert a.read_file(f.uuid, 1024, f.compression) == data
    assert a.read_file_range(f.uuid, 1024, f.compression, 10, 20) == data[10:20]
    plain = a.write(data, 1024, compressed=False)
    assert plain.compression == acc.NONE and area.read(plain.uuid, 1024) == data
    assert plain.uncompressed_md5 == ""  # MD5s only when asked for (ingest leaves them for later)


def test_uuid_only_reads_pass_through_until_compression_may_exist(tmp_path):
    from orthanc_py.storage.filesystem import FilesystemStorage

    area = FilesystemStorage(tmp_path)
    a = acc.StorageAccessor(area)
    dicom = b"\0" * 128 + b"DICM" + os.urandom(300)
    plain = a.write(dicom, 1)
    assert a.path(plain.uuid, 1) is not None and a.read(plain.uuid, 1) == dicom
    packed = a.write(dicom, 1, compressed=True)
    assert a.maybe_compressed  # from now on nobody may send a stored file as it is
    assert a.path(packed.uuid, 1) is None
    assert a.read(packed.uuid, 1) == dicom and a.read(plain.uuid, 1) == dicom
    assert a.read_range(packed.uuid, 1, 128, 132) == b"DICM"
    user = a.write(acc.compress(b"user bytes"), 1024, compressed=False)  # a user file is never guessed
    assert a.read(user.uuid, 1024) == acc.compress(b"user bytes")
