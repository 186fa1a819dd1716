"""How the libraries load: pydicom configured whenever it is first imported (by any module), and
the parts of pydicom and aiohttp that most servers never use loaded on their first use.

The server starts without pydicom: the first request that needs it imports it. Whichever module
that is, `PydicomSetup` (a `sys.meta_path` finder, the import system's documented hook) runs once
around pydicom's own import (`_pydicom_import_window`):

- `requests` is hidden: pydicom imports it only to download its own test files (and falls back
  to urllib), and `requests` with urllib3 and charset_normalizer cost 40-60 ms and 5 MB. A later
  `import requests` works as usual.
- numpy, PIL.ImageCms, pydicom.examples and pydicom 2's pixel handlers are lazy modules
  (`_LazyModule`: loaded on the first use of an attribute, by whichever thread), and the pixel
  decoders and encoders register their plugins (which import the codec libraries and numpy) when
  first asked about them (`_defer_plugin_registration`); the writer does not ask numpy whether a
  value is one of its arrays while numpy is not loaded (`_multi_values_without_numpy`). pydicom
  then imports in ~35 ms instead of ~150 ms, and answers every question the same.
- values are read as they are written, without validation (Orthanc stores files with invalid
  values too; `reading_validation_mode` would warn or raise on each).

`AiohttpSetup` does the same for aiohttp (installed by the command line before aiohttp is
imported): its package `__init__`, which imports the whole HTTP client, runs on the first use of
a client name (`_AiohttpLoader`), and aiohttp.web_fileresponse imports without reading the
system's MIME types (`_without_mimetypes_init`).
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


# Imported by pydicom's import only to be kept at hand: each is loaded on its first real use
# (`_LazyModule`). numpy (35-50 ms) is otherwise pulled in by the pixel codecs' plugins, whose
# registration is put off too (`_defer_plugin_registration`).
LAZY_DURING_PYDICOM = frozenset(
    {
        "numpy",
        "PIL.ImageCms",  # pydicom.pixels.processing; PIL.Image with it
        "pydicom.examples",  # looks up its 27 example files on disk
        *(
            f"pydicom.pixel_data_handlers.{name}_handler"  # pydicom 2's pixel handlers, kept in a list
            for name in ("numpy", "rle", "pillow", "jpeg_ls", "gdcm", "pylibjpeg")
        ),
    }
)


class _WrappingLoader(importlib.abc.Loader):
    """A module's own loader (`loader`), which this one runs its own way (`exec_module`)."""

    def __init__(self, spec: importlib.machinery.ModuleSpec, loader: Any) -> None:
        self.spec, self.loader = spec, loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)


class _Loader(_WrappingLoader):
    """pydicom's own loader, run inside `_pydicom_import_window` and followed by `configure_pydicom`."""

    def exec_module(self, module: ModuleType) -> None:
        # From here on the module is pydicom's, with its own loader (resources, reload).
        self.spec.loader = module.__loader__ = self.loader
        _pydicom_import_window(lambda: self.loader.exec_module(module))
        configure_pydicom()


def _pydicom_import_window(execute: Callable[[], None]) -> None:
    """Run pydicom's import with `requests` hidden (pydicom imports it only to download its own
    test files, and falls back to urllib; with urllib3 and charset_normalizer it costs 40-60 ms
    and 5 MB; a later `import requests` works as usual), the modules of `LAZY_DURING_PYDICOM`
    loaded on first use, and the pixel plugins registered on first use."""
    hide = "requests" not in sys.modules
    if hide:
        sys.modules["requests"] = None  # type: ignore[assignment]  # `import requests` raises ImportError
    finder = _DuringPydicomImport()
    sys.meta_path.insert(0, finder)
    try:
        execute()
    finally:
        _remove_finders(_DuringPydicomImport)
        if finder.restore is not None:
            finder.restore()
        if hide and sys.modules.get("requests", 0) is None:
            del sys.modules["requests"]


