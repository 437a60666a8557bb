from sqlmodel import SQLModel

from insights import models  # noqa: F401  (registers the tables)
from pathways_shared.migrations import run_env

run_env(
    SQLModel.metadata,
    env_var="INSIGHTS_DATABASE_URL",
    default_url="sqlite+aiosqlite:///.data/insights.db",
)
