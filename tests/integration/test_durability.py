"""kill -9 during uploads: everything acknowledged survives, byte-identical, no dangling rows."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import dicomgen

from tests.conftest import free_port


def start(config: Path, port: int) -> subprocess.Popen[bytes]:
    log = config.parent / "server.log"
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orthanc_py", str(config)], stdout=subprocess.DEVNULL, stderr=err
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(log.read_text()) from None
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not start")


async def upload_until_killed(url: str, proc: subprocess.Popen[bytes], files: list[bytes]) -> dict[str, bytes]:
    acked: dict[str, bytes] = {}
    queue = list(enumerate(files))

    async def worker(session: aiohttp.ClientSession) -> None:
        while queue:
            _i, data = queue.pop(0)
            try:
                async with session.post(url + "/instances", data=data) as r:
                    if r.status == 200:
                        acked[(await r.json())["ID"]] = data
            except (TimeoutError, aiohttp.ClientError):
                return
            if len(acked) == 40:
                os.kill(proc.pid, signal.SIGKILL)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        await asyncio.gather(*(worker(session) for _ in range(4)))
    return acked


def test_kill_9_loses_nothing_acknowledged(tmp_path: Path):
    port = free_port()
    config = tmp_path / "orthanc.json"
    config.write_text(
        json.dumps({"StorageDirectory": str(tmp_path / "storage"), "HttpPort": port, "DicomServerEnabled": False})
    )
    files = [dicomgen.make(patient=i // 10, instance=i, rows=64, columns=64) for i in range(200)]
    proc = start(config, port)
    url = f"http://127.0.0.1:{port}"
    acked = asyncio.run(upload_until_killed(url, proc, files))
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    assert len(acked) >= 40

    proc = start(config, port)
    try:

        async def check() -> None:
            async with aiohttp.ClientSession() as s:
                async with s.get(url + "/instances") as r:
                    listed = set(await r.json())
                assert set(acked) <= listed
                for iid in listed:  # no index row may point at a missing file
                    async with s.get(f"{url}/instances/{iid}/file") as r:
                        assert r.status == 200
                        body = await r.read()
                    if iid in acked:
                        assert body == acked[iid]
                # the server still works after the crash
                async with s.post(url + "/instances", data=files[-1]) as r:
                    assert r.status == 200

        asyncio.run(check())
    finally:
        proc.terminate()
        proc.wait(10)
