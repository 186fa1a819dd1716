"""A remote DICOM modality as Orthanc configures it: the array form `[AET, host, port(, manufacturer)]`
or the object form with AET/Host/Port and the Allow* permissions."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

PERMISSIONS = (
    "AllowEcho",
    "AllowEventReport",
    "AllowFind",
    "AllowFindWorklist",
    "AllowGet",
    "AllowMove",
    "AllowNAction",
    "AllowStore",
    "AllowTranscoding",
)


@dataclass(frozen=True)
class Modality:
    """One entry of DicomModalities."""

    aet: str
    host: str
    port: int
    manufacturer: str = "Generic"
    local_aet: str = ""
    timeout: int = 0
    permissions: tuple[tuple[str, bool], ...] = tuple((p, True) for p in PERMISSIONS)

    def allows(self, permission: str) -> bool:
        return dict(self.permissions).get(permission, True)

    def to_json(self) -> dict[str, Any]:
        """GET /modalities/{id}/configuration (Orthanc's keys)."""
        out: dict[str, Any] = {"AET": self.aet, "Host": self.host, "Port": self.port, "Manufacturer": self.manufacturer}
        out.update(dict(self.permissions))
        if self.local_aet:
            out["LocalAet"] = self.local_aet
        if self.timeout:
            out["Timeout"] = self.timeout
        return out


def parse_modality(value: Any) -> Modality:
    """Read one configuration entry; ValueError with a readable message when malformed."""
    if isinstance(value, list):
        if len(value) not in (3, 4) or not isinstance(value[0], str) or not isinstance(value[1], str):
            raise ValueError("a modality must be [AET, host, port] or [AET, host, port, manufacturer]")
        port = _port(value[2])
        return Modality(value[0], value[1], port, str(value[3]) if len(value) == 4 else "Generic")
    if isinstance(value, dict):
        try:
            aet, host, port = value["AET"], value["Host"], _port(value["Port"])
        except KeyError as exc:
            raise ValueError(f"a modality needs AET, Host and Port (missing {exc.args[0]})") from None
        if not isinstance(aet, str) or not isinstance(host, str):
            raise ValueError("AET and Host must be strings")
        base = Modality(
            aet,
            host,
            port,
            str(value.get("Manufacturer", "Generic")),
            str(value.get("LocalAet", "")),
            int(value.get("Timeout", 0) or 0),
        )
        perms = []
        for p in PERMISSIONS:
            v = value.get(p, True)
            if not isinstance(v, bool):
                raise ValueError(f"{p} must be a Boolean")
            perms.append((p, v))
        return replace(base, permissions=tuple(perms))
    raise ValueError("a modality must be an array or an object")


def _port(value: Any) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"bad port: {value!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"bad port: {value!r}")
    return port
