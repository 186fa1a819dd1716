"""model.maintags' copies of pydicom's dictionary (so that ingest and finds on main tags need no
pydicom) agree with pydicom, and model.lookup answers the same with or without them."""

from __future__ import annotations

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from orthanc_py.model import lookup
from orthanc_py.model import maintags as mt


def test_dictionary_vrs_are_pydicoms() -> None:
    wanted = {*mt.ALL_MAIN_TAGS, mt.SOP_CLASS_UID, mt.SPECIFIC_CHARACTER_SET, mt.BITS_ALLOCATED}
    assert mt.DICTIONARY_VR == {t: dictionary_VR(t) for t in wanted}


def test_main_tag_names_are_pydicom_keywords() -> None:
    for keyword, t in mt.KEYWORD_TO_MAIN_TAG.items():
        assert tag_for_keyword(keyword) == t
        assert keyword_for_tag(t) == keyword
        assert lookup.parse_tag(keyword) == t
        assert lookup.keyword_of(t) == keyword
        assert lookup.vr_of(t) == dictionary_VR(t)
    assert lookup.parse_tag("Rows") == 0x00280010  # others: pydicom's dictionary
    assert lookup.vr_of(0x00280010) == "US"
    assert lookup.keyword_of(0x00280010) == "Rows"


def test_qido_vrs_are_pydicoms() -> None:
    assert lookup._QIDO_VRS == {t: dictionary_VR(t) for t in lookup._QIDO_VRS}
