"""HTTPS on HttpPort (SslEnabled and its options), as Orthanc serves it, with real clients."""

from __future__ import annotations

import http.client
import json
import shutil
import ssl
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import self_signed_certificates

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make certificates")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: Any) -> Path:
    folder = tmp_path_factory.mktemp("https")
    self_signed_certificates(folder, ("server", "client", "stranger"))
    # Orthanc's SslCertificate: one PEM with the certificate and its key
    (folder / "server.pem").write_text((folder / "server.crt").read_text() + (folder / "server.key").read_text())
    return folder


def https_server(make_server: Any, certs: Path, **extra: Any) -> int:
    """The port of a server speaking HTTPS."""
    srv = make_server({"SslEnabled": True, "SslCertificate": str(certs / "server.pem"), **extra})
    return int(srv.port)


def get(port: int, certs: Path, path: str, client: str | None = None) -> tuple[int, bytes]:
    ctx = ssl.create_default_context(cafile=str(certs / "server.crt"))
    ctx.check_hostname = False
    if client is not None:
        ctx.load_cert_chain(str(certs / f"{client}.crt"), str(certs / f"{client}.key"))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_https_serves_the_api_and_refuses_plain_http(make_server, certs):
    port = https_server(make_server, certs)
    status, body = get(port, certs, "/system")
    assert status == 200 and json.loads(body)["DicomAet"]
    plain = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        plain.request("GET", "/system")
        plain.getresponse().read()
    plain.close()
    assert get(port, certs, "/system")[0] == 200  # still serving after a plain-HTTP attempt


def test_client_certificates_with_ssl_verify_peers(make_server, certs):
    port = https_server(make_server, certs, SslVerifyPeers=True, SslTrustedClientCertificates=str(certs / "client.crt"))
    assert get(port, certs, "/system", client="client")[0] == 200
    for client in (None, "stranger"):
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            get(port, certs, "/system", client=client)


def test_lua_rest_calls_still_work_under_https(make_server, certs):
    port = https_server(
        make_server,
        certs,
        SslVerifyPeers=True,
        SslTrustedClientCertificates=str(certs / "client.crt"),
        ExecuteLuaEnabled=True,
    )
    ctx = ssl.create_default_context(cafile=str(certs / "server.crt"))
    ctx.check_hostname = False
    ctx.load_cert_chain(str(certs / "client.crt"), str(certs / "client.key"))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    script = b"print(ParseJson(RestApiGet('/system'))['DicomAet'])"
    conn.request("POST", "/tools/execute-script", body=script, headers={"Content-Type": "application/lua"})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    assert r.status == 200, body
    assert body.strip() == b"ORTHANC"
