"""Orthanc peers: the registry of OrthancPeers (changed at run time by PUT/DELETE: in memory,
or in the index with OrthancPeersInDatabase, as Orthanc), and what is done with a peer:
sending stored instances (the OrthancPeerStore job), sending a file as it is (store-straight),
asking its /system."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ErrorCode, OrthancError
from ..index.base import ExportedResource, Transaction
from ..model import maintags as mt
from ..model.enums import TRANSFER_SYNTAXES, ResourceType
from ..model.peer import Peer, PeerFormatError, check_name, parse_peer
from ..remote.peers import ClientSettings, PeerClient
from . import files
from .context import ServerContext, now_iso
from .jobs import Job
from .properties import load_registry, save_registry
from .resources import identifiers_in, lookup_in

if TYPE_CHECKING:
    from ..config import Settings
    from ..index.base import Index

log = logging.getLogger("orthanc_py.peers")

STORE_JOB = "OrthancPeerStore"
PROPERTY = "OrthancPeers"
"""The index property that holds the peers when OrthancPeersInDatabase is true."""
IN_FLIGHT = 8
"""Uploads of a job in flight at the same time (on keep-alive connections)."""

Run = Callable[..., Awaitable[dict[str, Any]]]


class PeerRegistry:
    """Known peers by symbolic name, and the HTTP client that reaches them."""

    def __init__(
        self, configured: dict[str, Any], settings: Settings | None = None, index: Index | None = None
    ) -> None:
        self._items: dict[str, Peer] = {}
        self._index: Index | None = None
        raw = settings.raw if settings is not None else {}
        self.client = PeerClient(
            ClientSettings(
                timeout=float(settings.http_timeout) if settings is not None else 0.0,
                proxy=str(raw.get("HttpProxy") or ""),
                verify_peers=raw.get("HttpsVerifyPeers", True) is not False,
                ca_certificates=str(raw.get("HttpsCACertificates") or ""),
            )
        )
        self._load(configured)
        if index is not None and settings is not None and settings.raw.get("OrthancPeersInDatabase") is True:
            self.use_index(index)

    def _load(self, configured: Any) -> None:
        self._items = {}
        if not isinstance(configured, dict):
            log.error('Bad format of the "OrthancPeers" configuration section')
            return
        for name, value in configured.items():
            try:
                check_name(name)
                self._items[name] = parse_peer(value)
            except PeerFormatError as exc:
                log.error("OrthancPeers: ignoring %r: %s", name, exc)

    def use_index(self, index: Index) -> None:
        """OrthancPeersInDatabase: the peers are those the index holds (none at first), and
        each change is written there (blocking: called while the server is built)."""
        self._index = index
        self._load(load_registry(index, PROPERTY, "peers"))

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def get(self, name: str) -> Peer:
        try:
            return self._items[name]
        except KeyError:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"No peer with symbolic name: {name}") from None

    async def put(self, name: str, value: Any) -> Peer:
        """PUT /peers/{name}: Orthanc checks the name, the entry, then the certificate files."""
        try:
            check_name(name)
            peer = parse_peer(value)
        except PeerFormatError as exc:
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, str(exc)) from exc
        _check_certificates(peer)
        self._items[name] = peer
        await self._save()
        return peer

    async def delete(self, name: str) -> None:
        if name not in self._items:
            raise OrthancError(ErrorCode.INEXISTENT_ITEM, f"Unknown Orthanc peer: {name}")
        del self._items[name]
        await self._save()

    async def _save(self) -> None:
        if self._index is not None:
            await save_registry(self._index, PROPERTY, {n: p.serialize() for n, p in self._items.items()})

    async def close(self) -> None:
        await self.client.close()


def _check_certificates(peer: Peer) -> None:
    """Orthanc's CheckClientCertificate (a stat: quick enough for the event loop)."""
    if peer.certificate_file:
        if not os.path.isfile(peer.certificate_file):
            raise OrthancError(ErrorCode.INEXISTENT_FILE, f"Cannot open certificate file: {peer.certificate_file}")
        if peer.certificate_key_file and not os.path.isfile(peer.certificate_key_file):
            raise OrthancError(ErrorCode.INEXISTENT_FILE, f"Cannot open key file: {peer.certificate_key_file}")


# --- /peers/{id}/system and store-straight ----------------------------------------------------


