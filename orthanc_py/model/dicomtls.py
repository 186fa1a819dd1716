"""DICOM TLS (DicomTlsEnabled and its options), as Orthanc sets up DCMTK's TLS layer.

With DicomTlsEnabled, DicomPort speaks TLS only; the server presents DicomTlsCertificate and
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
    # DicomTlsMinimumProtocolVersion: 0 is DCMTK's default profile (TLS 1.2 and later)
    0: ssl.TLSVersion.TLSv1_2,
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
        ctx.minimum_version = _VERSIONS.get(self.minimum_version, ssl.TLSVersion.TLSv1_2)
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
