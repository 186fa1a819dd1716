"""GET /instances/{id}/tags without pydicom: `orthancjson.orthanc_tags` from one walk over the bytes.

Reading the whole file with pydicom costs ~200 us and rendering its elements ~150 us; the walk
below reads element headers itself (explicit and implicit VR little endian, defined and
undefined lengths, sequences and their items) and renders each value with the rules
`orthancjson` uses (tagtext: `leaf_text`, `implicit_vr`, `creator_text`...), so both paths
share one implementation of each rule.  Whenever pydicom might read the file differently, or
the rendering would go through a rule the walk does not reproduce (big endian, deflate, UN
elements, private sequences in implicit VR, tags out of order, odd delimiters, ...), `tags_fast`
returns None and `file_tags` takes the pydicom path: it never guesses.
"""

from __future__ import annotations

import io
import struct
import sys
from typing import Any

from . import dicomfile as ps
from .dictionary import UNKNOWN_TAG_NAME
from .fastparse import Fallback, dataset_syntax
from .tagtext import (
    PIXEL_DATA,
    PIXEL_REPRESENTATION,
    Charset,
    TagsOptions,
    creator_text,
    finish_object,
    implicit_vr,
    leaf_node,
    leaf_text,
    sequence_node,
    signed_representation,
)

_EXPLICIT_HEAD = struct.Struct("<HH2sH")
_IMPLICIT_HEAD = struct.Struct("<HHI")
_U32 = struct.Struct("<I")
_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQ_END = 0xFFFEE0DD
_LONG_VRS = ps._LONG_VRS
_SPECIFIC_CHARACTER_SET = 0x00080005
_STOP_BEFORE_PIXELS = frozenset((0x7FE00010, 0x7FE00009, 0x7FE00008))  # pydicom's stop_before_pixels
# Explicit VRs read as they are written; UN (pydicom may read it with the dictionary VR, and
# Orthanc renders some UN strings) and anything unusual take the pydicom path.
_VRS: dict[bytes, str] = {
    vr.encode(): vr
    for vr in (
        "AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UR US UT UV".split()
    )
}
_ENCAPSULATED_VRS = frozenset(("OB", "OW"))
_MAX_DEPTH = 64

Element = tuple[int, str, int, int, "list[list[Any]] | None"]
"""(tag, VR ("" in implicit VR), value offset, value length, items of an undefined-length sequence)."""


def _item_elements(
    data: bytes,
    pos: int,
    end: int | None,
    implicit: bool,
    depth: int,
    budget: list[int],
    stop: frozenset[int] = frozenset(),
) -> tuple[list[Element], int]:
    """The elements of one dataset from `pos`: to `end` (a defined-length item), to the item
    delimiter (`end` None, undefined length), or to the end of the file (`depth` 0), or before
    the first tag of `stop` (pydicom's stop_before_pixels). `budget[0]`: how many elements the
    whole walk may still read (then Fallback); the elements read are taken from it.

    Mirrors pydicom's `data_element_generator` for the shapes it reads unambiguously."""
    if depth > _MAX_DEPTH:
        raise Fallback
    n = len(data)
    limit = n if end is None else end
    out: list[Element] = []
    last = -1
    top = depth == 0
    if not implicit and pos + 6 <= limit and not (0x40 < data[pos + 4] < 0x5B and 0x40 < data[pos + 5] < 0x5B):
        if not top and data[pos : pos + 4] != b"\xfe\xff\x0d\xe0":
            raise Fallback  # pydicom reads an item that starts like implicit VR in implicit VR
    while True:
        if pos + 8 > limit:
            if (top and end is None and pos + 8 > n) or (end is not None and pos == end):
                budget[0] -= len(out)  # (top level: pydicom ignores fewer than 8 trailing bytes)
                return out, pos
            raise Fallback
        if implicit:
            group, elem, length = _IMPLICIT_HEAD.unpack_from(data, pos)
            vr = ""
            head = 8
        else:
            group, elem, raw_vr, length = _EXPLICIT_HEAD.unpack_from(data, pos)
            if group == 0xFFFE:
                (length,) = _U32.unpack_from(data, pos + 4)
                vr, head = "", 8
            else:
                found = _VRS.get(raw_vr)
                if found is None:
                    raise Fallback
                vr = found
                if raw_vr in _LONG_VRS:
                    if pos + 12 > limit:
                        raise Fallback
                    (length,) = _U32.unpack_from(data, pos + 8)
                    head = 12
                else:
                    head = 8
        tag = (group << 16) | elem
        if tag in stop:
            budget[0] -= len(out)
            return out, pos
        if group == 0xFFFE:
            if tag == _ITEM_END and end is None and not top and length == 0:
                budget[0] -= len(out)
                return out, pos + 8
            raise Fallback
        if len(out) >= budget[0]:
            raise Fallback
        if tag <= last:
            raise Fallback  # out of order or repeated: pydicom's dict keeps the last one, sorted
        last = tag
        start = pos + head
        items: list[list[Any]] | None = None
        if length == _UNDEFINED:
            if vr == "SQ" or (implicit and _pydicom_sequence(tag)):
                items, pos = _sequence(data, start, None, implicit, depth + 1, budget)
                vr = "SQ"
                length = 0
            elif vr in _ENCAPSULATED_VRS:
                length, pos = _encapsulated(data, start, limit)
            else:
                raise Fallback
        else:
            pos = start + length
            if pos > limit:
                raise Fallback
        out.append((tag, vr, start, length, items))


