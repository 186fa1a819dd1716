"""The DICOMweb client of Orthanc's DICOMweb plugin (as version 1.20 offers it), under
/dicom-web/servers: the registry of remote servers (list, ?expand, GET/PUT/DELETE), and what
this Orthanc does with them: STOW-RS of local resources (job "DicomWebStowClient", one
multipart request streamed instance by instance), WADO-RS retrieve into the local store (job
"DicomWebWadoRetrieveClient", the multipart answer read part by part into the ingest path),
a proxied GET, QIDO-RS in a simplified JSON, and DELETE on servers that allow it.

Answers and errors are the plugin's: a job that fails shows FunctionErrorCode/Description
in its Content and ends in the "plugin engine" error, which a synchronous call answers."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import ssl
import uuid
from collections import deque
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from aiohttp import web
from yarl import URL

from ..core import files as core_files
from ..core import ingest, properties
from ..core import resources as core_res
from ..core.context import ServerContext
from ..core.ingest import Origin
from ..core.jobs import Job, JobCanceled, request_priority, request_synchronous
from ..errors import ErrorCode, OrthancError
from ..model.enums import ResourceType
from ..model.peer import ssl_context
from ..web.appkeys import ctx_of
from ..web.responses import json_response, read_body
from .servers import PROPERTY_KEY, DicomWebServer, DicomWebServers, parse_server
from .stow import _boundary, multipart_parts

log = logging.getLogger("orthanc_py.dicomweb.client")

STOW_JOB = "DicomWebStowClient"
RETRIEVE_JOB = "DicomWebWadoRetrieveClient"
MIB = 1024 * 1024
UNIVERSAL_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
_NOT_FORWARDED = frozenset(
    ("transfer-encoding", "content-length", "connection", "content-encoding", "keep-alive", "date", "server")
)
_IN_FLIGHT = 4
"""Retrieved instances being stored while the next ones are read from the network."""


class DicomWebClient:
    """The registry and the one keep-alive HTTP session every call to a remote server uses."""

    def __init__(self, ctx: ServerContext, servers: DicomWebServers) -> None:
        self.ctx = ctx
        self.servers = servers
        self._session: aiohttp.ClientSession | None = None
        self._ssl: dict[tuple[str, str, str], ssl.SSLContext] = {}
        self._loaded = not servers.in_database

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(auto_decompress=True)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def registry(self) -> DicomWebServers:
        """ServersInDatabase: read from the index on first use (the plugin reads it at start)."""
        if not self._loaded:
            text = await properties.read(self.ctx, PROPERTY_KEY)
            self.servers.load_serialized(text)
            self._loaded = True
        return self.servers

    async def save(self) -> None:
        if self.servers.in_database:
            text = self.servers.serialized()
            await properties.write(self.ctx, PROPERTY_KEY, text)

    def request_options(self, server: DicomWebServer) -> dict[str, Any]:
        """Timeout, TLS and proxy of a call to a server, as aiohttp options: the server's Timeout
        (else HttpTimeout), HttpsVerifyPeers / HttpsCACertificates, its client certificate, and
        HttpProxy, the global settings Orthanc's HTTP client applies to the plugin's calls too."""
        if server.pkcs11:  # as Debian's Orthanc 1.10.1, built without PKCS#11
            log.error("This version of Orthanc is compiled without support for PKCS#11")
            raise OrthancError(ErrorCode.INTERNAL_ERROR)  # the plugin's answer carries no details
        raw = self.ctx.settings.raw
        timeout = server.timeout or self.ctx.settings.http_timeout
        options: dict[str, Any] = {
            "timeout": aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout),
        }
        if server.url.startswith("https://"):
            options["ssl"] = self._ssl_context(
                server, raw.get("HttpsVerifyPeers", True) is not False, str(raw.get("HttpsCACertificates") or "")
            )
        proxy = str(raw.get("HttpProxy") or "")
        if proxy:
            options["proxy"] = proxy if "://" in proxy else "http://" + proxy
        return options

    def _ssl_context(self, server: DicomWebServer, verify: bool, ca_file: str) -> ssl.SSLContext | bool:
        return ssl_context(server, verify, ca_file, self._ssl)


CLIENT: web.AppKey[DicomWebClient] = web.AppKey("dicomweb_client", DicomWebClient)


def _client(request: web.Request) -> DicomWebClient:
    return request.app[CLIENT]


# --- request bodies -------------------------------------------------------------------------------


async def _json_body(request: web.Request) -> Any:
    body = await read_body(request)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "A JSON file is expected") from None


def _assoc(body: Any, key: str) -> dict[str, str]:
    """A member that is an object of strings (HttpHeaders, Arguments); absent: empty."""
    if not isinstance(body, dict) or key not in body:
        return {}
    value = body[key]
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise OrthancError(
            ErrorCode.BAD_FILE_FORMAT, f'This field must be an associative array from strings to strings: "{key}"'
        )
    return dict(value)


def _uri_encode(text: str) -> str:
    return quote(text, safe="-_.~")


def encode_uri(resource: str, arguments: dict[str, str]) -> str:
    """The URI of a resource with its GET arguments (an explicit "?" is refused, as the plugin does)."""
    if "?" in resource:
        raise OrthancError(
            ErrorCode.BAD_FILE_FORMAT,
            f'The GET arguments must be provided in a separate field (explicit "?" is disallowed): {resource}',
        )
    query = "&".join(_uri_encode(k) + ("=" + _uri_encode(v) if v else "") for k, v in sorted(arguments.items()))
    return resource + ("?" + query if query else "")


def _url(server: DicomWebServer, uri: str) -> URL:
    scheme, sep, rest = (server.url + "/" + uri).partition("://")
    return URL(scheme + sep + re.sub("/{2,}", "/", rest), encoded=True)


def _parse_get(body: Any) -> tuple[str, dict[str, str]]:
    """Uri + Arguments + HttpHeaders of /get, /qido and /wado."""
    uri = body.get("Uri") if isinstance(body, dict) else None
    if not isinstance(uri, str):
        raise OrthancError(
            ErrorCode.BAD_FILE_FORMAT,
            'A request to the DICOMweb client must provide a JSON object with the field "Uri" '
            "containing the URI of interest",
        )
    return encode_uri(uri, _assoc(body, "Arguments")), _assoc(body, "HttpHeaders")


def _status_error(status: int) -> OrthancError:
    """Orthanc's HttpClient: the HTTP status of a failed call as an Orthanc error."""
    if status == 400:
        return OrthancError(ErrorCode.BAD_REQUEST)
    if status in (401, 403):
        return OrthancError(ErrorCode.UNAUTHORIZED)
    if status == 404:
        return OrthancError(ErrorCode.UNKNOWN_RESOURCE)
    return OrthancError(ErrorCode.NETWORK_PROTOCOL)


