"""Types of the C helper `_pngfilter.c` (libpng's adaptive row filtering)."""

from typing_extensions import Buffer

def filter_rows(raw: Buffer, height: int, rowbytes: int, bpp: int, allowed: int, /) -> bytes: ...
