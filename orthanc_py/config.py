"""Settings read from Orthanc's JSON configuration format.

One table (`KEYS`) lists every key we understand with its Orthanc default and a one-line help;
`load()` reads a file or a folder of files (comments allowed, as Orthanc allows), applies
`ORTHANC__SECTION_KEY` environment overrides (the orthancteam Docker convention) and returns a
frozen `Settings`. Keys we don't know are kept in `Settings.raw` and reported once by the caller.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .model.tls import FIPS_CIPHERS, DicomTls, HttpsTls

log = logging.getLogger("orthanc_py.config")


@dataclass(frozen=True)
class Key:
    """A configuration key: Orthanc's name, its default and what it does."""

    name: str
    default: Any
    help: str


KEYS: tuple[Key, ...] = (
    Key("Name", "MyOrthanc", "Name of this server, shown in /system"),
    Key("StorageDirectory", "OrthancStorage", "Folder where DICOM files are stored"),
    Key("IndexDirectory", None, "Folder of the SQLite index (defaults to StorageDirectory)"),
    Key("StorageCompression", False, "Compress new attachments with zlib (Orthanc's format: 8-byte size prefix)"),
    Key("StoreMD5ForAttachments", True, "Report the MD5 of attachments (computed when first asked for)"),
    Key("CheckRevisions", False, "PUT/DELETE of metadata and attachments must name the current revision (If-Match)"),
    Key("UserMetadata", {}, 'Names of user metadata: {"name": index} (index 1024-65535)'),
    Key("UserContentType", {}, 'Names of user attachments: {"name": index} or {"name": [index, "mime"]}'),
    Key("SyncStorageArea", True, "fsync each stored file before acknowledging it"),
    Key("MaximumStorageSize", 0, "Maximum storage size in MB (0 = unlimited)"),
    Key("MaximumPatientCount", 0, "Maximum number of patients (0 = unlimited)"),
    Key("MaximumStorageMode", "Recycle", 'At a limit: "Recycle" the oldest patients, or "Reject" the store'),
    Key("HttpServerEnabled", True, "Serve the REST API"),
    Key("HttpPort", 8042, "HTTP port of the REST API"),
    Key("HttpDescribeErrors", True, "Error answers carry Orthanc's JSON description (else the status alone)"),
    Key("SslEnabled", False, "HTTPS on HttpPort"),
    Key("SslCertificate", "certificate.pem", "HTTPS: PEM file with the certificate and its private key"),
    Key("SslVerifyPeers", False, "HTTPS: clients must present a certificate among SslTrustedClientCertificates"),
    Key("SslTrustedClientCertificates", "trustedCertificates.pem", "HTTPS: the trusted client certificates (PEM)"),
    Key("SslMinimumProtocolVersion", 4, "HTTPS: 2 TLS 1.0, 3 TLS 1.1, 4 TLS 1.2 (default), 5 TLS 1.3"),
    Key("SslCiphersAccepted", None, "HTTPS: OpenSSL cipher names (default: Orthanc's FIPS 140-2 list)"),
    Key("HttpBindAddress", None, "Address to bind (default: all, or loopback when remote access is off)"),
    Key("DicomServerEnabled", True, "Run the DICOM server"),
    Key("DicomAet", "ORTHANC", "Application entity title of this server"),
    Key("DicomPort", 4242, "DICOM port"),
    Key("DicomCheckCalledAet", False, "Refuse associations whose called AET is not DicomAet"),
    Key("DicomAlwaysAllowEcho", True, "Answer C-ECHO from any peer"),
    Key("DicomAlwaysAllowStore", True, "Accept C-STORE from any peer"),
    Key("DicomAlwaysAllowFind", False, "Answer C-FIND from peers not in DicomModalities"),
    Key("DicomAlwaysAllowMove", False, "Answer C-MOVE from peers not in DicomModalities"),
    Key("DicomAlwaysAllowGet", False, "Answer C-GET from peers not in DicomModalities"),
    Key("DicomTlsEnabled", False, "DICOM TLS on DicomPort and towards modalities with UseDicomTls"),
    Key("DicomTlsCertificate", None, "DICOM TLS: this server's certificate (PEM)"),
    Key("DicomTlsPrivateKey", None, "DICOM TLS: the private key of the certificate (PEM)"),
    Key("DicomTlsTrustedCertificates", None, "DICOM TLS: the certificates of trusted peers (PEM)"),
    Key("DicomTlsRemoteCertificateRequired", True, "DICOM TLS: a client must present a trusted certificate"),
    Key("DicomTlsMinimumProtocolVersion", 0, "DICOM TLS: 0 default (TLS 1.2+), 2 TLS 1.0, 3 1.1, 4 1.2, 5 1.3"),
    Key("DicomTlsCiphersAccepted", [], "DICOM TLS: OpenSSL cipher names (empty: the defaults)"),
    Key("DicomAlwaysAllowFindWorklist", False, "Answer worklist C-FIND from peers not in DicomModalities"),
    Key("DicomEchoChecksFind", False, "C-ECHO SCU also checks that the peer answers a C-FIND"),
    Key("SynchronousCMove", True, "An incoming C-MOVE sends the instances before answering (else: as a job)"),
    Key("DicomCheckModalityHost", False, "A peer is known only if its IP matches the Host of its modality"),
    Key("DicomScpTimeout", 30, "Seconds of inactivity before an incoming association is closed"),
    Key("DicomScuTimeout", 10, "Seconds before an outgoing DICOM operation gives up"),
    Key("DicomAssociationCloseDelay", 5, "Seconds an idle outgoing association stays open for reuse"),
    Key(
        "StorageCommitmentReportsSize", 100, "Storage commitment reports kept in memory (least recently used go first)"
    ),
    Key("UnknownSopClassAccepted", False, "Accept C-STORE of SOP classes we do not know"),
    Key("AcceptedTransferSyntaxes", ["*"], "Transfer syntaxes accepted by the C-STORE SCP (wildcards allowed)"),
    Key("RemoteAccessAllowed", False, "Accept HTTP clients that are not on the loopback interface"),
    Key("AuthenticationEnabled", None, "HTTP Basic auth (default: on iff remote access is allowed)"),
    Key("RegisteredUsers", {}, 'HTTP users: {"user": "password"}'),
    Key("StableAge", 60, "Seconds without new instance before a resource becomes stable"),
    Key("OverwriteInstances", False, "Replace an instance received again instead of ignoring it"),
    Key("ReadOnly", False, "Serve the index and the storage without ever modifying them (Orthanc 1.12.5)"),
    Key("RestApiWriteToFileSystemEnabled", False, "Allow POST /instances/{id}/export to write files on this host"),
    Key("MetricsEnabled", True, "Serve /tools/metrics-prometheus (switchable at run time with PUT /tools/metrics)"),
    Key("LogExportedResources", False, "Record sent resources in /exports"),
    Key("LimitFindResults", 0, "Maximum patients/studies/series answered by a find (0 = no limit)"),
    Key("LimitFindInstances", 0, "Maximum instances answered by a find (0 = no limit)"),
    Key("CaseSensitivePN", False, "Case-sensitive matching of person names in finds"),
    Key("DefaultEncoding", "Latin1", "Encoding assumed when SpecificCharacterSet is absent"),
    Key("Dictionary", {}, 'User-defined tags: {"gggg,eeee": [VR, name, min, max, (private creator)]}'),
    Key("DefaultPrivateCreator", "", "Private creator of the Dictionary entries of private tags that name none"),
    Key("LoadPrivateDictionary", True, "Name private tags from DCMTK's private dictionary"),
    Key("KeepAlive", True, "HTTP keep-alive"),
    Key("TcpNoDelay", True, "Disable Nagle's algorithm on HTTP sockets"),
    Key("HttpTimeout", 60, "HTTP keep-alive timeout in seconds"),
    Key("DicomModalities", {}, 'Known DICOM peers: {"name": [AET, host, port]}'),
    Key("OrthancPeers", {}, "Known Orthanc peers"),
    Key("DicomModalitiesInDatabase", False, "Keep the modalities changed by PUT/DELETE /modalities in the index"),
    Key("StrictAetComparison", False, "Compare the AETs of DicomModalities case-sensitively"),
    Key("OrthancPeersInDatabase", False, "Keep the peers changed by PUT/DELETE /peers in the index"),
    Key("HttpProxy", "", "Proxy of the HTTP requests to Orthanc peers"),
    Key("HttpsVerifyPeers", True, "Check the certificates of HTTPS peers"),
    Key("HttpsCACertificates", "", "CA certificates (PEM file) that HTTPS peers are checked against"),
    Key(
        "ExtraMainDicomTags",
        {},
        'Tags added to the main DICOM tags of each level: {"Study": ["Name", "gggg,eeee"], "Series": [...], ...}',
    ),
    Key("Plugins", [], "Orthanc plugins (not applicable: ignored)"),
    Key("QueryRetrieveSize", 100, "How many /queries are kept (the oldest go first)"),
    # Orthanc's tuning knobs of its own threads, caches and libraries: accepted, no effect here
    Key("HttpThreadsCount", 50, "Orthanc's HTTP threads (accepted; the event loop serves every request)"),
    Key("DicomThreadsCount", 4, "Orthanc's DICOM threads (accepted; one thread per association here)"),
    Key("HttpRequestTimeout", 30, "civetweb's request timeout (accepted; HttpTimeout bounds idle connections)"),
    Key("HttpVerbose", False, "civetweb's verbose log (accepted; see --verbose)"),
    Key("HttpCompressionEnabled", False, "Orthanc's gzip of answers (accepted; answers are not compressed)"),
    Key("MaximumStorageCacheSize", 128, "Orthanc's storage cache in MB (accepted; the page cache serves)"),
    Key("MaximumPduLength", 16384, "DCMTK's PDU length (accepted; PDUs of any size are taken)"),
    Key("MallocArenaMax", 5, "glibc arenas (accepted; set by the server itself)"),
    Key("OrthancExplorerEnabled", True, "Orthanc Explorer (accepted; no web UI yet)"),
    Key("StorageAccessOnFind", "Always", "When finds may read files (accepted; finds read the index first)"),
    Key("DeidentifyLogs", True, "Orthanc's log anonymization (accepted, not applied)"),
    Key("DeidentifyLogsDicomVersion", "2021b", "(accepted; see DeidentifyLogs)"),
    Key("BuiltinDecoderTranscoderOrder", "After", "(accepted; there are no decoder plugins)"),
    Key("TranscodeDicomProtocol", True, "(accepted; a C-STORE SCU transcodes when the peer needs it)"),
    Key("StoreDicom", True, "(accepted; DICOM files are always stored)"),
    Key("DicomScuPreferredTransferSyntax", "1.2.840.10008.1.2.1", "(accepted; the SCU falls back to this default)"),
    Key("ExecuteLuaEnabled", False, "Allow POST /tools/execute-script (runs any Lua sent to it)"),
    Key("LuaScripts", [], "Lua scripts loaded at start, in order"),
    Key("MediaArchiveSize", 1, "Archives of asynchronous archive jobs kept for download (/jobs/{id}/archive)"),
    Key("ZipLoaderThreads", 0, "Threads reading the files of an archive ahead of the ZIP writer (at least one)"),
    Key("TemporaryDirectory", None, "Folder of temporary files (asynchronous archives); default: the system's"),
    Key("SynchronousZipStream", True, "Synchronous archives are streamed as they are written (always, here)"),
    Key("LuaHeartBeatPeriod", 0, "Seconds between two calls of the Lua callback OnHeartBeat (0: never)"),
    Key("DicomLossyTranscodingQuality", 90, "Quality (1-100) of lossy transcoding (JPEG baseline/extended)"),
    Key("IngestTranscoding", None, "Transfer syntax every received instance is transcoded to before it is stored"),
    Key("IngestTranscodingOfUncompressed", True, "Ingest transcoding applies to uncompressed received files"),
    Key("IngestTranscodingOfCompressed", True, "Ingest transcoding applies to compressed received files"),
    Key("ConcurrentJobs", 2, "Jobs running at the same time (0: one per CPU core)"),
    Key("JobsHistorySize", 10, "Finished jobs kept in /jobs"),
    Key("SaveJobs", True, "Save the jobs in the index and take them up again after a restart"),
    Key("WebDavEnabled", True, "Serve the WebDAV tree under /webdav/ (by patients, studies, dates, UIDs; uploads)"),
    Key("WebDavDeleteAllowed", False, "Allow the deletion of DICOM resources through WebDAV"),
    Key("WebDavUploadAllowed", True, "Allow uploads through WebDAV (/webdav/uploads/: files stored as instances)"),
    Key("Worklists", {}, 'Worklists: {"Enable", "Database" (folder of *.wl), "FilterIssuerAet", "LimitAnswers"}'),
    Key("DicomWeb", {}, 'DICOMweb plugin options; "Servers": remote DICOMweb servers, "ServersInDatabase"'),
    Key(
        "PostgreSQL",
        {},
        'PostgreSQL index (Orthanc\'s plugin keys): "EnableIndex", "Host", "Port", "Database", "Username", '
        '"Password" or "ConnectionUri", "Lock", "IndexConnectionsCount", "MaximumConnectionRetries"...',
    ),
)