def _headers(server: DicomWebServer, extra: dict[str, str]) -> dict[str, str]:
    """The server's credentials (HTTP Basic), its HttpHeaders, then the request's."""
    out: dict[str, str] = {}
    if server.username:
        token = base64.b64encode(f"{server.username}:{server.password}".encode()).decode()
        out["Authorization"] = f"Basic {token}"
    return {**out, **server.http_headers, **extra}


# --- jobs -------------------------------------------------------------------------------------------


class _Stopped(Exception):
    """A stream body stopped because its job was cancelled (the request then fails)."""


async def _as_plugin_job(job: Job, work: Any) -> dict[str, Any]:
    """Run the work of a plugin job: its errors go into the Content (FunctionError*) and the
    job fails with the plugin engine's error, as the plugin's SingleFunctionJob reports them."""
    try:
        await work
    except OrthancError as err:
        _function_error(job, err.code, err.details)
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        log.error("DICOMweb client: %s", exc)
        _function_error(job, ErrorCode.NETWORK_PROTOCOL, None)
    except _Stopped:
        raise JobCanceled from None
    except Exception as exc:  # never a traceback in place of the plugin's answer
        log.exception("DICOMweb client job %s failed", job.id)
        _function_error(job, ErrorCode.INTERNAL_ERROR, str(exc))
    else:
        return job.content
    raise OrthancError(ErrorCode.PLUGIN)


