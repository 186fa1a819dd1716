"""The DICOMweb servers this Orthanc talks to as a client (`DicomWeb.Servers`), as Orthanc's
DICOMweb plugin keeps them: each entry is Orthanc's web-service parameters (the array form
`[Url(, Username, Password)]` or the object form with Url, Username, Password, HttpHeaders,
Timeout, Pkcs11, client certificate, plus free "user properties" such as HasDelete or
ChunkedTransfers, kept as strings). PUT/DELETE change the registry at run time; with
`DicomWeb.ServersInDatabase` the registry is also written to the index (a global property) and
read from there at start-up, as the plugin does."""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Any

import orjson

from ..errors import ErrorCode, OrthancError
from ..model.peer import Peer, PeerFormatError, parse_peer

log = logging.getLogger("orthanc_py.dicomweb.servers")

PROPERTY_KEY = "5468"
"""The global property the plugin stores its servers in (GLOBAL_PROPERTY_SERVERS)."""


def _bad(details: str | None = None) -> OrthancError:
    return OrthancError(ErrorCode.BAD_FILE_FORMAT, details)


@dataclass(frozen=True)
class DicomWebServer(Peer):
    """One remote DICOMweb server: Orthanc's web-service parameters, as a peer's."""

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
        return self.to_json()

    def serialized(self) -> dict[str, Any]:
        """The advanced format with passwords (what ServersInDatabase stores)."""
        out = self.serialize(force_advanced=True)
        assert isinstance(out, dict)
        return out


def parse_server(value: Any) -> DicomWebServer:
    """One entry of DicomWeb.Servers or the body of PUT /dicom-web/servers/{id}; BadFileFormat
    when malformed (Orthanc's WebServiceParameters::Unserialize, as for peers)."""
    try:
        peer = parse_peer(value, "The JSON value for field Timeout must be an unsigned integer")
    except PeerFormatError as err:
        raise _bad(str(err) or None) from None
    return DicomWebServer(**{f.name: getattr(peer, f.name) for f in fields(Peer)})


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
