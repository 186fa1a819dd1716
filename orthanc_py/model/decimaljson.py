"""DS (Decimal String) values in DICOM JSON, as Orthanc >= 1.12.5 (REST ApiVersion 26) writes
them wherever its core renders DICOM JSON (QIDO-RS answers, WADO-RS metadata of every mode,
GET /instances/{id}/file as application/dicom+json, and the DICOM XML made from that JSON).

PS3.18 F.2.3 allows a DS value as a JSON String "to preserve the original format", and Orthanc
took that: each backslash-separated component is its text with leading and trailing white space
removed ("0.332 " -> "0.332", "1.0" stays "1.0"), an empty component is null, and the text is
not checked nor reformatted (a value that is not a number is no longer dropped). Orthanc's
references (orthanc-tests Database/DummyCT.json since 2024-09) show every DS of DummyCT.dcm so.
IS and the binary numeric VRs stay JSON numbers. One rule here for every renderer."""

from __future__ import annotations

# C's isspace(), what Orthanc's Toolbox::StripSpaces removes (str.strip() would also remove
# the separators \x1c-\x1f and Unicode spaces)
_BLANKS = " \t\n\v\f\r"


def decimal_strings(text: str) -> list[str | None]:
    """The "Value" list of a DS element whose text (padding included) is `text`."""
    return [part.strip(_BLANKS) or None for part in text.split("\\")]