_DEFAULTS = {k.name: k.default for k in KEYS}


@dataclass(frozen=True)
class Settings:
    """Typed view of the configuration; `raw` keeps every key as read (unknown ones included)."""

    name: str = "MyOrthanc"
    storage_directory: Path = Path("OrthancStorage")
    index_directory: Path = Path("OrthancStorage")
    sync_storage_area: bool = True
    http_port: int = 8042
    http_bind_address: str | None = None
    http_server_enabled: bool = True
    dicom_server_enabled: bool = True
    dicom_aet: str = "ORTHANC"
    dicom_port: int = 4242
    dicom_check_called_aet: bool = False
    dicom_always_allow_echo: bool = True
    dicom_always_allow_store: bool = True
    dicom_always_allow_find: bool = False
    dicom_always_allow_move: bool = False
    dicom_always_allow_get: bool = False
    dicom_always_allow_find_worklist: bool = False
    worklists: Mapping[str, Any] = field(default_factory=dict)
    dicom_tls: DicomTls | None = None
    https: HttpsTls | None = None
    synchronous_cmove: bool = True
    dicom_echo_checks_find: bool = False
    dicom_check_modality_host: bool = False
    dicom_scp_timeout: float = 30.0
    unknown_sop_class_accepted: bool = False
    accepted_transfer_syntaxes: tuple[str, ...] = ("*",)
    dicom_scu_timeout: float = 10.0
    dicom_association_close_delay: float = 5.0
    storage_commitment_reports_size: int = 100
    dicom_modalities: Mapping[str, Any] = field(default_factory=dict)
    orthanc_peers: Mapping[str, Any] = field(default_factory=dict)
    remote_access_allowed: bool = False
    authentication_enabled: bool = False
    registered_users: Mapping[str, str] = field(default_factory=dict)
    stable_age: float = 60.0
    overwrite_instances: bool = False
    read_only: bool = False
    rest_api_write_to_file_system: bool = False
    metrics_enabled: bool = True
    log_exported_resources: bool = False
    limit_find_results: int = 0
    limit_find_instances: int = 0
    case_sensitive_pn: bool = False
    default_encoding: str = "Latin1"
    dictionary: Mapping[str, Any] = field(default_factory=dict)
    default_private_creator: str = ""
    load_private_dictionary: bool = True
    keep_alive: bool = True
    http_timeout: float = 60.0
    maximum_storage_size_mb: int = 0
    maximum_patient_count: int = 0
    maximum_storage_mode: str = "Recycle"
    storage_compression: bool = False
    store_md5: bool = True
    check_revisions: bool = False
    user_metadata: Mapping[str, int] = field(default_factory=dict)
    user_content_types: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    execute_lua_enabled: bool = False
    lua_scripts: tuple[Path, ...] = ()
    lua_heartbeat_period: float = 0.0
    lossy_quality: int = 90
    ingest_transcoding: str | None = None
    ingest_transcoding_of_uncompressed: bool = True
    ingest_transcoding_of_compressed: bool = True
    concurrent_jobs: int = 2
    jobs_history_size: int = 10
    save_jobs: bool = True
    webdav_enabled: bool = True
    webdav_delete_allowed: bool = False
    webdav_upload_allowed: bool = True
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def unknown_keys(self) -> list[str]:
        """Top-level keys we read but don't understand (reported once at startup)."""
        return sorted(k for k in self.raw if k not in _DEFAULTS)


