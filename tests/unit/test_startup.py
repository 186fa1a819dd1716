"""app.configure_libraries: every library-wide setting in one start-up function."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

import pydicom.config

from orthanc_py.app import configure_libraries, freeze_startup_objects, pause_collector
from orthanc_py.remote import dicomnet
from orthanc_py.remote.modalities import DicomScu

ROOT = Path(__file__).resolve().parents[2]


def test_library_settings_in_one_place():
    configure_libraries()
    configure_libraries()  # idempotent: the test harness and every server start call it
    assert pydicom.config.settings.reading_validation_mode == pydicom.config.IGNORE
    assert gc.get_threshold()[0] == 20_000
    before = gc.get_freeze_count()
    pause_collector()  # no collections while the server starts
    assert not gc.isenabled()
    freeze_startup_objects()  # collected once, frozen, and collecting again
    assert gc.get_freeze_count() >= max(before, 1)
    assert gc.isenabled()


def test_pynetdicom_tuned_before_the_first_association():
    scu = DicomScu("ORTHANC", 5.0)
    try:
        from pynetdicom import transport

        assert dicomnet._applied  # pynetdicom's faster recv and the stored-bytes encoder
        assert transport.AssociationSocket.recv is dicomnet._recv
        dicomnet.tune_pynetdicom()  # idempotent: the DICOM server's start calls it too
        assert transport.AssociationSocket.recv is dicomnet._recv
    finally:
        scu.close()


# A fresh interpreter builds the server the way `serve` does, up to the point where HTTP listens.
_BUILD = """
import json, sys, tempfile
from orthanc_py import app, cli
light = sorted(m for m in ("pydicom", "numpy", "PIL", "pynetdicom", "requests") if m in sys.modules)
from orthanc_py.config import from_raw
app.configure_libraries()
ctx = app.build_context(from_raw({"StorageDirectory": tempfile.mkdtemp(), "DicomServerEnabled": False}))
app.build_app(ctx)
from orthanc_py.model.dictionary import dcmtk
print(json.dumps({
    "before_configure": light,
    "after_build": sorted(m for m in ("pydicom", "numpy", "PIL", "pynetdicom", "requests", "lupa") if m in sys.modules),
    "dictionary_loaded": dcmtk.cache_info().currsize,
}))
"""


def test_serving_modules_leave_the_rest_for_first_use():
    """What the HTTP server needs before it listens, and nothing more: pydicom (with numpy, PIL
    and the pixel plugins) loads on the first request that needs it, pynetdicom (and its status
    tables) on the DICOM server's first association or the SCU's first use, DCMTK's dictionary on
    its first use, `requests` never (pydicom imports it only to download its test files); the
    composition root's own import loads none of the DICOM libraries."""
    done = subprocess.run(
        [sys.executable, "-c", _BUILD], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {"before_configure": [], "after_build": [], "dictionary_loaded": 0}


_FIRST_IMPORT = """
import importlib.resources, json, sys
from orthanc_py import app
app.configure_libraries()
import pydicom, pydicom.config
settings = {
    "validation": pydicom.config.settings.reading_validation_mode == pydicom.config.IGNORE,
    "requests": "requests" in sys.modules,
    "own_loader": type(pydicom.__spec__.loader).__name__,
    "resources": importlib.resources.files("pydicom").joinpath("config.py").is_file(),
}
import requests  # still importable once pydicom is loaded
settings["requests_later"] = "requests" in sys.modules
print(json.dumps(settings))
"""


def test_pydicom_configured_whenever_first_imported():
    """model.libraries: whichever module imports pydicom first, it is loaded without `requests`,
    reads without validation, and keeps its own loader (resources, reload)."""
    done = subprocess.run(
        [sys.executable, "-c", _FIRST_IMPORT], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {
        "validation": True,
        "requests": False,
        "own_loader": "SourceFileLoader",
        "resources": True,
        "requests_later": True,
    }
