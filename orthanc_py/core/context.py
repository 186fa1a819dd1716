"""The server context: settings, backends and the shared services every interface calls.

It holds references only: app.py builds the index, the storage and the services and hands them
in, so this module imports none of the services that take a context (no import cycle)."""

from __future__ import annotations

import asyncio
import datetime as _dt
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ..config import Settings
from ..index.base import Index
from ..model.dictionary import TagDictionary, dcmtk
from ..model.enums import TRANSFER_SYNTAXES, ChangeType, ResourceType
from ..model.maintags import DEFAULT_MAIN_TAGS, MainTagSet, main_tag_set
from ..storage.accessor import StorageAccessor
from ..storage.base import StorageArea
from .commitment_reports import StorageCommitmentReports
from .retrievals import RetrievalTracker

if TYPE_CHECKING:  # the services are built by the composition root (app.py) and handed in
    from .extquery import ExtQueryTags
    from .jobs import JobsEngine
    from .lua import LuaScripting
    from .modalities import ModalityRegistry
    from .peers import PeerRegistry
    from .queries import QueryRegistry
    from .seriescache import SeriesCache

log = logging.getLogger("orthanc_py")
T = TypeVar("T")


@functools.lru_cache(maxsize=4)
def _local_second(second: int) -> str:
    return _dt.datetime.fromtimestamp(second).strftime("%Y%m%dT%H%M%S")


def now_iso() -> str:
    """Orthanc's timestamp format for changes, metadata and LastUpdate: `20231109T160739`.

    Formatted once per second: every ingest asks for it, and strftime was a visible share of
    the GIL time of a busy upload."""
    return _local_second(int(time.time()))


@dataclass
class StableTracker:
    """Resources that received an instance less than StableAge seconds ago (Orthanc keeps this in
    memory too: after a restart everything is stable)."""

    age: float
    pending: dict[str, tuple[ResourceType, float]] = field(default_factory=dict)

    def touch(self, level: ResourceType, public_id: str) -> None:
        # Re-inserted at the end: the dict stays in deadline order, so `due` stops at the first
        # resource not due yet instead of scanning every pending one each second.
        self.pending.pop(public_id, None)
        self.pending[public_id] = (level, time.monotonic() + self.age)

    def is_stable(self, public_id: str) -> bool:
        return public_id not in self.pending

    def forget(self, public_id: str) -> None:
        self.pending.pop(public_id, None)

    def due(self) -> list[tuple[ResourceType, str]]:
        """Pop the resources whose quiet period has elapsed, in the order they went quiet (an
        instance touches its series, study and patient in that order, as Orthanc logs them)."""
        now = time.monotonic()
        ready: list[tuple[ResourceType, str]] = []
        for pid, (lv, deadline) in self.pending.items():
            if deadline > now:
                break
            ready.append((lv, pid))
        for _lv, pid in ready:
            del self.pending[pid]
        return ready


def match_transfer_syntaxes(patterns: Iterable[str]) -> tuple[str, ...]:
    """AcceptedTransferSyntaxes: the transfer syntaxes Orthanc knows that match one of the
    patterns (UIDs, or wildcards with `*` and `?`), in Orthanc's order."""
    import fnmatch

    pats = list(patterns)
    return tuple(ts for ts in TRANSFER_SYNTAXES if any(fnmatch.fnmatchcase(ts, p) for p in pats))


_STABLE_CHANGE = {
    ResourceType.SERIES: ChangeType.STABLE_SERIES,
    ResourceType.STUDY: ChangeType.STABLE_STUDY,
    ResourceType.PATIENT: ChangeType.STABLE_PATIENT,
}


