"""Orthanc's JSON renderings of a DICOM dataset: `/tags`, `/header` and the `/content` walk.

Orthanc 1.10/1.12 render values through DCMTK, so the rules below mirror what DCMTK does while
loading a file (trailing padding dropped, odd lengths completed with a NUL, numbers printed like
`boost::lexical_cast`) and what Orthanc's `FromDcmtkBridge::DatasetToJson` does with them.  The
functions only read the raw bytes pydicom kept (`RawDataElement`), so pixel data is never decoded.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from .dcmtkvalues import (
    ASCII,
    BINARY_VRS,
    PIXEL_DATA,
    Charset,
    TagsOptions,
    charset_value,
    content_bytes,
    creator_of,
    leaf_value,
    private_creators,
    raw_element,
    tag_name,
)
from .dictionary import UNKNOWN_TAG_NAME, TagDictionary, dcmtk, parse_tag
from .tagtext import MAX_TAG_LENGTH, finish_object, leaf_node, sequence_node, simplify_full

Format = Literal["full", "simplify", "short"]
FORMATS: tuple[str, ...] = ("full", "simplify", "short")

# --- /tags and /header -------------------------------------------------------------------------------------


def _to_json(
    ds: Dataset,
    fmt: str,
    charset: Charset,
    charset_terms: str | list[str] | None,
    header: bool,
    options: TagsOptions,
    depth: int = 0,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    creators = private_creators(ds)
    dictionary = options.dictionary
    for key in sorted(ds.keys()):
        tag = int(key)
        if depth == 0 and tag > PIXEL_DATA and not options.whole:
            break  # DicomToJsonFlags_StopAfterPixelData, even without pixel data
        creator = creator_of(tag, creators)
        entry = dictionary.lookup(tag, creator)
        if header and (tag & 0x10000 or entry is None):
            continue  # DicomToJsonFlags_None: no private, no unknown tags
        name = entry.name if entry is not None else UNKNOWN_TAG_NAME
        raw = raw_element(ds, tag, creator, charset_terms, dictionary)
        if isinstance(raw, Sequence):
            items = [_to_json(item, fmt, charset, charset_terms, header, options, depth + 1) for item in raw]
            node = sequence_node(name, items, fmt)
        else:
            if header and (raw.vr in BINARY_VRS or entry is None):
                continue  # nor binary ones
            value = leaf_value(raw, charset, entry.vr if entry is not None else None)
            node = leaf_node(tag, name, creator, value, fmt, options)
        out[name if fmt == "simplify" else f"{tag >> 16:04x},{tag & 0xFFFF:04x}"] = node
    return finish_object(out, fmt)


def _check(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")


def orthanc_tags(ds: Dataset, fmt: str = "full", options: TagsOptions | None = None) -> dict[str, Any]:
    """GET /instances/{id}/tags[?simplify|?short]: every element of the dataset (file meta excluded)."""
    _check(fmt)
    options = options or TagsOptions()
    value = charset_value(ds)
    charset = Charset(value, options.default_encoding)
    terms = [t.strip() for t in value.split("\\")] if value is not None else None
    return _to_json(ds, fmt, charset, terms, False, options)


def orthanc_header(file_meta: Dataset, fmt: str = "full", dictionary: TagDictionary | None = None) -> dict[str, Any]:
    """GET /instances/{id}/header[?simplify|?short]: the file meta group, without binary elements."""
    _check(fmt)
    return _to_json(file_meta, fmt, ASCII, None, True, TagsOptions(dictionary or dcmtk()))


# --- /content ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContentResult:
    """Answer of GET /instances/{id}/content/...: a JSON list of strings, or raw bytes.

    Raw answers are sent by Orthanc as `application/octet-stream` whatever the VR.
    """

    kind: Literal["json", "raw"]
    items: list[str] = field(default_factory=list)
    data: bytes = b""


def _parse_index(text: str) -> int | None:
    """boost::lexical_cast<size_t> then DCMTK's signed item number: "-1" is the last item."""
    body = text[1:] if text[:1] in "+-" else text
    if not body or not body.isdigit() or not body.isascii():
        return None
    value = int(body)
    if text.startswith("-"):
        value = -value % (1 << 64)
    if value >= 1 << 64:
        return None
    signed = value - (1 << 64) if value >= 1 << 63 else value
    return signed


