from sqlmodel import SQLModel

from cohorts import models  # noqa: F401  (registers the tables)
from pathways_shared.migrations import run_env

run_env(
    SQLModel.metadata,
    env_var="COHORTS_DATABASE_URL",
    default_url="sqlite+aiosqlite:///.data/cohorts.db",
)
