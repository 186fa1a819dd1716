"""Fast-lane routes answered by one call into C (web/_lane.c): GET /instances/{id}/file (the
index lookup, the read of a small cached file and the whole HTTP answer) and GET /{level}/{id}
of patients, studies and instances (the summary statement and its JSON), without Python objects
in between (see the C file for the figures). Built only where it is safe: the SQLite index's own
connection of the event loop's thread, a filesystem storage area for files, and the C module
calling the very SQLite library Python's sqlite3 module had loaded (a handle is only valid
there)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..core.files import LaneFileSource
    from ..core.resources import LaneResourceSource

log = logging.getLogger(__name__)

FileAnswer = Callable[[bytes, bytes], "bytes | None"]
"""(public id, head's end) -> the whole answer, or None (see _lane.FileRoute.answer)."""

ResourceRender = Callable[[str, bool], "bytes | None"]
"""(public id, IsStable) -> the JSON body, or None (see _lane.ResourceRoute.render)."""

MAIN, PATIENT_COPY = 1, 2
"""Where a main tag goes in ResourceRoute's `names`: the resource's MainDicomTags, a study's
PatientMainDicomTags (both bits: both; neither: left out)."""

KNOWN_PYTHONS = ((3, 8), (3, 13))
"""The Pythons whose sqlite3.Connection starts with its SQLite handle (_lane.c reads it there):
on another, the C routes are off rather than reading a handle from the wrong place."""

_module: Any = None
_checked = False


def _sqlite_libraries() -> set[str]:
    """The real paths of the SQLite libraries mapped in this process (Linux's /proc)."""
    found: set[str] = set()
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.rstrip("\n").partition("/")[2]
                if "libsqlite3" in path:
                    found.add(os.path.realpath("/" + path))
    except OSError:
        pass
    return found


def c_module() -> Any:
    """The C module, or None: not built, or not calling the library of Python's sqlite3."""
    global _module, _checked
    if _checked:
        return _module
    _checked = True
    if not KNOWN_PYTHONS[0] <= sys.version_info[:2] <= KNOWN_PYTHONS[1]:
        log.info("The C routes are off: the layout of sqlite3.Connection is unchecked on this Python")
        return None
    import sqlite3  # noqa: F401  (its library is mapped before the C module's is looked up)

    before = _sqlite_libraries() if "orthanc_py.web._lane" not in sys.modules else None
    try:
        from . import _lane
    except ImportError:
        return None
    library = _lane.library()
    libraries = before if before is not None else _sqlite_libraries()
    if library is None or os.path.realpath(library) not in libraries:
        log.info("The C routes are off: Python's sqlite3 does not use %s", library)
        return None
    _module = _lane
    return _module


class Closers(list[Callable[[], None]]):
    """The `close` of the C routes on one connection, run by calling this (the `on_close` given
    to the index: their statements are finalized before the connection closes)."""

    def __call__(self) -> None:
        for close in self:
            close()


def file_route(source: LaneFileSource | None, closers: Closers, before: bytes, after: bytes) -> FileAnswer | None:
    """The C route's `answer` on `source`, or None where it cannot be used: `before` + the
    file's UUID + `after` start each answer (status line and headers). Its `close` joins
    `closers`."""
    module = c_module()
    if module is None or source is None:
        return None
    try:
        route = module.FileRoute(
            source.connection,
            os.fsencode(source.database),
            os.fsencode(source.root),
            source.content_type,
            source.level,
            source.plain_compression,
            source.max_size,
            before,
            after,
        )
    except (TypeError, ValueError, OSError) as exc:
        log.info("The C file route is off: %s", exc)
        return None
    closers.append(route.close)
    answer: FileAnswer = route.answer
    return answer


def resource_route(
    source: LaneResourceSource | None,
    closers: Closers,
    level: int,
    names: dict[int, tuple[bytes, int]],
) -> ResourceRender | None:
    """The C renderer of GET /{level}/{id} on `source`, or None where it cannot be used. `names`:
    tag -> (name, MAIN | PATIENT_COPY bits). Its `close` joins `closers`."""
    module = c_module()
    if module is None or source is None:
        return None
    try:
        route = module.ResourceRoute(
            source.connection, os.fsencode(source.database), source.statement.encode(), level, names
        )
    except (TypeError, ValueError, OSError) as exc:
        log.info("The C resource route is off: %s", exc)
        return None
    closers.append(route.close)
    render = route.render

    def fast(public_id: str, stable: bool) -> bytes | None:
        out: bytes | None = render(public_id.encode("ascii"), stable)
        return out

    return fast