_COMMENT_RE = re.compile(r'"(?:\\.|[^"\\])*"|//[^\n]*|/\*.*?\*/', re.S)


def strip_comments(text: str) -> str:
    """Remove // and /* */ comments outside strings (Orthanc's JSON reader accepts them)."""
    return _COMMENT_RE.sub(lambda m: m.group(0) if m.group(0).startswith('"') else "", text)


def parse_json_with_comments(text: str, origin: str = "configuration") -> dict[str, Any]:
    """Parse one configuration document; a clear error names the file on bad JSON."""
    try:
        data = orjson.loads(strip_comments(text))
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{origin}: invalid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{origin}: the configuration must be a JSON object")
    return data


def read_sources(path: str | Path | None) -> dict[str, Any]:
    """Read a JSON file, or every *.json file of a folder merged (a key twice is an error)."""
    if path is None:
        return {}
    p = Path(path)
    if p.is_dir():
        merged: dict[str, Any] = {}
        for f in sorted(p.glob("*.json")):
            for key, value in parse_json_with_comments(f.read_text("utf-8"), str(f)).items():
                if key in merged:
                    raise ValueError(f"{f}: key {key!r} is defined in several configuration files")
                merged[key] = value
        return merged
    if not p.exists():
        raise ValueError(f"configuration file not found: {p}")
    return parse_json_with_comments(p.read_text("utf-8"), str(p))