def _function_error(job: Job, code: ErrorCode, details: str | None) -> None:
    job.content["FunctionErrorCode"] = code.code
    job.content["FunctionErrorDescription"] = code.message
    if details:
        job.content["FunctionErrorDetails"] = details


async def _submit(
    request: web.Request, job_type: str, run: Any, body: dict[str, Any], synchronous: bool
) -> web.Response:
    ctx = ctx_of(request)
    priority = request_priority(body)
    wait = request_synchronous(body, synchronous)
    job = ctx.jobs.submit(job_type, run, priority)
    if not wait:
        return json_response({"ID": job.id, "Path": f".././../jobs/{job.id}"})
    await job.wait()
    if job.state != "Success":
        code = next((c for c in ErrorCode if c.code == job.error_code), ErrorCode.INTERNAL_ERROR)
        raise OrthancError(code, job.error_description)
    return json_response(job.content)


def _sequence_size(answer: dict[str, Any], tag: str, mandatory: bool, name: str) -> int | None:
    value = answer.get(tag.upper(), answer.get(tag.lower()))
    if value is None:
        if mandatory:
            raise OrthancError(
                ErrorCode.NETWORK_PROTOCOL,
                f"The STOW-RS JSON response from DICOMweb server {name} does not contain the mandatory tag {tag}",
            )
        return None
    if not isinstance(value, dict) or ("Value" in value and not isinstance(value["Value"], list)):
        raise OrthancError(
            ErrorCode.NETWORK_PROTOCOL, f"Unable to parse STOW-RS JSON response from DICOMweb server {name}"
        )
    return len(value.get("Value", []))


def check_stow_answer(answer: Any, name: str, count: int) -> None:
    """The remote server stored every instance sent, and reports no failure."""
    if not isinstance(answer, dict) or "00081199" not in answer:
        raise OrthancError(
            ErrorCode.NETWORK_PROTOCOL, f"Unable to parse STOW-RS JSON response from DICOMweb server {name}"
        )
    size = _sequence_size(answer, "00081199", True, name)
    if size != count:
        raise OrthancError(
            ErrorCode.NETWORK_PROTOCOL, f"The STOW-RS server was only able to receive {size} instances out of {count}"
        )
    for tag, label in (
        ("00081198", "Failed SOP Sequence (0008,1198)"),
        ("0008119A", "Other Failures Sequence (0008,119A)"),
    ):
        size = _sequence_size(answer, tag, False, name)
        if size:
            raise OrthancError(
                ErrorCode.NETWORK_PROTOCOL,
                f"The response from the STOW-RS server contains {size} items in its {label} tag",
            )


def stow_job(
    client: DicomWebClient,
    name: str,
    instances: list[core_files.InstanceFile],
    extra: dict[str, str],
    resources: dict[str, list[str]] | None = None,
) -> Any:
    """DicomWebStowClient: every instance in one multipart/related POST to {server}/studies,
    the body written as the files are read (chunked), or whole when ChunkedTransfers is false.
    Its Content names the server and the resources sent (plugin 1.18+ / 1.20)."""
    ctx = client.ctx
    boundary = f"{uuid.uuid4()}-{uuid.uuid4()}"

    async def work(job: Job) -> None:
        job.content["InstancesCount"] = str(len(instances))
        job.content["Resources"] = resources or {}
        job.content["Server"] = name
        server = (await client.registry()).get(name)
        sent = 0
        network = 0
        stopped = False

        async def parts() -> AsyncIterator[bytes]:
            nonlocal sent, network, stopped
            for i, f in enumerate(instances):
                try:
                    await job.checkpoint(100 * i / max(1, len(instances)))
                except JobCanceled:
                    stopped = True  # the request fails; the job ends as cancelled, not failed
                    raise _Stopped from None
                try:
                    data = await ctx.run(core_files.read, ctx, f)
                except (OrthancError, OSError):
                    continue  # deleted since: the plugin skips it as well
                network += len(data)
                sent += 1
                job.content["NetworkSizeMB"] = str(network // MIB)
                head = f"--{boundary}\r\nContent-Type: application/dicom\r\nContent-Length: {len(data)}\r\n\r\n"
                yield head.encode() + data + b"\r\n"
            yield f"--{boundary}--".encode()

        headers = _headers(server, extra)
        headers["Accept"] = "application/dicom+json"
        headers["Content-Type"] = f'multipart/related; type="application/dicom"; boundary={boundary}'
        body: Any = parts()
        if not server.flag("ChunkedTransfers", True):
            body = b"".join([chunk async for chunk in parts()])
        url = _url(server, "/studies")
        try:
            async with client.session().post(url, data=body, headers=headers, **client.request_options(server)) as resp:
                text = await resp.read()
        except Exception:
            if stopped:
                raise JobCanceled from None
            raise
        if not 200 <= resp.status < 300:
            if resp.status == 411:
                log.error('The remote DICOMweb server "%s" needs "ChunkedTransfers": false', name)
            raise OrthancError(ErrorCode.NETWORK_PROTOCOL)
        try:
            answer = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT) from None
        check_stow_answer(answer, name, sent)

    async def run(job: Job) -> dict[str, Any]:
        return await _as_plugin_job(job, work(job))

    return run


