"""`orthanc-py [CONFIG]` / `python -m orthanc_py [CONFIG]`: run the server like Orthanc's binary."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Any

from . import ORTHANC_VERSION, __version__
from .config import load


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


def import_aiohttp_without_ca_certificates() -> None:
    """Import aiohttp with the system's CA certificates loaded only when first needed.

    aiohttp builds its default client TLS context when imported, reading the ~140 system CA
    certificates (~20 ms and 2.3 MB at every start). The server never opens an HTTPS connection
    through aiohttp's client, so that context gets them on its first TLS connection instead.
    Only aiohttp's import sees the replaced `ssl.create_default_context`."""
    if "aiohttp" in sys.modules:
        return
    import ssl

    original = ssl.create_default_context

    class CertificatesOnFirstUse(ssl.SSLContext):
        """A client context that loads the default CA certificates before its first connection
        (loading twice, if two threads race, only adds the same certificates again)."""

        certificates_loaded = False

        def _load(self) -> None:
            if not self.certificates_loaded:
                self.load_default_certs(ssl.Purpose.SERVER_AUTH)
                self.certificates_loaded = True

        def wrap_socket(self, *args: Any, **kwargs: Any) -> Any:
            self._load()
            return super().wrap_socket(*args, **kwargs)

        def wrap_bio(self, *args: Any, **kwargs: Any) -> Any:
            self._load()
            return super().wrap_bio(*args, **kwargs)

    def create_default_context(
        purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH,
        *,
        cafile: str | None = None,
        capath: str | None = None,
        cadata: str | bytes | None = None,
    ) -> ssl.SSLContext:
        if purpose != ssl.Purpose.SERVER_AUTH or cafile or capath or cadata:
            return original(purpose, cafile=cafile, capath=capath, cadata=cadata)
        context = CertificatesOnFirstUse(ssl.PROTOCOL_TLS_CLIENT)  # verifies peers and host names
        keylog = os.environ.get("SSLKEYLOGFILE")
        if keylog and not sys.flags.ignore_environment:
            context.keylog_filename = keylog
        return context

    ssl.create_default_context = create_default_context  # type: ignore[assignment]
    try:
        import aiohttp  # noqa: F401
    finally:
        ssl.create_default_context = original


def main(argv: list[str] | None = None) -> int:
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
    import_aiohttp_without_ca_certificates()
    from .app import event_loop_factory, serve

    tune_malloc()
    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(serve(settings))
    except OSError as exc:
        print(f"orthanc-py: {exc}", file=sys.stderr)
        return 1
    return 0
