"""Index backends by configuration section: which database the configuration asks for.

Orthanc picks its database from the configuration: a plugin's section (e.g. "PostgreSQL" with
"EnableIndex": true) replaces the built-in SQLite index. A backend here is a name, the section
that enables it (None: the default) and a function opening it from the settings; a later
backend is one more entry. app.py, the composition root, calls `open_index`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Settings
from .base import Index

INDEX_FILENAME = "orthanc_py-index.sqlite"


@dataclass(frozen=True, slots=True)
class IndexBackend:
    """One index backend: enabled by `section` ({"EnableIndex": true}); None is the default."""

    name: str
    section: str | None
    open: Callable[[Settings], Index]


def _open_sqlite(settings: Settings) -> Index:
    from .sqlite import SqliteIndex

    # Files are fsynced before their index rows commit (SyncStorageArea); the index itself runs
    # WAL with synchronous=NORMAL: a commit survives a process crash or kill -9, and a power loss
    # can only forget the newest rows (leaving unreferenced files), never point at a missing file.
    return SqliteIndex(Path(settings.index_directory) / INDEX_FILENAME, durable=False)


def _open_postgresql(settings: Settings) -> Index:
    """Orthanc's PostgreSQL plugin section ("PostgreSQL": {"EnableIndex": true, "Host", ...});
    the driver is the optional extra `orthanc_py[postgresql]` (psycopg 3)."""
    try:
        from .postgres import PostgresIndex, PostgresSettings
    except ImportError as exc:
        raise RuntimeError(
            '"PostgreSQL": {"EnableIndex": true} needs the psycopg driver: pip install "orthanc_py[postgresql]"'
        ) from exc
    section = settings.raw["PostgreSQL"]
    if section.get("EnableStorage") is True:
        logging.getLogger("orthanc_py.index").warning(
            '"PostgreSQL.EnableStorage" is not supported: DICOM files stay in the StorageDirectory'
        )
    return PostgresIndex(PostgresSettings.from_section(section))


BACKENDS: tuple[IndexBackend, ...] = (
    IndexBackend("sqlite", None, _open_sqlite),
    IndexBackend("postgresql", "PostgreSQL", _open_postgresql),
)


def enabled(raw: Mapping[str, Any], section: str, key: str) -> bool:
    """Whether configuration `section` is an object with `key` true (as Orthanc's plugins read it)."""
    value = raw.get(section)
    return isinstance(value, Mapping) and value.get(key) is True


def select(settings: Settings, backends: Sequence[IndexBackend] = BACKENDS) -> IndexBackend:
    """The first backend whose section enables it, else the default one. A section naming no
    known backend is ignored, as Orthanc ignores the section of a plugin it did not load."""
    for backend in backends:
        if backend.section is not None and enabled(settings.raw, backend.section, "EnableIndex"):
            return backend
    return next(b for b in backends if b.section is None)


def open_index(settings: Settings, backends: Sequence[IndexBackend] = BACKENDS) -> Index:
    """Open the index the configuration asks for ("ReadOnly": every write refused)."""
    index = select(settings, backends).open(settings)
    if settings.read_only:
        from .readonly import ReadOnlyIndex

        return ReadOnlyIndex(index)
    return index
