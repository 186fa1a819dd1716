"""Start the real Orthanc (the oracle) with a temporary configuration, for conformance tests."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


@contextlib.contextmanager
def real_orthanc(base: Path, config: dict[str, Any]) -> Iterator[str]:
    """Run Orthanc with `config` (storage under `base`) until the block ends; yields its URL."""
    config = {"StorageDirectory": str(base / "orthanc"), "IndexDirectory": str(base / "orthanc"), **config}
    (base / "orthanc.json").write_text(json.dumps(config))
    with open(base / "orthanc.log", "wb") as log:
        proc = subprocess.Popen([ORTHANC, str(base / "orthanc.json")], stdout=log, stderr=log)
    try:
        url = f"http://127.0.0.1:{config['HttpPort']}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/system", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError((base / "orthanc.log").read_text()) from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


def upload(url: str, data: bytes) -> None:
    urllib.request.urlopen(urllib.request.Request(url + "/instances", data=data, method="POST")).read()


def upload_datasets(url: str, client: Any) -> None:
    """Store every conformance dataset in the real Orthanc at `url` and through our `client`."""
    from tests.conformance import oracle_data

    for entry in oracle_data.DATASETS:
        data = oracle_data.build(entry)
        upload(url, data)
        client.upload(data)
