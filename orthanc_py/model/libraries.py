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

import importlib
import importlib.abc
import importlib.machinery
import os
import re
import sys
import threading
from collections.abc import Callable, Sequence
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


# --------------------------------------------------------------------------- aiohttp


class _AiohttpLoader(importlib.abc.Loader):
    """aiohttp's package, with its `__init__` (the client: ~60 modules, ~4 MB) run on first use.

    The server's side of aiohttp (`aiohttp.web` and what it imports) needs from the package module
    only `__version__`; `__init__` imports the whole HTTP client besides. Here the package module
    starts with `__version__` (read from `__init__`'s first assignment) and a module `__getattr__`:
    a submodule is imported as the import system would; any other name (ClientSession,
    ClientError, TCPConnector, ...) runs the real `__init__` into the module once, which replaces
    that `__getattr__` with aiohttp's own. If `__version__` cannot be read, `__init__` runs at
    once, as without this loader.
    """

    def __init__(self, spec: importlib.machinery.ModuleSpec, loader: Any) -> None:
        self.spec, self.loader = spec, loader
        self.lock = threading.RLock()

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.spec.loader = module.__loader__ = self.loader
        version = _first_version(self.loader, module.__name__)
        if version is None:
            self.loader.exec_module(module)
            return
        module.__version__ = version  # type: ignore[attr-defined]
        module.__dict__["__getattr__"] = self._getattr(module)  # a module-level __getattr__ (PEP 562)

    def _getattr(self, module: ModuleType) -> Callable[[str], object]:
        loader, lock, name = self.loader, self.lock, module.__name__
        submodules = _submodule_names(module)

        def module_getattr(attr: str) -> object:
            if attr in submodules:
                return importlib.import_module(f"{name}.{attr}")
            with lock:
                if module.__dict__.get("__getattr__") is module_getattr:
                    loader.exec_module(module)
            try:
                return module.__dict__[attr]
            except KeyError:
                own = module.__dict__.get("__getattr__")
                if own is None or own is module_getattr:
                    raise AttributeError(f"module {name!r} has no attribute {attr!r}") from None
                return own(attr)

        return module_getattr


class _AroundLoader(importlib.abc.Loader):
    """A module's own loader, its execution run inside `around(execute)`."""

    def __init__(
        self, spec: importlib.machinery.ModuleSpec, loader: Any, around: Callable[[Callable[[], None]], None]
    ) -> None:
        self.spec, self.loader, self.around = spec, loader, around

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.spec.loader = module.__loader__ = self.loader
        self.around(lambda: self.loader.exec_module(module))


def _first_version(loader: Any, name: str) -> str | None:
    """The string of the package source's first `__version__ = "..."` line, if it has one."""
    try:
        source = loader.get_source(name)
    except (ImportError, OSError, AttributeError):
        return None
    found = re.search(r"""^__version__\s*=\s*["']([^"'\n]+)["']\s*$""", source or "", re.M)
    return found.group(1) if found else None


def _submodule_names(package: ModuleType) -> frozenset[str]:
    """Names of the modules and packages inside `package`'s folders."""
    suffixes = tuple(importlib.machinery.all_suffixes())
    names = set()
    for folder in getattr(package, "__path__", ()):
        try:
            entries = os.scandir(folder)
        except OSError:
            continue
        with entries:
            for entry in entries:
                if entry.is_dir():
                    if os.path.exists(os.path.join(entry.path, "__init__.py")):
                        names.add(entry.name)
                elif entry.name.endswith(suffixes):
                    names.add(entry.name.split(".", 1)[0])
    names.discard("__init__")
    return frozenset(names)


class AiohttpSetup(importlib.abc.MetaPathFinder):
    """Finds aiohttp and aiohttp.connector as the path finder does, the package with
    `_AiohttpLoader` around its loader, the connector run inside `around_connector`."""

    def __init__(self, around_connector: Callable[[Callable[[], None]], None] | None) -> None:
        self.around_connector = around_connector
        self.pending = {"aiohttp", "aiohttp.connector"} if around_connector else {"aiohttp"}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.pending:
            return None
        self.pending.discard(fullname)
        if not self.pending:
            _remove_finders(AiohttpSetup)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        if fullname == "aiohttp":
            spec.loader = _AiohttpLoader(spec, spec.loader)
        elif self.around_connector is not None:
            spec.loader = _AroundLoader(spec, spec.loader, self.around_connector)
        return spec


def install_aiohttp_setup(around_connector: Callable[[Callable[[], None]], None] | None = None) -> None:
    """Import aiohttp's client only when first used (`_AiohttpLoader`), if aiohttp is not loaded yet.

    `around_connector(load)` runs `load()`, the import of aiohttp.connector (which builds the
    client's default TLS contexts), e.g. inside a context that defers their CA certificates."""
    if "aiohttp" not in sys.modules and not any(isinstance(f, AiohttpSetup) for f in sys.meta_path):
        sys.meta_path.insert(0, AiohttpSetup(around_connector))


def _remove_finders(kind: type) -> None:
    for finder in [f for f in sys.meta_path if isinstance(f, kind)]:
        try:
            sys.meta_path.remove(finder)
        except ValueError:  # another thread removed it first
            pass
