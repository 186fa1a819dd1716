"""DICOM TLS on DicomPort and towards modalities with UseDicomTls, with real peers.

Orthanc's own DICOM TLS checks (orthanc-tests Tests/CheckDicomTls.py: DCMTK's echoscu with and
without certificates, a store to itself over TLS) pass against this server as against Orthanc.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import dicomgen
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from orthanc_py.config import from_raw
from tests.conftest import free_ports, self_signed_certificates

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make certificates")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: Any) -> Path:
    folder = tmp_path_factory.mktemp("tls")
    self_signed_certificates(folder, ("a", "b", "c"))
    (folder / "trusted.crt").write_text((folder / "a.crt").read_text() + (folder / "b.crt").read_text())
    return folder


def tls_server(make_server: Any, certs: Path, required: bool) -> Any:
    http, dicom = free_ports(2)
    return make_server(
        {
            "HttpPort": http,
            "DicomServerEnabled": True,
            "DicomPort": dicom,
            "DicomAet": "ORTHANCPY",
            "DicomTlsEnabled": True,
            "DicomTlsCertificate": str(certs / "a.crt"),
            "DicomTlsPrivateKey": str(certs / "a.key"),
            "DicomTlsTrustedCertificates": str(certs / "trusted.crt"),
            "DicomTlsRemoteCertificateRequired": required,
            "DicomModalities": {"self": {"AET": "ORTHANCPY", "Host": "127.0.0.1", "Port": dicom, "UseDicomTls": True}},
        }
    )


def echo(port: int, certs: Path, client: str | None, check_server: bool = True) -> bool:
    ae = AE(ae_title="SCU")
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = 10
    tls_args = None
    if client is not None or check_server:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        if check_server:
            ctx.load_verify_locations(str(certs / "a.crt"))
        else:
            ctx.verify_mode = ssl.CERT_NONE
        if client is not None:
            ctx.load_cert_chain(str(certs / f"{client}.crt"), str(certs / f"{client}.key"))
        tls_args = (ctx, "localhost")
    try:
        assoc = ae.associate("127.0.0.1", port, ae_title="ORTHANCPY", tls_args=tls_args)
    except (OSError, ssl.SSLError):
        return False
    if not assoc.is_established:
        return False
    try:
        return bool(assoc.send_c_echo().Status == 0x0000)
    finally:
        assoc.release()


def plain_echo(port: int) -> bool:
    ae = AE(ae_title="SCU")
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = 5
    assoc = ae.associate("127.0.0.1", port, ae_title="ORTHANCPY")
    ok = assoc.is_established
    if ok:
        assoc.release()
    return ok


def test_server_without_client_certificate_check(make_server, certs):
    srv = tls_server(make_server, certs, required=False)
    port = srv.ctx.dicom_port
    assert not plain_echo(port)  # the port speaks TLS only
    assert echo(port, certs, client=None)  # a client without a certificate is accepted
    assert echo(port, certs, client="b")  # a trusted one too
    assert not echo(port, certs, client="c")  # a certificate presented is checked
    assert echo(port, certs, client=None)  # and the server still serves after failed handshakes


def test_server_requiring_a_trusted_client_certificate(make_server, certs):
    srv = tls_server(make_server, certs, required=True)
    port = srv.ctx.dicom_port
    assert echo(port, certs, client="b")
    assert not echo(port, certs, client=None)
    assert not echo(port, certs, client="c")


def test_store_to_a_modality_over_tls(make_server, certs):
    srv = tls_server(make_server, certs, required=True)
    c = srv.client()
    iid = c.upload(dicomgen.make(patient=5, rows=16, columns=16))["ID"]
    r = c.post("/modalities/self/store", iid)
    assert r.status == 200, r.body
    assert r.json()["InstancesCount"] == 1 and r.json()["FailedInstancesCount"] == 0
    assert c.post("/modalities/self/echo", {}).status == 200
    # the same modality without TLS cannot talk to the TLS-only port
    port = srv.ctx.dicom_port
    assert c.put("/modalities/plain", {"AET": "ORTHANCPY", "Host": "127.0.0.1", "Port": port}).status == 200
    assert c.post("/modalities/plain/echo", {}).status == 500


@pytest.mark.skipif(not Path("/usr/bin/echoscu").exists(), reason="DCMTK not installed")
def test_dcmtk_echoscu_over_tls(make_server, certs):
    srv = tls_server(make_server, certs, required=False)
    base = ["/usr/bin/echoscu", "-aec", "ORTHANCPY", "127.0.0.1", str(srv.ctx.dicom_port)]
    trusted = ["+cf", str(certs / "a.crt")]
    assert subprocess.run(base, capture_output=True, timeout=30).returncode != 0
    ok = subprocess.run([*base, "--anonymous-tls", *trusted], capture_output=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    with_cert = [*base, "+tls", str(certs / "b.key"), str(certs / "b.crt"), *trusted]
    assert subprocess.run(with_cert, capture_output=True, timeout=30).returncode == 0


def test_configuration_errors(tmp_path, certs):
    with pytest.raises(ValueError, match="DicomTlsPrivateKey"):
        from_raw({"DicomTlsEnabled": True, "DicomTlsCertificate": "a.crt", "DicomTlsTrustedCertificates": "t.crt"})
    settings = from_raw(
        {
            "DicomTlsEnabled": True,
            "DicomTlsCertificate": "a.crt",
            "DicomTlsPrivateKey": "a.key",
            "DicomTlsTrustedCertificates": "trusted.crt",
        },
        certs,
    )
    assert settings.dicom_tls is not None and settings.dicom_tls.certificate == certs / "a.crt"
    assert settings.dicom_tls.server_context().verify_mode == ssl.CERT_REQUIRED  # the default
