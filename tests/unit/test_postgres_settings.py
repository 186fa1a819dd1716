"""The PostgreSQL backend's pure parts: the `?` -> `%s` adaptation of the shared SQL, and the
"PostgreSQL" section read as Orthanc's plugin reads it (no database needed)."""

from __future__ import annotations

import pytest

pytest.importorskip("psycopg", reason="the psycopg driver is not installed (pip install '.[postgresql]')")

from orthanc_py.index.postgres import PostgresSettings, adapt


def test_parameters_are_adapted_outside_literals_only():
    assert adapt("SELECT a FROM t WHERE b = ? AND c IN (?,?)") == "SELECT a FROM t WHERE b = %s AND c IN (%s,%s)"
    assert adapt("SELECT '?', 'it''s ?', \"we?ird\" WHERE x LIKE ? ESCAPE '\\'") == (
        "SELECT '?', 'it''s ?', \"we?ird\" WHERE x LIKE %s ESCAPE '\\'"
    )
    assert adapt("SELECT 7 % 2, '50%' WHERE a = ?") == "SELECT 7 %% 2, '50%%' WHERE a = %s"
    assert adapt("SELECT 1") == "SELECT 1"


def test_the_section_takes_orthanc_keys_and_defaults():
    s = PostgresSettings.from_section({"EnableIndex": True})
    assert (s.host, s.port, s.lock, s.maximum_connection_retries, s.index_connections_count) == (
        "localhost",
        5432,
        True,
        10,
        50,
    )
    conninfo, kw = PostgresSettings.from_section(
        {"Host": "db", "Port": 5433, "Database": "orthanc", "Username": "u", "Password": "p", "EnableSsl": True}
    ).connect_args()
    assert conninfo == "" and kw == {
        "host": "db",
        "port": 5433,
        "dbname": "orthanc",
        "user": "u",
        "password": "p",
        "application_name": "orthanc_py",
        "sslmode": "require",
    }
    conninfo, kw = PostgresSettings.from_section({"ConnectionUri": "postgresql://u:p@h/db"}).connect_args()
    assert conninfo == "postgresql://u:p@h/db" and kw == {"application_name": "orthanc_py"}


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"Port": "x"}, "PostgreSQL.Port"),
        ({"Lock": "no"}, "PostgreSQL.Lock"),
        ({"TransactionMode": "Dirty"}, "TransactionMode"),
        ({"IndexConnectionsCount": 0}, "IndexConnectionsCount"),
    ],
)
def test_bad_values_are_named(section, message):
    with pytest.raises(ValueError, match=message):
        PostgresSettings.from_section(section)