def _check_part_type(headers: str) -> None:
    """Each part of a WADO-RS retrieve must be application/dicom (the plugin refuses others)."""
    found = ""
    for line in headers.split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip() == "content-type":
            found = value.split(";")[0].strip()
    if not found:
        raise OrthancError(ErrorCode.NETWORK_PROTOCOL, "Missing Content-Type for a part of WADO-RS answer")
    if found != "application/dicom":
        raise OrthancError(
            ErrorCode.NETWORK_PROTOCOL,
            f'Parts of a WADO-RS retrieve should have "application/dicom" type, but received: {found}',
        )


class _Counted:
    """A response stream that counts the bytes read (NetworkUsageMB)."""

    def __init__(self, stream: aiohttp.StreamReader) -> None:
        self.stream = stream
        self.size = 0

    async def readany(self) -> bytes:
        chunk = await self.stream.readany()
        self.size += len(chunk)
        return chunk


def retrieve_job(client: DicomWebClient, name: str, resources: list[tuple[str, dict[str, str]]]) -> Any:
    """DicomWebWadoRetrieveClient: a WADO-RS GET per resource; each part of the multipart answer
    is stored here as it arrives (a few being stored while the next is read)."""
    ctx = client.ctx
    origin = Origin("Plugins")

    async def fetch(job: Job, server: DicomWebServer, uri: str, extra: dict[str, str], ids: list[str]) -> int:
        headers = _headers(server, extra)
        if "Accept" not in extra:
            universal = server.user_properties.get("HasWadoRsUniversalTransferSyntax", "true")
            if universal not in ("true", "1", "false", "0"):
                raise OrthancError(
                    ErrorCode.PARAMETER_OUT_OF_RANGE,
                    'Configuration option "HasWadoRsUniversalTransferSyntax" of remote DICOMweb server '
                    f'"{name}" must be a Boolean, found: {universal}',
                )
            if universal in ("true", "1"):
                headers["Accept"] = UNIVERSAL_ACCEPT
        async with client.session().get(_url(server, uri), headers=headers, **client.request_options(server)) as resp:
            if not 200 <= resp.status < 300:
                raise OrthancError(ErrorCode.NETWORK_PROTOCOL)
            ctype = resp.headers.get("Content-Type", "")
            main = ctype.split(";")[0].strip()
            if not ctype:
                raise OrthancError(
                    ErrorCode.NETWORK_PROTOCOL,
                    "No Content-Type provided by the remote WADO-RS server, your remote DICOMweb server might "
                    'need client option "HasWadoRsUniversalTransferSyntax" set to "false"',
                )
            if main.lower() != "multipart/related":
                raise OrthancError(
                    ErrorCode.NETWORK_PROTOCOL,
                    f'The remote WADO-RS server answers with a "{main}" Content-Type, '
                    'but "multipart/related" is expected',
                )
            try:
                boundary = _boundary(ctype)
            except OrthancError:
                raise OrthancError(
                    ErrorCode.NETWORK_PROTOCOL, f"Cannot parse the Content-Type for WADO-RS: {ctype}"
                ) from None
            stream = _Counted(resp.content)
            pending: deque[asyncio.Task[ingest.StoreResult]] = deque()
            try:
                async for part_headers, data in multipart_parts(stream, boundary):
                    _check_part_type(part_headers)
                    pending.append(asyncio.ensure_future(ingest.store(ctx, data, origin)))
                    if len(pending) >= _IN_FLIGHT:
                        ids.append((await pending.popleft()).ids.instance)
                    await job.checkpoint()
                while pending:
                    ids.append((await pending.popleft()).ids.instance)
            except OrthancError as err:
                if err.code is ErrorCode.BAD_REQUEST:  # a malformed multipart answer
                    raise OrthancError(ErrorCode.NETWORK_PROTOCOL, err.details) from None
                raise
            finally:
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.gather(*pending, return_exceptions=True)
            return stream.size

    async def work(job: Job) -> None:
        ids: list[str] = []
        network = 0
        for i, (uri, extra) in enumerate(resources):
            await job.checkpoint(100 * i / len(resources))
            server = (await client.registry()).get(name)
            network += await fetch(job, server, uri, extra, ids)
            job.content["NetworkUsageMB"] = str(network // MIB)
            job.content["ReceivedInstancesCount"] = str(len(ids))
            job.progress = round(100 * (i + 1) / len(resources))

    async def run(job: Job) -> dict[str, Any]:
        return await _as_plugin_job(job, work(job))

    return run


# --- handlers -------------------------------------------------------------------------------------


async def list_servers(request: web.Request) -> web.StreamResponse:
    servers = await _client(request).registry()
    if "expand" in request.query:
        return json_response({n: servers.get(n).public_json() for n in servers.names()})
    return json_response(servers.names())


async def get_server(request: web.Request) -> web.StreamResponse:
    server = (await _client(request).registry()).get(request.match_info["name"])
    operations = ["get", "retrieve", "stow", "wado", "qido"]
    if server.flag("HasDelete", False):
        operations.append("delete")
    return json_response(operations)


async def put_server(request: web.Request) -> web.StreamResponse:
    client = _client(request)
    server = parse_server(await _json_body(request))
    (await client.registry()).put(request.match_info["name"], server)
    await client.save()
    return json_response({})


async def delete_server(request: web.Request) -> web.StreamResponse:
    client = _client(request)
    (await client.registry()).delete(request.match_info["name"])
    await client.save()
    return json_response({})


async def stow(request: web.Request) -> web.StreamResponse:
    client = _client(request)
    ctx = client.ctx
    body = await _json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("Resources"), list):
        raise OrthancError(
            ErrorCode.BAD_FILE_FORMAT,
            'A request to the DICOMweb STOW-RS client must provide a JSON object with the field "Resources" '
            "containing an array of resources to be sent",
        )
    extra = _assoc(body, "HttpHeaders")
    instances: list[core_files.InstanceFile] = []
    # the job's Content "Resources", as plugin 1.20: each resource asked for under its level,
    # and every instance sent under "Instances"
    sent: dict[str, list[str]] = {}
    for resource in body["Resources"]:
        if not isinstance(resource, str):
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
        if not resource:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
        found = await core_files.instance_files(ctx, resource, None)
        level = (await core_res.get(ctx, resource, None)).level
        if level is not ResourceType.INSTANCE:
            sent.setdefault(level.plural.capitalize(), []).append(resource)
        sent.setdefault("Instances", []).extend(f.public_id for f in found)
        instances.extend(found)
    log.info("Sending %d instances using STOW-RS to DICOMweb server: %s", len(instances), request.match_info["name"])
    run = stow_job(client, request.match_info["name"], instances, extra, sent)
    return await _submit(request, STOW_JOB, run, body, True)


