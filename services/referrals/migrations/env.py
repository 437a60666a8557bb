from sqlmodel import SQLModel

from pathways_shared.migrations import run_env
from referrals import models  # noqa: F401  (registers the tables)

run_env(
    SQLModel.metadata,
    env_var="REFERRALS_DATABASE_URL",
    default_url="sqlite+aiosqlite:///.data/referrals.db",
)
