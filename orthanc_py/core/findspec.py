"""The one reading of query values for the three find interfaces (/tools/find, C-FIND,
QIDO-RS): each parses its own envelope (JSON body, identifier, URL) and hands every (tag, value)
to `add_constraint` with its `QueryRules`. The rules that differ between them, as Orthanc
differs, are named here side by side instead of living in three parsers:

| rule | /tools/find | C-FIND | QIDO-RS |
| "*" | the tag is present | the tag is present | universal |
| case folding | every text VR unless CaseSensitive | PN unless CaseSensitivePN | PN |
| wildcards refused outside | text VRs (ranges exempt) | text VRs and UN | never refused |
| PN prefix match | no | no | with fuzzymatching=true |

ModalitiesInStudy is always matched against the Modality of the study's series.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model import maintags as mt
from ..model.lookup import RANGE_VRS, TEXT_VRS, TagConstraint, parse_constraint, vr_of
from .query import FindRequest

MODALITIES_IN_STUDY = mt.tag(0x0008, 0x0061)
MODALITY = mt.tag(0x0008, 0x0060)


class WildcardNotAllowed(ValueError):
    """A wildcard on a tag whose VR does not take one (PS3.4 C.2.2.2.4)."""

    def __init__(self, tag: int) -> None:
        super().__init__(f"Wildcards are not allowed on tag {mt.format_tag(tag)}")
        self.tag = tag


@dataclass(frozen=True, slots=True)
class QueryRules:
    """How one interface reads query values (see the module's table)."""

    case_sensitive: bool
    """Whether values match case-sensitively on the VRs that fold (PN, or every text VR)."""
    fold_every_text_vr: bool = False
    star_is_universal: bool = True
    wildcard_vrs: frozenset[str] | None = None
    """The VRs wildcards are allowed on (None: anywhere, nothing refused)."""
    ranges_take_wildcards: bool = False
    """A range value ("a-b" on DA/DT/TM) is not checked for wildcards."""
    fuzzy_pn: bool = False
    """PN values match as prefixes (a "*" is added)."""


def tools_find_rules(case_sensitive: bool) -> QueryRules:
    """/tools/find: Orthanc's DatabaseLookup ("CaseSensitive" applies to every text VR)."""
    return QueryRules(
        case_sensitive,
        fold_every_text_vr=True,
        star_is_universal=False,
        wildcard_vrs=TEXT_VRS,
        ranges_take_wildcards=True,
    )


def c_find_rules(case_sensitive_pn: bool) -> QueryRules:
    """C-FIND: PN folding from CaseSensitivePN; "*" asks for the tag, as /tools/find."""
    return QueryRules(case_sensitive_pn, star_is_universal=False, wildcard_vrs=TEXT_VRS | {"UN"})


def qido_rules(fuzzy: bool) -> QueryRules:
    """QIDO-RS: PN case-insensitive; `fuzzymatching=true` makes PN values prefixes."""
    return QueryRules(False, fuzzy_pn=fuzzy)


def query_constraint(tag: int, value: str, rules: QueryRules) -> TagConstraint | None:
    """The constraint of one query value (None: universal); WildcardNotAllowed per the rules."""
    if tag == MODALITIES_IN_STUDY:
        tag = MODALITY
    vr = vr_of(tag)
    if rules.wildcard_vrs is not None and value and ("*" in value or "?" in value) and "\\" not in value:
        is_range = rules.ranges_take_wildcards and vr in RANGE_VRS and "-" in value
        if not is_range and vr not in rules.wildcard_vrs:
            raise WildcardNotAllowed(tag)
    if rules.fuzzy_pn and vr == "PN" and value and not value.endswith("*"):
        value += "*"
    return parse_constraint(
        tag, value, rules.case_sensitive, rules.star_is_universal, any_text_vr=rules.fold_every_text_vr
    )


def add_constraint(req: FindRequest, tag: int, value: str, rules: QueryRules) -> None:
    """Add the constraint of one query value to a find request (nothing when universal)."""
    c = query_constraint(tag, value, rules)
    if c is not None:
        req.constraints.append(c)
