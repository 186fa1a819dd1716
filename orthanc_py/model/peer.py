"""A remote Orthanc peer as Orthanc configures it (`OrthancPeers`, Orthanc's
WebServiceParameters): the array form `[Url(, Username, Password)]` or the object form with
Url (or URL), Username, Password, HttpHeaders, Timeout, Pkcs11, the client certificate keys,
and any other key kept as a user property (a string)."""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from typing import Any

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

_NAME = re.compile(r"^[A-Za-z0-9_-]*$")


class PeerFormatError(ValueError):
    """A malformed peer (Orthanc: BadFileFormat); the message is Orthanc's details, or empty."""


@dataclass(frozen=True)
class Peer:
    """One entry of OrthancPeers (empty strings stand for what is not set, as in Orthanc)."""

    url: str
    username: str = ""
    password: str = ""
    http_headers: dict[str, str] = field(default_factory=dict)
    timeout: int = 0
    pkcs11: bool = False
    certificate_file: str = ""
    certificate_key_file: str = ""
    certificate_key_password: str = ""
    user_properties: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """GET /peers/{id}/configuration (Orthanc's FormatPublic): the password, the key file
        and its password are null, the HTTP headers are listed by name only."""
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

    def serialize(self, force_advanced: bool = False, include_passwords: bool = True) -> Any:
        """Orthanc's Serialize: the array form when it says everything (and not forced), else
        the object form. A job's Content shows it without passwords (the password as "")."""
        advanced = (
            self.certificate_file
            or self.certificate_key_file
            or self.certificate_key_password
            or self.pkcs11
            or self.http_headers
            or self.user_properties
            or self.timeout
        )
        if not force_advanced and not advanced:
            out_list: list[str] = [self.url]
            if self.username or self.password:
                out_list += [self.username, self.password if include_passwords else ""]
            return out_list
        out: dict[str, Any] = {"Url": self.url}
        if self.username or self.password:
            out["Username"] = self.username
            if include_passwords:
                out["Password"] = self.password
        if self.certificate_file:
            out["CertificateFile"] = self.certificate_file
        if self.certificate_key_file:
            out["CertificateKeyFile"] = self.certificate_key_file
        if self.certificate_key_password and include_passwords:
            out["CertificateKeyPassword"] = self.certificate_key_password
        out["Pkcs11"] = self.pkcs11
        out["Timeout"] = self.timeout
        out["HttpHeaders"] = dict(self.http_headers)
        out.update(self.user_properties)
        return dict(sorted(out.items()))


def check_name(name: str) -> None:
    """Orthanc's rule for the symbolic names of modalities and peers."""
    if not _NAME.match(name):
        raise PeerFormatError(
            "Only alphanumeric, dash characters and underscores are allowed "
            f"in the names of modalities/peers, but found: {name}"
        )


def _url(value: str) -> str:
    if "://" in value and not value.startswith(("http://", "https://")):
        raise PeerFormatError(f"Bad URL: {value}")
    if not value:
        raise PeerFormatError("Empty URL")
    return value if value.endswith("/") else value + "/"


def _text(value: dict[str, Any], key: str) -> str:
    found = value.get(key, "")
    if not isinstance(found, str):
        raise PeerFormatError("")
    return found


def _credentials(username: str, password: str) -> tuple[str, str]:
    if not username and password:
        raise PeerFormatError("")
    return username, password


TIMEOUT_ERROR = "Unsigned integer value expected in field: Timeout"


def parse_peer(value: Any, timeout_error: str = TIMEOUT_ERROR) -> Peer:
    """Read one configuration entry (Orthanc's WebServiceParameters::Unserialize; also the
    DICOMweb plugin's servers, whose framework words the Timeout error as `timeout_error`);
    PeerFormatError with Orthanc's details when malformed."""
    if isinstance(value, list):
        if len(value) not in (1, 3):
            raise PeerFormatError("")
        if not all(isinstance(v, str) for v in value):
            raise PeerFormatError("")
        url = _url(value[0])
        if len(value) == 1:
            return Peer(url)
        username, password = _credentials(value[1], value[2])
        return Peer(url, username, password)
    if not isinstance(value, dict):
        raise PeerFormatError("")
    url = _text(value, "Url") or _text(value, "URL")
    url = _url(url)
    username, password = _credentials(_text(value, "Username"), _text(value, "Password"))
    cert = _text(value, "CertificateFile")
    key_file = key_password = ""
    if cert:
        key_file = _text(value, "CertificateKeyFile")
        key_password = _text(value, "CertificateKeyPassword")
    pkcs11 = value.get("Pkcs11", False)
    if not isinstance(pkcs11, bool):
        raise PeerFormatError("")
    headers = value.get("HttpHeaders", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise PeerFormatError("")
    props: dict[str, str] = {}
    for key, item in value.items():
        if key in _RESERVED:
            continue
        if isinstance(item, bool):
            props[key] = "1" if item else "0"
        elif isinstance(item, str):
            props[key] = item
        elif isinstance(item, int):
            props[key] = str(item)
        else:
            raise PeerFormatError(f"User-defined properties associated with a Web service must be strings: {key}")
    timeout = value.get("Timeout", 0)
    if isinstance(timeout, float) and timeout.is_integer():
        timeout = int(timeout)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
        raise PeerFormatError(timeout_error)
    return Peer(url, username, password, dict(headers), timeout, pkcs11, cert, key_file, key_password, props)


def ssl_context(
    service: Peer, verify: bool, ca_file: str, cache: dict[tuple[str, str, str], ssl.SSLContext]
) -> ssl.SSLContext | bool:
    """The TLS settings of a request to a web service (a peer, a DICOMweb server): True (the
    default checks) unless HttpsVerifyPeers is off, HttpsCACertificates names the CAs or the
    service has a client certificate; contexts are kept in `cache` by certificate."""
    if not service.certificate_file and verify and not ca_file:
        return True
    key = (service.certificate_file, service.certificate_key_file, service.certificate_key_password)
    found = cache.get(key)
    if found is None:
        found = ssl.create_default_context(cafile=(ca_file or None) if verify else None)
        if not verify:
            found.check_hostname = False
            found.verify_mode = ssl.CERT_NONE
        if service.certificate_file:
            found.load_cert_chain(
                service.certificate_file,
                service.certificate_key_file or None,
                service.certificate_key_password or None,
            )
        cache[key] = found
    return found
