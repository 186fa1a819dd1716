"""Storage backends by configuration section: where the configuration asks files to live.

As for the index (index/registry.py): a plugin's section with "EnableStorage": true replaces the
built-in folder tree. A backend is a name, its section (None: the default) and a function
opening it from the settings. app.py, the composition root, calls `open_storage`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..config import Settings
from .base import StorageArea


@dataclass(frozen=True, slots=True)
class StorageBackend:
    """One storage backend: enabled by `section` ({"EnableStorage": true}); None is the default."""

    name: str
    section: str | None
    open: Callable[[Settings], StorageArea]


def _open_filesystem(settings: Settings) -> StorageArea:
    from .filesystem import FilesystemStorage

    return FilesystemStorage(settings.storage_directory, sync=settings.sync_storage_area)


BACKENDS: tuple[StorageBackend, ...] = (StorageBackend("filesystem", None, _open_filesystem),)


def select(settings: Settings, backends: Sequence[StorageBackend] = BACKENDS) -> StorageBackend:
    """The first backend whose section enables it, else the default one (a section naming no
    known backend is ignored, as Orthanc ignores the section of a plugin it did not load)."""
    for backend in backends:
        section = settings.raw.get(backend.section) if backend.section is not None else None
        if isinstance(section, Mapping) and section.get("EnableStorage") is True:
            return backend
    return next(b for b in backends if b.section is None)


def open_storage(settings: Settings, backends: Sequence[StorageBackend] = BACKENDS) -> StorageArea:
    """Open the storage area the configuration asks for."""
    return select(settings, backends).open(settings)
