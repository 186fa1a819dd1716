"""A throwaway PostgreSQL cluster for the tests of the PostgreSQL index (tests/conftest.py's
`postgresql` fixture): initdb in a temporary folder, a server on a Unix socket only, stopped and
removed at the end of the session. PostgreSQL refuses to run as root: as root the cluster
belongs to the `postgres` user (runuser)."""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

PG_ROOT = Path("/usr/lib/postgresql")


def binaries() -> Path | None:
    """The bin folder of the newest PostgreSQL installed (Debian layout), or None."""
    found = sorted(
        (p for p in PG_ROOT.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return found[-1] if found else None


class Cluster:
    """One PostgreSQL server for the session; `section()` gives each test its own schema."""

    def __init__(self, bin_dir: Path, port: int) -> None:
        self.bin = bin_dir
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="orthanc-py-pg-"))
        self._as: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._names = itertools.count(1)
        data = self.dir / "data"
        self._run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        options = f"-p {port} -k {self.dir} -c listen_addresses='' -c fsync=off -c max_connections=200"
        self._run("pg_ctl", "-D", str(data), "-o", options, "-l", str(self.dir / "log"), "-w", "start")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self._as, str(self.bin / tool), *args], check=True, capture_output=True, timeout=120)

    def conninfo(self) -> str:
        return f"host={self.dir} port={self.port} user=postgres dbname=postgres"

    def section(self, **extra: Any) -> dict[str, Any]:
        """A "PostgreSQL" configuration section on a new, empty schema of the cluster."""
        import psycopg

        name = f"t{next(self._names)}"
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}")
        return {
            "EnableIndex": True,
            "Host": str(self.dir),
            "Port": self.port,
            "Database": "postgres",
            "Username": "postgres",
            "Schema": name,
            "Lock": False,
            **extra,
        }

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
