"""A remote DICOM modality as Orthanc configures it: the array form `[AET, host, port(, manufacturer)]`
or the object form with AET/Host/Port and the Allow* permissions."""

from __future__ import annotations

from dataclasses import dataclass
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


class OutOfRange(ValueError):
    """A value Orthanc refuses as ParameterOutOfRange (unknown manufacturer, port outside
    1..65534); other malformed entries are its BadFileFormat."""


class BadField(ValueError):
    """A field of the wrong JSON type; Orthanc names it in its BadFileFormat details."""


def parse_manufacturer(value: Any) -> str:
    """Orthanc's manufacturer name (case-sensitive); ValueError with Orthanc's message else."""
    text = str(value)
    if text in MANUFACTURERS:
        return text
    if text in _OBSOLETE_MANUFACTURERS:
        return _OBSOLETE_MANUFACTURERS[text]
    raise OutOfRange(f'Unknown modality manufacturer: "{text}"')


@dataclass(frozen=True)
class Modality:
    """One entry of DicomModalities."""

    aet: str
    host: str
    port: int
    manufacturer: str = "Generic"
    local_aet: str = ""
    timeout: int = 0
    use_dicom_tls: bool = False
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
                "UseDicomTls": self.use_dicom_tls,
            }
        )
        return out


def parse_modality(value: Any) -> Modality:
    """Read one configuration entry; ValueError (OutOfRange for what Orthanc calls out of range)
    with Orthanc's message when malformed."""
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
        timeout = value.get("Timeout", 0)
        if not isinstance(timeout, int) or isinstance(timeout, bool):
            raise BadField("Integer value expected in field: Timeout")
        flags = {}
        for p in (*PERMISSIONS, "UseDicomTls"):
            v = value.get(p, p != "UseDicomTls")
            if not isinstance(v, bool):
                raise BadField(f"Boolean value expected in field: {p}")
            flags[p] = v
        if "AllowStorageCommitment" in value:
            # Orthanc's shorthand for both storage commitment permissions (N-ACTION and
            # N-EVENT-REPORT); it wins over AllowNAction / AllowEventReport
            both = value["AllowStorageCommitment"]
            if not isinstance(both, bool):
                raise BadField("Boolean value expected in field: AllowStorageCommitment")
            flags["AllowNAction"] = flags["AllowEventReport"] = both
        return Modality(
            aet,
            host,
            port,
            parse_manufacturer(value.get("Manufacturer", "Generic")),
            str(value.get("LocalAet", "")),
            timeout,
            flags["UseDicomTls"],
            tuple((p, flags[p]) for p in PERMISSIONS),
        )
    raise ValueError("a modality must be an array or an object")


def _port(value: Any) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"bad port: {value!r}") from None
    if not 0 < port < 65535:
        raise OutOfRange(f"A TCP port number must be in range [1..65534], but found: {port}")
    return port
