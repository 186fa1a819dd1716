"""core.archive's ZIP writer on a non-seekable output: names, ZIP64 past 65,535 members, and
the folder naming rules, without a server."""

from __future__ import annotations

import io
import zipfile
from types import SimpleNamespace
from typing import Any

import pytest

from orthanc_py.core import archive
from orthanc_py.core.files import InstanceFile


class Storage:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def read(self, uuid: str, content_type: int) -> bytes:
        return self.files[uuid]

    def path(self, uuid: str, content_type: int) -> None:
        return None


class Pipe:
    """Write-only, not seekable (like an HTTP answer)."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()

    def write(self, data: Any) -> int:
        return self.buf.write(data)

    def flush(self) -> None:
        pass


def plan_of(count: int, size: int = 10) -> tuple[Any, archive.ArchivePlan]:
    files = {f"u{i}": bytes([i % 251]) * size for i in range(count)}
    members = [archive.Member(f"d/{i}.dcm", InstanceFile(i, f"p{i}", f"u{i}", size)) for i in range(count)]
    ctx = SimpleNamespace(storage=Storage(files))
    return ctx, archive.ArchivePlan(members, media=False)


def test_non_seekable_output_reads_back():
    ctx, plan = plan_of(50, 100_000)
    out = Pipe()
    assert archive.write_zip(ctx, plan, out, archive.WriteOptions()) == 50  # type: ignore[arg-type]
    with zipfile.ZipFile(io.BytesIO(out.buf.getvalue())) as zf:
        assert zf.testzip() is None
        assert zf.comment == b"Created by Orthanc"
        assert zf.read("d/7.dcm") == bytes([7]) * 100_000
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist())


def test_zip64_past_65535_members():
    ctx, plan = plan_of(65_600)
    out = Pipe()
    archive.write_zip(ctx, plan, out, archive.WriteOptions())  # type: ignore[arg-type]
    body = out.buf.getvalue()
    assert b"PK\x06\x06" in body[-200:]  # the ZIP64 end of central directory record
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        names = zf.namelist()
        assert len(names) == 65_600 and zf.read(names[-1]) == bytes([65_599 % 251]) * 10


def test_names():
    assert archive.keep_alphanumeric("Dupont^Jean  -  (x)/y") == "Dupont Jean xy"
    assert archive.to_ascii("crâne\x01") == "crne"
    assert archive.instance_format("")(3) == "00000003.dcm"
    assert archive.instance_format("m")(3) == "M0000003.dcm"
    assert archive.instance_format("CT")(12) == "CT000012.dcm"
    folders = archive._Folders()
    folders.open("A")
    assert folders.file("x.dcm") == "A/x.dcm"
    assert folders.file("x.dcm") == "A/x.dcm-2"  # Orthanc appends the counter to the name
    folders.close()
    folders.open("A")
    assert folders.file("y") == "A-2/y"


class SparseSink:
    """A write-only, non-seekable sink that keeps the first and last bytes of what it is given
    (an archive of several GB is not held)."""

    KEEP = 8 << 20

    def __init__(self) -> None:
        self.head = bytearray()
        self.tail = bytearray()
        self.size = 0

    def write(self, data: Any) -> int:
        data = bytes(data)
        if len(self.head) < self.KEEP:
            self.head += data[: self.KEEP - len(self.head)]
        self.tail += data
        del self.tail[: max(0, len(self.tail) - self.KEEP)]
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass


class SparseFile(io.RawIOBase):
    """What a SparseSink kept, read back as a file with zeros in between: enough for zipfile to
    read the central directory."""

    def __init__(self, sink: SparseSink) -> None:
        self.sink = sink
        self.pos = 0

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = {0: offset, 1: self.pos + offset, 2: self.sink.size + offset}[whence]
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, n: int = -1) -> bytes:
        s = self.sink
        end = s.size if n is None or n < 0 else min(s.size, self.pos + n)
        tail_start = s.size - len(s.tail)
        out = bytes(
            s.head[p] if p < len(s.head) else s.tail[p - tail_start] if p >= tail_start else 0
            for p in range(self.pos, end)
        )
        self.pos = end
        return out


@pytest.mark.slow
def test_zip64_past_4_gib():
    import os

    block = os.urandom(64 << 20)  # incompressible: the archive is as large as its content
    count = 70  # 4.4 GiB
    members = [archive.Member(f"big/{i}.dcm", InstanceFile(i, f"p{i}", "u", len(block))) for i in range(count)]
    ctx = SimpleNamespace(storage=Storage({"u": block}))
    sink = SparseSink()
    archive.write_zip(ctx, archive.ArchivePlan(members, False), sink, archive.WriteOptions())  # type: ignore[arg-type]
    assert sink.size > 1 << 32
    with zipfile.ZipFile(SparseFile(sink)) as zf:
        infos = zf.infolist()
        assert len(infos) == count
        assert infos[-1].header_offset > 1 << 32  # a ZIP64 extra field carries it
        assert all(i.file_size == len(block) for i in infos)
        assert infos[-1].CRC == zipfile.crc32(block)
