#!/usr/bin/env python3
"""Start-up, idle memory and the cost of each first request, on fresh servers (issue 15, item 4).

    scripts/startup_probe.py startup [--repeat 7] [--kind ours|orthanc]
        process spawn -> first 200 of GET /system, and VmRSS after 1 s of idle: medians.
    scripts/startup_probe.py first [--repeat 3] [--only preview --only tags ...] [--base ../main-wt]
        for each kind of request, a fresh server on a copy of a one-study storage answers that
        request once ("first"), then three more times ("steady", the median): the first request's
        extra cost is what start-up left for it to load (first - steady). Medians over --repeat.
        With --base, the same on a server of that checkout, run right before ours each time.
        With --preloaded, the same on a server of this checkout that imported at start-up every
        module that all the kinds of request load (listed by a first server that answered each
        kind once): the first requests' cost of what start-up leaves for later.

Serialize with the other benchmarks: `flock /tmp/bench.lock scripts/startup_probe.py ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_servers
import dicomgen
from bench_servers import launch, log, memory_mb, shutdown

OURS = bench_servers.REPO

AET = "PROBE"
STUDY = dict(patient=1, study=1, rows=64, columns=64)


def new_file(n: int) -> bytes:
    """A new instance (own SOP Instance UID) of the probe's study."""
    return dicomgen.make(dicomgen.Spec(series=0, instance=100 + n, **STUDY))  # type: ignore[arg-type]


def modalities(port: int) -> dict[str, Any]:
    return {
        "DicomModalities": {"probe": [AET, "127.0.0.1", port or 104]},
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }


class Probe:
    """The requests timed on a fresh server (`kinds`), each a coroutine doing one request."""

    def __init__(self, http: aiohttp.ClientSession, url: str, dicom_port: int, ids: dict[str, str]) -> None:
        self.http, self.url, self.dicom_port, self.ids = http, url, dicom_port, ids
        self.counter = 0

    async def get(self, path: str, **kw: Any) -> None:
        async with self.http.get(self.url + path, **kw) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"GET {path}: {r.status}")

    async def post(self, path: str, body: bytes, **kw: Any) -> None:
        async with self.http.post(self.url + path, data=body, **kw) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"POST {path}: {r.status}")

    def next_file(self) -> bytes:
        self.counter += 1
        return new_file(self.counter)

    async def dimse(self, what: str) -> None:
        def run() -> None:
            from pydicom import dcmread
            from pydicom.dataset import Dataset
            from pynetdicom import AE
            from pynetdicom.sop_class import CTImageStorage, StudyRootQueryRetrieveInformationModelFind, Verification

            ae = AE(ae_title=AET)
            ae.add_requested_context(Verification)
            ae.add_requested_context(CTImageStorage)
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
            assoc = ae.associate("127.0.0.1", self.dicom_port, ae_title="ORTHANC")
            if not assoc.is_established:
                raise RuntimeError("association rejected")
            try:
                if what == "echo":
                    status = assoc.send_c_echo()
                elif what == "store":
                    import io

                    status = assoc.send_c_store(dcmread(io.BytesIO(self.next_file())))
                else:
                    q = Dataset()
                    q.QueryRetrieveLevel = "STUDY"
                    q.StudyInstanceUID = ""
                    q.PatientID = "PID*"
                    answers = list(assoc.send_c_find(q, StudyRootQueryRetrieveInformationModelFind))
                    status = answers[-1][0] if answers else None
                if status is None or status.Status not in (0, 0xFF00, 0xFF01):
                    raise RuntimeError(f"{what}: {status}")
            finally:
                assoc.release()

        await asyncio.get_running_loop().run_in_executor(None, run)

    def kinds(self) -> dict[str, Callable[[], Awaitable[None]]]:
        i, st, se, sop = self.ids["instance"], self.ids["study"], self.ids["series_uid"], self.ids["sop_uid"]
        stu = self.ids["study_uid"]
        dw = f"/dicom-web/studies/{stu}/series/{se}/instances/{sop}"
        multipart = 'multipart/related; type="application/dicom"; boundary=probe'

        def stow_body() -> bytes:
            return b"--probe\r\nContent-Type: application/dicom\r\n\r\n" + self.next_file() + b"\r\n--probe--\r\n"

        return {
            "system": lambda: self.get("/system"),
            "studies": lambda: self.get("/studies?expand"),
            "instance": lambda: self.get(f"/instances/{i}"),
            "file": lambda: self.get(f"/instances/{i}/file"),
            "tags": lambda: self.get(f"/instances/{i}/tags"),
            "simplified-tags": lambda: self.get(f"/instances/{i}/simplified-tags"),
            "preview": lambda: self.get(f"/instances/{i}/preview"),
            "preview-jpeg": lambda: self.get(f"/instances/{i}/preview", headers={"Accept": "image/jpeg"}),
            "find": lambda: self.post("/tools/find", orjson.dumps({"Level": "Study", "Query": {"PatientID": "PID*"}})),
            "upload": lambda: self.post("/instances", self.next_file()),
            "modify": lambda: self.post(f"/instances/{i}/modify", orjson.dumps({"Replace": {"PatientName": "X"}})),
            "anonymize": lambda: self.post(f"/instances/{i}/anonymize", b"{}"),
            "archive": lambda: self.get(f"/studies/{st}/archive"),
            "c-echo": lambda: self.dimse("echo"),
            "c-store": lambda: self.dimse("store"),
            "c-find": lambda: self.dimse("find"),
            "stow": lambda: self.post(
                "/dicom-web/studies",
                stow_body(),
                headers={"Content-Type": multipart, "Accept": "application/dicom+json"},
            ),
            "qido": lambda: self.get("/dicom-web/studies?PatientID=PID*"),
            "wado-rs": lambda: self.get(dw, headers={"Accept": multipart}),
            "wado-metadata": lambda: self.get(f"/dicom-web/studies/{stu}/metadata"),
            "wado-rendered": lambda: self.get(dw + "/rendered", headers={"Accept": "image/png"}),
            "wado-uri": lambda: self.get(
                f"/wado?requestType=WADO&studyUID={stu}&seriesUID={se}&objectUID={sop}&contentType=application/dicom"
            ),
        }


