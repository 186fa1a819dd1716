"""DIMSE statuses for core outcomes (PS3.4 Annex B for C-STORE, PS3.7 C for the general ones)."""

from __future__ import annotations

from ..errors import ErrorCode, OrthancError

SUCCESS = 0x0000
STORE_OUT_OF_RESOURCES = 0xA700
STORE_CANNOT_UNDERSTAND = 0xC000
REFUSED_NOT_AUTHORIZED = 0x0124
PENDING = 0xFF00
CANCEL = 0xFE00
FIND_IDENTIFIER_MISMATCH = 0xA900
FIND_UNABLE_TO_PROCESS = 0xC000
MOVE_IDENTIFIER_MISMATCH = 0xA900
MOVE_UNABLE_TO_PROCESS = 0xC000


def store_failure(err: BaseException) -> int:
    """The C-STORE status for a failed ingest: bad data is "cannot understand", the rest is ours."""
    if isinstance(err, OrthancError) and err.code in (ErrorCode.BAD_FILE_FORMAT, ErrorCode.INEXISTENT_TAG):
        return STORE_CANNOT_UNDERSTAND
    return STORE_OUT_OF_RESOURCES