class _DuringPydicomImport(importlib.abc.MetaPathFinder):
    """The finder of `_pydicom_import_window`: lazy modules, pydicom.pixels.common followed by
    `_defer_plugin_registration` (`restore` then undoes the part that lasts only the window), and
    pydicom.filewriter followed by `_multi_values_without_numpy`."""

    def __init__(self) -> None:
        self.restore: Callable[[], None] | None = None

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        then = {"pydicom.pixels.common": self._defer_plugins, "pydicom.filewriter": self._patch_filewriter}.get(
            fullname
        )
        if fullname not in LAZY_DURING_PYDICOM and then is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        if then is not None:
            spec.loader = _AroundLoader(spec, spec.loader, then)
        else:
            spec.loader = _LazyLoader(spec, spec.loader)
        return spec

    def _defer_plugins(self, execute: Callable[[], None]) -> None:
        execute()
        self.restore = _defer_plugin_registration(sys.modules["pydicom.pixels.common"])

    def _patch_filewriter(self, execute: Callable[[], None]) -> None:
        execute()
        _multi_values_without_numpy(sys.modules["pydicom.filewriter"])


def _multi_values_without_numpy(filewriter: ModuleType) -> None:
    """pydicom's writer asks, for each string value it writes, whether it is a numpy array
    (`_is_multi_value`): that question alone would import numpy (~40 ms) for every first write
    (a C-ECHO answer, a modified file). While numpy is not loaded no value can be one of its
    arrays, so until then the answer is the rest of the function's: a MultiValue, list or tuple.
    Left as it is if the function is not the expected one."""
    original = getattr(filewriter, "_is_multi_value", None)
    multi_value = getattr(sys.modules.get("pydicom.multival"), "MultiValue", None)
    code = getattr(original, "__code__", None)
    if multi_value is None or code is None or not {"ndarray", "MultiValue"} <= set(code.co_names):
        return
    containers = (multi_value, list, tuple)

    def is_multi_value(val: Any) -> bool:
        if is_lazy("numpy"):
            return isinstance(val, containers)
        return original(val)  # type: ignore[misc]

    filewriter._is_multi_value = is_multi_value  # type: ignore[attr-defined]


def is_lazy(name: str) -> bool:
    """Whether module `name` is imported but not loaded yet (a `_LazyModule`)."""
    return type(sys.modules.get(name)) is _LazyModule


# --------------------------------------------------------------------------- pixel plugins


def _defer_plugin_registration(common: ModuleType) -> Callable[[], None] | None:
    """Make pydicom's decoders and encoders register their plugins when first asked about them.

    Each of pydicom's ~25 coders (`pixels.common.CoderBase`) registers its plugins as pydicom is
    imported: `add_plugin` imports the plugin's module, which imports its codec library
    (pylibjpeg and its entry points, openjpeg, libjpeg, CharLS, ...) and with them numpy: ~80 ms,
    for every use of pydicom, most of which never decode a compressed frame. Here `add_plugin`,
    while pydicom imports, only records its arguments on the coder; the coder's `_available` and
    `_unavailable` (every question about plugins reads them) become properties that first make
    the recorded calls, once, in order, under a lock. While pydicom imports, only its docstring
    builders read them, for the plugins' names: they get the recorded names (as unavailable
    plugins), which gives the same docstrings.

    Returns what ends the import's part (`add_plugin` back: calls made later run at once, after
    the recorded ones), or None when CoderBase is not as expected (nothing is deferred)."""
    base = getattr(common, "CoderBase", None)
    add_plugin = getattr(base, "add_plugin", None)
    if base is None or add_plugin is None or "_available" in vars(base) or "_unavailable" in vars(base):
        return None
    state = _PluginRegistration(add_plugin)
    for name in ("_available", "_unavailable"):
        setattr(base, name, _RegisteredOnRead(name, state))
    base.add_plugin = lambda coder, label, import_path: state.record(coder, label, import_path)

    def restore() -> None:
        base.add_plugin = add_plugin
        state.importing = False

    return restore


class _PluginRegistration:
    """The recorded `add_plugin` calls of each coder (in the coder's `__dict__`) and their replay."""

    PENDING = "_orthanc_py_pending_plugins"

    def __init__(self, add_plugin: Callable[[Any, str, tuple[str, str]], None]) -> None:
        self.add_plugin = add_plugin
        self.importing = True
        self.lock = threading.RLock()
        self.registering: set[int] = set()

    def record(self, coder: Any, label: str, import_path: tuple[str, str]) -> None:
        vars(coder).setdefault(self.PENDING, []).append((label, import_path))

    def register_pending(self, coder: Any) -> None:
        with self.lock:
            own = vars(coder)
            if id(coder) in self.registering or self.PENDING not in own:  # this thread is at it, or done
                return
            self.registering.add(id(coder))
            try:
                for label, import_path in own[self.PENDING]:
                    self.add_plugin(coder, label, import_path)
            finally:
                del own[self.PENDING]
                self.registering.discard(id(coder))


