"""JSON laid out as JsonCpp's `Value::toStyledString()` writes it (Orthanc's own JSON files).

Orthanc 1.10.1 serves some JSON as that writer formats it, for instance the `study.json` and
`series.json` files of its WebDAV tree, whose size a WebDAV listing reports: a tab per level,
`" : "` between key and value, sorted keys, every non-empty array over several lines, characters
outside ASCII written as `\\uXXXX` escapes (lowercase hex, surrogate pairs above U+FFFF).
"""

from __future__ import annotations

from typing import Any

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote(text: str) -> str:
    """A JSON string as JsonCpp quotes it when it may not emit UTF-8."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif code < 0x20 or 0x80 <= code < 0x10000:
            out.append(f"\\u{code:04x}")
        elif code < 0x80:
            out.append(ch)
        else:
            code -= 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
    out.append('"')
    return "".join(out)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _write(out: list[str], value: Any, indent: str, fresh_line: bool) -> None:
    """`fresh_line`: the cursor already stands at the start of an indented line (an array item)."""
    if isinstance(value, dict) and value:
        out.append("{" if fresh_line else "\n" + indent + "{")
        inner = indent + "\t"
        keys = sorted(value)
        for i, key in enumerate(keys):
            out.append("\n" + inner + quote(str(key)) + " : ")
            _write(out, value[key], inner, False)
            if i + 1 < len(keys):
                out.append(",")
        out.append("\n" + indent + "}")
    elif isinstance(value, list) and value:
        out.append("[" if fresh_line else "\n" + indent + "[")
        inner = indent + "\t"
        for i, item in enumerate(value):
            out.append("\n" + inner)
            _write(out, item, inner, True)
            if i + 1 < len(value):
                out.append(",")
        out.append("\n" + indent + "]")
    elif isinstance(value, dict):
        out.append("{}")
    elif isinstance(value, list):
        out.append("[]")
    else:
        out.append(_scalar(value))


def styled(value: Any) -> str:
    """`value` as `toStyledString()` returns it (with its final newline)."""
    out: list[str] = []
    _write(out, value, "", True)
    out.append("\n")
    return "".join(out)
