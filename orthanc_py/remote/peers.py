"""HTTP client towards Orthanc peers (Orthanc's HttpClient with WebServiceParameters): one
aiohttp session with keep-alive for all peers, the peer's credentials, HTTP headers, timeout
and client certificate; `HttpTimeout`, `HttpProxy`, `HttpsVerifyPeers` and
`HttpsCACertificates` as Orthanc reads them. A request that cannot be made raises Orthanc's
NetworkProtocol with libcurl's words for the reason."""

from __future__ import annotations

import asyncio
import base64
import ssl
from dataclasses import dataclass
from typing import Any

import aiohttp

from ..errors import ErrorCode, OrthancError
from ..model.peer import Peer, ssl_context

DEFAULT_TIMEOUT = 60.0
"""Orthanc's timeout when neither the peer nor HttpTimeout sets one (seconds)."""

CONNECTIONS_PER_HOST = 8


@dataclass(frozen=True)
class ClientSettings:
    """The global HTTP client settings of Orthanc's configuration."""

    timeout: float = 0.0
    proxy: str = ""
    verify_peers: bool = True
    ca_certificates: str = ""


def network_error(exc: BaseException) -> OrthancError:
    """What Orthanc answers when libcurl fails: NetworkProtocol with curl's message."""
    if isinstance(exc, asyncio.TimeoutError | TimeoutError | aiohttp.ServerTimeoutError):
        reason = "Timeout was reached"
    elif isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError | ssl.SSLError):
        reason = "SSL peer certificate or SSH remote key was not OK"
    elif isinstance(exc, aiohttp.ClientProxyConnectionError):
        reason = "Couldn't connect to server"
    elif isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, OSError) and _dns(exc):
        reason = "Couldn't resolve host name"
    elif isinstance(exc, aiohttp.ClientConnectorError | ConnectionError):
        reason = "Couldn't connect to server"
    elif isinstance(exc, aiohttp.InvalidURL | ValueError):
        reason = "URL using bad/illegal format or missing URL"
    else:
        reason = "Failure when receiving data from the peer"
    return OrthancError(ErrorCode.NETWORK_PROTOCOL, f"libCURL error: {reason}")


def _dns(exc: aiohttp.ClientConnectorError) -> bool:
    import socket

    return isinstance(exc.os_error, socket.gaierror)


class PeerClient:
    """One session shared by every request to every peer (created in the running loop on
    first use, closed by `close`)."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._ssl: dict[tuple[str, str, str], ssl.SSLContext] = {}

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=64, limit_per_host=CONNECTIONS_PER_HOST, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=True, skip_auto_headers=("User-Agent",)
            )
        return self._session

    def _ssl_context(self, peer: Peer) -> ssl.SSLContext | bool:
        """Verification as HttpsVerifyPeers says; the peer's client certificate if any."""
        return ssl_context(peer, self.settings.verify_peers, self.settings.ca_certificates, self._ssl)

    async def request(
        self,
        peer: Peer,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """(HTTP status, body) of `method` on the peer's `path` (relative to its URL).
        NetworkProtocol when no answer came (refused, timeout, TLS, DNS)."""
        if peer.pkcs11:  # as Orthanc 1.10.1 built without PKCS#11 (Debian's)
            if peer.certificate_file:
                raise OrthancError(
                    ErrorCode.PARAMETER_OUT_OF_RANGE,
                    "Cannot enable both client certificates and PKCS#11 authentication",
                )
            raise OrthancError(
                ErrorCode.INTERNAL_ERROR, "This version of Orthanc is compiled without support for PKCS#11"
            )
        seconds = float(peer.timeout) or self.settings.timeout or DEFAULT_TIMEOUT
        hdrs = dict(peer.http_headers)
        if headers:
            hdrs.update(headers)
        if peer.username:
            token = base64.b64encode(f"{peer.username}:{peer.password}".encode()).decode("ascii")
            hdrs["Authorization"] = f"Basic {token}"
        kw: dict[str, Any] = {}
        if peer.url.startswith("https://"):
            kw["ssl"] = self._ssl_context(peer)
        if self.settings.proxy:
            proxy = self.settings.proxy
            kw["proxy"] = proxy if "://" in proxy else "http://" + proxy
        try:
            async with self._session_now().request(
                method,
                peer.url + path,
                data=body,
                headers=hdrs,
                timeout=aiohttp.ClientTimeout(total=seconds, connect=seconds),
                allow_redirects=True,
                **kw,
            ) as resp:
                return resp.status, await resp.read()
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            raise network_error(exc) from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
