"""core.findspec: the per-interface query rules of /tools/find, C-FIND and QIDO-RS, side by side."""

from __future__ import annotations

import pytest

from orthanc_py.core import findspec
from orthanc_py.model import maintags as mt
from orthanc_py.model.lookup import MatchKind

NAME = mt.tag(0x0010, 0x0010)
DATE = mt.tag(0x0008, 0x0020)
DESCRIPTION = mt.tag(0x0008, 0x1030)
MODALITIES = mt.tag(0x0008, 0x0061)

TOOLS = findspec.tools_find_rules(False)
CFIND = findspec.c_find_rules(False)
QIDO = findspec.qido_rules(False)
FUZZY = findspec.qido_rules(True)


def test_star_asks_for_the_tag_except_in_qido():
    assert findspec.query_constraint(NAME, "*", TOOLS).kind is MatchKind.WILDCARD
    assert findspec.query_constraint(NAME, "*", CFIND).kind is MatchKind.WILDCARD
    assert findspec.query_constraint(NAME, "*", QIDO) is None


def test_case_folding():
    assert not findspec.query_constraint(DESCRIPTION, "ct", TOOLS).case_sensitive  # every text VR
    assert findspec.query_constraint(DESCRIPTION, "ct", findspec.tools_find_rules(True)).case_sensitive
    assert findspec.query_constraint(DESCRIPTION, "ct", CFIND).case_sensitive  # PN only
    assert not findspec.query_constraint(NAME, "doe", CFIND).case_sensitive
    assert findspec.query_constraint(NAME, "doe", findspec.c_find_rules(True)).case_sensitive
    assert not findspec.query_constraint(NAME, "doe", QIDO).case_sensitive


def test_wildcards_on_a_date():
    with pytest.raises(findspec.WildcardNotAllowed, match="0008,0020"):
        findspec.query_constraint(DATE, "2010*", TOOLS)
    with pytest.raises(findspec.WildcardNotAllowed):
        findspec.query_constraint(DATE, "2010*", CFIND)
    assert findspec.query_constraint(DATE, "2010*", QIDO).kind is MatchKind.WILDCARD
    # /tools/find takes a range as a range even with a wildcard in it; C-FIND refuses it
    assert findspec.query_constraint(DATE, "2010*-2012", TOOLS).kind is MatchKind.RANGE
    with pytest.raises(findspec.WildcardNotAllowed):
        findspec.query_constraint(DATE, "2010*-2012", CFIND)


def test_fuzzy_pn_is_a_prefix_and_modalities_in_study_is_modality():
    assert findspec.query_constraint(NAME, "SMI", FUZZY).values == ("SMI*",)
    assert findspec.query_constraint(NAME, "SMI", QIDO).values == ("SMI",)
    for rules in (TOOLS, CFIND, QIDO):
        assert findspec.query_constraint(MODALITIES, "CT\\MR", rules).tag == mt.tag(0x0008, 0x0060)