# Imported by a server's interpreter at start (PYTHONPATH): with STARTUP_PROBE_MODULES=record:FILE
# it writes the names of its modules to FILE when it exits; with load:FILE it imports them first.
_SITECUSTOMIZE = """
import atexit, importlib, os, sys
mode, _, path = os.environ.get("STARTUP_PROBE_MODULES", "").partition(":")
if mode == "record":
    atexit.register(lambda: open(path, "w").write("\\n".join(sorted(sys.modules))))
elif mode == "load":
    for name in open(path).read().split():
        if name != "__main__" and name not in sys.modules:
            try:
                importlib.import_module(name)
            except Exception:
                pass
"""


class Preload:
    """The environment that makes a launched server record its modules, or import them at start."""

    def __init__(self, work: Path) -> None:
        self.folder = work / "sitecustomize"
        self.folder.mkdir(parents=True)
        (self.folder / "sitecustomize.py").write_text(_SITECUSTOMIZE)
        self.modules = work / "modules.txt"

    @contextlib.contextmanager
    def mode(self, mode: str) -> Iterator[None]:
        """os.environ for the launches inside (bench_servers copies it into the server's)."""
        saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "STARTUP_PROBE_MODULES")}
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.folder), saved["PYTHONPATH"]]))
        os.environ["STARTUP_PROBE_MODULES"] = f"{mode}:{self.modules}"
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


async def warm_up(http: aiohttp.ClientSession, work: Path, ids: dict[str, str], preload: Preload | None = None) -> None:
    """One server answers every kind once, so that the bytecode cache of the run (see
    bench_servers.launch) holds every module the kinds load: no measured first request compiles
    one from source, as none does in an installed package. With `preload`, the modules the
    server then has are recorded as the preload list."""
    with preload.mode("record") if preload is not None else contextlib.nullcontext():
        server = await fresh(http, work, "warm-up")
    try:
        for call in Probe(http, server.url, server.dicom_port, ids).kinds().values():
            await call()
    finally:
        await shutdown(server)
    if preload is not None:
        log(f"preload: {len(preload.modules.read_text().split())} modules")


def use_code(repo: Path) -> None:
    """The checkout whose package the next launches run (bench_servers reads REPO at each launch)."""
    bench_servers.REPO = repo


async def make_template(http: aiohttp.ClientSession, work: Path) -> dict[str, str]:
    """A storage with one study of 64x64 CT (5 instances), built by the server of `use_code`."""
    server = await launch("ours", work / "template", http, 60)
    try:
        ids: dict[str, str] = {}
        for n in range(5):
            raw = dicomgen.make(dicomgen.Spec(series=0, instance=n, **STUDY))  # type: ignore[arg-type]
            async with http.post(server.url + "/instances", data=raw) as r:
                doc = orjson.loads(await r.read())
            ids.update(instance=doc["ID"], study=doc["ParentStudy"])
        async with http.get(server.url + f"/instances/{ids['instance']}/tags?simplify") as r:
            tags = orjson.loads(await r.read())
        ids.update(
            study_uid=tags["StudyInstanceUID"], series_uid=tags["SeriesInstanceUID"], sop_uid=tags["SOPInstanceUID"]
        )
        return ids
    finally:
        await shutdown(server)