def _pydicom_sequence(tag: int) -> bool:
    """pydicom reads an undefined-length implicit VR element as a sequence when its own dictionary
    says SQ (private tags: it looks ahead for an item; those take the pydicom path)."""
    if tag & 0x10000:
        raise Fallback
    from pydicom.datadict import dictionary_VR  # implicit VR files only

    try:
        vr = dictionary_VR(tag)
    except KeyError:
        raise Fallback from None
    if vr != "SQ":
        raise Fallback
    return True


def _sequence(
    data: bytes, pos: int, end: int | None, implicit: bool, depth: int, budget: list[int]
) -> tuple[list[list[Any]], int]:
    """Items of a sequence: to `end` (defined length) or to the sequence delimiter."""
    if depth > _MAX_DEPTH:
        raise Fallback
    n = len(data)
    items: list[list[Any]] = []
    while end is None or pos < end:
        if pos + 8 > (n if end is None else end):
            raise Fallback
        group, elem, length = _IMPLICIT_HEAD.unpack_from(data, pos)
        tag = (group << 16) | elem
        pos += 8
        if tag == _SEQ_END and end is None and length == 0:
            return items, pos
        if tag != _ITEM:
            raise Fallback
        if length == _UNDEFINED:
            elements, pos = _item_elements(data, pos, None, implicit, depth, budget)
        else:
            if pos + length > (n if end is None else end):
                raise Fallback
            elements, pos = _item_elements(data, pos, pos + length, implicit, depth, budget)
        items.append(elements)
    if pos != end:
        raise Fallback
    return items, pos


def _encapsulated(data: bytes, pos: int, limit: int) -> tuple[int, int]:
    """(value length, end) of undefined-length OB/OW data made of items, as pydicom's
    encapsulated pixel data reader finds it; anything else takes the pydicom path."""
    start = pos
    while True:
        if pos + 8 > limit:
            raise Fallback
        group, elem, length = _IMPLICIT_HEAD.unpack_from(data, pos)
        tag = (group << 16) | elem
        if tag == _SEQ_END:
            if length != 0:
                raise Fallback
            return pos - start, pos + 8
        if tag != _ITEM or length == _UNDEFINED:
            raise Fallback
        pos += 8 + length


