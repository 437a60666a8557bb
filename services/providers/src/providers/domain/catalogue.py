"""The catalogue of commissioned services: its model, its validation and its seed data.

A service is a contract: a provider delivers one pathway under a programme, in some areas, for
people matching its eligibility. The seed catalogue is data (`catalogue.json`), not code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from enum import StrEnum
from importlib import resources
from typing import Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from pathways_shared.vocabulary import (
    AREAS,
    PROVIDER_CODES,
    REGIONS,
    Complexity,
    Pathway,
    Sex,
    SupervisionStatus,
    expand_areas,
)
from providers.errors import FieldError, InvalidService

SEED_FILE = "catalogue.json"
SERVICE_CODE_PATTERN = r"^[A-Z0-9]+(-[A-Z0-9]+)*$"
ADULT_AGE = 18
MAX_AGE = 120
MAX_SERVICE_LEVEL_DAYS = 60


class NeedFlag(StrEnum):
    """Flags a need may carry (CONTRACT.md, `needs[].flags`)."""

    AT_RISK_OF_HOMELESSNESS = "at_risk_of_homelessness"
    PARENTAL_SUBSTANCE_MISUSE = "parental_substance_misuse"
    CHILDREN_IN_HOUSEHOLD = "children_in_household"
    WOMEN_SPECIFIC = "women_specific"


def _no_duplicates(values: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
    if values is not None and not values:
        raise ValueError("must not be empty; leave it null to accept any value")
    if values is not None and len(set(values)) != len(values):
        raise ValueError("must not repeat a value")
    return values


class Eligibility(BaseModel):
    """Who a service takes. `None` for a list means any value is accepted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sexes: tuple[Sex, ...] | None = None
    min_age: StrictInt = Field(default=ADULT_AGE, ge=ADULT_AGE, le=MAX_AGE)
    max_age: StrictInt | None = Field(default=None, ge=ADULT_AGE, le=MAX_AGE)
    supervision_statuses: tuple[SupervisionStatus, ...] | None = None
    complexities: tuple[Complexity, ...] | None = None
    required_flags: tuple[NeedFlag, ...] = ()
    requires_iom_membership: StrictBool = False

    _unique = field_validator("sexes", "supervision_statuses", "complexities")(_no_duplicates)

    @field_validator("required_flags")
    @classmethod
    def _unique_flags(cls, value: tuple[NeedFlag, ...]) -> tuple[NeedFlag, ...]:
        if len(set(value)) != len(value):
            raise ValueError("must not repeat a value")
        return value

    @field_validator("max_age")
    @classmethod
    def _max_not_below_min(cls, value: int | None, info: ValidationInfo) -> int | None:
        min_age = info.data.get("min_age")
        if value is not None and min_age is not None and value < min_age:
            raise ValueError(f"must not be below min_age ({min_age})")
        return value


class Service(BaseModel):
    """One commissioned service of the catalogue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(min_length=1, max_length=32, pattern=SERVICE_CODE_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    provider_code: str = Field(json_schema_extra={"enum": sorted(PROVIDER_CODES)})
    programme: str = Field(min_length=1, max_length=50)
    pathway: Pathway
    areas: tuple[str, ...] = Field(
        min_length=1, json_schema_extra={"items": {"type": "string", "enum": sorted({*AREAS, *REGIONS})}}
    )
    priority: StrictInt = Field(ge=0, le=1000)
    eligibility: Eligibility = Field(default_factory=Eligibility)
    acknowledge_days: StrictInt = Field(default=2, ge=1, le=MAX_SERVICE_LEVEL_DAYS)
    respond_days: StrictInt = Field(default=5, ge=1, le=MAX_SERVICE_LEVEL_DAYS)
    active: StrictBool = True

    @field_validator("name", "programme")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @field_validator("provider_code")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        if value not in PROVIDER_CODES:
            raise ValueError(f"unknown provider code; one of {', '.join(sorted(PROVIDER_CODES))}")
        return value

    @field_validator("areas")
    @classmethod
    def _known_areas(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [a for a in value if a not in AREAS and a not in REGIONS]
        if unknown:
            raise ValueError(
                f"unknown area {', '.join(unknown)}; a GSS code of "
                f"{', '.join(sorted(AREAS))} or a region ({', '.join(sorted(REGIONS))})"
            )
        _no_duplicates(value)
        return value

    @field_validator("respond_days")
    @classmethod
    def _respond_not_before_acknowledge(cls, value: int, info: ValidationInfo) -> int:
        acknowledge = info.data.get("acknowledge_days")
        if acknowledge is not None and value < acknowledge:
            raise ValueError(f"must not be below acknowledge_days ({acknowledge})")
        return value

    @property
    def covered_areas(self) -> frozenset[str]:
        """The GSS codes this service covers, regions expanded."""
        return expand_areas(self.areas)

    def covers(self, area: str) -> bool:
        return area in self.covered_areas

    @classmethod
    def parse(cls, data: Mapping[str, Any], *, prefix: str = "") -> Self:
        """Validate raw data into a service, or raise `InvalidService` naming every field at fault."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidService(
                "the service is not valid", field_errors(exc, prefix=prefix)
            ) from None


class Provider(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str
    name: str = Field(min_length=1, max_length=200)

    @field_validator("code")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in PROVIDER_CODES:
            raise ValueError("unknown provider code")
        return value


class Catalogue(BaseModel):
    """Providers and their services; every service's provider is listed, codes are unique."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    providers: tuple[Provider, ...]
    services: tuple[Service, ...]

    def service(self, code: str) -> Service | None:
        return next((s for s in self.services if s.code == code), None)

    def for_pathway(self, pathway: Pathway | str) -> tuple[Service, ...]:
        return tuple(s for s in self.services if s.pathway == pathway)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Self:
        try:
            catalogue = cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidService("the catalogue is not valid", field_errors(exc)) from None
        errors = list(_duplicates("providers", (p.code for p in catalogue.providers)))
        errors += _duplicates("services", (s.code for s in catalogue.services))
        known = {p.code for p in catalogue.providers}
        errors += [
            FieldError(f"services.{i}.provider_code", f"provider {s.provider_code} is not listed")
            for i, s in enumerate(catalogue.services)
            if s.provider_code not in known
        ]
        if errors:
            raise InvalidService("the catalogue is not valid", errors)
        return catalogue


def _duplicates(kind: str, codes: Iterable[str]) -> list[FieldError]:
    seen: set[str] = set()
    errors = []
    for index, code in enumerate(codes):
        if code in seen:
            errors.append(FieldError(f"{kind}.{index}.code", f"duplicate code {code}"))
        seen.add(code)
    return errors


def field_errors(exc: ValidationError, *, prefix: str = "") -> list[FieldError]:
    """Pydantic's errors as dotted field paths with plain messages."""
    out = []
    for error in exc.errors():
        path = ".".join(str(part) for part in (prefix, *error["loc"]) if part != "")
        message = error["msg"].removeprefix("Value error, ")
        out.append(FieldError(path or "body", message))
    return out


def load_seed_catalogue() -> Catalogue:
    """The seed catalogue of DOMAIN.md, read from the package's data file."""
    text = resources.files("providers").joinpath(SEED_FILE).read_text(encoding="utf-8")
    return Catalogue.parse(json.loads(text))
