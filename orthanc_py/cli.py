"""`orthanc-py [CONFIG]` / `python -m orthanc_py [CONFIG]`: run the server like Orthanc's binary."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

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
    from .app import event_loop_factory, serve

    tune_malloc()
    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(serve(settings))
    except OSError as exc:
        print(f"orthanc-py: {exc}", file=sys.stderr)
        return 1
    return 0
