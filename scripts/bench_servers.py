"""The servers scripts/bench measures: starting and stopping our server and the real Orthanc on
free ports with a temporary storage, their memory (/proc), and the targets of a run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import orjson

REPO = Path(__file__).resolve().parent.parent
ORTHANC_BIN = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def log(msg: str) -> None:
    """Progress notes go to stderr so stdout keeps only the report."""
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants, so a server that forks workers is measured whole."""
    pids, i = [pid], 0
    while i < len(pids):
        for children in Path(f"/proc/{pids[i]}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                pids.extend(int(c) for c in children.read_text().split())
        i += 1
    return pids


def cpu_seconds(pid: int) -> float:
    """CPU seconds `pid` and its descendants have run so far, every thread (reader processes
    included; a thread or process that already exited is not counted). From the scheduler's
    nanosecond counters (/proc/.../schedstat): /proc/PID/stat counts in 10 ms ticks, too coarse
    for a run of a thousand 50 us requests."""
    total = 0
    for p in process_tree(pid):
        for task in Path(f"/proc/{p}/task").glob("*/schedstat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                total += int(task.read_text().split()[0])
    return total / 1e9


def memory_mb(pid: int, key: str) -> float:
    """Sum of /proc/PID/status `key` (VmRSS or VmHWM) over the process tree, in MB."""
    total_kb = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


def reset_peak(pid: int) -> bool:
    """Reset VmHWM (write 5 to clear_refs) so the next peak belongs to the measured run."""
    ok = True
    for p in process_tree(pid):
        try:
            Path(f"/proc/{p}/clear_refs").write_text("5")
        except OSError:
            ok = False
    return ok


@dataclass
class Server:
    """One running server process that this script started."""

    kind: str
    directory: Path
    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log_file: IO[bytes]
    dicom_port: int = 0
    startup_s: float = 0.0
    system: dict[str, Any] = field(default_factory=dict)


_launch_counter = 0


def _log_tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


async def launch(
    kind: str,
    directory: Path,
    session: aiohttp.ClientSession,
    timeout: float,
    plugins: list[str] | None = None,
    extra_config: dict[str, Any] | None = None,
) -> Server:
    """Start a server on `directory` (new free ports each time) and wait for GET /system = 200.

    `plugins` goes to the config's "Plugins" (empty unless a DICOMweb scenario needs Orthanc's);
    `extra_config` is merged into the config (the DicomModalities of the C-MOVE scenario).

    The startup time runs from just before the process is spawned until that first 200 (ours
    with a filled bytecode cache, as an installed package runs).
    The config's unique Name must come back in /system, which proves the answer came from
    the process we started and not from some other server that grabbed the port.
    """
    global _launch_counter
    _launch_counter += 1
    directory.mkdir(parents=True, exist_ok=True)
    name = f"bench-{kind}-{os.getpid()}-{_launch_counter}"
    http_port, dicom_port = free_port(), free_port()
    while dicom_port == http_port:
        dicom_port = free_port()
    config = {
        "Name": name,
        "StorageDirectory": str(directory / "storage"),
        "IndexDirectory": str(directory / "index"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": list(plugins or []),
    }
    config.update(extra_config or {})
    if plugins and DICOMWEB_PLUGIN in plugins:
        config["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/"}
    cfg = directory / "config.json"
    cfg.write_bytes(orjson.dumps(config, option=orjson.OPT_INDENT_2))
    env = dict(os.environ)
    if kind == "ours":
        cmd = [sys.executable, "-m", "orthanc_py", str(cfg)]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        # Run as installed: pip compiles bytecode at install time, and Python caches it for a
        # source tree. With PYTHONDONTWRITEBYTECODE set (as in the sessions' environment) every
        # start compiled the package's ~110 modules from source, 70-100 ms of each start-up.
        # The cache stays in the run's temporary folder; a throwaway launch fills it first (so
        # no measured server pays for compiling, nor keeps the memory it took).
        cache = directory.parent / "pycache"
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(cache)
        if not cache.exists():
            cache.mkdir(parents=True)
            await shutdown(await launch(kind, directory.parent / "bytecode-warmup", session, timeout, plugins))
        cwd = REPO
    else:
        cmd, cwd = [ORTHANC_BIN, str(cfg)], directory
    log_path = directory / "server.log"
    log_file = log_path.open("ab")
    url = f"http://127.0.0.1:{http_port}"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    server = Server(kind, directory, name, proc, url, log_file, dicom_port)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{kind} exited with status {proc.returncode} during startup:\n" + _log_tail(log_path)
                )
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"{kind} did not answer GET /system within {timeout:.0f} s:\n" + _log_tail(log_path))
            try:
                async with session.get(f"{url}/system", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status == 200:
                        server.startup_s = time.perf_counter() - t0
                        server.system = orjson.loads(await resp.read())
                        break
            except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
                pass
            await asyncio.sleep(0.01)
        got = server.system.get("Name")
        if got != name:
            raise RuntimeError(f"port {http_port} answered as {got!r}, not the {kind} server we started")
    except BaseException:
        await shutdown(server)
        raise
    return server


async def shutdown(server: Server, grace: float = 30.0) -> None:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL; only ever our own process."""
    proc = server.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        deadline = time.perf_counter() + grace
        while proc.poll() is None and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    server.log_file.close()


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    """A server under test: one we manage (ours, orthanc) or one already running (--url)."""

    name: str
    kind: str
    url: str = ""
    directory: Path | None = None
    server: Server | None = None
    session: aiohttp.ClientSession | None = None
    version: str = "?"
    instance_ids: list[str] = field(default_factory=list)
    study_ids: list[str] = field(default_factory=list)
    extra_config: dict[str, Any] = field(default_factory=dict)  # merged into every launch's config
    plugins: list[str] = field(default_factory=list)  # the "Plugins" of every launch of this target
    skip: dict[str, str] = field(default_factory=dict)  # scenario -> why it is not run here
    stow_studies: dict[int, tuple[str, int]] = field(default_factory=dict)  # rep -> (StudyInstanceUID, stored)

    @property
    def managed(self) -> bool:
        """Whether we start it (and so can restart it and read its memory)."""
        return self.kind in ("ours", "orthanc")

    @property
    def pid(self) -> int | None:
        """Process id of a managed server."""
        return self.server.proc.pid if self.server else None

    @property
    def http(self) -> aiohttp.ClientSession:
        """The target's keep-alive session."""
        assert self.session is not None
        return self.session

    async def start(self, timeout: float) -> float:
        """(Re)start a managed target on its own storage; returns the startup seconds."""
        assert self.directory is not None
        self.server = await launch(self.kind, self.directory, self.http, timeout, self.plugins, self.extra_config)
        self.url = self.server.url
        self.version = str(self.server.system.get("Version", "?"))
        return self.server.startup_s

    async def stop(self) -> None:
        """Stop a managed target (no-op for --url)."""
        if self.server:
            await shutdown(self.server)
            self.server = None