def _post_only_bad(request: web.Request) -> None:
    """/retrieve and /wado answer any other method with ParameterOutOfRange (not a 405)."""
    if request.method != "POST":
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE)


async def retrieve(request: web.Request) -> web.StreamResponse:
    _post_only_bad(request)
    body = await _json_body(request)
    arguments = _assoc(body, "GetArguments")
    extra = _assoc(body, "HttpHeaders")
    if not isinstance(body, dict) or not isinstance(body.get("Resources"), list):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, 'The body must be a JSON object containing an array "Resources"')
    resources: list[tuple[str, dict[str, str]]] = []
    for item in body["Resources"]:
        ids: dict[str, str] = {
            k: str(item[k]) if isinstance(item, dict) and isinstance(item.get(k), str) else ""
            for k in ("Study", "Series", "Instance")
        }
        if not isinstance(item, dict) or not isinstance(item.get("Study"), str):
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, 'Missing "Study" field in the body')
        if not ids["Series"] and ids["Instance"]:
            raise OrthancError(
                ErrorCode.BAD_FILE_FORMAT, 'Missing "Series" field in the body, as "Instance" is present'
            )
        uri = "/studies/" + ids["Study"]
        if ids["Series"]:
            uri += "/series/" + ids["Series"]
        if ids["Instance"]:
            uri += "/instances/" + ids["Instance"]
        resources.append((encode_uri(uri, arguments), extra))
    run = retrieve_job(_client(request), request.match_info["name"], resources)
    return await _submit(request, RETRIEVE_JOB, run, body, True)


