"""The server starts without the heavy libraries, and the common first requests do not load them.

A fresh interpreter runs the server as `python -m orthanc_py` does (in-process, so its modules
can be listed), then a client thread makes requests in order; after each, the heavy libraries
loaded so far are recorded. pydicom with numpy, PIL and the pixel plugins costs ~100 ms and
~30 MB (pynetdicom ~60 ms more): what the idle server and the first request of each kind pay.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dicomgen

ROOT = Path(__file__).resolve().parents[2]

_SERVER = r"""
import asyncio, http.client, json, socket, sys, tempfile, threading
from orthanc_py import cli
cli.defer_aiohttp_client()  # as `python -m orthanc_py` does, before aiohttp is imported
from orthanc_py import app
from orthanc_py.config import from_raw

HEAVY = ("pydicom", "numpy", "PIL.Image", "pynetdicom", "requests", "lupa", "aiohttp.client", "orthanc_py.rest.jobs",
         "orthanc_py.core.modify", "orthanc_py.rest.webdav")
steps = json.loads(sys.argv[1])
body = open(sys.argv[2], "rb").read()
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(64)
port = sock.getsockname()[1]
settings = from_raw({"StorageDirectory": tempfile.mkdtemp(), "DicomServerEnabled": False,
                     "OrthancPeers": {"self": [f"http://127.0.0.1:{port}/"]}})
stop = asyncio.Event()
found = {}
query = b'{"Level": "Study", "Query": {"PatientID": "PID*"}}'

def loaded():  # a lazy module (model.libraries) is not loaded until it is used
    return sorted(m for m in HEAVY if m in sys.modules and type(sys.modules[m]).__name__ != "_LazyModule")

def client(loop):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        ids = {}
        for name, method, path in steps:
            data = body if path == "/instances" else (query if method == "POST" else None)
            conn.request(method, path.format(**ids), body=data)
            resp = conn.getresponse()
            answer = resp.read()
            if path == "/instances":
                ids["id"] = json.loads(answer)["ID"]
            found[name] = [resp.status, loaded()]
        import aiohttp
        session = aiohttp.ClientSession
        found["aiohttp"] = [aiohttp.__version__, session.__module__, "ClientSession" in dir(aiohttp),
                            aiohttp.client.ClientSession is session]
        if "pydicom.config" in sys.modules:
            found["validation"] = sys.modules["pydicom.config"].settings.reading_validation_mode
    finally:
        loop.call_soon_threadsafe(stop.set)

def ready(ctx):
    found["started"] = [200, loaded()]
    threading.Thread(target=client, args=(asyncio.get_running_loop(),), daemon=True).start()

with asyncio.Runner(loop_factory=app.event_loop_factory()) as runner:
    runner.run(app.serve(settings, stop, sock, ready))
print(json.dumps(found))
"""


def _run(tmp_path: Path, steps: list[tuple[str, str, str]]) -> dict[str, list[object]]:
    dicom = tmp_path / "one.dcm"
    dicom.write_bytes(dicomgen.make(dicomgen.Spec(patient=1, study=1, rows=8, columns=8)))
    done = subprocess.run(
        [sys.executable, "-c", _SERVER, json.dumps(steps), str(dicom)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_reads_and_upload_do_not_load_the_dicom_libraries(tmp_path: Path) -> None:
    """Listening, GET /system, lists, an upload of an ordinary file, its file and tags, a find and
    QIDO-RS of studies and series on what the index keeps: none of them imports pydicom, numpy,
    PIL, pynetdicom, requests or lupa."""
    steps = [
        ("system", "GET", "/system"),
        ("studies", "GET", "/studies?expand"),
        ("upload", "POST", "/instances"),
        ("instances", "GET", "/instances?expand"),
        ("statistics", "GET", "/statistics"),
        ("find", "POST", "/tools/find"),
        ("file", "GET", "/instances/{id}/file"),
        ("tags", "GET", "/instances/{id}/tags"),
        ("simplified-tags", "GET", "/instances/{id}/simplified-tags"),
        ("qido studies", "GET", "/dicom-web/studies?PatientID=PID*"),
        ("qido series", "GET", "/dicom-web/series"),
    ]
    found = _run(tmp_path, steps)
    for name in ("started", *(s[0] for s in steps)):
        assert found[name] == [200, []], (name, found[name])


def test_small_previews_load_numpy_only(tmp_path: Path) -> None:
    """A PNG preview of a small uncompressed image is drawn from the bytes: numpy, no pydicom."""
    steps = [("upload", "POST", "/instances"), ("preview", "GET", "/instances/{id}/preview")]
    assert _run(tmp_path, steps)["preview"] == [200, ["numpy"]]


def test_what_needs_pydicom_loads_it_configured(tmp_path: Path) -> None:
    """What needs pydicom imports it on first use, configured as at start-up (model.libraries:
    values read without validation, `requests` left out, numpy and PIL only when used)."""
    steps = [("upload", "POST", "/instances"), ("header", "GET", "/instances/{id}/header"), ("again", "GET", "/system")]
    found = _run(tmp_path, steps)
    assert found["upload"] == [200, []]
    assert found["header"] == [200, ["pydicom"]]
    assert found["validation"] == 0  # pydicom.config.IGNORE


def test_aiohttp_client_loads_on_first_use(tmp_path: Path) -> None:
    """aiohttp's client (the package's `__init__`, model.libraries) is not loaded by the server's
    start nor by its reads; the first request through a peer loads it and gets its answer, and
    the package is then aiohttp as imported the usual way."""
    import aiohttp

    steps = [("system", "GET", "/system"), ("peer", "GET", "/peers/self/system"), ("peers", "GET", "/peers")]
    found = _run(tmp_path, steps)
    assert found["started"] == [200, []] and found["system"] == [200, []]
    assert found["peer"] == [200, ["aiohttp.client"]]
    assert found["peers"] == [200, ["aiohttp.client"]]
    assert found["aiohttp"] == [aiohttp.__version__, "aiohttp.client", True, True]


def test_rest_areas_load_on_first_call(tmp_path: Path) -> None:
    """The REST areas out of the common reads (rest.LAZY) load on the first call of one of their
    routes, and answer it; the others stay unloaded."""
    steps = [("jobs", "GET", "/jobs"), ("job", "GET", "/jobs/nope"), ("tools", "GET", "/tools")]
    found = _run(tmp_path, steps)
    assert found["started"] == [200, []]
    assert found["jobs"] == [200, ["orthanc_py.rest.jobs"]]
    assert found["job"] == [404, ["orthanc_py.rest.jobs"]]
    assert found["tools"] == [200, ["orthanc_py.rest.jobs"]]  # admin's module is not watched here
