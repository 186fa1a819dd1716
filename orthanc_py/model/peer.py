"""A remote Orthanc peer as Orthanc configures it (`OrthancPeers`): the array form
`[Url(, Username, Password)]` or the object form with Url, Username, Password, HttpHeaders,
Timeout and the client certificate keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_CERTIFICATE_KEYS = ("CertificateFile", "CertificateKeyFile", "CertificateKeyPassword")


@dataclass(frozen=True)
class Peer:
    """One entry of OrthancPeers."""

    url: str
    username: str | None = None
    password: str | None = None
    http_headers: dict[str, str] = field(default_factory=dict)
    timeout: int = 0
    pkcs11: bool = False
    certificates: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """GET /peers/{id}/configuration: Orthanc never discloses the password nor the header
        values (a null password and the header names)."""
        out: dict[str, Any] = {
            "HttpHeaders": sorted(self.http_headers),
            "Pkcs11": self.pkcs11,
            "Timeout": self.timeout,
            "Url": self.url,
        }
        if self.username is not None:
            out["Username"] = self.username
            out["Password"] = None
        if "CertificateFile" in self.certificates:
            out["CertificateFile"] = self.certificates["CertificateFile"]
            out["CertificateKeyFile"] = self.certificates.get("CertificateKeyFile")
            out["CertificateKeyPassword"] = None
        return out


def _url(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("The URL of a peer must be a string")
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"Bad URL: {value}")
    return value if value.endswith("/") else value + "/"


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value


def parse_peer(value: Any) -> Peer:
    """Read one configuration entry; ValueError with a readable message when malformed.
    A username needs its password and the reverse (Orthanc refuses one without the other)."""
    if isinstance(value, list):
        if len(value) not in (1, 3) or not all(isinstance(v, str) for v in value):
            raise ValueError("A peer is [Url] or [Url, Username, Password]")
        url = _url(value[0])
        return Peer(url, value[1], value[2]) if len(value) == 3 else Peer(url)
    if not isinstance(value, dict) or "Url" not in value:
        raise ValueError("A peer is a JSON array or an object with a Url")
    username = _text(value["Username"], "Username") if "Username" in value else None
    password = _text(value["Password"], "Password") if "Password" in value else None
    if (username is None) != (password is None):
        raise ValueError("Username and Password must be given together")
    headers = value.get("HttpHeaders", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ValueError("HttpHeaders must be an object of strings")
    timeout = value.get("Timeout", 0)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
        raise ValueError("Timeout must be a positive integer")
    pkcs11 = value.get("Pkcs11", False)
    if not isinstance(pkcs11, bool):
        raise ValueError("Pkcs11 must be a Boolean")
    certificates = {k: _text(value[k], k) for k in _CERTIFICATE_KEYS if k in value}
    return Peer(_url(value["Url"]), username, password, dict(headers), timeout, pkcs11, certificates)
