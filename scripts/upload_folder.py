#!/usr/bin/env python3
"""Upload every file under a folder to an Orthanc-compatible server (POST /instances).

Usage: python scripts/upload_folder.py FOLDER [--url http://localhost:8042]
       [--user U --password P] [--concurrency 8]

The server decides what is DICOM: a 400 answer counts as "not DICOM", ZIP archives are
posted as they are (the server unpacks them and answers with one status per instance).
Files are streamed from disk over one keep-alive session with a bounded number of workers,
so memory stays flat whatever the folder size. Exit status: 0 if nothing failed, 1 if some
file failed, 2 if the server cannot be reached at all.

`Progress`, `Tally` and `post_instance` are reused by `scripts/populate` and `scripts/bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import orjson

STORED = "stored"
ALREADY = "already stored"
NOT_DICOM = "not DICOM"
FILTERED = "filtered out"
FAILED = "failed"


def _fmt_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """A tqdm-like text progress bar on stderr, without the dependency.

    Redraws in place with a carriage return on a terminal (at most 10 times a second); when
    stderr is redirected to a file it prints a plain line every few seconds instead, so logs
    of long background runs stay readable.
    """

    def __init__(
        self,
        total: int,
        desc: str = "",
        unit: str = "files",
        stream: IO[str] | None = None,
        enabled: bool = True,
    ) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.count = 0
        self.nbytes = 0
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._interval = 0.1 if self.tty else 5.0

    def update(self, n: int = 1, nbytes: int = 0) -> None:
        """Record `n` more items (and `nbytes` bytes) done; redraw if due."""
        self.count += n
        self.nbytes += nbytes
        now = time.perf_counter()
        if now - self._last_draw >= self._interval and self.count < self.total:
            self._last_draw = now
            self._draw(now)

    def _draw(self, now: float, final: bool = False) -> None:
        if not self.enabled:
            return
        elapsed = max(now - self.start, 1e-9)
        rate = self.count / elapsed
        frac = self.count / self.total if self.total else 1.0
        width = 30
        filled = int(width * min(frac, 1.0))
        bar = "#" * filled + "-" * (width - filled)
        eta = (self.total - self.count) / rate if rate > 0 else 0.0
        parts = [
            f"{self.desc} " if self.desc else "",
            f"{frac * 100:5.1f}% |{bar}| ",
            f"{self.count}/{self.total} {self.unit} ",
            f"{rate:7.1f}/s ",
        ]
        if self.nbytes:
            parts.append(f"{self.nbytes / elapsed / 1e6:6.1f} MB/s ")
        parts.append(f"[{_fmt_duration(elapsed)}<{_fmt_duration(eta)}]")
        line = "".join(parts)
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Draw the final state and end the line."""
        self._draw(time.perf_counter(), final=True)


@dataclass
class Tally:
    """Outcome counts of an upload; instances for stored/already, files for the rest."""

    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys((STORED, ALREADY, NOT_DICOM, FILTERED, FAILED), 0)
    )
    failures: list[tuple[str, str]] = field(default_factory=list)
    files: int = 0
    nbytes: int = 0
    seconds: float = 0.0

    def add(self, outcomes: Iterable[str], name: str = "", reason: str = "") -> None:
        """Count the outcomes of one POST; remember why a file failed."""
        outcomes = list(outcomes)
        for outcome in outcomes:
            self.counts[outcome] += 1
        if FAILED in outcomes and len(self.failures) < 1000:
            self.failures.append((name, reason))

    @property
    def failed(self) -> int:
        """How many uploads failed (network error, server error, refusal)."""
        return self.counts[FAILED]

    def summary(self) -> str:
        """One human-readable line, plus the first failures."""
        c = self.counts
        secs = max(self.seconds, 1e-9)
        line = (
            f"files: {self.files} ({self.nbytes / 1e6:.1f} MB) in {self.seconds:.1f} s "
            f"({self.files / secs:.1f} files/s, {self.nbytes / secs / 1e6:.1f} MB/s)\n"
            f"stored: {c[STORED]}  already stored: {c[ALREADY]}  not DICOM: {c[NOT_DICOM]}  "
            f"failed: {c[FAILED]}"
        )
        if c[FILTERED]:
            line += f"  filtered out: {c[FILTERED]}"
        for name, reason in self.failures[:10]:
            line += f"\n  failed: {name}: {reason}"
        if len(self.failures) > 10:
            line += f"\n  ... and more ({len(self.failures)} failure reasons kept)"
        return line


def classify(status: int, body: bytes) -> tuple[list[str], str]:
    """Map one POST /instances answer to outcomes, the way Orthanc reports them.

    A single file gets an object with "Status"; a ZIP archive gets a list of them.
    """
    if status == 400:
        return [NOT_DICOM], ""
    if status != 200:
        return [FAILED], f"HTTP {status}: {body[:200].decode(errors='replace').strip()}"
    try:
        doc: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return [FAILED], "answer is not JSON"
    items = doc if isinstance(doc, list) else [doc]
    outcomes: list[str] = []
    for item in items:
        st = item.get("Status") if isinstance(item, dict) else None
        if st == "Success":
            outcomes.append(STORED)
        elif st == "AlreadyStored":
            outcomes.append(ALREADY)
        elif st == "FilteredOut":
            outcomes.append(FILTERED)
        else:
            outcomes.append(FAILED)
    if not outcomes:  # an empty ZIP archive: nothing stored, nothing wrong
        return [], ""
    return outcomes, "" if FAILED not in outcomes else f"status {items!r:.200}"


