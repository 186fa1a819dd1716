"""STOW-RS's streaming multipart splitter, fed in awkward chunks."""

from __future__ import annotations

import asyncio
import base64
import gzip

import pytest

from orthanc_py.dicomweb.stow import _boundary, _multipart
from orthanc_py.errors import OrthancError


class Stream:
    """A request body delivered `size` bytes at a time (readany's contract: b"" at the end)."""

    def __init__(self, data: bytes, size: int) -> None:
        self.chunks = [data[i : i + size] for i in range(0, len(data), size)]

    async def readany(self) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


def split(data: bytes, size: int, boundary: bytes = b"XyZ") -> list[bytes]:
    async def run() -> list[bytes]:
        return [p async for p in _multipart(Stream(data, size), boundary)]

    return asyncio.run(run())


TRICKY = b"\x00\r\n--XyZZ not the end\r\n--Xy\r\n" + bytes(range(256)) * 40


@pytest.mark.parametrize("size", [1, 3, 7, 64, 1000, 1 << 20])
def test_parts_whatever_the_chunking(size):
    body = (
        b"preamble\r\n--XyZ\r\nContent-Type: application/dicom\r\n\r\n"
        + TRICKY
        + b"\r\n--XyZ\r\nContent-Type: application/dicom\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode(b"second")
        + b"\r\n--XyZ\r\nContent-Encoding: gzip\r\n\r\n"
        + gzip.compress(b"third")
        + b"\r\n--XyZ\r\n\r\n"  # a part without headers
        + b"fourth"
        + b"\r\n--XyZ--\r\nepilogue"
    )
    assert split(body, size) == [TRICKY, b"second", b"third", b"fourth"]
    starts_with_delimiter = b"--XyZ\r\n\r\nonly\r\n--XyZ--"
    assert split(starts_with_delimiter, size) == [b"only"]


@pytest.mark.parametrize(
    "body",
    [b"no delimiter at all", b"--XyZ\r\nContent-Type: x\r\n\r\ntruncated", b"--XyZ", b"--XyZ\r\nheaders never end"],
)
def test_bad_bodies_are_400(body):
    with pytest.raises(OrthancError) as err:
        split(body, 5)
    assert err.value.http_status == 400


def test_boundary_parameter():
    assert _boundary('multipart/related; type="application/dicom"; boundary="a b"') == b"a b"
    assert _boundary("multipart/related; boundary=xyz; type=application/dicom") == b"xyz"
    with pytest.raises(OrthancError):
        _boundary("multipart/related; boundary=")