class ServerContext:
    """What core services share: built once by the composition root, passed to every interface."""

    def __init__(
        self,
        settings: Settings,
        index: Index,
        storage: StorageArea,
        *,
        jobs: JobsEngine,
        series_cache: SeriesCache,
        modalities: ModalityRegistry,
        queries: QueryRegistry,
        peers: PeerRegistry,
        ext_tags: ExtQueryTags,
    ) -> None:
        self.settings = settings
        self.index = index
        self.storage = (
            storage
            if isinstance(storage, StorageAccessor)
            else StorageAccessor(storage, settings.storage_compression, settings.store_md5, settings.read_only)
        )
        """The storage area behind compression and MD5 (storage/accessor.py)."""
        self.io = ThreadPoolExecutor(max_workers=8, thread_name_prefix="io")
        self.stable = StableTracker(settings.stable_age)
        self.started = time.time()
        self._tasks: list[asyncio.Task[Any]] = []
        self.jobs = jobs
        self.series_cache = series_cache
        self.modalities = modalities
        self.queries = queries
        self.peers = peers
        self.ext_tags = ext_tags
        """Extended query tags (DICOMweb), loaded by `core.startup.start`."""
        self.metrics_enabled = settings.metrics_enabled
        # Settings Orthanc lets clients change at run time (/tools/default-encoding, ...)
        self.default_encoding = settings.default_encoding
        # The `Dictionary` key is checked now (a bad entry stops the start, as in Orthanc); DCMTK's
        # table (15 ms, 2 MB) is read on first use.
        TagDictionary({}, {}, (), ()).with_entries(settings.dictionary, settings.default_private_creator)
        self._dictionary: TagDictionary | None = None
        self._dictionary_lock = threading.Lock()
        extra = settings.raw.get("ExtraMainDicomTags")
        configured = isinstance(extra, dict) and any(extra.values())  # empty lists: no dictionary load
        self.main_tags: MainTagSet = main_tag_set(extra, self.dictionary) if configured else DEFAULT_MAIN_TAGS
        """The main DICOM tags indexed: Orthanc's defaults + `ExtraMainDicomTags` (checked now: a
        bad entry stops the start, as in Orthanc)."""
        self.accepted_transfer_syntaxes = match_transfer_syntaxes(settings.accepted_transfer_syntaxes)
        self.unknown_sop_class_accepted = settings.unknown_sop_class_accepted
        self._scu: Any = None
        self.storage_commitment = StorageCommitmentReports(settings.storage_commitment_reports_size)
        """Storage commitment reports by transaction UID (in memory, as in Orthanc)."""
        self.retrievals = RetrievalTracker()
        """The C-MOVEs we send, and what each brings back (core/retrievals.py)."""
        self.dicom_port: int | None = None
        """The port the DICOM server listens on, once started."""
        self.shutdown_requested: Callable[[], None] = lambda: None
        self.settings_changed: Callable[[], None] = lambda: None
        """Set by the composition root: called after a setting changed at run time (the default
        encoding), so that the HTTP reader processes follow (web/readerlane.py)."""
        self.lua: LuaScripting | None = None
        """The Lua engine (core/lua), set by the composition root when scripts may run."""
        """Set by the composition root: asks the server to stop (POST /tools/shutdown)."""

    @property
    def dictionary(self) -> TagDictionary:
        """Tag names and VRs as Orthanc knows them: DCMTK's dictionary + `Dictionary`."""
        found = self._dictionary
        if found is None:
            with self._dictionary_lock:
                found = self._dictionary
                if found is None:
                    s = self.settings
                    base = dcmtk() if s.load_private_dictionary else dcmtk().without_private()
                    found = self._dictionary = base.with_entries(s.dictionary, s.default_private_creator)
        return found

    @property
    def scu(self) -> Any:
        """The DICOM SCU (created on first use: pynetdicom loads only when needed)."""
        if self._scu is None:
            from ..remote.modalities import DicomScu

            s = self.settings
            self._scu = DicomScu(s.dicom_aet, s.dicom_scu_timeout, s.dicom_association_close_delay, s.dicom_tls)
        return self._scu

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work (files, parsing, pixels) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.io, fn, *args)

    def start_tasks(self) -> None:
        """Start the periodic tasks (stable resources); see `core.startup.start`."""
        self._tasks.append(asyncio.create_task(self._stability_loop(), name="stability"))

    async def _stability_loop(self) -> None:
        interval = min(1.0, max(0.05, self.settings.stable_age / 4))
        while True:
            await asyncio.sleep(interval)
            due = self.stable.due()
            if not due or self.settings.read_only:  # ReadOnly: no change is logged
                continue
            date = now_iso()

            def log_stable(txn: Any, due: list[tuple[ResourceType, str]] = due, date: str = date) -> None:
                for level, pid in due:
                    if txn.lookup(pid) is not None:
                        txn.log_change(int(_STABLE_CHANGE[level]), level, pid, date)

            try:
                await self.index.write(log_stable)
            except Exception:  # never let the loop die; the next pass continues
                log.exception("cannot log stable resources")
            if self.lua is not None:
                for level, pid in due:
                    self.lua.stable(level, pid)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        await self.jobs.close()
        await self.peers.close()
        if self._scu is not None:
            await self.run(self._scu.close)
        # Ingest threads first: an upload in flight queues or commits its write before the
        # index closes (the pool's threads never wait for the event loop).
        await asyncio.get_running_loop().run_in_executor(None, lambda: self.io.shutdown(wait=True))
        await self.index.close()
