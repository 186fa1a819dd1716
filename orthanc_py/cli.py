"""`orthanc-py [CONFIG]` / `python -m orthanc_py [CONFIG]`: run the server like Orthanc's binary."""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl
import sys
import threading
from collections.abc import Callable
from typing import Any

from . import ORTHANC_VERSION, __version__
from .config import load
from .model.libraries import install_aiohttp_setup


def tune_malloc() -> None:
    """Keep freed upload buffers in the heap (glibc only; elsewhere a no-op).

    Each upload is one allocation of the file's size. With glibc's adaptive defaults the heap
    top is trimmed and regrown around such buffers, so every upload page-faults fresh pages in
    (costly under a hypervisor). Buffers up to 4 MiB now come from the heap, and up to 64 MiB
    of free heap is kept for the next ones; bigger files still get their own mapping."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 4 << 20)
    mallopt(m_trim_threshold, 64 << 20)


def defer_aiohttp_client() -> None:
    """aiohttp's client (its package `__init__`, ~2 MB) imported on first use, and its TLS contexts'
    CA certificates loaded on their first connection (`load_without_ca_certificates`)."""
    install_aiohttp_setup(load_without_ca_certificates)


def load_without_ca_certificates(load: Callable[[], None]) -> None:
    """Run `load` (the import of aiohttp.connector) with the system's CA certificates loaded only
    when first needed.

    aiohttp builds its two default client TLS contexts when its connector is imported, and both
    read the ~140 system CA certificates (`load_default_certs`, `set_default_verify_paths`): ~50 ms and
    several MB. Most servers never open an HTTPS connection through aiohttp's client, so these
    calls, made by this thread during `load`, are recorded and made on each context's first TLS
    connection instead (`_CertificatesOnFirstUse`); other threads' calls go through as usual.
    `ssl.SSLContext` is restored right after."""
    cls = ssl.SSLContext
    names = ("load_default_certs", "set_default_verify_paths")
    own = {name: cls.__dict__[name] for name in names if name in cls.__dict__}
    pending: dict[int, tuple[ssl.SSLContext, list[tuple[str, tuple[Any, ...]]]]] = {}
    loader = threading.get_ident()

    def recorder(name: str) -> Callable[..., None]:
        original = getattr(cls, name)

        def record(self: ssl.SSLContext, *args: Any) -> None:
            if threading.get_ident() != loader:
                return original(self, *args)
            pending.setdefault(id(self), (self, []))[1].append((name, args))

        return record

    for name in names:
        setattr(cls, name, recorder(name))
    try:
        load()
    finally:
        for name in names:
            if name in own:
                setattr(cls, name, own[name])
            else:
                delattr(cls, name)
    for context, calls in pending.values():
        context.__class__ = _CertificatesOnFirstUse
        context._deferred_calls = calls  # type: ignore[attr-defined]


class _CertificatesOnFirstUse(ssl.SSLContext):
    """A context whose certificate loading calls were put off until its first connection."""

    _deferred_calls: list[tuple[str, tuple[Any, ...]]]
    _deferred_lock = threading.Lock()

    def _load(self) -> None:
        with self._deferred_lock:
            calls, self._deferred_calls = self._deferred_calls, []
            for name, args in calls:
                getattr(ssl.SSLContext, name)(self, *args)

    def wrap_socket(self, *args: Any, **kwargs: Any) -> Any:
        if self._deferred_calls:
            self._load()
        return super().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> Any:
        if self._deferred_calls:
            self._load()
        return super().wrap_bio(*args, **kwargs)


def main(argv: list[str] | None = None) -> int:
    import gc

    gc.disable()  # until the server is up (app.pause_collector, app.freeze_startup_objects)
    parser = argparse.ArgumentParser(
        prog="orthanc-py", description="DICOM archive server compatible with Orthanc's REST API"
    )
    parser.add_argument("config", nargs="?", help="Orthanc JSON configuration file or folder of JSON files")
    parser.add_argument("--verbose", action="store_true", help="log informational messages")
    parser.add_argument("--trace", action="store_true", help="log debugging messages")
    parser.add_argument(
        "--version",
        action="version",
        version=f"orthanc_py {__version__} (Orthanc REST API {ORTHANC_VERSION})",
    )
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.trace else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load(args.config)
    except ValueError as exc:
        print(f"orthanc-py: {exc}", file=sys.stderr)
        return 2
    defer_aiohttp_client()
    from .app import event_loop_factory, serve

    tune_malloc()
    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(serve(settings))
    except OSError as exc:
        print(f"orthanc-py: {exc}", file=sys.stderr)
        return 1
    return 0