async def wado(request: web.Request) -> web.StreamResponse:
    _post_only_bad(request)
    body = await _json_body(request)
    uri, extra = _parse_get(body)
    run = retrieve_job(_client(request), request.match_info["name"], [(uri, extra)])
    return await _submit(request, RETRIEVE_JOB, run, body if isinstance(body, dict) else {}, False)


async def _open_get(request: web.Request) -> tuple[DicomWebClient, aiohttp.ClientResponse]:
    """The remote answer of /get and /qido (status checked; the caller releases it)."""
    client = _client(request)
    uri, extra = _parse_get(await _json_body(request))
    server = (await client.registry()).get(request.match_info["name"])
    try:
        resp = await client.session().get(
            _url(server, uri), headers=_headers(server, extra), **client.request_options(server)
        )
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        log.error("DICOMweb client: cannot reach %s: %s", server.url, exc)
        raise OrthancError(ErrorCode.NETWORK_PROTOCOL) from None
    if not 200 <= resp.status < 300:
        resp.release()
        raise _status_error(resp.status)
    return client, resp


async def get(request: web.Request) -> web.StreamResponse:
    """The remote answer relayed as it arrives, with its headers (hop-by-hop ones left out)."""
    _, resp = await _open_get(request)
    try:
        out = web.StreamResponse()
        for key, value in resp.headers.items():
            if key.lower() not in _NOT_FORWARDED and key.lower() != "content-type":
                out.headers.add(key, value)
        out.headers["Content-Type"] = resp.headers.get("Content-Type", "application/octet-stream")
        if resp.content_length is not None and "Content-Encoding" not in resp.headers:
            out.content_length = resp.content_length
        await out.prepare(request)
        async for chunk in resp.content.iter_any():
            await out.write(chunk)
        await out.write_eof()
        return out
    finally:
        resp.release()


