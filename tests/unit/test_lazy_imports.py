"""model.libraries: pydicom imported without numpy and the pixel codecs, aiohttp without its
client, and both the same as imported the usual way once used.

Each check runs in a fresh interpreter (the hooks act on the first import of a library), once
as the server imports (hooks installed) and, where it compares, once without them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_SETUP = """
import sys
if sys.argv[1] == "hooks":
    from orthanc_py.model.libraries import install_pydicom_setup
    install_pydicom_setup()
"""

# What pydicom says about its decoders, encoders and pydicom 2's pixel handlers.
_PYDICOM_PLUGINS = (
    _SETUP
    + """
import json
import pydicom
lazy = {m: type(sys.modules[m]).__name__ if m in sys.modules else None
        for m in ("numpy", "PIL.Image", "pylibjpeg", "openjpeg", "pydicom.examples")}
from pydicom.pixels.decoders.base import _PIXEL_DATA_DECODERS
from pydicom.pixels.encoders.base import _PIXEL_DATA_ENCODERS
coders = {}
for kind, table in (("decoder", _PIXEL_DATA_DECODERS), ("encoder", _PIXEL_DATA_ENCODERS)):
    for uid, (coder, _) in sorted(table.items()):
        coders[f"{kind} {uid}"] = [coder.__doc__, coder.available_plugins, coder.missing_dependencies,
                                   coder.is_available]
handlers = [[h.__name__, h.is_available()] for h in pydicom.config.pixel_data_handlers]
import numpy
print(json.dumps({"lazy": lazy, "coders": coders, "handlers": handlers, "example": str(pydicom.examples.ct.PatientName),
                  "numpy": type(numpy).__name__, "array": int(numpy.arange(4).sum())}))
"""
)


def _run(code: str, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_pydicom_imports_without_numpy_and_codecs_and_answers_the_same() -> None:
    hooks, plain = _run(_PYDICOM_PLUGINS, "hooks"), _run(_PYDICOM_PLUGINS, "plain")
    assert hooks["lazy"] == {
        "numpy": "_LazyModule",
        "PIL.Image": None,
        "pylibjpeg": None,
        "openjpeg": None,
        "pydicom.examples": "_LazyModule",
    }
    assert plain["lazy"]["numpy"] == "module" and plain["lazy"]["pylibjpeg"] == "module"
    assert len(hooks["coders"]) > 20
    assert any(plugins for _, plugins, _, _ in hooks["coders"].values())  # e.g. JPEG through pylibjpeg
    for key in ("coders", "handlers", "example"):
        assert hooks[key] == plain[key], key
    assert hooks["numpy"] == "module" and hooks["array"] == 6  # numpy loaded on its first use


_THREADS = (
    _SETUP
    + """
import json, threading
import pydicom
from pydicom.pixels import get_decoder
from pydicom.uid import JPEGBaseline8Bit, JPEG2000Lossless, RLELossless
import numpy
barrier = threading.Barrier(8)
results, errors = [], []

def use():
    try:
        barrier.wait()
        found = [list(get_decoder(uid).available_plugins) for uid in (JPEGBaseline8Bit, JPEG2000Lossless, RLELossless)]
        results.append([found, int(numpy.frombuffer(b"\\x01\\x02", dtype=numpy.uint8).sum())])
    except BaseException as exc:
        errors.append(repr(exc))

threads = [threading.Thread(target=use) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"errors": errors, "distinct": len({json.dumps(r) for r in results}), "count": len(results),
                  "one": results[0] if results else None}))
"""
)


def test_first_uses_from_many_threads_at_once_load_once() -> None:
    """Eight threads ask for decoders' plugins and use numpy at the same moment: each gets the
    whole answer (the loading thread fills the module and the plugins, the others wait)."""
    found = _run(_THREADS, "hooks")
    assert found["errors"] == [] and found["count"] == 8 and found["distinct"] == 1
    assert found["one"] == _run(_THREADS, "plain")["one"]


_AIOHTTP = """
import json, sys
from orthanc_py.model.libraries import install_aiohttp_setup
install_aiohttp_setup()
from aiohttp import web
import aiohttp, aiohttp.client_exceptions
out = {"web": "aiohttp.client" in sys.modules, "version": aiohttp.__version__, "hdrs": aiohttp.hdrs.METH_GET}
import mimetypes
from aiohttp.web_fileresponse import CONTENT_TYPES
out["mimetypes"] = [mimetypes.inited, CONTENT_TYPES.guess_type("a.png")[0]]
out["mimetypes"] += [mimetypes.guess_type("a.json")[0], mimetypes.inited, len(mimetypes.types_map) > 500]
try:
    aiohttp.NoSuchName
except AttributeError:
    out["missing"] = "AttributeError"
out["client"] = "aiohttp.client" in sys.modules
out["session"] = aiohttp.ClientSession.__module__
out["own getattr"] = aiohttp.__getattr__.__module__
try:
    aiohttp.NoSuchName
except AttributeError:
    out["missing after"] = "AttributeError"
print(json.dumps(out))
"""


def test_aiohttp_client_loads_on_first_use_of_a_client_name() -> None:
    """The server side and submodules import without the client; the first other name runs the
    package's own `__init__` (its `__getattr__` then answers), unknown names still raise. The
    system's MIME types are read on the first guess, not by aiohttp's import."""
    import aiohttp

    found = _run(_AIOHTTP)
    assert found == {
        "web": False,
        "version": aiohttp.__version__,
        "hdrs": "GET",
        "mimetypes": [False, "image/png", "application/json", True, True],
        "missing": "AttributeError",
        "client": True,
        "session": "aiohttp.client",
        "own getattr": "aiohttp",
        "missing after": "AttributeError",
    }


_WRITE = (
    _SETUP
    + """
import io, json
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRLittleEndian
ds = Dataset()
ds.file_meta = FileMetaDataset()
ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
ds.ImageType = ["ORIGINAL", "PRIMARY"]
ds.SeriesType = ("STATIC", "IMAGE")
ds.ModalitiesInStudy = MultiValue(str, ["CT", "MR"])
ds.PatientName = "Doe^John"
ds.OtherPatientIDs = "A\\\\B"
out = io.BytesIO()
ds.save_as(out, enforce_file_format=True)
lazy = type(sys.modules["numpy"]).__name__
print(json.dumps({"numpy": lazy, "bytes": out.getvalue().hex()}))
"""
)


def test_writing_values_needs_no_numpy_and_writes_the_same_bytes() -> None:
    """pydicom's writer asks each string value whether it is a numpy array: with numpy not yet
    loaded the answer comes without loading it, and the file is byte for byte the same."""
    hooks, plain = _run(_WRITE, "hooks"), _run(_WRITE, "plain")
    assert hooks["numpy"] == "_LazyModule" and plain["numpy"] == "module"
    assert hooks["bytes"] == plain["bytes"]
    assert "4f524947494e414c5c5052494d415259" in hooks["bytes"]  # ORIGINAL\PRIMARY
