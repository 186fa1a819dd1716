"""Orthanc's storage layout: `root/ab/cd/<uuid>`, one file per attachment.

Writes go to a temporary name, are fsynced (unless SyncStorageArea is false), then renamed:
a reader never sees a partial file and an acknowledged file survives a crash.

Only the most recently written files (RECENT_WINDOW bytes) keep their pages in the page cache;
older ones are dropped once newer files push them out. Ingest is a stream of writes; left alone,
every file lands in newly allocated page-cache memory, and first-touch page allocation was a third
of the server's CPU per instance here (2-core VM: 1.6-2.6 ms/instance, against 1.7 ms when pages
are recycled; 650/s steady instead of 490-540/s). Recent files (a study just received and opened
at once) stay cached; an older file's first read comes from disk (about +0.5 ms for 512 KiB).

File writes, reads and cache drops go through `_fastio` (C, built by setup.py where a compiler is
available) so each takes one GIL hand-off instead of one per system call; see its source.

New files are named so that runs of FILES_PER_FOLDER consecutive files share their `ab/cd`
folder (`new_uuid`). Orthanc's random UUIDs put nearly every file of a growing archive into a
folder of its own, and creating that folder (a directory inode: ext4 searches its bitmaps for a
free one) cost more than writing the file: 2.25 ms of server CPU per 512 KiB instance against
1.57 ms with shared folders (560/s against 690/s at concurrency 8, 2-core VM). The layout is
still Orthanc's (the folder comes from the UUID), so Orthanc can serve our storage and we can
serve its; each run picks a random folder, so a large archive spreads over all 65,536 folders
as evenly as Orthanc's does.
"""

from __future__ import annotations

import os
import random
import threading
from collections import OrderedDict, deque
from pathlib import Path

try:  # the C helper (setup.py builds it where a compiler is available)
    from . import _fastio
except ImportError:
    _fastio = None  # type: ignore[assignment]

_read_cached_c = getattr(_fastio, "read_cached", None)  # (a build of the helper older than it)
DROP_CACHE_MIN = 64 * 1024  # smaller files (JSON attachments) are left in the cache
CACHED_READ_MAX = 64 * 1024
"""Largest blob `read_cached` reads (on the event loop: a copy this size costs a few us)."""
_NOWAIT = getattr(os, "RWF_NOWAIT", None)  # Linux 4.14+: fail instead of waiting for the disk
RECENT_WINDOW = 256 * 1024 * 1024
FILES_PER_FOLDER = 256


def _drop_cached(path: str) -> None:
    """Let the kernel reuse the clean pages of a synced file (see the module docstring)."""
    if not hasattr(os, "posix_fadvise"):  # macOS, Windows: leave the cache to the kernel
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # deleted meanwhile
        return
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError:  # advice only; some filesystems refuse it
        pass
    finally:
        os.close(fd)


class _RecentFiles:
    """The newest large files written, up to a byte budget; returns those pushed out."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._files: deque[tuple[str, int]] = deque()
        self._total = 0
        self._lock = threading.Lock()

    def add(self, path: str, size: int) -> list[str]:
        with self._lock:
            self._files.append((path, size))
            self._total += size
            out = []
            while self._total > self.budget and self._files:
                old, old_size = self._files.popleft()
                self._total -= old_size
                out.append(old)
            return out


class _SmallFiles:
    """The content of small files served again and again by `read_cached`, by uuid (a file
    never changes under its uuid), up to a byte budget, oldest out: a file read again (a viewer
    going back over a series) costs no open, read and close (~4 us of the ~25 us of such a GET
    /file). A file is kept from its second read on: keeping every file read cost a stream of
    reads that never come back ~2 us each (each read then fills memory not recently used).
    Empty at start; read on the event loop, changed under a lock (removals come from threads)."""

    SEEN = 8192
    """Uuids read once that are remembered (to keep their file when read again)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._files: OrderedDict[str, bytes] = OrderedDict()  # (O(1) eviction of the oldest)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()

    def get(self, uuid: str) -> bytes | None:
        return self._files.get(uuid)

    def add(self, uuid: str, data: bytes) -> None:
        """`data` was read for `uuid`: kept when it was read before."""
        with self._lock:
            seen = self._seen
            if uuid in seen:
                del seen[uuid]
            else:
                seen[uuid] = None
                if len(seen) > self.SEEN:
                    seen.popitem(last=False)
                return
            files = self._files
            old = files.pop(uuid, None)
            if old is not None:
                self._total -= len(old)
            while files and self._total + len(data) > self.budget:
                self._total -= len(files.popitem(last=False)[1])
            files[uuid] = data
            self._total += len(data)

    def discard(self, uuid: str) -> None:
        with self._lock:
            old = self._files.pop(uuid, None)
            if old is not None:
                self._total -= len(old)

    @property
    def total(self) -> int:
        """Bytes kept."""
        return self._total