class _Walk:
    """One rendering: the file, its VR mode and character set, the options."""

    __slots__ = ("budget", "charset", "data", "dictionary", "fmt", "implicit", "options")

    def __init__(
        self, data: bytes, implicit: bool, charset: Charset, fmt: str, options: TagsOptions, budget: list[int]
    ) -> None:
        self.budget = budget
        self.data = data
        self.implicit = implicit
        self.charset = charset
        self.fmt = fmt
        self.options = options
        self.dictionary = options.dictionary

    def render(self, elements: list[Element], depth: int) -> dict[str, Any]:
        """`orthancjson._to_json` of one dataset."""
        data = self.data
        fmt = self.fmt
        options = self.options
        dictionary = self.dictionary
        creators: dict[tuple[int, int], str] = {}
        for tag, _vr, start, length, items in elements:
            if tag & 0x10000 and 0x10 <= tag & 0xFFFF <= 0xFF:
                if items is not None:
                    raise Fallback
                creators[(tag >> 16, tag & 0xFFFF)] = creator_text(data[start : start + length])
        out: dict[str, Any] = {}
        signed: bool | None = None
        last = PIXEL_DATA if depth == 0 and not options.whole else 0xFFFFFFFF  # StopAfterPixelData
        public = dictionary.public.get
        lookup = dictionary.lookup
        charset = self.charset
        simplify = fmt == "simplify"
        for tag, vr, start, length, items in elements:
            if tag > last:
                break
            elem = tag & 0xFFFF
            creator = creators.get((tag >> 16, elem >> 8)) if tag & 0x10000 and elem >= 0x1000 else None
            entry = public(tag) if creator is None else None  # lookup's first step, without the call
            if entry is None:
                entry = lookup(tag, creator)
            name = entry.name if entry is not None else UNKNOWN_TAG_NAME
            if not vr:
                vr = implicit_vr(tag, creator, dictionary)
                if vr == "SQ":
                    if creator is not None or tag & 0x10000 or _pydicom_vr(tag) != "SQ":
                        raise Fallback  # pydicom converts the raw value with its own dictionary
                elif vr == "US" and entry is not None and entry.vr == "xs":
                    if signed is None:
                        signed = self._signed(elements)
                    if signed:
                        vr = "SS"
            if vr == "SQ":
                if items is None:
                    items, _ = _sequence(data, start, start + length, self.implicit, depth + 1, self.budget)
                node = sequence_node(name, [self.render(item, depth + 1) for item in items], fmt)
            else:
                value = leaf_text(vr, data[start : start + length], charset, entry.vr if entry else None)
                node = leaf_node(tag, name, creator, value, fmt, options)
            out[name if simplify else f"{tag >> 16:04x},{elem:04x}"] = node
        return finish_object(out, fmt)

    def _signed(self, elements: list[Element]) -> bool:
        for tag, _vr, start, length, items in elements:
            if tag == PIXEL_REPRESENTATION:
                if items is not None:
                    raise Fallback
                return signed_representation(self.data[start : start + length])
        return False


def _pydicom_vr(tag: int) -> str | None:
    from pydicom.datadict import dictionary_VR  # implicit VR sequences only

    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return None


def tags_fast(
    data: bytes, fmt: str, options: TagsOptions, with_pixels: bool = True, max_elements: int | None = None
) -> dict[str, Any] | None:
    """`orthanc_tags(dcmread(data, stop_before_pixels=not with_pixels, force=True), fmt, options)`
    read from the bytes, or None when the file needs the pydicom path (or holds more than
    `max_elements` elements, sequence items included: a bound on the work of one call)."""
    budget = [sys.maxsize if max_elements is None else max_elements]
    try:
        start, _ts, implicit = dataset_syntax(data)
        elements = _top_level(data, start, implicit, with_pixels, budget)
        charset = Charset(_charset_value(data, elements), options.default_encoding)
        return _Walk(data, implicit, charset, fmt, options, budget).render(elements, 0)
    except (Fallback, ValueError, struct.error, IndexError):
        return None


def _top_level(data: bytes, start: int, implicit: bool, with_pixels: bool, budget: list[int]) -> list[Element]:
    stop = frozenset() if with_pixels else _STOP_BEFORE_PIXELS
    return _item_elements(data, start, None, implicit, 0, budget, stop)[0]


def _charset_value(data: bytes, elements: list[Element]) -> str | None:
    """`dcmtkvalues.charset_value` of the top-level dataset."""
    for tag, _vr, start, length, items in elements:
        if tag == _SPECIFIC_CHARACTER_SET:
            if items is not None:
                raise Fallback
            return data[start : start + length].decode("latin-1")
        if tag > _SPECIFIC_CHARACTER_SET:
            break
    return None


def file_tags(data: bytes, fmt: str, options: TagsOptions, with_pixels: bool = True) -> dict[str, Any]:
    """Orthanc's /tags rendering of a DICOM file: the fast walk, else pydicom and `orthanc_tags`."""
    fast = tags_fast(data, fmt, options, with_pixels)
    if fast is not None:
        return fast
    import pydicom  # the files the fast walk leaves (pydicom loads on the first of them)

    from .orthancjson import orthanc_tags

    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=not with_pixels, force=True)
    return orthanc_tags(ds, fmt, options)


__all__ = ["file_tags", "tags_fast"]
