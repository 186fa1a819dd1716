"""Start-up: the server answers HTTP and DICOM right after it starts, while pynetdicom (and the
AE with its ~170 storage contexts) loads only when the first association arrives."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A fresh interpreter, as `orthanc-py` runs: the server starts, then three DCMTK echoscu
# associations arrive at once (the first builds pynetdicom's server, the others wait for it),
# then a C-STORE; the HTTP API answers throughout.
_SERVE = r"""
import asyncio, json, subprocess, sys, tempfile, urllib.request
from orthanc_py import app, cli
from orthanc_py.config import from_raw
cli.defer_aiohttp_client()
settings = from_raw({"StorageDirectory": tempfile.mkdtemp(), "HttpPort": 0, "DicomPort": 0,
                     "DicomAet": "ORTHANCPY", "DicomServerEnabled": True})
out = {}
stop = asyncio.Event()

def dcmtk(*args):
    cmd = [args[0], "-aec", "ORTHANCPY", "127.0.0.1", *args[1:]]
    return subprocess.run(cmd, capture_output=True, timeout=60).returncode

def echo(port):
    return dcmtk("echoscu", str(port))

def store(port, path):
    return dcmtk("storescu", str(port), path)

async def exercise(ctx, http_port):
    loop = asyncio.get_running_loop()
    try:
        out["pynetdicom_at_ready"] = "pynetdicom" in sys.modules
        get = lambda path: urllib.request.urlopen(f"http://127.0.0.1:{http_port}{path}", timeout=30).read()
        out["system"] = json.loads(await loop.run_in_executor(None, get, "/system"))["DicomAet"]
        out["echoes"] = await asyncio.gather(*(loop.run_in_executor(None, echo, ctx.dicom_port) for _ in range(3)))
        out["pynetdicom_after"] = "pynetdicom" in sys.modules
        out["store"] = await loop.run_in_executor(None, store, ctx.dicom_port, sys.argv[1])
        out["instances"] = len(json.loads(await loop.run_in_executor(None, get, "/instances")))
    finally:
        stop.set()

async def main():
    import socket
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    await app.serve(settings, stop=stop, sock=sock, ready=lambda ctx: asyncio.ensure_future(exercise(ctx, port)))

asyncio.run(main())
print(json.dumps(out))
"""


@pytest.mark.skipif(shutil.which("echoscu") is None, reason="DCMTK not installed (apt-get install dcmtk)")
def test_http_and_dicom_answer_right_after_start_pynetdicom_on_first_association(tmp_path):
    import dicomgen

    path = tmp_path / "ct.dcm"
    path.write_bytes(dicomgen.make(patient=1, rows=16, columns=16))
    done = subprocess.run(
        [sys.executable, "-c", _SERVE, str(path)], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {
        "pynetdicom_at_ready": False,
        "system": "ORTHANCPY",
        "echoes": [0, 0, 0],
        "pynetdicom_after": True,
        "store": 0,
        "instances": 1,
    }


_AIOHTTP = r"""
import json, ssl
from orthanc_py import cli
cli.defer_aiohttp_client()
from aiohttp import connector
out = {"restored": "set_default_verify_paths" not in ssl.SSLContext.__dict__
       and ssl.SSLContext.load_default_certs.__module__ == "ssl"}
for name in ("_SSL_CONTEXT_VERIFIED", "_SSL_CONTEXT_UNVERIFIED"):
    ctx = getattr(connector, name)
    before = ctx.cert_store_stats()["x509_ca"]
    ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="example.org")
    out[name] = [before, ctx.cert_store_stats()["x509_ca"], ctx.verify_mode, ctx.check_hostname]
plain = ssl.create_default_context()
out["system"] = plain.cert_store_stats()["x509_ca"]
out["plain"] = type(plain) is ssl.SSLContext
print(json.dumps(out))
"""


def test_aiohttp_client_contexts_load_ca_certificates_on_first_connection():
    """aiohttp's default client contexts read no certificates at import; their first TLS
    connection loads what aiohttp asked for, and contexts made later are untouched."""
    done = subprocess.run(
        [sys.executable, "-c", _AIOHTTP], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    n = found["system"]
    assert n > 0
    assert found["_SSL_CONTEXT_VERIFIED"] == [0, n, 2, True]  # CERT_REQUIRED, host names checked
    assert found["_SSL_CONTEXT_UNVERIFIED"] == [0, n, 0, False]  # CERT_NONE, as aiohttp makes it
    assert found["restored"] and found["plain"]