class _RegisteredOnRead:
    """A coder's `_available` / `_unavailable`, read once its recorded plugins are registered."""

    def __init__(self, name: str, state: _PluginRegistration) -> None:
        self.name, self.key, self.state = name, "_orthanc_py" + name, state

    def __get__(self, coder: Any, owner: type | None = None) -> Any:
        if coder is None:
            return self
        own = vars(coder)
        pending = own.get(_PluginRegistration.PENDING)
        if pending is not None:
            if self.state.importing:  # pydicom's docstrings: the names of the plugins
                return {} if self.name == "_available" else {label: () for label, _ in pending}
            self.state.register_pending(coder)
        return own[self.key]

    def __set__(self, coder: Any, value: Any) -> None:
        vars(coder)[self.key] = value


# --------------------------------------------------------------------------- lazy modules


_NO_LOAD = frozenset({"__spec__", "__name__", "__loader__", "__class__"})


class _LazyModule(ModuleType):
    """A module whose code runs on the first use of one of its attributes (any thread, once).

    `__spec__`, `__name__`, `__loader__` do not load it: `import x` of a module already in
    `sys.modules` reads `__spec__`. A submodule import reads `__path__`, and loads it."""

    def __getattribute__(self, attr: str) -> Any:
        if attr not in _NO_LOAD:
            state = ModuleType.__getattribute__(self, "__dict__").get(_LAZY)
            if state is not None:
                state.load(self)
        return ModuleType.__getattribute__(self, attr)


_LAZY = "_orthanc_py_lazy"


class _LazyState:
    """How a `_LazyModule` loads: its loader, under a lock, by one thread (which meanwhile sees
    the module as it fills)."""

    def __init__(self, loader: Any) -> None:
        self.loader, self.lock, self.loading = loader, threading.RLock(), False

    def load(self, module: ModuleType) -> None:
        with self.lock:
            own = ModuleType.__getattribute__(module, "__dict__")
            if self.loading or own.get(_LAZY) is not self:  # this thread is loading it, or done
                return
            self.loading = True
            try:
                self.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(own["__name__"], None)  # as a failed import leaves it
                raise
            finally:
                own.pop(_LAZY, None)
                module.__class__ = ModuleType


class _LazyLoader(_WrappingLoader):
    """A module's own loader, its execution put off until the module is used (`_LazyModule`)."""

    def exec_module(self, module: ModuleType) -> None:
        self.spec.loader = module.__loader__ = self.loader
        vars(module)[_LAZY] = _LazyState(self.loader)
        module.__class__ = _LazyModule


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
    """aiohttp's package, with its `__init__` (the client: ~20 modules, ~2 MB) run on first use.

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
        self.pending = {"aiohttp", "aiohttp.web_fileresponse"} | ({"aiohttp.connector"} if around_connector else set())

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
        elif fullname == "aiohttp.web_fileresponse":
            spec.loader = _AroundLoader(spec, spec.loader, _without_mimetypes_init)
        elif self.around_connector is not None:
            spec.loader = _AroundLoader(spec, spec.loader, self.around_connector)
        return spec


def _without_mimetypes_init(execute: Callable[[], None]) -> None:
    """Run aiohttp.web_fileresponse's import without `mimetypes.init()`.

    The module builds its own `mimetypes.MimeTypes()` (from Python's built-in table only), whose
    constructor first runs `mimetypes.init()` if nothing did yet: that reads the system's
    /etc/mime.types (~2,300 lines) into the module-wide table, ~370 KB kept for good, which the
    server never reads. With `mimetypes.inited` set for the import, the module-wide table is
    built as usual by the first `mimetypes.guess_type()` (or `init()`) instead."""
    import mimetypes

    if mimetypes.inited:
        execute()
        return
    mimetypes.inited = True
    try:
        execute()
    finally:
        if getattr(mimetypes, "_db", None) is None:
            mimetypes.inited = False


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