def _fragments(data: bytes) -> Iterator[bytes]:
    """Items of encapsulated pixel data, basic offset table included (Orthanc's "blocks")."""
    pos = 0
    while pos + 8 <= len(data):
        group, elem, length = struct.unpack_from("<HHI", data, pos)
        pos += 8
        if (group, elem) != (0xFFFE, 0xE000):
            return
        yield data[pos : pos + length]
        pos += length


def _pixel_data(ds: Dataset, block: str | None) -> ContentResult:
    if PIXEL_DATA not in ds:
        raise LookupError("no pixel data")
    raw = raw_element(ds, PIXEL_DATA, None, None, dcmtk())
    if isinstance(raw, Sequence):
        raise LookupError("pixel data is a sequence")
    blocks = list(_fragments(raw.value)) if raw.undefined_length else None
    count = len(blocks) if blocks is not None else 1
    if block is None:
        return ContentResult("json", [str(i) for i in range(count)])
    index = _parse_index(block)  # lexical_cast<unsigned int>: same syntax, but 32 bits
    if index is None or not -(1 << 32) < index < 1 << 32 or index % (1 << 32) >= count:
        raise LookupError(f"no pixel data block {block}")
    index %= 1 << 32
    if blocks is not None:
        return ContentResult("raw", data=blocks[index])
    return ContentResult("raw", data=content_bytes(raw))


def content_walk(ds: Dataset, path_parts: list[str], dictionary: TagDictionary | None = None) -> ContentResult:
    """GET /instances/{id}/content/{path}: walk tags and item indexes like ParsedDicomFile::SendPathValue.

    No part lists the item's tags ("gggg-eeee"), a sequence lists its item indexes, a leaf gives
    its value bytes.  Raises LookupError when Orthanc answers 404 (missing tag, bad index) and
    ValueError for an unparsable tag (Orthanc: 500 "Unknown DICOM tag").
    """
    parts = [p for p in path_parts if p]
    if len(parts) in (1, 2) and parse_tag(parts[0], dictionary) == PIXEL_DATA:
        return _pixel_data(ds, parts[1] if len(parts) == 2 else None)
    item = ds
    for pos in range(len(parts) // 2):
        index = _parse_index(parts[2 * pos + 1])
        if index is None:
            raise LookupError(f"bad item index {parts[2 * pos + 1]}")
        tag = parse_tag(parts[2 * pos], dictionary)
        if tag not in item:
            raise LookupError(f"no tag {parts[2 * pos]}")
        seq = raw_element(item, tag, creator_of(tag, private_creators(item)), None, dictionary or dcmtk())
        if not isinstance(seq, Sequence):
            raise LookupError(f"{parts[2 * pos]} is not a sequence")
        if index == -1:
            index = len(seq) - 1
        if not 0 <= index < len(seq):
            raise LookupError(f"no item {parts[2 * pos + 1]}")
        item = seq[index]
    if len(parts) % 2 == 0:
        return ContentResult("json", [f"{t >> 16:04x}-{t & 0xFFFF:04x}" for t in sorted(item.keys())])
    tag = parse_tag(parts[-1], dictionary)
    if tag not in item:
        raise LookupError(f"no tag {parts[-1]}")
    charset = charset_value(ds)
    terms = [t.strip() for t in charset.split("\\")] if charset is not None else None
    leaf = raw_element(item, tag, creator_of(tag, private_creators(item)), terms, dictionary or dcmtk())
    if isinstance(leaf, Sequence):
        return ContentResult("json", [str(i) for i in range(len(leaf))])
    return ContentResult("raw", data=content_bytes(leaf))


__all__ = [
    "FORMATS",
    "MAX_TAG_LENGTH",
    "UNKNOWN_TAG_NAME",
    "ContentResult",
    "Format",
    "TagsOptions",
    "content_walk",
    "orthanc_header",
    "orthanc_tags",
    "parse_tag",
    "simplify_full",
    "tag_name",
]
