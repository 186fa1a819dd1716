"""DICOM JSON (PS3.18 F.2) of the values the index keeps, as QIDO-RS answers them (without
pydicom: the VRs of the tags QIDO-RS returns are in model.lookup)."""

from __future__ import annotations

from typing import Any

from .decimaljson import decimal_strings
from .lookup import vr_of

_NUMBER_VRS = {"IS", "US", "UL", "SS", "SL", "FL", "FD", "UV", "SV"}


def from_text(tag: int, text: str, vr: str | None = None) -> dict[str, Any]:
    """One attribute in DICOM JSON from its text as the index keeps it (QIDO-RS answers): PN as
    objects, DS as strings (model.decimaljson), other numbers as numbers; `vr` when the file
    tells it (a private tag), else the dictionary's."""
    vr = vr or vr_of(tag)
    if vr in ("US or SS", "OB or OW", "US or OW"):
        vr = vr.split()[0]
    if text == "":
        return {"vr": vr}
    if vr == "DS":
        return {"vr": vr, "Value": decimal_strings(text)}
    parts = text.split("\\")
    if vr == "PN":
        return {"vr": vr, "Value": [_person_name(p) for p in parts]}
    if vr in _NUMBER_VRS:
        values: list[Any] = []
        for p in parts:
            try:
                n = float(p)
                values.append(int(n) if n.is_integer() and vr not in ("FL", "FD") else n)
            except ValueError:
                values.append(p)
        return {"vr": vr, "Value": values}
    return {"vr": vr, "Value": parts}


def _person_name(text: str) -> dict[str, str]:
    """A PN value's component groups (Alphabetic=Ideographic=Phonetic), as DICOM JSON names them."""
    groups = text.split("=")
    return {k: v for k, v in zip(("Alphabetic", "Ideographic", "Phonetic"), groups, strict=False)}