async def system(ctx: ServerContext, name: str) -> tuple[int, bytes]:
    """GET /system of the peer: (status, body) as Orthanc passes them on; an HTTP error of the
    peer other than 400/403/415/500 is Orthanc's BadHttpStatusInRest."""
    peer = ctx.peers.get(name)
    status, body = await ctx.peers.client.request(peer, "GET", "system")
    if 200 <= status < 300:
        return 200, body
    log.error("Unable to get the system info from remote Orthanc peer: %s", peer.url)
    if status in (400, 403, 415, 500):
        return status, b""
    raise OrthancError(ErrorCode.BAD_HTTP_STATUS_IN_REST)


async def store_straight(ctx: ServerContext, name: str, data: bytes) -> Any:
    """POST /peers/{id}/store-straight: the body goes to the peer's /instances as it is; the
    peer's answer is returned."""
    peer = ctx.peers.get(name)
    status, body = await ctx.peers.client.request(
        peer, "POST", "instances", data, {"Content-Type": "application/dicom"}
    )
    if not 200 <= status < 300:
        raise OrthancError(ErrorCode.NETWORK_PROTOCOL, f"Cannot send DICOM to remote peer: {name}")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "The peer did not answer JSON") from exc


# --- the OrthancPeerStore job ------------------------------------------------------------------


def read_options(body: dict[str, Any]) -> tuple[str | None, bool]:
    """The Transcode and Compress of a store request, read as Orthanc reads them."""
    transcode = None
    if "Transcode" in body:
        value = body["Transcode"]
        if not isinstance(value, str):
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "String value expected in field: Transcode")
        if value not in TRANSFER_SYNTAXES:
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f"Unknown transfer syntax UID: {value}")
        transcode = value
    compress = False
    if "Compress" in body:
        value = body["Compress"]
        if not isinstance(value, bool):
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Boolean value expected in field: Compress")
        compress = value
    return transcode, compress


def _exports_and_instances(
    txn: Transaction, resources: Sequence[str], remote: str, log_exports: bool, date: str
) -> list[str]:
    """The instances under each resource (UNKNOWN_RESOURCE for one that is not here), each
    resource logged in /exports as Orthanc does when the request comes."""
    instances: list[str] = []
    for pid in resources:
        rid, level = lookup_in(txn, pid, None)
        ids = [rid] if level is ResourceType.INSTANCE else txn.descendants(rid, ResourceType.INSTANCE)
        instances.extend(r.public_id for r in txn.resources(ids))
        if log_exports:
            tags = identifiers_in(txn, rid)
            txn.log_export(
                ExportedResource(
                    0,
                    level,
                    pid,
                    remote,
                    tags.get(mt.PATIENT_ID, ""),
                    tags.get(mt.STUDY_INSTANCE_UID, ""),
                    tags.get(mt.SERIES_INSTANCE_UID, ""),
                    tags.get(mt.SOP_INSTANCE_UID, ""),
                    date,
                )
            )
    return instances


async def prepare_store(
    ctx: ServerContext, name: str, resources: Sequence[str], body: dict[str, Any], exports: bool = True
) -> dict[str, Any]:
    """The spec of an OrthancPeerStore job for a request: its instances (looked up now, as
    Orthanc does, with the /exports entries), the peer (its configuration with passwords, as
    Orthanc's serialized job), the options and the Content the job shows from its start."""
    log_exports = exports and ctx.settings.log_exported_resources
    date = now_iso()
    if log_exports:
        instances = await ctx.index.write(lambda txn: _exports_and_instances(txn, resources, name, True, date))
    else:
        instances = await ctx.index.read(lambda txn: _exports_and_instances(txn, resources, name, False, date))
    transcode, compress = read_options(body)
    permissive = body.get("Permissive", False)
    if not isinstance(permissive, bool):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Boolean value expected in field: Permissive")
    peer = ctx.peers.get(name)
    content: dict[str, Any] = {
        "Compress": compress,
        "Description": "REST API",
        "FailedInstancesCount": 0,
        "InstancesCount": len(instances),
        "Peer": peer.serialize(include_passwords=False),
        "Size": "0",
        "SizeMB": 0,
    }
    if resources:
        content["ParentResources"] = sorted(set(resources))
    if transcode is not None:
        content["Transcode"] = transcode
    return {
        "PeerName": name,
        "Peer": peer.serialize(force_advanced=True),
        "Instances": instances,
        "Transcode": transcode,
        "Compress": compress,
        "Permissive": permissive,
        "Content": content,
    }


def _encode(data: bytes, transcode: str | None, compress: bool) -> bytes:
    """Worker thread: the body of one upload (transcoded when asked and possible, gzipped)."""
    if transcode is not None:
        from ..imaging.transcode import transcode as to_syntax

        try:
            data = to_syntax(data, transcode)
        except Exception as exc:  # Orthanc sends the file as it is when it cannot transcode it
            log.info("Cannot transcode to %s, sending as stored: %s", transcode, exc)
    if compress:
        data = gzip.compress(data, compresslevel=9)
    return data


