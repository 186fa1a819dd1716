"""pydicom's process-wide settings, applied whenever pydicom is first imported (by any module).

The server starts without pydicom (its import costs ~90 ms and, with numpy, the pixel plugins and
PIL that it imports, ~35 MB): the first request that needs it imports it. Whichever module that
is, `PydicomSetup` (a `sys.meta_path` finder, the import system's documented hook) runs once
around pydicom's own import:

- `requests` is hidden while pydicom imports: pydicom imports it only to download its own test
  files (and falls back to urllib), and `requests` with urllib3 and charset_normalizer cost
  40-60 ms and 5 MB. A later `import requests` works as usual.
- values are read as they are written, without validation (Orthanc stores files with invalid
  values too; `reading_validation_mode` would warn or raise on each).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any


def configure_pydicom() -> None:
    """The settings, on an imported pydicom."""
    import pydicom.config

    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE


class _Loader(importlib.abc.Loader):
    """pydicom's own loader, run with `requests` hidden and followed by `configure_pydicom`."""

    def __init__(self, spec: importlib.machinery.ModuleSpec, loader: Any) -> None:
        self.spec, self.loader = spec, loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # From here on the module is pydicom's, with its own loader (resources, reload).
        self.spec.loader = module.__loader__ = self.loader
        hide = "requests" not in sys.modules
        if hide:
            sys.modules["requests"] = None  # type: ignore[assignment]  # `import requests` raises ImportError
        try:
            self.loader.exec_module(module)
        finally:
            if hide and sys.modules.get("requests", 0) is None:
                del sys.modules["requests"]
        configure_pydicom()


class PydicomSetup(importlib.abc.MetaPathFinder):
    """Finds pydicom as the path finder does, with `_Loader` around its loader (once)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "pydicom":
            return None
        uninstall_pydicom_setup()
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _Loader(spec, spec.loader)
        return spec


def install_pydicom_setup() -> None:
    """Configure pydicom now if it is loaded, else when it is first imported (idempotent)."""
    if "pydicom" in sys.modules:
        configure_pydicom()
    elif not any(isinstance(f, PydicomSetup) for f in sys.meta_path):
        sys.meta_path.insert(0, PydicomSetup())


def uninstall_pydicom_setup() -> None:
    """Remove the finder (pydicom is being imported, or the server stops)."""
    for finder in [f for f in sys.meta_path if isinstance(f, PydicomSetup)]:
        try:
            sys.meta_path.remove(finder)
        except ValueError:  # another thread removed it first
            pass
