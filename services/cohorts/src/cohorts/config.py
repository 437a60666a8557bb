"""Settings of the cohorts service: every variable is `COHORTS_<NAME>` (see the README)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from pathways_shared.config import ServiceSettings


class CohortsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="COHORTS_")

    service_name: str = "cohorts"
    port: int = 8003
    database_url: str = "sqlite+aiosqlite:///.data/cohorts.db"
    # Good rows of `POST /offences:import` are loaded this many to a transaction.
    import_batch_size: int = Field(default=5000, ge=1, le=5000)
    # An import lists at most this many row errors (the rest are counted, not listed), so a
    # file of bad rows cannot make an answer (and a stored report) of any size.
    import_max_listed_errors: int = Field(default=1000, ge=1, le=10_000)
    # How often the review scheduler looks for members whose review has come.
    review_scan_seconds: float = Field(default=300.0, gt=0)
