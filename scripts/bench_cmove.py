#!/usr/bin/env python3
"""C-MOVE and C-GET SCP throughput: our server (one or more checkouts) against the real Orthanc,
with DCMTK's movescu/getscu as the requestor and DCMTK's storescp as the move destination.

Usage:
  scripts/bench_cmove.py --data DIR [--target ours:/work/wt/x] [--target ours:/work/wt/y]
                         [--target orthanc] [--target orthanc:TCP_NODELAY=1] [--runs 5]
                         [--get] [--store]

DIR holds the files of ONE study (e.g. `scripts/populate --out DIR ...`). Each target is started
on a temporary storage with free ports, the study is sent to it with storescu, then the runs
alternate between targets (A B, B A, ...) so machine noise hits all alike. Each run times one
`movescu` (study level, to the target's own storescp started with --ignore, default 16 KiB
PDUs) and, with --get, one `getscu` (files written to a tmpfs folder, counted and removed);
then, with --store, runs of POST /modalities/dest/store of the study (the server's C-STORE SCU,
to the same storescp). Reports the median instances/s and MB/s per target.
"orthanc:NAME=VALUE" starts Orthanc with that environment variable (DCMTK's TCP_NODELAY=1 turns
Nagle's algorithm off on its sockets; by default it stays on, and each C-STORE to a DCMTK peer
then waits for a delayed ACK). Only processes this script starts are stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ORTHANC_BIN = "/usr/sbin/Orthanc"
MOVESCU = ["movescu", "-aet", "MOVESCU", "-aec", "ORTHANC", "-aem", "STORESCP", "-S", "-k", "QueryRetrieveLevel=STUDY"]
GETSCU = ["getscu", "-aet", "GETSCU", "-aec", "ORTHANC", "-S", "-k", "QueryRetrieveLevel=STUDY"]


def free_ports(n: int) -> list[int]:
    """`n` distinct free TCP ports (all held open until each is chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Target:
    label: str
    kind: str  # "ours" or "orthanc"
    repo: str = ""
    env: dict[str, str] = field(default_factory=dict)
    http: int = 0
    dicom: int = 0
    proc: subprocess.Popen[bytes] | None = None
    workdir: Path | None = None
    storescp: subprocess.Popen[bytes] | None = None
    move_rates: list[float] = field(default_factory=list)
    get_rates: list[float] = field(default_factory=list)
    store_rates: list[float] = field(default_factory=list)
    store_errors: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def wait_http(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/system", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("server did not start")


def start(t: Target) -> None:
    """The server and its own storescp (which takes one association at a time: a destination
    shared by the targets would make each wait for the others' pooled associations)."""
    t.workdir = Path(tempfile.mkdtemp(prefix=f"bench-cmove-{t.kind}-"))
    t.http, t.dicom, dest_port = free_ports(3)
    t.storescp = subprocess.Popen(
        ["storescp", "--ignore", "-aet", "STORESCP", str(dest_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    config = {
        "Name": f"bench-cmove-{t.label}",
        "StorageDirectory": str(t.workdir / "storage"),
        "IndexDirectory": str(t.workdir / "storage"),
        "HttpPort": t.http,
        "DicomPort": t.dicom,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [],
        "DicomModalities": {
            "dest": ["STORESCP", "127.0.0.1", dest_port],
            "mover": ["MOVESCU", "127.0.0.1", 1],
            "getter": ["GETSCU", "127.0.0.1", 1],
        },
    }
    cfg = t.workdir / "config.json"
    cfg.write_text(json.dumps(config))
    env = {**os.environ, **t.env}
    log = (t.workdir / "server.log").open("ab")
    if t.kind == "ours":
        env["PYTHONPATH"] = t.repo
        cmd = [sys.executable, "-m", "orthanc_py", str(cfg)]
        cwd = t.repo
    else:
        cmd, cwd = [ORTHANC_BIN, str(cfg)], str(t.workdir)
    t.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_http(t.http, t.proc)
    for _ in range(200):  # the DICOM port may open after the HTTP one
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", t.dicom)) == 0:
                break
        time.sleep(0.05)


def stop(t: Target, keep: bool = False) -> None:
    if t.proc is not None and t.proc.poll() is None:
        t.proc.send_signal(signal.SIGINT if t.kind == "ours" else signal.SIGTERM)
        try:
            t.proc.wait(30)
        except subprocess.TimeoutExpired:
            t.proc.kill()
            t.proc.wait(10)
    if t.storescp is not None:
        t.storescp.terminate()
        t.storescp.wait(10)
    if t.workdir is not None and not keep:
        shutil.rmtree(t.workdir, ignore_errors=True)


def study_uid(data: Path) -> str:
    import pydicom

    first = next(p for p in sorted(data.rglob("*")) if p.is_file())
    return str(pydicom.dcmread(first, stop_before_pixels=True).StudyInstanceUID)


def upload(t: Target, data: Path) -> None:
    out = subprocess.run(
        ["storescu", "-aet", "MOVESCU", "-aec", "ORTHANC", "+sd", "+r", "127.0.0.1", str(t.dicom), str(data)],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"storescu failed: {out.stderr[-800:]}")


def run_move(t: Target, uid: str) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(
        [*MOVESCU, "-k", f"StudyInstanceUID={uid}", "127.0.0.1", str(t.dicom)],
        capture_output=True,
        text=True,
    )
    dt = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"{t.label}: movescu failed (log in {t.workdir}): {out.stderr[-500:]}")
    return dt


def run_get(t: Target, uid: str) -> tuple[float, int]:
    dest = Path(tempfile.mkdtemp(prefix="bench-cget-", dir="/dev/shm"))
    try:
        t0 = time.perf_counter()
        out = subprocess.run(
            [*GETSCU, "-k", f"StudyInstanceUID={uid}", "-od", str(dest), "127.0.0.1", str(t.dicom)],
            capture_output=True,
            text=True,
        )
        dt = time.perf_counter() - t0
        if out.returncode != 0:
            raise RuntimeError(f"getscu failed: {out.stderr[-500:]}")
        return dt, sum(1 for _ in dest.iterdir())
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def run_store(t: Target) -> float:
    """POST /modalities/dest/store of the (only) study: our C-STORE SCU to the same storescp."""
    with urllib.request.urlopen(f"http://127.0.0.1:{t.http}/studies", timeout=30) as r:
        (study,) = json.loads(r.read())
    req = urllib.request.Request(f"http://127.0.0.1:{t.http}/modalities/dest/store", data=study.encode(), method="POST")
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r:
        answer = json.loads(r.read())
    dt = time.perf_counter() - t0
    if answer.get("FailedInstancesCount"):
        raise RuntimeError(f"store failed: {answer}")
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--target", action="append", default=[], help="ours:REPO or orthanc")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--get", action="store_true", help="also time C-GET (getscu)")
    ap.add_argument("--store", action="store_true", help="also time POST /modalities/dest/store (C-STORE SCU)")
    ap.add_argument(
        "--dcmtk-nodelay",
        action="store_true",
        help="run storescp/storescu/movescu/getscu with TCP_NODELAY=1 (DCMTK then turns Nagle's algorithm off)",
    )
    args = ap.parse_args()
    if args.dcmtk_nodelay:
        os.environ["TCP_NODELAY"] = "1"  # inherited by the DCMTK tools (and by Orthanc, DCMTK too)
    files = [p for p in args.data.rglob("*") if p.is_file()]
    count, size_mb = len(files), sum(p.stat().st_size for p in files) / 1e6
    uid = study_uid(args.data)
    targets = []
    for spec in args.target or ["ours:" + str(Path(__file__).resolve().parent.parent)]:
        kind, _, rest = spec.partition(":")
        if kind == "orthanc":
            env = dict(kv.split("=", 1) for kv in rest.split(",") if "=" in kv)
            targets.append(Target(spec, kind, env=env))
        else:
            targets.append(Target(f"{kind}:{Path(rest).name}", kind, rest))
    failed = False
    try:
        for t in targets:
            start(t)
            upload(t, args.data)
        for t in targets:  # warm-up (first association, imports)
            with contextlib.suppress(RuntimeError):
                run_move(t, uid)
        for r in range(args.runs):
            order = targets if r % 2 == 0 else list(reversed(targets))
            for t in order:
                try:
                    t.move_rates.append(count / run_move(t, uid))
                except RuntimeError as exc:  # reported, not fatal: a failing move is a finding
                    t.errors.append(str(exc).splitlines()[0])
                if args.get:
                    dt, got = run_get(t, uid)
                    if got != count:
                        print(f"{t.label}: C-GET received {got} of {count}", file=sys.stderr)
                    t.get_rates.append(count / dt)
        for r in range(args.runs if args.store else 0):  # apart: the pool keeps an association 5 s
            for t in targets if r % 2 == 0 else list(reversed(targets)):
                try:
                    t.store_rates.append(count / run_store(t))
                except OSError as exc:  # reported, not fatal: a store that fails is a finding
                    t.store_errors.append(str(exc))
        print(f"{count} instances, {size_mb:.1f} MB, {args.runs} runs each, medians")
        for t in targets:
            m = statistics.median(t.move_rates) if t.move_rates else 0.0
            line = f"{t.label:28s} C-MOVE {m:7.1f} inst/s {m * size_mb / count:6.1f} MB/s"
            line += "  runs " + " ".join(f"{x:.0f}" for x in t.move_rates)
            if t.get_rates:
                g = statistics.median(t.get_rates)
                line += f" | C-GET {g:7.1f} inst/s {g * size_mb / count:6.1f} MB/s"
                line += "  runs " + " ".join(f"{x:.0f}" for x in t.get_rates)
            if t.errors:
                line += f" | C-MOVE FAILED {len(t.errors)}x ({t.errors[0]})"
            if t.store_errors:
                line += f" | store SCU FAILED {len(t.store_errors)}x ({t.store_errors[0]})"
            if t.store_rates:
                st = statistics.median(t.store_rates)
                line += f" | store SCU {st:7.1f} inst/s {st * size_mb / count:6.1f} MB/s"
                line += "  runs " + " ".join(f"{x:.0f}" for x in t.store_rates)
            print(line, flush=True)
    except BaseException:
        failed = True
        raise
    finally:
        for t in targets:
            with contextlib.suppress(Exception):
                stop(t, keep=failed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
