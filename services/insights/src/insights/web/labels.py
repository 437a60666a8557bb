"""Words the dashboard shows for the codes the figures carry (pure: no I/O)."""

from __future__ import annotations

from datetime import date

from pathways_shared import vocabulary
from pathways_shared.vocabulary import AREAS, PATHWAY_NAMES, Pathway

# short enough for a chart's axis and a table's column
PROVIDER_NAMES: dict[str, str] = {**vocabulary.PROVIDER_NAMES, "SIAS": "SIAS"}

UNMET_REASONS: dict[str, str] = {
    "no_service": "No service for the pathway in the area",
    "all_declined": "Every eligible service declined",
    "sex": "Sex criterion not met",
    "age": "Age criterion not met",
    "supervision_status": "Supervision status not eligible",
    "complexity": "Complexity below the threshold",
    "required_flags": "Required need flag missing",
    "iom_membership": "Not an IOM cohort member",
    "inactive": "Service not active",
}

DESELECTION_REASONS: dict[str, str] = {
    "desisted": "Desisted",
    "sentence_ended": "Sentence ended",
    "moved_out_of_area": "Moved out of area",
    "custody_long_term": "Long-term custody",
    "deceased": "Deceased",
    "panel_decision": "Panel decision",
}

DECLINE_REASONS: dict[str, str] = {
    "capacity": "No capacity",
    "not_eligible": "Not eligible",
    "risk_too_high": "Risk too high",
    "unable_to_engage": "Unable to engage",
    "duplicate": "Duplicate",
    "other": "Other",
}

SIMPLE: dict[str, dict[str, str]] = {
    "sex": {"male": "Male", "female": "Female"},
    "supervision": {"statutory": "Statutory", "non_statutory": "Non-statutory"},
    "complexity": {"low": "Low", "medium": "Medium", "high": "High"},
    "cohort": {"fixed": "Fixed", "flex": "Flex", "free": "Free"},
    "outcome": {
        "achieved": "Achieved", "partially_achieved": "Partially achieved",
        "not_achieved": "Not achieved",
    },
}

DIMENSION_NAMES: dict[str, str] = {
    "pathway": "Pathway",
    "area": "Area",
    "provider": "Provider",
    "service": "Service",
    "programme": "Programme",
    "month": "Month",
    "sex": "Sex",
    "age_band": "Age band",
    "supervision": "Supervision",
    "complexity": "Complexity",
    "reason": "Reason",
    "cohort": "Cohort",
}

NONE_LABELS: dict[str, str] = {
    "provider": "Not allocated",
    "service": "Not allocated",
    "programme": "Not allocated",
}


def month_label(value: str) -> str:
    try:
        return date.fromisoformat(f"{value}-01").strftime("%b %Y")
    except ValueError:
        return value


def dimension_value(dimension: str, value: object, *, kind: str = "") -> str:
    """The words for one dimension value (`None`: the step had none, e.g. no provider)."""
    if value is None:
        return NONE_LABELS.get(dimension, "Not recorded")
    text = str(value)
    if dimension == "pathway":
        try:
            return PATHWAY_NAMES[Pathway(text)]
        except ValueError:
            return text
    if dimension == "area":
        return AREAS.get(text, text)
    if dimension == "provider":
        return PROVIDER_NAMES.get(text, text)
    if dimension == "month":
        return month_label(text)
    if dimension == "reason":
        table = DESELECTION_REASONS if kind == "cohorts" else UNMET_REASONS
        return table.get(text, DECLINE_REASONS.get(text, text.replace("_", " ").capitalize()))
    if dimension in SIMPLE:
        return SIMPLE[dimension].get(text, text)
    return text
