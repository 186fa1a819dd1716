"""Lua scripting as Orthanc runs it (its LuaScripting): two Lua states, each on its own thread.

- The *events* state runs /tools/execute-script, the callbacks (`OnStoredInstance`,
  `OnStable*`, `OnDeleted*`, `OnUpdated*`, `OnJob*`, `OnHeartBeat`, `Initialize`, `Finalize`)
  and the request filters (`IncomingHttpRequestFilter`, `IncomingFindRequestFilter`,
  `OutgoingFindRequestFilter`). Events are queued: an ingest never waits for a callback.
- The *filters* state runs `ReceivedInstanceFilter` and `ReceivedCStoreInstanceFilter`, which
  ingest waits for. Like Orthanc, it loads only the `LuaScripts` of the configuration: a script
  posted to /tools/execute-script does not reach it (so a filter may call RestApi* while an
  events callback uploads, without deadlock).

Both load the toolbox and every `LuaScripts` file in order. The names of the callbacks each
state defines are kept in a frozenset refreshed after each call, so the code paths ask "is there
a callback?" without touching Lua (ingest pays nothing when no script defines one).

After a callback returns, the operations it queued (`SendToModality`, `Delete`, ...) become one
job, run on the event loop through the same code as the REST API.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import secrets
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from ...errors import ErrorCode, OrthancError
from ...model.dicomfile import ParsedInstance
from ...model.enums import ResourceType
from ..context import now_iso
from ..ingest import Check, FilteredOut, Origin
from .api import LuaApi, RestLoopback
from .state import LuaState, error_text

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from ..context import ServerContext

log = logging.getLogger("orthanc_py.lua")

EVENT_CALLBACKS = (
    "Initialize",
    "Finalize",
    "OnStoredInstance",
    "OnStablePatient",
    "OnStableStudy",
    "OnStableSeries",
    "OnDeletedPatient",
    "OnDeletedStudy",
    "OnDeletedSeries",
    "OnDeletedInstance",
    "OnUpdatedPatient",
    "OnUpdatedStudy",
    "OnUpdatedSeries",
    "OnUpdatedInstance",
    "OnJobSubmitted",
    "OnJobSuccess",
    "OnJobFailure",
    "OnHeartBeat",
    "IncomingHttpRequestFilter",
    "IncomingFindRequestFilter",
    "OutgoingFindRequestFilter",
    "IncomingWorklistRequestFilter",
)
FILTER_CALLBACKS = ("ReceivedInstanceFilter", "ReceivedCStoreInstanceFilter")

MAX_OPERATIONS_PER_JOB = 1000
TRAILING_TIMEOUT = 5.0
"""Orthanc's Lua job manager: the operations that callbacks order go to one job while it runs
(up to 1000), and the job waits this long after its last operation for more, so a burst of
auto-routed instances travels in one job over one association (a single-threaded SCP such as
DCMTK's storescp would otherwise refuse the jobs that run beside the first)."""


class _Sequence:
    """The open SequenceOfOperations job: chains of operations still to run (event loop only)."""

    def __init__(self) -> None:
        self.pending: list[list[dict[str, Any]]] = []
        self.count = 0
        self.done = False
        self.added = asyncio.Event()


STOP_WAIT = 30.0
"""Seconds the server waits at stop for the queued Lua events and Finalize."""
RELEASE_WAIT = 2.0
"""Seconds an association release waits at most for the OnStoredInstance calls of its instances."""

_LEVEL_NAME = {
    ResourceType.PATIENT: "Patient",
    ResourceType.STUDY: "Study",
    ResourceType.SERIES: "Series",
    ResourceType.INSTANCE: "Instance",
}


class _Side:
    """One Lua state with its API and the callbacks it defines right now."""

    def __init__(self, name: str, names: tuple[str, ...], config: Mapping[str, Any], token: str, timeout: float):
        self.state = LuaState(name)
        self.rest = RestLoopback(token)
        self.api = LuaApi(self.state, config, self.rest, timeout)
        self.names = names
        self.defined: frozenset[str] = frozenset()

    def refresh(self) -> None:
        """On the state's thread: which callbacks exist now."""
        self.defined = frozenset(n for n in self.names if self.state.is_function(n))

    def run(self, fn: Callable[[], Any], urgent: bool = False) -> concurrent.futures.Future[Any]:
        def task() -> Any:
            try:
                return fn()
            finally:
                self.refresh()

        return self.state.submit(task, urgent)


class LuaScripting:
    """The Lua engine of one server (see the module docstring)."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        s = ctx.settings
        raw = s.raw
        self.execute_enabled = s.execute_lua_enabled
        self.heartbeat_period = s.lua_heartbeat_period
        self.token = secrets.token_hex(16)
        self.events = _Side("events", EVENT_CALLBACKS, raw, self.token, s.http_timeout)
        self.filters = _Side("filters", FILTER_CALLBACKS, raw, self.token, s.http_timeout)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._last_stored: dict[tuple[str, str], concurrent.futures.Future[Any]] = {}
        """The last OnStoredInstance call queued for each C-STORE peer (IP, AET)."""
        self._heartbeat: asyncio.Task[None] | None = None
        self._sequence: _Sequence | None = None
        self.scripts = list(s.lua_scripts)

    # --- life cycle ------------------------------------------------------------------------

    def load(self) -> None:
        """Install the API and the LuaScripts in both states (blocking: run it off the loop).
        A script that fails stops the start-up, as Orthanc does."""
        sources = []
        for path in self.scripts:
            log.info("Installing the Lua scripts from: %s", path)
            try:
                sources.append(path.read_bytes())
            except OSError as exc:
                raise OrthancError(ErrorCode.INEXISTENT_FILE, f"Cannot read the Lua script {path}: {exc}") from None
        for side in (self.events, self.filters):

            def install(side: _Side = side) -> None:
                side.api.install()
                for source in sources:
                    side.state.execute(source)

            side.run(install).result()

    def start(self, loop: asyncio.AbstractEventLoop, http_port: int | str | None) -> None:
        """Once the REST API listens: RestApi* can reach it; `Initialize` runs; the heartbeat."""
        self.loop = loop
        self.events.rest.port = self.filters.rest.port = http_port
        self.signal("Initialize")
        if self.heartbeat_period > 0 and "OnHeartBeat" in self.events.defined:
            self._heartbeat = loop.create_task(self._beat(), name="lua-heartbeat")

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_period)
            await asyncio.wrap_future(self.signal("OnHeartBeat"))

    async def stop(self) -> None:
        """`Finalize`, then the threads stop (the queued events run first)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        try:  # a callback that never returns must not keep the server from stopping
            await asyncio.wait_for(asyncio.wrap_future(self.signal("Finalize")), STOP_WAIT)
        except TimeoutError:
            log.error("Lua callbacks still running after %.0f s: stopping without them", STOP_WAIT)
            return
        for side in (self.events, self.filters):
            await asyncio.get_running_loop().run_in_executor(None, side.state.stop)
            side.rest.close()

    # --- /tools/execute-script -----------------------------------------------------------

    async def execute(self, script: bytes) -> bytes:
        """Run a script in the events state; answer what it printed (403 when disabled)."""
        if not self.execute_enabled:
            log.error("The URI /tools/execute-script is disallowed for security, check your configuration file")
            raise OrthancError(ErrorCode.FORBIDDEN_ACCESS, "ExecuteLuaEnabled is off")
        return await asyncio.wrap_future(self.events.run(lambda: self.events.state.execute(script), urgent=True))

    # --- events (queued, never awaited by the code path that signals them) -----------------

    def _call_logged(self, name: str, args: Callable[[], tuple[Any, ...]], job: bool = False) -> None:
        """On the events thread: call `name` if it exists, then submit the job it built."""
        st = self.events.state
        if not st.is_function(name):
            return
        try:
            if job:
                st.runtime.execute(b"_InitializeJob()")
            st.call(name, *args())
            if job:
                self._submit_job(st.to_json(st.runtime.execute(b"return _AccessJob()"), False))
        except OrthancError as err:
            log.error("Error while processing Lua events: %s", err.details or err.code.message)
        except Exception as exc:
            log.error("Error while processing Lua events: %s", error_text(exc))

    def signal(self, name: str, *args: Any) -> concurrent.futures.Future[Any]:
        """Queue a call of a callback without arguments of its own (Initialize, OnJob*, ...)."""
        return self.events.run(lambda: self._call_logged(name, lambda: tuple(a.encode() for a in args)))

    def stored_instance(self, data: bytes, parsed: ParsedInstance, origin: Origin) -> None:
        """After an instance was stored (or was already): `OnStoredInstance(id, tags, metadata,
        origin)`, queued. The tags are read from the file on the Lua thread, when the script
        first reads them."""
        st = self.events.state
        metadata = instance_metadata(parsed, origin)
        origin_json = origin_to_json(origin)
        public_id = parsed.ids.instance

        def args() -> tuple[Any, ...]:
            tags = st.lazy(lambda: st.push(self.simplified_tags(data)))
            return (public_id.encode(), tags, st.push(metadata), st.push(origin_json))

        fut = self.events.run(lambda: self._call_logged("OnStoredInstance", args, job=True))
        if origin.kind == "DicomProtocol":
            self._last_stored[(origin.remote_ip, origin.remote_aet)] = fut

    def settle_stored_events(self, remote_ip: str, remote_aet: str, timeout: float = RELEASE_WAIT) -> None:
        """Wait (at most `timeout` seconds) until the OnStoredInstance calls of the instances a
        DICOM peer stored have run. The DICOM server calls it when a peer asks to release its
        association: the callbacks of what it sent have run by the time it is told the
        association is over. Orthanc's C-STORE SCP is slow enough for its scripts to be done by
        then too, and scripts and Orthanc's own tests count on it (its test_lua_deadlock reads
        the result of the conversions right after storescu returns). The bound keeps a script
        that would wait for this very association (a synchronous C-STORE to ourselves) from
        holding the release longer than that."""
        fut = self._last_stored.pop((remote_ip, remote_aet), None)
        if fut is None:
            return
        try:
            fut.result(timeout)
        except concurrent.futures.TimeoutError:
            log.warning("Lua callbacks still running after %.0f s: the association is released", timeout)
        except Exception:  # the callback's errors are logged where they happen
            pass

    def stable(self, level: ResourceType, public_id: str) -> None:
        name = f"OnStable{_LEVEL_NAME[level]}"
        if name not in self.events.defined:
            return
        st = self.events.state

        def args() -> tuple[Any, ...]:
            tags, metadata = self._resource_info(level, public_id)
            return (public_id.encode(), st.push(tags), st.push(metadata))

        self.events.run(lambda: self._call_logged(name, args, job=True))

    def deleted(self, resources: Iterable[tuple[ResourceType, str]]) -> None:
        for level, pid in resources:
            name = f"OnDeleted{_LEVEL_NAME[level]}"
            if name in self.events.defined:
                self.signal(name, pid)

    def updated(self, level: ResourceType, public_id: str) -> None:
        name = f"OnUpdated{_LEVEL_NAME[level]}"
        if name in self.events.defined:
            self.signal(name, public_id)

    def job_event(self, kind: str, job_id: str) -> None:
        """kind: Submitted | Success | Failure."""
        name = f"OnJob{kind}"
        if name in self.events.defined:
            self.signal(name, job_id)

    # --- filters (awaited) -------------------------------------------------------------------

    def instance_check(self, data: bytes, origin: Origin, check: Check | None) -> Check:
        """An ingest check (run on the ingest thread, before the file is written) that asks
        ReceivedInstanceFilter, then for C-STORE ReceivedCStoreInstanceFilter, after `check`."""

        def run(parsed: ParsedInstance) -> None:
            if check is not None:
                check(parsed)
            has_pixels = parsed.pixel_data_offset is not None or data.find(b"\xe0\x7f\x10\x00") >= 0
            status = self.filter_instance(data, parsed.transfer_syntax, has_pixels, origin_to_json(origin))
            if status is not None:
                log.info("An incoming instance has been discarded by the filter")
                raise FilteredOut(parsed, status)

        return run

    def filter_instance(
        self, data: bytes, transfer_syntax: str, has_pixels: bool, origin: dict[str, str]
    ) -> int | None:
        """Blocking (an ingest thread): None to store the instance; a C-STORE status when a
        filter refuses it. A filter that fails raises: the instance is not stored."""
        st = self.filters.state
        info = {"HasPixelData": has_pixels, "TransferSyntaxUID": transfer_syntax}

        def run() -> int | None:
            tags = st.push(self.simplified_tags(data))
            if st.is_function("ReceivedInstanceFilter"):
                verdict = st.call("ReceivedInstanceFilter", tags, st.push(origin), st.push(info))
                if not isinstance(verdict, bool):
                    raise OrthancError(ErrorCode.NOT_LUA_PREDICATE)
                if not verdict:
                    return 0  # Orthanc still answers Success to the C-STORE
            if origin.get("RequestOrigin") == "DicomProtocol" and st.is_function("ReceivedCStoreInstanceFilter"):
                status = st.call("ReceivedCStoreInstanceFilter", tags, st.push(origin), st.push(info))
                if not isinstance(status, int | float) or isinstance(status, bool):
                    raise OrthancError(ErrorCode.LUA_BAD_OUTPUT)
                # Orthanc 1.10.1 reads the answer as "keep the instance?": 0 refuses it (the
                # C-STORE answers Success), any other number stores it.
                if int(status) & 0xFFFF == 0:
                    return 0
            return None

        return self.filters.run(run, urgent=True).result()

    async def http_allowed(self, method: str, uri: str, ip: str, username: str, headers: Mapping[str, str]) -> bool:
        """IncomingHttpRequestFilter(method, uri, ip, username, headers): false means 403."""
        st = self.events.state

        def run() -> bool:
            if not st.is_function("IncomingHttpRequestFilter"):
                return True
            verdict = st.call(
                "IncomingHttpRequestFilter",
                method.encode(),
                uri.encode(),
                ip.encode(),
                username.encode(),
                st.push_strings(dict(headers)),
            )
            if not isinstance(verdict, bool):
                raise OrthancError(ErrorCode.NOT_LUA_PREDICATE)
            return verdict

        return bool(await asyncio.wrap_future(self.events.run(run, urgent=True)))

    def rewrite_query(self, name: str, query: dict[str, str], second: Any) -> dict[str, str]:
        """Blocking: Incoming/OutgoingFindRequestFilter(query, second) -> the query to run
        (Orthanc's PushDicom / ExecuteToDicom: {"gggg,eeee": string} in; a table of tag names
        or "gggg,eeee" to strings out, an empty table being an empty query)."""
        st = self.events.state

        def run() -> dict[str, str]:
            if not st.is_function(name):
                return query
            out = st.to_json(st.call(name, st.push(query), st.push(second)), True)
            if out == []:
                return {}
            if not isinstance(out, dict):
                raise OrthancError(ErrorCode.LUA_BAD_OUTPUT, "Lua: The script must return a table")
            if not all(isinstance(v, str) for v in out.values()):
                raise OrthancError(
                    ErrorCode.LUA_BAD_OUTPUT,
                    "Lua: The script must return a table mapping names of DICOM tags to strings",
                )
            return out

        return self.events.run(run, urgent=True).result()

    def filter_json(self, name: str, payload: Any, second: Any) -> Any:
        """Blocking: `name`(payload, second) with JSON in and out (Orthanc's PushJson and
        ExecuteToJson), e.g. IncomingWorklistRequestFilter(query, origin); `payload` itself
        when the function is not defined."""
        st = self.events.state

        def run() -> Any:
            if not st.is_function(name):
                return payload
            return st.to_json(st.call(name, st.push(payload), st.push(second)), True)

        return self.events.run(run, urgent=True).result()

    def filter_identifier(self, name: str, identifier: Dataset, second: Any) -> Dataset:
        """A C-FIND identifier through IncomingFindRequestFilter (second: the origin) or
        OutgoingFindRequestFilter (second: the called AET). Sequences are kept as they were
        (Orthanc hands the filter the query's plain elements only)."""
        from pydicom.dataset import Dataset

        from ...model.lookup import vr_of
        from ...model.orthancjson import parse_tag
        from ...model.parsing import element_text

        query = {}
        for elem in identifier:
            if elem.VR != "SQ":
                binary = elem.VR in ("OB", "OW", "OF", "OD", "OL", "UN")
                value = "" if binary else (element_text(elem.value) or "")
                query[f"{elem.tag.group:04x},{elem.tag.element:04x}"] = value
        out = self.rewrite_query(name, query, second)
        ds = Dataset()
        for elem in identifier:
            if elem.VR == "SQ":
                ds.add(elem)
        for key, value in out.items():
            try:
                tag = parse_tag(key, self.ctx.dictionary)
            except ValueError:
                raise OrthancError(ErrorCode.UNKNOWN_DICOM_TAG, f"Unknown DICOM tag: {key}") from None
            vr = identifier[tag].VR if tag in identifier else vr_of(tag)
            ds.add_new(tag, vr if vr not in ("SQ", None) else "LO", value)
        if "SpecificCharacterSet" in identifier and "SpecificCharacterSet" not in ds:
            ds.SpecificCharacterSet = identifier.SpecificCharacterSet
        return ds

    # --- helpers run on the Lua threads ----------------------------------------------------

    def simplified_tags(self, data: bytes) -> dict[str, Any]:
        """The instance's tags as Orthanc hands them to Lua (?simplify, pixel data left out)."""
        import io

        import pydicom

        from ...model.orthancjson import TagsOptions, orthanc_tags

        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
        return orthanc_tags(ds, "simplify", TagsOptions(self.ctx.dictionary, self.ctx.default_encoding))

    def _resource_info(self, level: ResourceType, public_id: str) -> tuple[dict[str, Any], dict[str, str]]:
        """Main DICOM tags (a study's without the patient's) and metadata, by name."""
        from .. import resources as core_res
        from ..content import list_metadata, metadata_name

        loop = self.loop
        assert loop is not None

        async def read() -> tuple[dict[str, Any], dict[str, str]]:
            info = await core_res.get(self.ctx, public_id, level)
            meta = await list_metadata(self.ctx, public_id, level)
            return _main_tags_json(info), {metadata_name(self.ctx, k): v for k, v in meta.items()}

        return asyncio.run_coroutine_threadsafe(read(), loop).result()

    # --- jobs ------------------------------------------------------------------------------

    def _submit_job(self, operations: Any) -> None:
        if not operations:
            return
        if not isinstance(operations, list):
            raise OrthancError(ErrorCode.INTERNAL_ERROR)
        loop = self.loop
        if loop is None:
            return
        ops = [op for op in operations if isinstance(op, dict)]
        loop.call_soon_threadsafe(self._enqueue, ops)

    def _enqueue(self, ops: list[dict[str, Any]]) -> None:
        """On the event loop: add a callback's operations to the open job, or open one."""
        seq = self._sequence
        if seq is None or seq.done or seq.count >= MAX_OPERATIONS_PER_JOB:
            seq = self._sequence = _Sequence()
            opened = seq

            async def run(job: Any) -> dict[str, Any]:
                return await self._run_sequence(opened)

            self.ctx.jobs.submit("SequenceOfOperations", run)
        seq.pending.append(ops)
        seq.count += len(ops)
        seq.added.set()

    async def _run_sequence(self, seq: _Sequence) -> dict[str, Any]:
        """Run the chains as they come; finish TRAILING_TIMEOUT after the last one (or at the
        first failure, as Orthanc's job fails with its operation)."""
        try:
            while True:
                while seq.pending:
                    await self._run_operations(seq.pending.pop(0))
                seq.added.clear()
                try:
                    await asyncio.wait_for(seq.added.wait(), TRAILING_TIMEOUT)
                except TimeoutError:
                    break
        finally:
            seq.done = True  # no await since the last check: nothing was added in between
            if self._sequence is seq:
                self._sequence = None
        return {"CountOperations": seq.count}

    async def _run_operations(self, ops: list[dict[str, Any]]) -> dict[str, Any]:
        """Each operation works on its own resource, or (Resource "") on what the previous one
        produced: ModifyInstance -> SendToModality -> Delete acts on the modified copy."""
        rest = RestLoopback(self.token)
        rest.port = self.events.rest.port
        previous: list[str] = []
        try:
            for op in ops:
                resource = str(op.get("Resource") or "")
                inputs = [resource] if resource else previous
                previous = await self._apply(rest, op, inputs)
        finally:
            rest.close()
        return {"CountOperations": len(ops)}

    async def _apply(self, rest: RestLoopback, op: dict[str, Any], inputs: list[str]) -> list[str]:
        loop = asyncio.get_running_loop()

        async def call(method: str, uri: str, body: Any = None) -> bytes:
            data = None if body is None else orjson.dumps(body)
            status, answer = await loop.run_in_executor(None, rest.request, method, uri, data, {})
            if status != 200:
                raise OrthancError(ErrorCode.INTERNAL_ERROR, f"{method} {uri}: HTTP {status}")
            return answer

        kind = op.get("Operation")
        if not inputs:
            return []
        if kind == "store-scu":
            body: dict[str, Any] = {"Resources": inputs, "Synchronous": True}
            if op.get("LocalAet"):
                body["LocalAet"] = op["LocalAet"]
            await call("POST", f"/modalities/{op.get('Modality')}/store", body)
            return inputs
        if kind == "store-peer":  # as Orthanc's Lua: sent at once, not as a job of its own
            from .. import peers

            await peers.send_now(self.ctx, str(op.get("Peer")), inputs)
            return inputs
        if kind == "delete":
            for pid in inputs:
                await _delete_any(loop, rest, pid)
            return []
        if kind == "modify":
            return [await self._modify(pid, op) for pid in inputs]
        if kind == "call-system":
            for pid in inputs:
                await self._call_system(loop, call, pid, op)
            return inputs
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"unknown Lua operation {kind!r}")

    async def _modify(self, public_id: str, op: dict[str, Any]) -> str:
        """A modified copy stored with origin Lua and ModifiedFrom (as Orthanc's Lua modify)."""
        from .. import ingest
        from ..modifyjob import modify_instance

        body: dict[str, Any] = {"Force": True}
        replace = op.get("Replace")
        if isinstance(replace, dict):
            body["Replace"] = replace
        remove = op.get("Remove")
        if isinstance(remove, list):
            body["Remove"] = remove
        if op.get("RemovePrivateTags"):
            body["RemovePrivateTags"] = True
        data = await modify_instance(self.ctx, public_id, body)
        result = await ingest.store(self.ctx, data, ingest.Origin("Lua", modified_from=public_id))
        return result.ids.instance

    async def _call_system(
        self, loop: asyncio.AbstractEventLoop, call: Callable[..., Any], public_id: str, op: dict[str, Any]
    ) -> None:
        """CallSystem: the command, its arguments, then the path of a temporary copy of the file."""
        args = op.get("Arguments") or []
        if not isinstance(args, list) or not all(isinstance(a, str | int | float) for a in args):
            raise OrthancError(ErrorCode.BAD_PARAMETER_TYPE)
        data = await call("GET", f"/instances/{public_id}/file")
        fd, path = tempfile.mkstemp(suffix=".dcm")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            argv = [str(op.get("Command")), *[str(a) for a in args], path]
            done = await loop.run_in_executor(None, lambda: subprocess.run(argv, check=False))
            if done.returncode != 0:
                raise OrthancError(ErrorCode.SYSTEM_COMMAND, f"{argv[0]} exited with status {done.returncode}")
        finally:
            os.unlink(path)


