"""PS3.4 C.2.2.2 matching rules shared by /tools/find, C-FIND and QIDO-RS."""

from __future__ import annotations

from orthanc_py.model.lookup import MatchKind, matches, normalize, parse_constraint, parse_tag

NAME, DATE, MODALITY = 0x00100010, 0x00080020, 0x00080060


def test_parse_tag():
    assert parse_tag("0010,0010") == parse_tag("00100010") == parse_tag("PatientName") == NAME
    assert parse_tag("(0010,0020)") == 0x00100020


def test_constraint_kinds():
    assert parse_constraint(NAME, "") is None and parse_constraint(NAME, "*") is None
    assert parse_constraint(NAME, "DOE*").kind is MatchKind.WILDCARD
    assert parse_constraint(DATE, "2020-2021").kind is MatchKind.RANGE
    assert parse_constraint(MODALITY, "CT\\MR").kind is MatchKind.LIST
    assert parse_constraint(NAME, "A-B").kind is MatchKind.EQUAL  # ranges only for DA/DT/TM


def test_matching():
    pn = parse_constraint(NAME, "doe*", case_sensitive_pn=False)
    assert matches(pn, "DOE^JOHN") and not matches(pn, "JOHN^DOE") and not matches(pn, None)
    assert not matches(parse_constraint(NAME, "doe*", case_sensitive_pn=True), "DOE^JOHN")
    assert matches(parse_constraint(NAME, "M?ller*", False), "Müller^Jürgen")
    assert normalize("Müller") == "MULLER"
    assert matches(parse_constraint(DATE, "20200101-20201231"), "20200615")
    assert not matches(parse_constraint(DATE, "-20191231"), "20200101")
    assert matches(parse_constraint(MODALITY, "CT\\MR"), "MR")
    assert matches(parse_constraint(0x00080050, "A[1]"), "A[1]")
