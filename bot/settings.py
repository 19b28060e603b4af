"""Process settings, read once from the environment at the composition root into a frozen object."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from adapters.slack.settings import SlackSettings
from adapters.teams.settings import TeamsSettings

EXAMPLE_CONFIG = Path(__file__).resolve().parent / "examples" / "ziekenhuis.yaml"
DEFAULT_DATABASE_URL = "sqlite:///boeket.sqlite3"


class SettingsError(ValueError):
    """An environment variable has a value Boeket cannot use."""

    def __init__(self, name: str, value: str, expected: str) -> None:
        super().__init__(f"{name}={value!r}: expected {expected}")
        self.name = name
        self.value = value
        self.expected = expected


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    config_path: Path = EXAMPLE_CONFIG
    host: str = "127.0.0.1"
    port: int = 8080
    speed: float = 1.0
    tick_seconds: float = 30.0
    log_level: str = "INFO"
    language: str = "nl"
    worker_id: str = ""
    auto_migrate: bool = True
    slack: SlackSettings | None = None
    teams: TeamsSettings | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            database_url=env.get("BOEKET_DATABASE_URL", DEFAULT_DATABASE_URL),
            config_path=Path(env.get("BOEKET_CONFIG", str(EXAMPLE_CONFIG))),
            host=env.get("BOEKET_HOST", "127.0.0.1"),
            port=_number(env, "BOEKET_PORT", 8080, int, "a port number 1-65535", 1, 65535),
            speed=_number(env, "BOEKET_SPEED", 1.0, float, "a number > 0", 0.001, 1e6),
            tick_seconds=_number(
                env, "BOEKET_TICK_SECONDS", 30.0, float, "seconds > 0", 0.05, 3600
            ),
            log_level=env.get("BOEKET_LOG_LEVEL", "INFO").upper(),
            language=_language(env.get("BOEKET_LANG", "")),
            worker_id=env.get("BOEKET_WORKER_ID") or f"{socket.gethostname()}-{os.getpid()}",
            auto_migrate=env.get("BOEKET_AUTO_MIGRATE", "true").lower() not in {"0", "false", "no"},
            slack=SlackSettings.from_env(env),
            teams=TeamsSettings.from_env(env),
        )


def _language(value: str) -> str:
    """BOEKET_LANG, else nl: Boeket speaks Dutch first."""
    return "en" if value.lower().startswith("en") else "nl"


def _number[T: (int, float)](
    env: Mapping[str, str], name: str, default: T, cast: type[T], expected: str, lo: T, hi: T
) -> T:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise SettingsError(name, raw, expected) from None
    if not lo <= value <= hi:
        raise SettingsError(name, raw, expected)
    return value
