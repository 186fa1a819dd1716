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


# Orthanc's ModalityManufacturer names; obsolete ones are still read, as what they now mean.
MANUFACTURERS = ("Generic", "GenericNoWildcardInDates", "GenericNoUniversalWildcard", "Vitrea", "GE")
_OBSOLETE_MANUFACTURERS = {
    "MedInria": "Generic",
    "ClearCanvas": "Generic",
    "Dcm4Chee": "Generic",
    "EFilm2": "Generic",
    "SyngoVia": "GenericNoWildcardInDates",
    "AgfaImpax": "GenericNoWildcardInDates",
}


class UnknownManufacturer(ValueError):
    """A manufacturer name Orthanc does not know (its ParameterOutOfRange)."""


def parse_manufacturer(value: Any) -> str:
    """Orthanc's manufacturer name (case-sensitive); ValueError with Orthanc's message else."""
    text = str(value)
    if text in MANUFACTURERS:
        return text
    if text in _OBSOLETE_MANUFACTURERS:
        return _OBSOLETE_MANUFACTURERS[text]
    raise UnknownManufacturer(f'Unknown modality manufacturer: "{text}"')


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
        out: dict[str, Any] = {"AET": self.aet}
        out.update(dict(self.permissions))
        out.update(
            {
                "Host": self.host,
                "LocalAet": self.local_aet,
                "Manufacturer": self.manufacturer,
                "Port": self.port,
                "Timeout": self.timeout,
                "UseDicomTls": False,
            }
        )
        return out


def parse_modality(value: Any) -> Modality:
    """Read one configuration entry; ValueError with a readable message when malformed."""
    if isinstance(value, list):
        if len(value) not in (3, 4) or not isinstance(value[0], str) or not isinstance(value[1], str):
            raise ValueError("a modality must be [AET, host, port] or [AET, host, port, manufacturer]")
        port = _port(value[2])
        return Modality(value[0], value[1], port, parse_manufacturer(value[3]) if len(value) == 4 else "Generic")
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
            parse_manufacturer(value.get("Manufacturer", "Generic")),
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
