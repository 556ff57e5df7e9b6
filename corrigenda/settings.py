"""Settings from ``CORRIGENDA_*`` environment variables, with an embedded default.

With nothing set, Corrigenda keeps a SQLite file and a generated secret key in a data
directory and needs no other service. Setting ``CORRIGENDA_DATABASE_URL`` and
``CORRIGENDA_REDIS_URL`` switches to PostgreSQL and Celery on Redis.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigError(Exception):
    """A setting is wrong in a way the operator must fix; the message says how."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CORRIGENDA_", extra="forbid")

    data_dir: Path = Field(default_factory=lambda: Path.cwd() / "corrigenda-data")
    database_url: str | None = None
    redis_url: str | None = None
    secret_key: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    base_url: str | None = None
    # Feedback tokens stay valid this long after a prediction is logged.
    token_max_age_seconds: int = 7 * 24 * 3600
    max_request_bytes: int = 2 * 1024 * 1024
    # A publishable key is shared by every visitor of a site: cap it high, limit addresses.
    rate_limit_per_key: str = "120000/minute"
    rate_limit_per_address: str = "3000/minute"
    login_rate_limit: str = "10/minute"
    sweep_interval_seconds: float = 5.0
    lease_seconds: int = 300
    celery_queue: str = "corrigenda"
    testing: bool = False

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: work runs on an in-process worker."""
        return not self.redis_url

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'corrigenda.db'}"

    def public_url(self) -> str:
        return self.base_url or f"http://{self.host}:{self.port}"


def ensure_data_dir(settings: Settings) -> Path:
    """Create the data directory, or raise ConfigError saying why it cannot be used."""
    path = settings.data_dir
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"data directory {path} is not writable ({exc.strerror}); "
            "set CORRIGENDA_DATA_DIR to a folder you can write to"
        ) from exc
    return path


def load_secret_key(settings: Settings) -> str:
    """The configured secret key, or one generated once and kept in the data directory."""
    if settings.secret_key:
        return settings.secret_key
    key_file = ensure_data_dir(settings) / "secret_key"
    if not key_file.exists():
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return key_file.read_text().strip()