async def fresh(http: aiohttp.ClientSession, work: Path, name: str, kind: str = "ours") -> Any:
    """A server started on a copy of the template storage of `work`."""
    d = work / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    for sub in ("storage", "index"):
        shutil.copytree(work / "template" / sub, d / sub)
    return await launch(kind, d, http, 60, None, modalities(0))


async def _time_first(
    http: aiohttp.ClientSession, work: Path, name: str, ids: dict[str, str], preload: Preload | None = None
) -> tuple[float, float]:
    """(first, median of the next three) of one kind of request on a fresh server, in ms."""
    if preload is None:
        server = await fresh(http, work, name)
    else:
        with preload.mode("load"):
            server = await fresh(http, work, name)
    try:
        call = Probe(http, server.url, server.dicom_port, ids).kinds()[name.split("@")[0]]
        t0 = time.perf_counter()
        await call()
        first = time.perf_counter() - t0
        steady = []
        for _ in range(3):
            t0 = time.perf_counter()
            await call()
            steady.append(time.perf_counter() - t0)
        return first * 1000, statistics.median(steady) * 1000
    finally:
        await shutdown(server)


async def first_requests(args: argparse.Namespace, work: Path) -> None:
    """Each kind on fresh servers; with --base, the base checkout's server right before ours."""
    codes = {"ours": (OURS, work / "ours")}
    if args.base:
        codes = {"base": (args.base, work / "base"), **codes}
    preload = Preload(work) if args.preloaded else None
    if preload is not None:
        codes = {"preloaded": (OURS, work / "preloaded"), **codes}
    async with aiohttp.ClientSession() as http:
        ids: dict[str, dict[str, str]] = {}
        for code, (repo, folder) in codes.items():
            use_code(repo)
            folder.mkdir(parents=True)
            ids[code] = await make_template(http, folder)
        for code, (repo, folder) in codes.items():
            use_code(repo)
            await warm_up(http, folder, ids[code], preload if code == "preloaded" else None)
        names = args.only or list(Probe(http, "", 0, ids["ours"]).kinds())
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for rep in range(args.repeat):
            for name in names:
                for code, (repo, folder) in codes.items():
                    use_code(repo)
                    got = await _time_first(
                        http, folder, f"{name}@{rep}", ids[code], preload if code == "preloaded" else None
                    )
                    results.setdefault((code, name), []).append(got)
            log(f"repeat {rep + 1}/{args.repeat} done")
        heads = "".join(f" {c[:6] + ' first':>12} {c[:6] + ' steady':>13} {c[:6] + ' extra':>12}" for c in codes)
        print(f"{'request':16}{heads}" + "".join(f" {'ours - ' + c:>17}" for c in codes if c != "ours"))
        for name in names:
            row, firsts = "", {}
            for code in codes:
                f = statistics.median(x[0] for x in results[(code, name)])
                st = statistics.median(x[1] for x in results[(code, name)])
                firsts[code] = f
                row += f" {f:12.1f} {st:13.1f} {f - st:12.1f}"
            diffs = "".join(f" {firsts['ours'] - firsts[c]:17.1f}" for c in codes if c != "ours")
            print(f"{name:16}{row}{diffs}")


async def startup(args: argparse.Namespace, work: Path) -> None:
    async with aiohttp.ClientSession() as http:
        times, rss = [], []
        for rep in range(args.repeat):
            d = work / f"start-{rep}"
            server = await launch(args.kind, d, http, 60)
            try:
                times.append(server.startup_s)
                await asyncio.sleep(1.0)
                rss.append(memory_mb(server.proc.pid, "VmRSS"))
            finally:
                await shutdown(server)
                shutil.rmtree(d, ignore_errors=True)
        print(
            f"{args.kind}: start {statistics.median(times):.3f} s (min {min(times):.3f}), "
            f"idle RSS {statistics.median(rss):.1f} MB (min {min(rss):.1f})"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("startup", "first"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--kind", default="ours", choices=("ours", "orthanc"))
    ap.add_argument("--only", action="append", help="kinds of first request to time (default: all)")
    ap.add_argument("--base", help="first: also time this checkout (a worktree of main), interleaved")
    ap.add_argument(
        "--preloaded", action="store_true", help="first: also time this checkout with every module imported at start"
    )
    args = ap.parse_args()
    if args.base:
        args.base = Path(args.base).resolve()
    work = Path(tempfile.mkdtemp(prefix="startup-probe-"))
    try:
        asyncio.run(startup(args, work) if args.what == "startup" else first_requests(args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