async def _delete_any(loop: asyncio.AbstractEventLoop, rest: RestLoopback, public_id: str) -> None:
    """Delete a resource whatever its level (Lua's Delete is given instances, and at times
    the study or series of an OnStable* callback)."""
    for level in ("instances", "series", "studies", "patients"):
        status, _ = await loop.run_in_executor(None, rest.request, "DELETE", f"/{level}/{public_id}", None, {})
        if status == 200:
            return
    raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"Cannot delete {public_id}")


def _main_tags_json(info: Any) -> dict[str, Any]:
    """A resource's main DICOM tags by name, as the stable callbacks receive them (a study's
    without its patient's)."""
    from ...model.dictionary import dcmtk
    from ...model.maintags import MAIN_TAGS, format_tag

    names = MAIN_TAGS[info.level]
    return {names.get(t) or dcmtk().name(t) or format_tag(t): v for t, v in info.main_tags.items()}


def origin_to_json(origin: Origin) -> dict[str, str]:
    """Where an instance came from, as Orthanc tells Lua (DicomInstanceOrigin::Format)."""
    if origin.kind == "RestApi":
        return {"RemoteIp": origin.remote_ip, "RequestOrigin": "RestApi", "Username": origin.http_username}
    if origin.kind == "DicomProtocol":
        return {
            "CalledAet": origin.called_aet,
            "RemoteAet": origin.remote_aet,
            "RemoteIp": origin.remote_ip,
            "RequestOrigin": "DicomProtocol",
        }
    return {"RequestOrigin": origin.kind}


def instance_metadata(parsed: ParsedInstance, origin: Origin) -> dict[str, str]:
    """The metadata an ingest records for an instance, by name (OnStoredInstance's third
    argument; the same as core/ingest writes)."""
    meta = {
        "ReceptionDate": now_iso(),
        "RemoteAET": origin.remote_aet,
        "Origin": origin.kind,
        "TransferSyntax": parsed.transfer_syntax,
        "SopClassUid": parsed.sop_class_uid,
    }
    if parsed.index_in_series is not None:
        meta["IndexInSeries"] = str(parsed.index_in_series)
    if origin.remote_ip:
        meta["RemoteIP"] = origin.remote_ip
    if origin.kind == "DicomProtocol":
        meta["CalledAET"] = origin.called_aet
    if origin.kind == "RestApi":
        meta["HttpUsername"] = origin.http_username
    if origin.modified_from:
        meta["ModifiedFrom"] = origin.modified_from
    if parsed.pixel_data_offset is not None:
        meta["PixelDataOffset"] = str(parsed.pixel_data_offset)
    if parsed.pixel_data_vr is not None:
        meta["PixelDataVR"] = parsed.pixel_data_vr
    return meta
