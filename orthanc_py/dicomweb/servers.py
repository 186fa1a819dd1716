"""The DICOMweb servers this Orthanc talks to as a client (`DicomWeb.Servers`), as Orthanc's
DICOMweb plugin keeps them: each entry is Orthanc's web-service parameters (the array form
`[Url(, Username, Password)]` or the object form with Url, Username, Password, HttpHeaders,
Timeout, Pkcs11, client certificate, plus free "user properties" such as HasDelete or
ChunkedTransfers, kept as strings). PUT/DELETE change the registry at run time; with
`DicomWeb.ServersInDatabase` the registry is also written to the index (a global property) and
read from there at start-up, as the plugin does."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import ErrorCode, OrthancError

log = logging.getLogger("orthanc_py.dicomweb.servers")

_RESERVED = frozenset(
    (
        "CertificateFile",
        "CertificateKeyFile",
        "CertificateKeyPassword",
        "HttpHeaders",
        "Password",
        "Pkcs11",
        "Url",
        "URL",
        "Username",
        "Timeout",
    )
)
PROPERTY_KEY = "5468"
"""The global property the plugin stores its servers in (GLOBAL_PROPERTY_SERVERS)."""


def _bad(details: str | None = None) -> OrthancError:
    return OrthancError(ErrorCode.BAD_FILE_FORMAT, details)


@dataclass(frozen=True)
class DicomWebServer:
    """One remote DICOMweb server (Orthanc's WebServiceParameters)."""

    url: str
    username: str = ""
    password: str = ""
    http_headers: dict[str, str] = field(default_factory=dict)
    user_properties: dict[str, str] = field(default_factory=dict)
    timeout: int = 0
    pkcs11: bool = False
    certificate_file: str = ""
    certificate_key_file: str = ""
    certificate_key_password: str = ""

    def flag(self, key: str, default: bool) -> bool:
        """A Boolean user property (HasDelete, ChunkedTransfers...); a value that is no Boolean
        is a BadFileFormat, as the plugin reports it."""
        value = self.user_properties.get(key)
        if value is None:
            return default
        if value in ("true", "1"):
            return True
        if value in ("false", "0"):
            return False
        raise _bad(
            "Bad value for a Boolean user property in the parameters of a Web service: "
            f'Property "{key}" equals: {value}'
        )

    def public_json(self) -> dict[str, Any]:
        """GET /dicom-web/servers?expand: no password, header names only (FormatPublic)."""
        out: dict[str, Any] = {"Url": self.url}
        if self.username:
            out["Username"] = self.username
            out["Password"] = None
        if self.certificate_file:
            out["CertificateFile"] = self.certificate_file
            out["CertificateKeyFile"] = None
            out["CertificateKeyPassword"] = None
        out["Pkcs11"] = self.pkcs11
        out["Timeout"] = self.timeout
        out["HttpHeaders"] = sorted(self.http_headers)
        out.update(self.user_properties)
        return dict(sorted(out.items()))

    def serialized(self) -> dict[str, Any]:
        """The advanced format with passwords (what ServersInDatabase stores)."""
        out: dict[str, Any] = {"Url": self.url}
        if self.username or self.password:
            out["Username"] = self.username
            out["Password"] = self.password
        if self.certificate_file:
            out["CertificateFile"] = self.certificate_file
        if self.certificate_key_file:
            out["CertificateKeyFile"] = self.certificate_key_file
        if self.certificate_key_password:
            out["CertificateKeyPassword"] = self.certificate_key_password
        out["Pkcs11"] = self.pkcs11
        out["Timeout"] = self.timeout
        out["HttpHeaders"] = dict(self.http_headers)
        out.update(self.user_properties)
        return out


def _url(url: str) -> str:
    if "://" in url and not url.startswith(("http://", "https://")):
        raise _bad(f"Bad URL: {url}")
    if not url:
        raise _bad("Empty URL")
    return url if url.endswith("/") else url + "/"


def _credentials(username: str, password: str) -> tuple[str, str]:
    if not username and password:
        raise _bad()
    return username, password


def _string(value: dict[str, Any], key: str) -> str:
    found = value.get(key, "")
    if not isinstance(found, str):
        raise _bad()
    return found


def parse_server(value: Any) -> DicomWebServer:
    """One entry of DicomWeb.Servers or the body of PUT /dicom-web/servers/{id}; BadFileFormat
    when malformed (Orthanc's WebServiceParameters::Unserialize)."""
    if isinstance(value, list):
        if len(value) not in (1, 3) or not all(isinstance(v, str) for v in value):
            raise _bad()
        if len(value) == 1:
            return DicomWebServer(_url(value[0]))
        username, password = _credentials(value[1], value[2])
        return DicomWebServer(_url(value[0]), username, password)
    if not isinstance(value, dict):
        raise _bad()
    url = _string(value, "Url") or _string(value, "URL")
    username, password = _credentials(_string(value, "Username"), _string(value, "Password"))
    certificate = _string(value, "CertificateFile")
    pkcs11 = value.get("Pkcs11", False)
    if not isinstance(pkcs11, bool):
        raise _bad()
    headers = value.get("HttpHeaders", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise _bad()
    properties: dict[str, str] = {}
    for key, item in value.items():
        if key in _RESERVED:
            continue
        if isinstance(item, bool):
            properties[key] = "1" if item else "0"
        elif isinstance(item, str):
            properties[key] = item
        elif isinstance(item, int):
            properties[key] = str(item)
        else:
            raise _bad(f"User-defined properties associated with a Web service must be strings: {key}")
    timeout = value.get("Timeout", 0)
    if isinstance(timeout, float) and timeout.is_integer():
        timeout = int(timeout)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
        raise _bad("The JSON value for field Timeout must be an unsigned integer")
    return DicomWebServer(
        _url(url),
        username,
        password,
        dict(headers),
        properties,
        timeout,
        pkcs11,
        certificate,
        _string(value, "CertificateKeyFile") if certificate else "",
        _string(value, "CertificateKeyPassword") if certificate else "",
    )


class DicomWebServers:
    """The registry, by symbolic name (names sorted as the plugin's std::map lists them)."""

    def __init__(self, configured: Any = None, in_database: bool = False) -> None:
        self.in_database = in_database
        self._items: dict[str, DicomWebServer] = {}
        if in_database or configured is None:
            return
        if not isinstance(configured, dict):
            raise OrthancError(
                ErrorCode.BAD_FILE_FORMAT, 'Cannot parse the "DicomWeb.Servers" section of the configuration file'
            )
        try:
            for name, value in configured.items():
                self._items[str(name)] = parse_server(value)
        except OrthancError as err:
            log.error('Exception while parsing the "DicomWeb.Servers" section of the configuration file: %s', err)
            raise

    @classmethod
    def from_settings(cls, raw: Any) -> DicomWebServers:
        """From the `DicomWeb` section of the configuration (Servers, ServersInDatabase)."""
        section = raw.get("DicomWeb") if isinstance(raw, dict) else None
        if not isinstance(section, dict):
            return cls()
        in_database = section.get("ServersInDatabase", False) is True
        return cls(section.get("Servers", {}), in_database)

    def load_serialized(self, text: str | None) -> None:
        """ServersInDatabase: the registry as the index holds it (unreadable: none, logged)."""
        self._items.clear()
        if not text:
            return
        try:
            value = orjson.loads(text)
            if not isinstance(value, dict):
                raise ValueError("not an object")
            self._items = {str(k): parse_server(v) for k, v in value.items()}
        except (ValueError, OrthancError) as exc:
            self._items.clear()
            log.error("Cannot read the DICOMweb servers from the database, no server will be defined (%s)", exc)

    def serialized(self) -> str:
        return orjson.dumps({k: v.serialized() for k, v in self._items.items()}).decode()

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str) -> DicomWebServer:
        try:
            return self._items[name]
        except KeyError:
            raise OrthancError(ErrorCode.INEXISTENT_ITEM, f"Inexistent server: {name}") from None

    def put(self, name: str, server: DicomWebServer) -> None:
        self._items[name] = server

    def delete(self, name: str) -> None:
        if self._items.pop(name, None) is None:
            raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Unknown DICOMweb server: {name}")
