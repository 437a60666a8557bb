from sqlmodel import SQLModel

from notifications import models  # noqa: F401  (registers the tables)
from pathways_shared.migrations import run_env

run_env(
    SQLModel.metadata,
    env_var="NOTIFICATIONS_DATABASE_URL",
    default_url="sqlite+aiosqlite:///.data/notifications.db",
)
