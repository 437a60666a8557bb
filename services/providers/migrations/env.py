from sqlmodel import SQLModel

from pathways_shared.migrations import run_env
from providers import models  # noqa: F401  (registers the tables)

run_env(
    SQLModel.metadata,
    env_var="PROVIDERS_DATABASE_URL",
    default_url="sqlite+aiosqlite:///.data/providers.db",
)