async def post_instance(
    session: aiohttp.ClientSession, url: str, data: bytes | IO[bytes], request_timeout: float = 600.0
) -> tuple[list[str], str]:
    """POST one file (bytes or an open binary file, streamed) to `url`/instances."""
    async with session.post(
        f"{url}/instances",
        data=data,
        headers={"Content-Type": "application/dicom"},
        timeout=aiohttp.ClientTimeout(total=request_timeout),
    ) as resp:
        body = await resp.read()
        return classify(resp.status, body)


def auth_headers(user: str | None, password: str | None) -> dict[str, str]:
    """HTTP basic auth as a plain header (aiohttp's BasicAuth helper is being deprecated)."""
    if not user:
        return {}
    token = base64.b64encode(f"{user}:{password or ''}".encode()).decode("ascii")
    return {"Authorization": f"Basic {token}"}


def make_session(concurrency: int, user: str | None = None, password: str | None = None) -> aiohttp.ClientSession:
    """One keep-alive session with as many connections as workers."""
    connector = aiohttp.TCPConnector(limit=max(1, concurrency))
    return aiohttp.ClientSession(connector=connector, headers=auth_headers(user, password))


async def check_server(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """GET /system, so a wrong URL or password fails at once rather than once per file."""
    async with session.get(f"{url}/system", timeout=aiohttp.ClientTimeout(total=15)) as resp:
        if resp.status != 200:
            hint = " (check --user/--password)" if resp.status == 401 else ""
            raise RuntimeError(f"GET {url}/system answered HTTP {resp.status}{hint}")
        result: dict[str, Any] = orjson.loads(await resp.read())
        return result


def list_files(folder: Path) -> list[Path]:
    """Every regular file below `folder`, in a stable order."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(root, name)
            if path.is_file():
                found.append(path)
    return found


async def upload_files(
    paths: list[Path],
    url: str,
    *,
    concurrency: int = 8,
    user: str | None = None,
    password: str | None = None,
    retries: int = 2,
    request_timeout: float = 600.0,
    give_up: int = 20,
    progress: Progress | None = None,
) -> Tally:
    """Upload `paths` with `concurrency` workers sharing one session; returns the tally.

    After `give_up` files in a row got no answer (connection refused, timeouts), the rest are
    counted as failed without being tried, so a dead server ends the run quickly.
    """
    tally = Tally()
    queue: asyncio.Queue[Path] = asyncio.Queue()
    for p in paths:
        queue.put_nowait(p)
    start = time.perf_counter()

    streak = 0  # files in a row that got no answer at all: the server is gone, stop trying

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal streak
        while streak < give_up:
            try:
                path = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            size = 0
            outcomes, reason, answered = [FAILED], "", False
            for attempt in range(retries + 1):
                try:
                    size = path.stat().st_size
                    with path.open("rb") as fh:
                        outcomes, reason = await post_instance(session, url, fh, request_timeout)
                    answered = True
                    break
                except (aiohttp.ClientError, TimeoutError) as exc:
                    outcomes, reason = [FAILED], f"{type(exc).__name__}: {exc}"
                    if attempt < retries and streak < give_up:
                        await asyncio.sleep(0.5 * (attempt + 1))
                except OSError as exc:  # unreadable file: retrying will not help
                    outcomes, reason, answered = [FAILED], f"{type(exc).__name__}: {exc}", True
                    break
            streak = 0 if answered else streak + 1
            tally.add(outcomes, str(path), reason)
            tally.files += 1
            tally.nbytes += size
            if progress:
                progress.update(1, size)

    async with make_session(concurrency, user, password) as session:
        await check_server(session, url)
        await asyncio.gather(*(worker(session) for _ in range(max(1, concurrency))))
    if not queue.empty():
        skipped = queue.qsize()
        tally.add([FAILED] * skipped, f"{skipped} files", f"not attempted: no answer to {give_up} files in a row")
        tally.files += skipped
    tally.seconds = time.perf_counter() - start
    if progress:
        progress.close()
    return tally


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    ap = argparse.ArgumentParser(description="Upload a folder of DICOM files (and ZIPs) to Orthanc.")
    ap.add_argument("folder", type=Path)
    ap.add_argument("--url", default="http://localhost:8042", help="server root URL")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--concurrency", type=int, default=8, help="parallel uploads (default 8)")
    ap.add_argument("--retries", type=int, default=2, help="retries after a connection error")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per file")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    url = args.url.rstrip("/")
    if not args.folder.is_dir():
        print(f"error: {args.folder} is not a folder", file=sys.stderr)
        return 2
    paths = list_files(args.folder)
    if not paths:
        print("nothing to upload")
        return 0
    progress = Progress(len(paths), desc="upload", enabled=not args.quiet)
    try:
        tally = asyncio.run(
            upload_files(
                paths,
                url,
                concurrency=args.concurrency,
                user=args.user,
                password=args.password,
                retries=args.retries,
                request_timeout=args.timeout,
                progress=progress,
            )
        )
    except (aiohttp.ClientError, TimeoutError, RuntimeError) as exc:
        print(f"\nerror: cannot reach {url}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    print(tally.summary())
    return 1 if tally.failed else 0


if __name__ == "__main__":
    sys.exit(main())