def _squash(name: str) -> str:
    return name.replace("_", "").lower()


def _pascal(segment: str) -> str:
    return "".join(part.capitalize() for part in segment.lower().split("_"))


def _env_value(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def apply_environment(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Apply `ORTHANC__SECTION__KEY=value` overrides (value parsed as JSON when it is JSON).

    Segments are matched to existing or known keys case-insensitively, ignoring underscores
    (`ORTHANC__DICOM_AET` -> `DicomAet`, `ORTHANC__POSTGRESQL__HOST` -> `PostgreSQL.Host`).
    """
    out = dict(raw)
    for var, text in sorted(environ.items()):
        if not var.startswith("ORTHANC__") or len(var) <= 9:
            continue
        segments = var[9:].split("__")
        node: dict[str, Any] = out
        for i, seg in enumerate(segments):
            known = [k for k in node if _squash(k) == _squash(seg)]
            if i == 0 and not known:
                known = [k for k in _DEFAULTS if _squash(k) == _squash(seg)]
            key = known[0] if known else _pascal(seg)
            if i == len(segments) - 1:
                node[key] = _env_value(text)
            else:
                child = node.get(key)
                if not isinstance(child, dict):
                    child = {}
                else:
                    child = dict(child)
                node[key] = child
                node = child
    return out


def _bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"configuration key {key} must be a boolean, got {value!r}")


def _strings(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"configuration key {key} must be a string or a list of strings")


def _dicom_tls(merged: Mapping[str, Any], path: Any) -> DicomTls | None:
    """DicomTlsEnabled and its files (Orthanc refuses to start without them)."""
    if not _bool(merged["DicomTlsEnabled"], "DicomTlsEnabled"):
        return None
    files = {}
    for key in ("DicomTlsCertificate", "DicomTlsPrivateKey", "DicomTlsTrustedCertificates"):
        if not merged[key]:
            raise ValueError(f"DICOM TLS is enabled, but the configuration option {key} is missing")
        files[key] = path(merged[key])
    ciphers = merged["DicomTlsCiphersAccepted"]
    return DicomTls(
        files["DicomTlsCertificate"],
        files["DicomTlsPrivateKey"],
        files["DicomTlsTrustedCertificates"],
        _bool(merged["DicomTlsRemoteCertificateRequired"], "DicomTlsRemoteCertificateRequired"),
        int(merged["DicomTlsMinimumProtocolVersion"] or 0),
        _strings(ciphers, "DicomTlsCiphersAccepted") if ciphers else (),
    )


def _https(merged: Mapping[str, Any], path: Any) -> HttpsTls | None:
    """SslEnabled and its options, as Orthanc reads them."""
    if not _bool(merged["SslEnabled"], "SslEnabled"):
        return None
    verify = _bool(merged["SslVerifyPeers"], "SslVerifyPeers")
    ciphers = merged["SslCiphersAccepted"]
    return HttpsTls(
        path(merged["SslCertificate"]),
        verify,
        path(merged["SslTrustedClientCertificates"]) if verify else None,
        int(merged["SslMinimumProtocolVersion"]),
        _strings(ciphers, "SslCiphersAccepted") if ciphers is not None else FIPS_CIPHERS,
    )


def _worklists(value: Any) -> dict[str, Any]:
    """The worklists section (the ModalityWorklists plugin's); enabled without a folder is an
    error, as the plugin refuses to start."""
    if not value:
        return {}
    if not isinstance(value, dict):
        raise ValueError("configuration key Worklists must be an object")
    if value.get("Enable") and not (isinstance(value.get("Database"), str) and value["Database"]):
        raise ValueError('The configuration option "Worklists.Database" must contain a path')
    return dict(value)


def _dictionary(value: Any) -> dict[str, list[Any]]:
    """The `Dictionary` key: {"gggg,eeee": [VR, name, min, max, (private creator)]} (checked in
    full when the dictionary is built)."""
    if not value:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, list) for v in value.values()):
        raise ValueError('configuration key Dictionary must be an object {"gggg,eeee": [VR, name, ...]}')
    return {str(k): list(v) for k, v in value.items()}


def _int(value: Any, key: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"configuration key {key} must be an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"configuration key {key} must be an integer, got {value!r}") from exc


def _user_index(value: Any, key: str, name: str) -> int:
    """A user metadata or attachment index: Orthanc accepts 1024-65535 only."""
    index = _int(value, f"{key}.{name}")
    if not 1024 <= index <= 65535:
        raise ValueError(f"configuration key {key}: {name!r} must have an index between 1024 and 65535")
    return index


def _user_numbers(value: Any, key: str) -> dict[str, int]:
    """`UserMetadata`: {"name": index}, each index used once."""
    if not isinstance(value, dict):
        raise ValueError(f"configuration key {key} must be an object {{name: index}}")
    out = {str(name): _user_index(v, key, str(name)) for name, v in value.items()}
    if len(set(out.values())) != len(out):
        raise ValueError(f"configuration key {key}: an index is used twice")
    return out


def _user_content_types(value: Any) -> dict[str, tuple[int, str]]:
    """`UserContentType`: {"name": index} or {"name": [index, "mime type"]}."""
    key = "UserContentType"
    if not isinstance(value, dict):
        raise ValueError(f"configuration key {key} must be an object {{name: index}}")
    out: dict[str, tuple[int, str]] = {}
    for name, v in value.items():
        mime = "application/octet-stream"
        if isinstance(v, list) and len(v) == 2 and isinstance(v[1], str):
            v, mime = v
        out[str(name)] = (_user_index(v, key, str(name)), mime)
    if len({i for i, _ in out.values()}) != len(out):
        raise ValueError(f"configuration key {key}: an index is used twice")
    return out


def _quality(value: Any) -> int:
    from .imaging.transcode import lossy_quality

    return lossy_quality(value)


def _ingest_syntax(value: Any) -> str | None:
    """IngestTranscoding: a transfer syntax UID (Orthanc refuses to start on an unknown one)."""
    if value is None or value == "":
        return None
    from .imaging.transcode import is_known_syntax

    if not isinstance(value, str) or not is_known_syntax(value):
        raise ValueError(f"Unknown transfer syntax for ingest transcoding: {value}")
    return value


def from_raw(raw: Mapping[str, Any], base: Path | None = None) -> Settings:
    """Build `Settings` from a merged configuration mapping (paths relative to `base`)."""
    merged = {**_DEFAULTS, **raw}

    def path(value: Any) -> Path:
        p = Path(str(value)).expanduser()
        return p if p.is_absolute() or base is None else base / p

    storage = path(merged["StorageDirectory"])
    index = path(merged["IndexDirectory"]) if merged["IndexDirectory"] else storage
    remote = _bool(merged["RemoteAccessAllowed"], "RemoteAccessAllowed")
    auth_raw = merged["AuthenticationEnabled"]
    auth = remote if auth_raw is None else _bool(auth_raw, "AuthenticationEnabled")
    users = merged["RegisteredUsers"] or {}
    if not isinstance(users, dict):
        raise ValueError("configuration key RegisteredUsers must be an object {user: password}")
    return Settings(
        name=str(merged["Name"]),
        storage_directory=storage,
        index_directory=index,
        sync_storage_area=_bool(merged["SyncStorageArea"], "SyncStorageArea"),
        http_port=_int(merged["HttpPort"], "HttpPort"),
        http_bind_address=merged["HttpBindAddress"],
        http_server_enabled=_bool(merged["HttpServerEnabled"], "HttpServerEnabled"),
        dicom_server_enabled=_bool(merged["DicomServerEnabled"], "DicomServerEnabled"),
        dicom_aet=str(merged["DicomAet"]),
        dicom_port=_int(merged["DicomPort"], "DicomPort"),
        dicom_check_called_aet=_bool(merged["DicomCheckCalledAet"], "DicomCheckCalledAet"),
        dicom_always_allow_echo=_bool(merged["DicomAlwaysAllowEcho"], "DicomAlwaysAllowEcho"),
        dicom_always_allow_store=_bool(merged["DicomAlwaysAllowStore"], "DicomAlwaysAllowStore"),
        dicom_always_allow_find=_bool(merged["DicomAlwaysAllowFind"], "DicomAlwaysAllowFind"),
        dicom_always_allow_move=_bool(merged["DicomAlwaysAllowMove"], "DicomAlwaysAllowMove"),
        dicom_always_allow_get=_bool(merged["DicomAlwaysAllowGet"], "DicomAlwaysAllowGet"),
        dicom_always_allow_find_worklist=_bool(merged["DicomAlwaysAllowFindWorklist"], "DicomAlwaysAllowFindWorklist"),
        worklists=_worklists(merged["Worklists"]),
        dicom_tls=_dicom_tls(merged, path),
        https=_https(merged, path),
        synchronous_cmove=_bool(merged["SynchronousCMove"], "SynchronousCMove"),
        dicom_echo_checks_find=_bool(merged["DicomEchoChecksFind"], "DicomEchoChecksFind"),
        dicom_check_modality_host=_bool(merged["DicomCheckModalityHost"], "DicomCheckModalityHost"),
        dicom_scp_timeout=float(merged["DicomScpTimeout"]),
        unknown_sop_class_accepted=_bool(merged["UnknownSopClassAccepted"], "UnknownSopClassAccepted"),
        accepted_transfer_syntaxes=_strings(merged["AcceptedTransferSyntaxes"], "AcceptedTransferSyntaxes"),
        dicom_scu_timeout=float(merged["DicomScuTimeout"]),
        dicom_association_close_delay=float(merged["DicomAssociationCloseDelay"]),
        storage_commitment_reports_size=int(merged["StorageCommitmentReportsSize"]),
        dicom_modalities=dict(merged["DicomModalities"] or {}),
        orthanc_peers=dict(merged["OrthancPeers"] or {}),
        remote_access_allowed=remote,
        authentication_enabled=auth,
        registered_users={str(k): str(v) for k, v in users.items()},
        stable_age=float(merged["StableAge"]),
        overwrite_instances=_bool(merged["OverwriteInstances"], "OverwriteInstances"),
        read_only=_bool(merged["ReadOnly"], "ReadOnly"),
        rest_api_write_to_file_system=_bool(
            merged["RestApiWriteToFileSystemEnabled"], "RestApiWriteToFileSystemEnabled"
        ),
        metrics_enabled=_bool(merged["MetricsEnabled"], "MetricsEnabled"),
        log_exported_resources=_bool(merged["LogExportedResources"], "LogExportedResources"),
        limit_find_results=_int(merged["LimitFindResults"], "LimitFindResults"),
        limit_find_instances=_int(merged["LimitFindInstances"], "LimitFindInstances"),
        case_sensitive_pn=_bool(merged["CaseSensitivePN"], "CaseSensitivePN"),
        default_encoding=str(merged["DefaultEncoding"]),
        dictionary=_dictionary(merged["Dictionary"]),
        default_private_creator=str(merged["DefaultPrivateCreator"] or ""),
        load_private_dictionary=_bool(merged["LoadPrivateDictionary"], "LoadPrivateDictionary"),
        keep_alive=_bool(merged["KeepAlive"], "KeepAlive"),
        http_timeout=float(merged["HttpTimeout"]),
        maximum_storage_size_mb=_int(merged["MaximumStorageSize"], "MaximumStorageSize"),
        maximum_patient_count=_int(merged["MaximumPatientCount"], "MaximumPatientCount"),
        maximum_storage_mode="Reject" if merged["MaximumStorageMode"] == "Reject" else "Recycle",
        storage_compression=_bool(merged["StorageCompression"], "StorageCompression"),
        store_md5=_bool(merged["StoreMD5ForAttachments"], "StoreMD5ForAttachments"),
        check_revisions=_bool(merged["CheckRevisions"], "CheckRevisions"),
        user_metadata=_user_numbers(merged["UserMetadata"], "UserMetadata"),
        user_content_types=_user_content_types(merged["UserContentType"]),
        execute_lua_enabled=_bool(merged["ExecuteLuaEnabled"], "ExecuteLuaEnabled"),
        lua_scripts=tuple(path(p) for p in _strings(merged["LuaScripts"], "LuaScripts")),
        lua_heartbeat_period=float(merged["LuaHeartBeatPeriod"] or 0),
        lossy_quality=_quality(merged["DicomLossyTranscodingQuality"]),
        ingest_transcoding=_ingest_syntax(merged["IngestTranscoding"]),
        ingest_transcoding_of_uncompressed=_bool(
            merged["IngestTranscodingOfUncompressed"], "IngestTranscodingOfUncompressed"
        ),
        ingest_transcoding_of_compressed=_bool(
            merged["IngestTranscodingOfCompressed"], "IngestTranscodingOfCompressed"
        ),
        concurrent_jobs=_int(merged["ConcurrentJobs"], "ConcurrentJobs"),
        jobs_history_size=_int(merged["JobsHistorySize"], "JobsHistorySize"),
        save_jobs=_bool(merged["SaveJobs"], "SaveJobs"),
        webdav_enabled=_bool(merged["WebDavEnabled"], "WebDavEnabled"),
        webdav_delete_allowed=_bool(merged["WebDavDeleteAllowed"], "WebDavDeleteAllowed"),
        webdav_upload_allowed=_bool(merged["WebDavUploadAllowed"], "WebDavUploadAllowed"),
        raw=dict(raw),
    )


def load(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the configuration the way Orthanc does, then apply environment overrides.

    Relative paths are resolved against the current directory, like Orthanc.
    """
    raw = apply_environment(read_sources(path), os.environ if environ is None else environ)
    return from_raw(raw, Path.cwd())
