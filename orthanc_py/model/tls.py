"""TLS as Orthanc sets it up: HTTPS for the REST API (SslEnabled, as civetweb) and DICOM TLS
(DicomTlsEnabled, as DCMTK's TLS layer).

HTTPS: SslCertificate is one PEM file holding the certificate and its private key; with
SslVerifyPeers, a client must present a certificate among SslTrustedClientCertificates.
SslMinimumProtocolVersion follows civetweb's numbers (4, the default: TLS 1.2 and later) and
SslCiphersAccepted defaults to Orthanc's list of FIPS 140-2 ciphers (TLS 1.2 and earlier).

DICOM TLS: with DicomTlsEnabled, DicomPort speaks TLS only; the server presents DicomTlsCertificate and
DicomTlsPrivateKey and checks a client certificate against DicomTlsTrustedCertificates: a
client must present a trusted one when DicomTlsRemoteCertificateRequired (the default), else
one is checked only when presented (a client without a certificate is accepted). Outgoing
associations to a modality with `UseDicomTls` use the same certificate as client certificate
and check the peer's against the trusted ones; as DCMTK, no host name is checked.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

_VERSIONS = {
    # civetweb's ssl_protocol_version for SslMinimumProtocolVersion; DicomTlsMinimumProtocolVersion
    # uses the same numbers, except 0: DCMTK's default profile (TLS 1.2 and later)
    0: ssl.TLSVersion.MINIMUM_SUPPORTED,
    1: ssl.TLSVersion.MINIMUM_SUPPORTED,
    2: ssl.TLSVersion.TLSv1,
    3: ssl.TLSVersion.TLSv1_1,
    4: ssl.TLSVersion.TLSv1_2,
    5: ssl.TLSVersion.TLSv1_3,
}


@dataclass(frozen=True, slots=True)
class DicomTls:
    certificate: Path
    private_key: Path
    trusted: Path
    remote_certificate_required: bool = True
    minimum_version: int = 0
    ciphers: tuple[str, ...] = ()

    def _context(self, purpose: ssl.Purpose, protocol: int) -> ssl.SSLContext:
        ctx = ssl.SSLContext(protocol)
        version = ssl.TLSVersion.TLSv1_2 if self.minimum_version == 0 else _VERSIONS.get(self.minimum_version)
        ctx.minimum_version = version or ssl.TLSVersion.TLSv1_2
        if self.ciphers:
            ctx.set_ciphers(":".join(self.ciphers))
        ctx.load_cert_chain(str(self.certificate), str(self.private_key))
        ctx.load_verify_locations(str(self.trusted))
        return ctx

    def server_context(self) -> ssl.SSLContext:
        """For DicomPort (raises OSError/ssl.SSLError on unreadable files: the server must not
        start half-configured)."""
        ctx = self._context(ssl.Purpose.CLIENT_AUTH, ssl.PROTOCOL_TLS_SERVER)
        ctx.verify_mode = ssl.CERT_REQUIRED if self.remote_certificate_required else ssl.CERT_OPTIONAL
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """For associations to modalities with UseDicomTls."""
        ctx = self._context(ssl.Purpose.SERVER_AUTH, ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


FIPS_CIPHERS = (
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES256-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-SHA384",
    "ECDHE-RSA-AES128-SHA256",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-RSA-AES256-SHA",
    "DHE-RSA-AES256-SHA",
    "DHE-RSA-AES128-SHA",
    "AES256-SHA",
    "AES128-SHA",
)
"""Orthanc's default SslCiphersAccepted."""


@dataclass(frozen=True, slots=True)
class HttpsTls:
    certificate: Path
    """PEM with the certificate and its private key."""
    verify_peers: bool = False
    trusted_clients: Path | None = None
    minimum_version: int = 4
    ciphers: tuple[str, ...] = FIPS_CIPHERS

    def server_context(self) -> ssl.SSLContext:
        """For the HTTP port (raises OSError/ssl.SSLError on unreadable files)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = _VERSIONS.get(self.minimum_version, ssl.TLSVersion.TLSv1_2)
        if self.ciphers:
            ctx.set_ciphers(":".join(self.ciphers))
        ctx.load_cert_chain(str(self.certificate))
        if self.verify_peers:
            ctx.load_verify_locations(str(self.trusted_clients))
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx
