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


# The environment variables the embedders follow (see `bot.embedders.E5Embedder`).
EMBEDDER_ENV = ("XDG_CACHE_HOME", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")

EMBEDDERS = ("auto", "lexical", "use", "e5", "e5-both", "ensemble", "openai")


@dataclass(frozen=True, slots=True)
class EmbeddingEndpoint:
    """An OpenAI-compatible embeddings endpoint (OpenAI, Azure OpenAI, a local server)."""

    base_url: str
    model: str
    dimensions: int
    api_key: str = ""
    api_version: str = ""  # Azure OpenAI: sent as the api-version query parameter


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    # PostgreSQL only: the schema Boeket's tables live in (the search path); empty: the default.
    database_schema: str = ""
    config_path: Path = EXAMPLE_CONFIG
    host: str = "127.0.0.1"
    port: int = 8080
    speed: float = 1.0
    tick_seconds: float = 30.0
    log_level: str = "INFO"
    log_format: str = "text"  # or "json": one object per line, for log collectors
    language: str = "nl"
    worker_id: str = ""
    # How long a replica's claim on a step holds; after that another replica takes it over.
    claim_lease_seconds: float = 300.0
    auto_migrate: bool = True
    slack: SlackSettings | None = None
    embedder: str = "auto"
    # What the embedders read of the environment: XDG_CACHE_HOME (where the built e5 model is
    # kept), OMP_NUM_THREADS (ONNX Runtime's threads) and OPENBLAS_NUM_THREADS (numpy's BLAS), as
    # (name, value) pairs.
    embedder_env: tuple[tuple[str, str], ...] = ()
    embeddings: EmbeddingEndpoint | None = None
    teams: TeamsSettings | None = None
    # Where people reach this Boeket from their browser (links in chat to the dashboard).
    public_url: str = ""
    # Opens the dashboard (a login form, or Authorization: Bearer); empty: only chat links do.
    admin_token: str = ""
    # Signs the links Boeket gives in chat; empty: one is generated and kept in the database.
    secret: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            database_url=env.get("BOEKET_DATABASE_URL", DEFAULT_DATABASE_URL),
            database_schema=env.get("BOEKET_DATABASE_SCHEMA", ""),
            config_path=Path(env.get("BOEKET_CONFIG", str(EXAMPLE_CONFIG))),
            host=env.get("BOEKET_HOST", "127.0.0.1"),
            port=_number(env, "BOEKET_PORT", 8080, int, "a port number 1-65535", 1, 65535),
            speed=_number(env, "BOEKET_SPEED", 1.0, float, "a number > 0", 0.001, 1e6),
            tick_seconds=_number(
                env, "BOEKET_TICK_SECONDS", 30.0, float, "seconds > 0", 0.05, 3600
            ),
            log_level=env.get("BOEKET_LOG_LEVEL", "INFO").upper(),
            log_format=_choice(env, "BOEKET_LOG_FORMAT", ("text", "json")),
            language=_language(env.get("BOEKET_LANG", "")),
            worker_id=env.get("BOEKET_WORKER_ID") or f"{socket.gethostname()}-{os.getpid()}",
            claim_lease_seconds=_number(
                env, "BOEKET_CLAIM_LEASE_SECONDS", 300.0, float, "seconds > 0", 1, 86400
            ),
            auto_migrate=env.get("BOEKET_AUTO_MIGRATE", "true").lower() not in {"0", "false", "no"},
            slack=SlackSettings.from_env(env),
            embedder=_embedder(env),
            embedder_env=tuple((name, env[name]) for name in EMBEDDER_ENV if name in env),
            embeddings=_endpoint(env),
            teams=TeamsSettings.from_env(env),
            public_url=_public_url(env.get("BOEKET_PUBLIC_URL", "")),
            admin_token=_long_enough(env, "BOEKET_ADMIN_TOKEN"),
            secret=_long_enough(env, "BOEKET_SECRET"),
        )


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, "").strip().lower() or choices[0]
    if value not in choices:
        raise SettingsError(name, value, " or ".join(choices))
    return value


def _long_enough(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if value and len(value) < 16:
        raise SettingsError(
            name, "(hidden)", "at least 16 characters, e.g. from `openssl rand -hex 24`"
        )
    return value


def _public_url(value: str) -> str:
    value = value.strip().rstrip("/")
    if value and not value.startswith(("https://", "http://")):
        raise SettingsError(
            "BOEKET_PUBLIC_URL", value, "an http(s) URL, e.g. https://boeket.example.nl"
        )
    return value


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


def _embedder(env: Mapping[str, str]) -> str:
    choice = env.get("BOEKET_EMBEDDER", "auto").lower()
    if choice not in EMBEDDERS:
        raise SettingsError("BOEKET_EMBEDDER", choice, " | ".join(EMBEDDERS))
    if choice == "openai" and not env.get("BOEKET_EMBEDDINGS_URL"):
        raise SettingsError("BOEKET_EMBEDDINGS_URL", "", "the endpoint's base URL for openai")
    return choice


def _endpoint(env: Mapping[str, str]) -> EmbeddingEndpoint | None:
    url = env.get("BOEKET_EMBEDDINGS_URL", "")
    if not url:
        return None
    if not url.startswith(("https://", "http://")):
        raise SettingsError("BOEKET_EMBEDDINGS_URL", url, "an http(s) URL")
    model = env.get("BOEKET_EMBEDDINGS_MODEL", "")
    if not model:
        raise SettingsError("BOEKET_EMBEDDINGS_MODEL", "", "the model or deployment name")
    return EmbeddingEndpoint(
        base_url=url,
        model=model,
        dimensions=_number(env, "BOEKET_EMBEDDINGS_DIMENSIONS", 1536, int, "a number", 8, 8192),
        api_key=env.get("BOEKET_EMBEDDINGS_KEY", ""),
        api_version=env.get("BOEKET_EMBEDDINGS_API_VERSION", ""),
    )