def _simplified(answer: Any, ctx: ServerContext) -> list[dict[str, Any]]:
    """QIDO-RS answer (DICOM JSON) as the plugin's /qido shows it: per tag Group, Element,
    Name, vr and the first value (a person name's Alphabetic)."""
    if not isinstance(answer, list):
        raise OrthancError(ErrorCode.NETWORK_PROTOCOL)
    out: list[dict[str, Any]] = []
    for entry in answer:
        if not isinstance(entry, dict):
            raise OrthancError(ErrorCode.NETWORK_PROTOCOL)
        item: dict[str, Any] = {}
        for key in sorted(entry):
            if not re.fullmatch(r"[0-9A-Fa-f]{8}", key):
                continue
            tag = int(key, 16)
            source = entry[key]
            if not isinstance(source, dict) or not isinstance(source.get("vr"), str):
                raise OrthancError(ErrorCode.NETWORK_PROTOCOL)
            value: dict[str, Any] = {"Element": tag & 0xFFFF, "Group": tag >> 16}
            value["Name"] = ctx.dictionary.name(tag, None)
            value["vr"] = source["vr"]
            values = source.get("Value")
            if isinstance(values, list) and values:
                first = values[0]
                if isinstance(first, str):
                    value["Value"] = first
                elif isinstance(first, dict) and isinstance(first.get("Alphabetic"), str):
                    value["Value"] = first["Alphabetic"]
            item[key] = value
        out.append(item)
    return out


async def qido(request: web.Request) -> web.StreamResponse:
    client, resp = await _open_get(request)
    try:
        text = await resp.read()
    finally:
        resp.release()
    try:
        answer = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT) from None
    return json_response(_simplified(answer, client.ctx))


async def delete(request: web.Request) -> web.StreamResponse:
    """DELETE on the remote server, for servers with HasDelete (Level + the UIDs down to it)."""
    client = _client(request)
    name = request.match_info["name"]
    server = (await client.registry()).get(name)
    if not server.flag("HasDelete", False):
        raise OrthancError(
            ErrorCode.BAD_FILE_FORMAT, f'Cannot delete on DICOMweb server, check out property "HasDelete": {name}'
        )
    body = await _json_body(request)
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("Level"), str)
        or not isinstance(body.get("StudyInstanceUID"), str)
    ):
        raise OrthancError(
            ErrorCode.BAD_FILE_FORMAT,
            'The request body must contain a JSON object with fields "Level" and "StudyInstanceUID"',
        )
    try:
        level = ResourceType.parse(body["Level"])
    except ValueError:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE) from None
    uri = "/studies/" + body["StudyInstanceUID"]
    if level in (ResourceType.SERIES, ResourceType.INSTANCE):
        if not isinstance(body.get("SeriesInstanceUID"), str):
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, 'The request body must contain the field "SeriesInstanceUID"')
        uri += "/series/" + body["SeriesInstanceUID"]
    if level is ResourceType.INSTANCE:
        if not isinstance(body.get("SOPInstanceUID"), str):
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, 'The request body must contain the field "SOPInstanceUID"')
        uri += "/instances/" + body["SOPInstanceUID"]
    if level is ResourceType.PATIENT:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE)
    try:
        async with client.session().delete(
            _url(server, uri), headers=_headers(server, {}), **client.request_options(server)
        ) as resp:
            await resp.read()
            if not 200 <= resp.status < 300:
                raise _status_error(resp.status)
    except (TimeoutError, aiohttp.ClientError, OSError):
        raise OrthancError(ErrorCode.NETWORK_PROTOCOL) from None
    return json_response({})


def setup(app: web.Application, ctx: ServerContext, prefix: str = "/dicom-web") -> None:
    """Register /dicom-web/servers (the registry read from DicomWeb.Servers now: a malformed
    section stops the start, as it stops Orthanc)."""
    client = DicomWebClient(ctx, DicomWebServers.from_settings(dict(ctx.settings.raw)))
    app[CLIENT] = client

    async def close(_: web.Application) -> None:
        await client.close()

    app.on_cleanup.append(close)
    r = app.router
    r.add_get(prefix + "/servers", list_servers)
    r.add_get(prefix + "/servers/{name}", get_server)
    r.add_put(prefix + "/servers/{name}", put_server)
    r.add_delete(prefix + "/servers/{name}", delete_server)
    r.add_post(prefix + "/servers/{name}/stow", stow)
    r.add_post(prefix + "/servers/{name}/get", get)
    r.add_post(prefix + "/servers/{name}/qido", qido)
    r.add_post(prefix + "/servers/{name}/delete", delete)
    r.add_route("*", prefix + "/servers/{name}/retrieve", retrieve)
    r.add_route("*", prefix + "/servers/{name}/wado", wado)
