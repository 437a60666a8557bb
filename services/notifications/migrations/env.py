from sqlmodel import SQLModel

from pathways_shared.migrations import run_env
from notifications import models  # noqa: F401  (registers the tables)

run_env(
    SQLModel.metadata,
    env_var="NOTIFICATIONS_DATABASE_URL",
    default_url="sqlite+aiosqlite:///.data/notifications.db",
)