SMALL_FILES_BUDGET = 8 << 20
"""Bytes of small files `read_cached` keeps (a few hundred typical files of a few KB)."""

_PRUNE_RETRIES = 8
"""Attempts of a write whose folder deletes keep pruning (servers sharing one storage)."""


class FilesystemStorage:
    """Files under a root folder, laid out exactly as Orthanc lays them out."""

    def __init__(self, root: Path, sync: bool = True) -> None:
        self.root = Path(root)
        self.sync = sync
        self.root.mkdir(parents=True, exist_ok=True)
        self._made: set[str] = set()
        self._recent = _RecentFiles(RECENT_WINDOW)
        self._small = _SmallFiles(SMALL_FILES_BUDGET)
        self._root = str(self.root)
        self._uuid_lock = threading.Lock()
        self._folder = ""
        self._folder_left = 0
        # Seeded from the OS once: uuid.uuid4() asks the kernel for 16 random bytes per file
        # (a system call, so a GIL hand-off, on the ingest path).
        self._random = random.Random(os.urandom(32))

    def new_uuid(self) -> str:
        """A version-4 UUID whose first four hex digits (its folder) are shared by
        FILES_PER_FOLDER consecutive files (see the module docstring)."""
        with self._uuid_lock:
            if self._folder_left == 0:
                self._folder = os.urandom(2).hex()
                self._folder_left = FILES_PER_FOLDER
            self._folder_left -= 1
            folder = self._folder
            bits = self._random.getrandbits(106)
        # the version-4 layout after the folder: 4 hex digits, 4, "4" + 3, "8".."b" + 3, then 12
        h = f"{bits >> 2:026x}"
        variant = "89ab"[bits & 3]
        return f"{folder}{h[0:4]}-{h[4:8]}-4{h[8:11]}-{variant}{h[11:14]}-{h[14:26]}"

    def _dir_of(self, uuid: str) -> str:
        """Orthanc's layout: `ab/cd/` from the UUID's first four hex digits (plain strings:
        pathlib cost a visible share of the ingest path)."""
        return f"{self._root}/{uuid[0:2]}/{uuid[2:4]}"

    def _path(self, uuid: str) -> str:
        return f"{self._dir_of(uuid)}/{uuid}"

    def path(self, uuid: str, content_type: int) -> str | None:
        return self._path(uuid)

    def create(self, uuid: str, data: bytes, content_type: int) -> None:
        if self._small.total:  # (a uuid is never written twice, but a storage area may be asked to)
            self._small.discard(uuid)
        folder = self._dir_of(uuid)
        target = f"{folder}/{uuid}"
        if folder not in self._made:
            self._make_folder(folder)
        tmp = folder + "/." + uuid + ".tmp"
        # the files this one pushes out of the page-cache window, dropped once it is written
        olds = self._recent.add(target, len(data)) if self.sync and len(data) >= DROP_CACHE_MIN else []
        for attempt in range(_PRUNE_RETRIES):
            try:
                self._write_file(tmp, target, data, olds)
                return
            except FileNotFoundError:
                # a delete pruned the emptied folder meanwhile (this server's, or another's
                # sharing the storage): made again; a folder holding our file is never pruned
                if attempt == _PRUNE_RETRIES - 1:
                    raise
                self._make_folder(folder)

    def _make_folder(self, folder: str) -> None:
        """`os.makedirs`, again when a delete prunes the upper folder between the two levels."""
        for attempt in range(_PRUNE_RETRIES):
            try:
                os.makedirs(folder, exist_ok=True)
                break
            except FileNotFoundError:
                if attempt == _PRUNE_RETRIES - 1:
                    raise
        self._made.add(folder)

    def _write_file(self, tmp: str, target: str, data: bytes, olds: list[str]) -> None:
        """Write `tmp`, fsync it (SyncStorageArea), rename it to `target`, then drop the cached
        pages of `olds`; on failure nothing is left. `_fastio` does it all in one GIL release;
        the Python path takes one hand-off per system call."""
        if _fastio is not None:
            drop = tuple(os.fsencode(old) for old in olds) if olds else ()
            _fastio.write_file(os.fsencode(tmp), os.fsencode(target), data, self.sync, drop)
            return
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if self.sync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        try:
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
        for old in olds:
            _drop_cached(old)

    def read(self, uuid: str, content_type: int) -> bytes:
        if _fastio is not None:
            return _fastio.read_file(os.fsencode(self._path(uuid)))
        with open(self._path(uuid), "rb") as f:
            return f.read()

    def plain_root(self) -> tuple[str, int] | None:
        """The folder holding every file as `ab/cd/uuid`, and the largest file to read on the
        event loop, for a reader that opens them itself without waiting for a disk (RWF_NOWAIT,
        as `read_cached`); None where that is missing."""
        return None if _NOWAIT is None else (self._root, CACHED_READ_MAX)

    def read_cached(self, uuid: str, content_type: int, size: int) -> bytes | None:
        """The blob, when it is `size` bytes (at most CACHED_READ_MAX) and all in the page cache;
        None otherwise, and then nothing waited for the disk (preadv2 with RWF_NOWAIT). Lets the
        event loop answer a small file itself: the hop to a worker thread and back cost more
        than the read (GET /instances/{id}/file of a 10 KB file: 266 -> 221 us p50)."""
        if _NOWAIT is None or size > CACHED_READ_MAX:
            return None
        data = self._small.get(uuid)
        if data is not None and len(data) == size:
            return data
        if _read_cached_c is not None:  # the same in one call, without releasing the GIL
            data = _read_cached_c(os.fsencode(self._path(uuid)), size)
        else:
            data = self._read_nowait(uuid, size)
        if data is not None:
            self._small.add(uuid, data)
        return data

    def _read_nowait(self, uuid: str, size: int) -> bytes | None:
        """`read_cached`'s read in Python (without the C helper)."""
        assert _NOWAIT is not None
        try:
            fd = os.open(self._path(uuid), os.O_RDONLY)
        except OSError:
            return None
        try:
            buf = bytearray(size + 1)  # one more: a file longer than recorded is not served here
            n = os.preadv(fd, [buf], 0, _NOWAIT)
        except OSError:  # EAGAIN (not cached), EOPNOTSUPP (filesystem without RWF_NOWAIT)
            return None
        finally:
            os.close(fd)
        return bytes(memoryview(buf)[:n]) if n == size else None

    def read_range(self, uuid: str, content_type: int, start: int, end: int) -> bytes:
        with open(self._path(uuid), "rb") as f:
            f.seek(start)
            return f.read(max(0, end - start))

    def remove(self, uuid: str, content_type: int) -> None:
        self._small.discard(uuid)
        target = self._path(uuid)
        try:
            os.unlink(target)
        except FileNotFoundError:
            return
        for folder in (self._dir_of(uuid), f"{self._root}/{uuid[0:2]}"):
            try:
                os.rmdir(folder)  # Orthanc also prunes empty folders
                self._made.discard(folder)
            except OSError:
                break
