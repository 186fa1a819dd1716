#!/usr/bin/env python3
"""Peer store speed: POST /peers/{id}/store of one study of N small instances (64x64 CT),
orthanc_py -> orthanc_py against Orthanc -> Orthanc (and the mixed pairs), each a sender and a
receiver on free ports with temporary storage; runs alternate between the pairs, the receiver
emptied between two; prints the median seconds and instances/s.

  flock /tmp/bench.lock scripts/bench peers [--count 300] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dicomgen
from bench_servers import ORTHANC_BIN, REPO, free_port


def call(url: str, method: str = "GET", body: bytes | None = None) -> object:
    req = urllib.request.Request(url, data=body, method=method)
    with urllib.request.urlopen(req, timeout=600) as r:
        data = r.read()
    return json.loads(data) if data.strip() else None


def start(kind: str, base: Path, name: str, peers: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    folder = base / name
    folder.mkdir()
    config = {
        "Name": name,
        "HttpPort": port,
        "DicomServerEnabled": False,
        "DicomPort": free_port(),
        "StorageDirectory": str(folder / "db"),
        "IndexDirectory": str(folder / "db"),
        "RemoteAccessAllowed": True,
        "AuthenticationEnabled": False,
        "OrthancPeers": {k: [v] for k, v in peers.items()},
    }
    (folder / "config.json").write_text(json.dumps(config))
    log = open(folder / "log.txt", "wb")
    if kind == "orthanc":
        argv = [ORTHANC_BIN, str(folder / "config.json")]
    else:
        argv = [sys.executable, "-m", "orthanc_py", str(folder / "config.json")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(argv, stdout=log, stderr=log, cwd=REPO, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            call(url + "/system")
            return proc, url
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not start")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Peer store speed, ours and Orthanc, both ways.")
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    procs = []
    try:
        receivers = {}
        for kind in ("ours", "orthanc"):
            proc, url = start(kind, base, f"recv-{kind}", {})
            procs.append(proc)
            receivers[kind] = url
        pairs = {}
        files = [dicomgen.make(patient=1, instance=i, rows=64, columns=64) for i in range(a.count)]
        for kind in ("ours", "orthanc"):
            proc, url = start(kind, base, f"send-{kind}", receivers)
            procs.append(proc)
            for data in files:
                call(url + "/instances", "POST", data)
            study = call(url + "/studies")[0]  # type: ignore[index]
            for target in ("ours", "orthanc"):
                pairs[f"{kind}->{target}"] = (url, target, study)
        times: dict[str, list[float]] = {k: [] for k in pairs}
        for _ in range(a.repeat):
            for label, (url, target, study) in pairs.items():
                for pid in call(receivers[target] + "/patients"):  # type: ignore[union-attr]
                    call(f"{receivers[target]}/patients/{pid}", "DELETE")
                started = time.perf_counter()
                answer = call(f"{url}/peers/{target}/store", "POST", json.dumps([study]).encode())
                times[label].append(time.perf_counter() - started)
                assert answer["InstancesCount"] == a.count, answer  # type: ignore[index]
                assert len(call(receivers[target] + "/instances")) == a.count  # type: ignore[arg-type]
        print(f"peer store of {a.count} instances of {len(files[0])} bytes, median of {a.repeat}:")
        for label, values in times.items():
            median = statistics.median(values)
            print(f"  {label:18s} {median:7.3f} s  {a.count / median:7.0f} inst/s")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
