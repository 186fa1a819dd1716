"""Backends picked from configuration sections (index/registry.py, storage/registry.py)."""

from __future__ import annotations

from orthanc_py.config import from_raw
from orthanc_py.index import registry as index_registry
from orthanc_py.storage import registry as storage_registry


def test_the_default_backends_without_a_section(tmp_path):
    settings = from_raw({"StorageDirectory": str(tmp_path)})
    assert index_registry.select(settings).name == "sqlite"
    assert storage_registry.select(settings).name == "filesystem"


def test_a_section_enabling_a_registered_backend_selects_it(tmp_path):
    fake_index = index_registry.IndexBackend("my", "MySQL", lambda s: None)  # type: ignore[arg-type,return-value]
    fake_storage = storage_registry.StorageBackend("my", "MySQL", lambda s: None)  # type: ignore[arg-type,return-value]
    on = from_raw({"StorageDirectory": str(tmp_path), "MySQL": {"EnableIndex": True, "EnableStorage": False}})
    assert index_registry.select(on, (*index_registry.BACKENDS, fake_index)).name == "my"
    assert storage_registry.select(on, (*storage_registry.BACKENDS, fake_storage)).name == "filesystem"
    off = from_raw({"StorageDirectory": str(tmp_path), "MySQL": {"EnableIndex": False}})
    assert index_registry.select(off, (*index_registry.BACKENDS, fake_index)).name == "sqlite"


def test_the_postgresql_section_selects_the_postgresql_index(tmp_path):
    """Orthanc's PostgreSQL plugin keys: "EnableIndex" must be true; "EnableStorage" is not
    supported (files stay in the storage area)."""
    on = from_raw({"StorageDirectory": str(tmp_path), "PostgreSQL": {"EnableIndex": True, "EnableStorage": True}})
    assert index_registry.select(on).name == "postgresql"
    assert storage_registry.select(on).name == "filesystem"
    off = from_raw({"StorageDirectory": str(tmp_path), "PostgreSQL": {"EnableIndex": False}})
    assert index_registry.select(off).name == "sqlite"


def test_a_section_of_no_registered_backend_is_ignored(tmp_path):
    """As Orthanc ignores the section of a plugin it did not load."""
    settings = from_raw({"StorageDirectory": str(tmp_path), "MySQL": {"EnableIndex": True}})
    assert index_registry.select(settings).name == "sqlite"
