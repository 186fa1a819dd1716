"""Orthanc's names of character encodings (`DefaultEncoding`, `/tools/default-encoding`) and the
DICOM Specific Character Set each one stands for."""

from __future__ import annotations

# Orthanc's enumeration name -> the SpecificCharacterSet defined term (None: no DICOM term)
ENCODINGS: dict[str, str | None] = {
    "Ascii": "ISO_IR 6",
    "Utf8": "ISO_IR 192",
    "Latin1": "ISO_IR 100",
    "Latin2": "ISO_IR 101",
    "Latin3": "ISO_IR 109",
    "Latin4": "ISO_IR 110",
    "Latin5": "ISO_IR 148",
    "Cyrillic": "ISO_IR 144",
    "Windows1251": None,
    "Arabic": "ISO_IR 127",
    "Greek": "ISO_IR 126",
    "Hebrew": "ISO_IR 138",
    "Thai": "ISO_IR 166",
    "Japanese": "ISO_IR 13",
    "Chinese": "GB18030",
    "JapaneseKanji": "ISO 2022 IR 87",
    "Korean": "ISO 2022 IR 149",
    "SimplifiedChinese": "ISO 2022 IR 58",
}


# Orthanc's enumeration name -> the Python codec Orthanc's conversion to UTF-8 amounts to
_CODECS: dict[str, str] = {
    "Ascii": "utf-8",  # Orthanc passes ASCII through as UTF-8
    "Utf8": "utf-8",
    "Latin1": "latin-1",
    "Latin2": "iso8859_2",
    "Latin3": "iso8859_3",
    "Latin4": "iso8859_4",
    "Latin5": "iso8859_9",
    "Cyrillic": "iso8859_5",
    "Windows1251": "cp1251",
    "Arabic": "iso8859_6",
    "Greek": "iso8859_7",
    "Hebrew": "iso8859_8",
    "Thai": "tis_620",
    "Japanese": "shift_jis",
    "Chinese": "gb18030",
    "JapaneseKanji": "iso2022_jp",
    "Korean": "euc_kr",
    "SimplifiedChinese": "iso_ir_58",
}


# Specific Character Set terms as Orthanc reads them (its GetDicomEncoding()), as Python codecs
# ("ISO_IR 6" is read as UTF-8 by Orthanc; `python_codec` writes it as ASCII).
DICOM_CODECS: dict[str, str] = {
    "ISO_IR 6": "utf-8",
    "ISO 2022 IR 6": "utf-8",
    "ISO_IR 192": "utf-8",
    "ISO_IR 100": "latin-1",
    "ISO 2022 IR 100": "latin-1",
    "ISO_IR 101": "iso8859_2",
    "ISO 2022 IR 101": "iso8859_2",
    "ISO_IR 109": "iso8859_3",
    "ISO 2022 IR 109": "iso8859_3",
    "ISO_IR 110": "iso8859_4",
    "ISO 2022 IR 110": "iso8859_4",
    "ISO_IR 148": "iso8859_9",
    "ISO 2022 IR 148": "iso8859_9",
    "ISO_IR 144": "iso8859_5",
    "ISO 2022 IR 144": "iso8859_5",
    "ISO_IR 127": "iso8859_6",
    "ISO 2022 IR 127": "iso8859_6",
    "ISO_IR 126": "iso8859_7",
    "ISO 2022 IR 126": "iso8859_7",
    "ISO_IR 138": "iso8859_8",
    "ISO 2022 IR 138": "iso8859_8",
    "ISO_IR 166": "tis_620",
    "ISO 2022 IR 166": "tis_620",
    "ISO_IR 13": "shift_jis",
    "ISO 2022 IR 13": "shift_jis",
    "ISO 2022 IR 87": "iso2022_jp",
    "ISO 2022 IR 159": "iso2022_jp_2",
    "ISO 2022 IR 149": "euc_kr",
    "ISO 2022 IR 58": "iso_ir_58",
    "GB18030": "gb18030",
    "GBK": "gbk",
}


def codec_of_encoding(encoding: str) -> str:
    """The Python codec of one of Orthanc's encoding names (`DefaultEncoding`): values of files
    without SpecificCharacterSet are decoded with it.  Unknown names: Latin1, Orthanc's default."""
    return _CODECS.get(encoding, "latin-1")


def parse_encoding(text: str) -> str:
    """Orthanc's encoding name as written (case-sensitive, as Orthanc reads it); ValueError else."""
    if text not in ENCODINGS:
        raise ValueError(f"unknown encoding: {text}")
    return text


def python_codec(term: str | None) -> str:
    """The Python codec that writes a Specific Character Set term's bytes (ISO_IR 6 is plain
    ASCII: Orthanc's "Ascii" drops every other character)."""
    if term in (None, "", "ISO_IR 6"):
        return "ascii"
    return DICOM_CODECS.get(term, "latin-1")
