"""The Teams adapter's own settings, validated with errors that name the variable."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})
NAMES = ("TEAMS_CLIENT_ID", "TEAMS_CLIENT_SECRET", "TEAMS_TENANT_ID", "TEAMS_DEV_MODE")
BOT_FRAMEWORK_METADATA = "https://login.botframework.com/v1/.well-known/openidconfiguration"
ENTRA_LOGIN = "https://login.microsoftonline.com"
GRAPH = "https://graph.microsoft.com"
# Teams' limits per bot and conversation: (messages, seconds).
TEAMS_LIMITS: tuple[tuple[int, float], ...] = ((7, 1.0), (8, 2.0), (60, 30.0), (1800, 3600.0))


class TeamsSettingsError(ValueError):
    """The TEAMS_* variables do not describe a usable Teams set-up; `name` is the variable."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


@dataclass(frozen=True, slots=True)
class TeamsSettings:
    """A single-tenant bot registration, or the explicit local development mode.

    With `client_id` set every incoming request's token is validated and outgoing calls carry a
    token for the app; in `dev_mode` nothing is validated and nothing is signed, so it is only
    for a laptop with the Bot Framework Emulator or a test's fake connector.
    """

    client_id: str = ""
    client_secret: str = ""
    tenant_id: str = ""
    dev_mode: bool = False
    # Where the Bot Framework publishes the issuer and signing keys of the tokens it sends, and
    # where Boeket gets its own token. Other values only for a sovereign cloud (or a test).
    openid_metadata_url: str = BOT_FRAMEWORK_METADATA
    login_url: str = ENTRA_LOGIN
    # Microsoft Graph, where a post is looked for after a crash (resource-specific consent).
    graph_url: str = GRAPH
    # Per conversation, every window at once: never more than n messages in s seconds.
    limits: tuple[tuple[int, float], ...] = TEAMS_LIMITS
    max_attempts: int = 4
    backoff_seconds: float = 1.0

    @property
    def authenticated(self) -> bool:
        return bool(self.client_id)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TeamsSettings | None:
        """None when Teams is not configured at all; an error naming the variable when half set."""
        if not any(env.get(n) for n in NAMES):
            return None
        client_id = env.get("TEAMS_CLIENT_ID", "").strip()
        secret = env.get("TEAMS_CLIENT_SECRET", "")
        tenant = env.get("TEAMS_TENANT_ID", "").strip()
        raw_dev = env.get("TEAMS_DEV_MODE", "").strip().lower()
        if raw_dev not in _TRUE | _FALSE:
            raise TeamsSettingsError("TEAMS_DEV_MODE", "expected true or false")
        dev_mode = raw_dev in _TRUE
        if tenant and not _GUID.match(tenant):
            raise TeamsSettingsError(
                "TEAMS_TENANT_ID",
                "expected the directory (tenant) id, a GUID, from the app registration's "
                "Overview page",
            )
        if client_id or secret:
            if dev_mode:
                raise TeamsSettingsError(
                    "TEAMS_DEV_MODE",
                    "development mode turns token validation off; remove it when "
                    "TEAMS_CLIENT_ID and TEAMS_CLIENT_SECRET are set",
                )
            if not client_id:
                raise TeamsSettingsError(
                    "TEAMS_CLIENT_ID",
                    "missing: the application (client) id of the bot's app registration",
                )
            if not _GUID.match(client_id):
                raise TeamsSettingsError(
                    "TEAMS_CLIENT_ID", "expected the application (client) id, a GUID"
                )
            if not secret:
                raise TeamsSettingsError(
                    "TEAMS_CLIENT_SECRET",
                    "missing: a client secret of the app registration (Certificates & secrets)",
                )
            if not tenant:
                raise TeamsSettingsError(
                    "TEAMS_TENANT_ID",
                    "missing: Boeket's bot is single-tenant; give the directory (tenant) id",
                )
        elif not dev_mode:
            raise TeamsSettingsError(
                "TEAMS_CLIENT_ID",
                "missing: set TEAMS_CLIENT_ID, TEAMS_CLIENT_SECRET and TEAMS_TENANT_ID, or "
                "TEAMS_DEV_MODE=true to try Teams locally without token validation",
            )
        return cls(
            client_id=client_id,
            client_secret=secret,
            tenant_id=tenant,
            dev_mode=dev_mode,
            openid_metadata_url=_url(env, "TEAMS_OPENID_METADATA_URL", BOT_FRAMEWORK_METADATA),
            login_url=_url(env, "TEAMS_LOGIN_URL", ENTRA_LOGIN),
            graph_url=_url(env, "TEAMS_GRAPH_URL", GRAPH).rstrip("/"),
        )


def _url(env: Mapping[str, str], name: str, default: str) -> str:
    """An https URL (plain http only on this machine, for a test's fake server)."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    parts = urlsplit(raw)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise TeamsSettingsError(name, f"expected an https URL like {default}")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise TeamsSettingsError(name, "must use https: tokens and keys travel over it")
    return raw


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
