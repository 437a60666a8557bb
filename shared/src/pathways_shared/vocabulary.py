"""The fixed vocabulary every service shares (see ../shared/DOMAIN.md).

Only words live here: codes, their names and the sets they form. No service's rules.
"""

from __future__ import annotations

import re
from enum import StrEnum


class Pathway(StrEnum):
    ACCOMMODATION = "accommodation"
    EDUCATION_TRAINING_EMPLOYMENT = "education_training_employment"
    FINANCE_BENEFIT_DEBT = "finance_benefit_debt"
    CHILDREN_FAMILIES = "children_families"
    DRUGS_ALCOHOL = "drugs_alcohol"
    HEALTH = "health"
    ATTITUDES_THINKING_BEHAVIOUR = "attitudes_thinking_behaviour"


PATHWAY_NAMES: dict[Pathway, str] = {
    Pathway.ACCOMMODATION: "Accommodation",
    Pathway.EDUCATION_TRAINING_EMPLOYMENT: "Education, training and employment",
    Pathway.FINANCE_BENEFIT_DEBT: "Finance, benefit and debt",
    Pathway.CHILDREN_FAMILIES: "Children and families",
    Pathway.DRUGS_ALCOHOL: "Drugs and alcohol",
    Pathway.HEALTH: "Health (mental and physical, neuro-diversity)",
    Pathway.ATTITUDES_THINKING_BEHAVIOUR: "Attitudes, thinking and behaviour",
}


class Complexity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Sex(StrEnum):
    MALE = "male"
    FEMALE = "female"


class SupervisionStatus(StrEnum):
    COMMUNITY_ORDER = "community_order"
    SUSPENDED_SENTENCE_ORDER = "suspended_sentence_order"
    LICENCE = "licence"
    POST_SENTENCE_SUPERVISION = "post_sentence_supervision"
    CUSTODY_PRE_RELEASE = "custody_pre_release"
    NON_STATUTORY = "non_statutory"


STATUTORY_STATUSES: frozenset[SupervisionStatus] = frozenset(
    {
        SupervisionStatus.COMMUNITY_ORDER,
        SupervisionStatus.SUSPENDED_SENTENCE_ORDER,
        SupervisionStatus.LICENCE,
        SupervisionStatus.POST_SENTENCE_SUPERVISION,
        SupervisionStatus.CUSTODY_PRE_RELEASE,
    }
)