def store_job(ctx: ServerContext, spec: dict[str, Any]) -> Run:
    """The OrthancPeerStore job of `spec` (see `prepare_store`): each instance POSTed to the
    peer's /instances, IN_FLIGHT at a time on one keep-alive session, a checkpoint per
    instance. Fails at the first instance the peer does not take (NetworkProtocol), or that
    left this server (failed instance), unless Permissive."""
    peer = parse_peer(spec["Peer"])
    instances = [str(i) for i in spec.get("Instances", [])]
    transcode = spec.get("Transcode") or None
    compress = spec.get("Compress") is True
    permissive = spec.get("Permissive") is True
    headers = {"Content-Type": "application/dicom"}
    if compress:
        headers["Content-Encoding"] = "gzip"
    client = ctx.peers.client

    async def run(job: Job | None = None) -> dict[str, Any]:
        content: dict[str, Any] = job.content if job is not None else {}
        content.update(spec.get("Content", {}))
        content.update(FailedInstancesCount=0, Size="0", SizeMB=0)
        size = 0
        failed = 0
        total = len(instances)
        known = await files.files_by_public_id(ctx, instances)

        def count(n: int) -> None:
            nonlocal size
            size += n
            content["Size"] = str(size)
            content["SizeMB"] = size // (1024 * 1024)

        async def send(pid: str) -> bool:
            """False: the instance is no longer here."""
            f = known.get(pid)
            if f is None:
                log.warning("An instance was removed after the job was issued: %s", pid)
                return False
            try:
                body = await ctx.run(_encode_file, ctx, f, transcode, compress)
            except (OSError, OrthancError):
                log.warning("An instance was removed after the job was issued: %s", pid)
                return False
            count(len(body))
            status, answer = await client.request(peer, "POST", "instances", body, headers)
            if not 200 <= status < 300:
                log.warning("Peer %s answered HTTP %d to an upload: %s", peer.url, status, answer[:300])
                if compress:
                    log.error(
                        'Cannot send DICOM over HTTP using "gzip" as "Content-Encoding": '
                        "Make sure that the version of the remote Orthanc server is >= 1.6.0"
                    )
                raise OrthancError(ErrorCode.NETWORK_PROTOCOL)
            return True

        async def settle(task: asyncio.Task[bool]) -> None:
            nonlocal failed
            try:
                ok = await task
            except OrthancError as exc:
                if not permissive:
                    raise
                log.warning("Ignoring an error in a permissive job: %s", exc.details or exc.code.message)
                return
            if not ok:
                failed += 1
                content["FailedInstancesCount"] = failed
                if not permissive:
                    raise OrthancError(ErrorCode.INTERNAL_ERROR)

        in_flight: list[asyncio.Task[bool]] = []
        done = 0
        try:
            for pid in instances:
                if job is not None:
                    await job.checkpoint(done * 100 / total)
                in_flight.append(asyncio.ensure_future(send(pid)))
                if len(in_flight) >= IN_FLIGHT:
                    await settle(in_flight.pop(0))
                    done += 1
            while in_flight:
                await settle(in_flight.pop(0))
                done += 1
        finally:
            for task in in_flight:
                task.cancel()
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
        return content

    return run


def _encode_file(ctx: ServerContext, f: files.InstanceFile, transcode: str | None, compress: bool) -> bytes:
    return _encode(files.read(ctx, f), transcode, compress)


async def submit_store(
    ctx: ServerContext, spec: dict[str, Any], priority: int, user_data: Any, synchronous: bool
) -> dict[str, Any]:
    """Run the job: its Content once done (synchronous; its error when it fails, as
    Orthanc's SubmitAndWait), else its ID and path."""
    job = ctx.jobs.submit(STORE_JOB, store_job(ctx, spec), priority, spec=spec, user_data=user_data)
    job.content.update(spec["Content"])
    return await job.answer(synchronous)


async def send_now(ctx: ServerContext, name: str, resources: Sequence[str]) -> None:
    """Lua's SendToPeer: the instances go at once, without a job of their own and without
    /exports entries (Orthanc's Lua store-peer operation); NetworkProtocol when the peer does
    not take one."""
    spec = await prepare_store(ctx, name, resources, {}, exports=False)
    await store_job(ctx, spec)(None)


def register(ctx: ServerContext) -> None:
    """Make the OrthancPeerStore jobs rebuildable (SaveJobs, resubmit)."""
    ctx.jobs.register(STORE_JOB, lambda spec: store_job(ctx, spec))
