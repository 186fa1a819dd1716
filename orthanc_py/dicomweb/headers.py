"""Request headers of DICOMweb: the Accept header's media ranges with their `type` and
`transfer-syntax` parameters (PS3.18 8.7), and the public base URL of answers' URIs."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from ..errors import ErrorCode, OrthancError

_DEFAULT_PORTS = {"http": 80, "https": 443}
DICOM_JSON = ("application/dicom+json", "application/json")
AZURE_PREFIXES = ("/dicom-web/v1", "/dicom-web/v2", "/v1", "/v2")
"""The prefixes of the Azure DICOM service's API, where answers follow that service's rules."""


def public_base(request: web.Request, prefix: str) -> str:
    """Scheme and host for RetrieveURL and BulkDataURI, as the client reached us: RFC 7239
    `Forwarded`, else `X-Forwarded-Host`/`-Proto`, else the Host header as Orthanc's plugin
    writes it: as it is, without a port when it has none ("my-domain" may be a proxy on port 80).
    Only a Host that is our own address without a port (dicomweb-client sends "127.0.0.1") gets
    the port the connection came in on, so that the URIs work."""
    scheme, host = request.scheme, None
    forwarded = request.headers.get("Forwarded")
    if forwarded:
        for pair in forwarded.split(",")[0].split(";"):
            key, _, value = pair.strip().partition("=")
            if key.lower() == "host":
                host = value.strip('"')
            elif key.lower() == "proto":
                scheme = value.strip('"')
    elif "X-Forwarded-Host" in request.headers:
        host = request.headers["X-Forwarded-Host"].split(",")[0].strip()
        scheme = request.headers.get("X-Forwarded-Proto", scheme).split(",")[0].strip()
    if host is None:
        host = request.host
        sock = request.transport.get_extra_info("sockname") if request.transport is not None else None
        if isinstance(sock, tuple) and host in (sock[0], f"[{sock[0]}]") and sock[1] != _DEFAULT_PORTS.get(scheme):
            host = f"{host}:{sock[1]}"
    return f"{scheme}://{host}{prefix}"


@dataclass(frozen=True)
class MediaRange:
    media: str
    type: str | None = None  # the `type` parameter of multipart/related
    syntax: str | None = None  # the `transfer-syntax` parameter ("*" = as stored)
    q: float = 1.0
    names: frozenset[str] = frozenset()  # the names of all its parameters (`range`...)

    @property
    def any(self) -> bool:
        return self.media in ("*/*", "*")


def _split(text: str, sep: str) -> list[str]:
    """Split on `sep` outside double quotes."""
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def parse_accept(header: str | None) -> list[MediaRange]:
    """The media ranges of `header`, highest q first (an absent header accepts anything)."""
    if not header or not header.strip():
        return [MediaRange("*/*")]
    ranges: list[MediaRange] = []
    for item in _split(header, ","):
        parts = [p.strip() for p in _split(item, ";")]
        if not parts[0]:
            continue
        media = parts[0].lower()
        params: dict[str, str] = {}
        for p in parts[1:]:
            key, _, value = p.partition("=")
            params[key.strip().lower()] = value.strip().strip('"')
        kind = params.get("type")
        syntax = params.get("transfer-syntax")
        if kind and ";" in kind:  # type="application/octet-stream; transfer-syntax=..."
            inner = [p.strip() for p in kind.split(";")]
            kind = inner[0]
            for p in inner[1:]:
                key, _, value = p.partition("=")
                if key.strip().lower() == "transfer-syntax" and syntax is None:
                    syntax = value.strip()
        try:
            q = float(params.get("q", "1"))
        except ValueError:
            q = 1.0
        ranges.append(MediaRange(media, kind.lower() if kind else None, syntax, q, frozenset(params)))
    ranges.sort(key=lambda r: -r.q)
    return [r for r in ranges if r.q > 0]


def choose(header: str | None, types: tuple[str, ...], wildcards: tuple[str, ...], what: str) -> str:
    """The first of `types` the Accept header takes (a wildcard range takes `types[0]`); 406
    when it takes none of them."""
    for r in parse_accept(header):
        if r.media in types:
            return r.media
        if r.any or r.media in wildcards:
            return types[0]
    raise not_acceptable(header, what)


def not_acceptable(header: str | None, what: str) -> OrthancError:
    return OrthancError(ErrorCode.NOT_ACCEPTABLE, f"Cannot answer Accept: {header} ({what})", http_status=406)


def bad_accept(header: str | None, what: str) -> OrthancError:
    """An Accept header WADO-RS cannot satisfy: Orthanc's DICOMweb plugin answers 400 Bad
    Request (not 406) for instances, studies, series and bulk data."""
    return OrthancError(ErrorCode.BAD_REQUEST, f"Cannot answer Accept: {header} ({what})")