class Rosh(StrEnum):
    """Risk of serious harm."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    VERY_HIGH = "very_high"


# Local authority areas by ONS GSS code.
AREAS: dict[str, str] = {
    "E08000025": "Birmingham",
    "E08000026": "Coventry",
    "E08000027": "Dudley",
    "E08000028": "Sandwell",
    "E08000029": "Solihull",
    "E08000030": "Walsall",
    "E08000031": "Wolverhampton",
}

REGIONS: dict[str, frozenset[str]] = {"west-midlands": frozenset(AREAS)}


def expand_areas(codes: list[str] | tuple[str, ...] | frozenset[str]) -> frozenset[str]:
    """Area codes with any region name replaced by the areas it holds."""
    out: set[str] = set()
    for code in codes:
        out |= REGIONS.get(code, {code})
    return frozenset(out)


class NeedStatus(StrEnum):
    SUBMITTED = "submitted"
    ALLOCATED = "allocated"
    UNALLOCATED = "unallocated"
    ACKNOWLEDGED = "acknowledged"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    WITHDRAWN = "withdrawn"


ENDED_NEED_STATUSES: frozenset[NeedStatus] = frozenset(
    {NeedStatus.UNALLOCATED, NeedStatus.COMPLETED, NeedStatus.WITHDRAWN}
)


class DeclineReason(StrEnum):
    CAPACITY = "capacity"
    NOT_ELIGIBLE = "not_eligible"
    RISK_TOO_HIGH = "risk_too_high"
    UNABLE_TO_ENGAGE = "unable_to_engage"
    DUPLICATE = "duplicate"
    OTHER = "other"


class WithdrawalReason(StrEnum):
    RECALLED_TO_CUSTODY = "recalled_to_custody"
    MOVED_OUT_OF_AREA = "moved_out_of_area"
    SENTENCE_ENDED = "sentence_ended"
    DECEASED = "deceased"
    NO_LONGER_REQUIRED = "no_longer_required"
    DISENGAGED = "disengaged"
    DUPLICATE = "duplicate"
    OTHER = "other"


class Outcome(StrEnum):
    ACHIEVED = "achieved"
    PARTIALLY_ACHIEVED = "partially_achieved"
    NOT_ACHIEVED = "not_achieved"


class Cohort(StrEnum):
    FIXED = "fixed"
    FLEX = "flex"
    FREE = "free"


class OffenceCategory(StrEnum):
    BURGLARY_DOMESTIC = "burglary_domestic"
    ROBBERY_PERSONAL = "robbery_personal"
    THEFT_FROM_PERSON = "theft_from_person"
    THEFT_OF_VEHICLE = "theft_of_vehicle"
    THEFT_FROM_VEHICLE = "theft_from_vehicle"
    VEHICLE_INTERFERENCE = "vehicle_interference"
    BURGLARY_NON_DOMESTIC = "burglary_non_domestic"
    ROBBERY_BUSINESS = "robbery_business"
    SHOPLIFTING = "shoplifting"
    THEFT_OTHER = "theft_other"
    VIOLENCE_WITH_INJURY = "violence_with_injury"
    VIOLENCE_WITHOUT_INJURY = "violence_without_injury"
    DOMESTIC_ABUSE = "domestic_abuse"
    SEXUAL = "sexual"
    WEAPONS_POSSESSION = "weapons_possession"
    DRUGS_SUPPLY = "drugs_supply"
    DRUGS_POSSESSION = "drugs_possession"
    CRIMINAL_DAMAGE = "criminal_damage"
    PUBLIC_ORDER = "public_order"
    FRAUD = "fraud"
    MOTORING = "motoring"
    OTHER = "other"


NEIGHBOURHOOD_CRIME: frozenset[OffenceCategory] = frozenset(
    {
        OffenceCategory.BURGLARY_DOMESTIC,
        OffenceCategory.ROBBERY_PERSONAL,
        OffenceCategory.THEFT_FROM_PERSON,
        OffenceCategory.THEFT_OF_VEHICLE,
        OffenceCategory.THEFT_FROM_VEHICLE,
        OffenceCategory.VEHICLE_INTERFERENCE,
    }
)


class DeselectionReason(StrEnum):
    DESISTED = "desisted"
    SENTENCE_ENDED = "sentence_ended"
    MOVED_OUT_OF_AREA = "moved_out_of_area"
    CUSTODY_LONG_TERM = "custody_long_term"
    DECEASED = "deceased"
    PANEL_DECISION = "panel_decision"


class Role(StrEnum):
    PROBATION = "probation"
    PROVIDER = "provider"
    POLICE = "police"
    IOM_PANEL = "iom_panel"
    ADMIN = "admin"
    SERVICE = "service"
    # Analysts of a partnership (CSP, PCC's office, MOPAC): the insights figures of their areas.
    PARTNERSHIP = "partnership"


PROVIDER_NAMES: dict[str, str] = {
    "NACRO": "Nacro",
    "CHANGING_LIVES": "Changing Lives",
    "INGEUS": "Ingeus",
    "MAXIMUS": "Maximus",
    "IXION": "Ixion",
    "SIAS": "SIAS (Solihull Integrated Addiction Services)",
    "CWH": "Community Wellbeing Hub",
    "SMBC_EARLY_HELP": "Solihull MBC Early Help",
    "ND_SERVICE": "Neuro-diversity service",
    "PROBATION": "Probation",
}
"""Each provider's name as people read it (emails, the dashboard), by provider code."""

PROVIDER_CODES: frozenset[str] = frozenset(PROVIDER_NAMES)

# Identifiers are matched whole: `\Z`, not `$` (which also matches before a trailing newline,
# so "S391957\n" would pass). Pydantic `pattern=` constraints run in Rust's regex engine,
# where `$` is the end of the text; Python code uses `fullmatch` with these.
CRN_PATTERN = re.compile(r"^[A-Z][0-9]{6}\Z")
NOMS_PATTERN = re.compile(r"^[A-Z][0-9]{4}[A-Z]{2}\Z")
PNC_PATTERN = re.compile(r"^[0-9]{4}/[0-9]{7}[A-Z]\Z")


# One email rule, at submission (referrals) and at sending (notifications): an address one
# accepts the other sends to. Deliberately strict: one @, no spaces, no CR/LF (header
# injection), a dotted domain, at most 254 characters.
EMAIL_PATTERN = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+\Z"
)


def is_email_address(value: str) -> bool:
    return len(value) <= 254 and EMAIL_PATTERN.fullmatch(value) is not None
