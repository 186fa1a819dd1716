"""Configuration: Orthanc's JSON with comments, folders, environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from orthanc_py import config


def test_defaults_without_file():
    s = config.load(None, environ={})
    assert (s.http_port, s.dicom_aet, s.dicom_port) == (8042, "ORTHANC", 4242)
    assert s.storage_directory.name == "OrthancStorage" and s.index_directory == s.storage_directory
    assert not s.remote_access_allowed and not s.authentication_enabled


def test_comments_and_unknown_keys(tmp_path: Path):
    f = tmp_path / "orthanc.json"
    f.write_text('{\n // comment "x"\n "HttpPort": 9000, /* block */ "Name": "a//b", "Foo": {"Bar": 1}\n}')
    s = config.load(f, environ={})
    assert s.http_port == 9000 and s.name == "a//b"
    assert s.unknown_keys == ["Foo"] and s.raw["Foo"] == {"Bar": 1}


def test_folder_merge_and_duplicates(tmp_path: Path):
    (tmp_path / "a.json").write_text('{"HttpPort": 9001}')
    (tmp_path / "b.json").write_text('{"DicomAet": "ME"}')
    s = config.load(tmp_path, environ={})
    assert (s.http_port, s.dicom_aet) == (9001, "ME")
    (tmp_path / "c.json").write_text('{"DicomAet": "OTHER"}')
    with pytest.raises(ValueError, match="several"):
        config.load(tmp_path, environ={})


def test_environment_overrides(tmp_path: Path):
    env = {
        "ORTHANC__HTTP_PORT": "8043",
        "ORTHANC__DICOM_AET": "FROMENV",
        "ORTHANC__REGISTERED_USERS": '{"alice": "secret"}',
        "ORTHANC__AUTHENTICATION_ENABLED": "true",
        "ORTHANC__POSTGRESQL__HOST": "db",
        "OTHER": "x",
    }
    s = config.load(None, environ=env)
    assert s.http_port == 8043 and s.dicom_aet == "FROMENV"
    assert s.registered_users == {"alice": "secret"} and s.authentication_enabled
    assert s.raw["PostgreSQL"] == {"Host": "db"}  # a known section keeps Orthanc's spelling


def test_environment_enables_the_postgresql_index():
    """The orthancteam Docker convention reaches the PostgreSQL plugin's keys."""
    from orthanc_py.index import registry

    env = {"ORTHANC__POSTGRESQL__ENABLE_INDEX": "true", "ORTHANC__POSTGRESQL__INDEX_CONNECTIONS_COUNT": "3"}
    s = config.load(None, environ=env)
    assert s.raw["PostgreSQL"] == {"EnableIndex": True, "IndexConnectionsCount": 3}
    assert registry.select(s).name == "postgresql"
    assert registry.select(config.load(None, environ={})).name == "sqlite"


def test_bad_values(tmp_path: Path):
    f = tmp_path / "x.json"
    f.write_text('{"HttpPort": "abc"}')
    with pytest.raises(ValueError, match="HttpPort"):
        config.load(f, environ={})
    f.write_text("{not json")
    with pytest.raises(ValueError, match="invalid JSON"):
        config.load(f, environ={})
