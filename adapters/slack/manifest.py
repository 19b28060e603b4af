"""The Slack app manifest for Boeket: the one place that states which scopes and events it asks for.

The manifest targets major version 1 of Slack's manifest schema (slackapi/manifest-schema
``schemas/manifest.schema.1.0.0.json``): the classic app configured on api.slack.com and served by
Bolt. Version 2 is for apps deployed with the Slack CLI to Slack's own (Deno) runtime.

Every HTTP entry point — events, the ``/deel`` command and interactivity — is the one endpoint
``/slack/events``; Bolt tells them apart by the payload.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml

EVENTS_PATH = "/slack/events"
INSTALL_PATH = "/slack/install"
OAUTH_REDIRECT_PATH = "/slack/oauth_redirect"

COMMAND = "/deel"
COMMAND_USAGE_HINT = "[help | mijn | zoek WOORDEN | verwijder CODE]"
COMMAND_DESCRIPTION = "Deel een succes met je team en de rest van de organisatie"

# Each scope, and why Boeket needs it. Nothing more: no chat:write.public (Boeket posts only where
# it was invited), no admin scopes, no user scopes.
BOT_SCOPES: tuple[str, ...] = tuple(
    sorted(
        (
            "chat:write",  # post prompts, reminders, harvests, replies
            "commands",  # /deel
            # thread replies in public channels (message.channels); conversations.history and
            # .replies to find a post whose replica died before recording it (find_posted)
            "channels:history",
            "groups:history",  # the same in private channels (message.groups)
            "channels:read",  # conversations.info: public channel, membership
            "groups:read",  # conversations.info: private channel, membership
            "users:read",  # display names in the harvest
            "im:write",  # open a DM for personal notices
        )
    )
)

BOT_EVENTS: tuple[str, ...] = (
    "message.channels",
    "message.groups",
    "app_home_opened",
    "member_joined_channel",
    "app_uninstalled",
    "tokens_revoked",
)

# Limits from the manifest schema (display_information).
NAME_MAX = 35
DESCRIPTION_MAX = 140
LONG_DESCRIPTION_MIN = 175
LONG_DESCRIPTION_MAX = 4000
# Keeps every derived URL within the schema's shortest limit (redirect_urls: 2500).
URL_MAX = 2000

BACKGROUND_COLOR = "#2e5e4e"

DESCRIPTION = (
    "Leren in de overleggen die je team al heeft: één reflectievraag vooraf, de oogst bij de start."
)

LONG_DESCRIPTION = (
    "Boeket brengt organisatieleren in de overleggen die teams al houden. Vóór elk "
    "teamoverleg stelt Boeket in het kanaal van de afdeling één korte reflectievraag: over een "
    "succes, een les, een lastige casus, de koers van de organisatie of wat er goed gaat. Het "
    "team antwoordt in de draad onder de vraag of met de knop Antwoorden — anoniem als de "
    "afdeling dat wil. Bij de start van het overleg krijgt het team de oogst als agendablok, en "
    "na afloop één vervolgvraag.\n\n"
    "Met /deel deelt iemand een succes samen met de randvoorwaarden die het mogelijk maakten, "
    "zodat een andere afdeling het kan vertalen in plaats van kopiëren. Zo worden losse bloemen "
    "een boeket.\n\n"
    "Boeket doet alleen mee in kanalen waarin het is uitgenodigd. Wat in een privékanaal wordt "
    "gezegd, verschijnt nooit in een openbaar kanaal, tenzij de afdeling daarvoor kiest."
)

_DEV_HOSTS = frozenset({"localhost", "127.0.0.1"})
_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
_OWN_PATHS = (EVENTS_PATH, INSTALL_PATH, OAUTH_REDIRECT_PATH)


class ManifestError(ValueError):
    """A value Slack would refuse in the manifest; `field` is the argument (`url` or `name`)."""

    def __init__(self, field: Literal["url", "name"], value: str, reason: str) -> None:
        super().__init__(f"{field} {value!r}: {reason}")
        self.field = field
        self.value = value
        self.reason = reason


def base_url(url: str) -> str:
    """`url` checked and without its trailing "/": where Slack reaches Boeket.

    https only, except http://localhost and http://127.0.0.1 for development. A path prefix (a
    reverse proxy's) is kept; a query, fragment or user name is refused, and so is a URL that
    already ends in one of Boeket's own paths, since Boeket adds those itself.
    """
    if not url or url != url.strip() or any(c.isspace() or ord(c) < 32 for c in url):
        raise ManifestError("url", url, "expected an absolute URL without spaces")
    if len(url) > URL_MAX:
        raise ManifestError("url", url, f"longer than {URL_MAX} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ManifestError("url", url, f"not a URL ({exc})") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in {"https", "http"} or not host:
        raise ManifestError("url", url, "expected https://host, e.g. https://boeket.example.nl")
    if parts.scheme == "http" and host not in _DEV_HOSTS:
        raise ManifestError(
            "url", url, "Slack needs https; http is only for http://localhost or http://127.0.0.1"
        )
    if parts.username is not None or parts.password is not None:
        raise ManifestError("url", url, "a user name or password does not belong in the URL")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ManifestError("url", url, "a query (?…) or fragment (#…) does not belong in the URL")
    if not _HOST.match(host):
        raise ManifestError("url", url, f"{host!r} is not a host name")
    path = parts.path.removesuffix("/")
    if path.endswith("/") or "//" in path:
        raise ManifestError("url", url, "the path has an empty segment ('//')")
    if path.endswith(_OWN_PATHS):
        raise ManifestError(
            "url", url, f"give the base URL; Boeket adds {', '.join(_OWN_PATHS)} itself"
        )
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, path, "", ""))


def _check_name(name: str) -> str:
    if not name.strip() or name != name.strip() or len(name) > NAME_MAX:
        raise ManifestError("name", name, f"expected 1 to {NAME_MAX} characters, no outer spaces")
    return name


def build_manifest(
    url: str,
    *,
    name: str = "Boeket",
    socket_mode: bool = False,
    multi_workspace: bool = False,
) -> dict[str, Any]:
    """Boeket's Slack app manifest, for Slack's "Create New App → From an app manifest".

    `url` is where Slack reaches Boeket. In Socket Mode Slack sends events, commands and
    interactivity over the socket, so the request URLs are left out; the OAuth redirect
    (`multi_workspace`) is a browser redirect and stays.
    """
    base = base_url(url)
    name = _check_name(name)
    events_url = base + EVENTS_PATH

    command: dict[str, Any] = {"command": COMMAND}
    if not socket_mode:
        command["url"] = events_url
    command |= {
        "description": COMMAND_DESCRIPTION,
        "usage_hint": COMMAND_USAGE_HINT,
        "should_escape": False,
    }

    oauth_config: dict[str, Any] = {}
    if multi_workspace:
        oauth_config["redirect_urls"] = [base + OAUTH_REDIRECT_PATH]
    oauth_config["scopes"] = {"bot": list(BOT_SCOPES)}

    event_subscriptions: dict[str, Any] = {}
    interactivity: dict[str, Any] = {"is_enabled": True}
    if not socket_mode:
        event_subscriptions["request_url"] = events_url
        interactivity["request_url"] = events_url
    event_subscriptions["bot_events"] = list(BOT_EVENTS)

    return {
        "_metadata": {"major_version": 1, "minor_version": 1},
        "display_information": {
            "name": name,
            "description": DESCRIPTION,
            "background_color": BACKGROUND_COLOR,
            "long_description": LONG_DESCRIPTION,
        },
        "features": {
            "app_home": {
                "home_tab_enabled": True,
                "messages_tab_enabled": True,
                "messages_tab_read_only_enabled": True,  # Boeket talks there; it reads no DMs
            },
            "bot_user": {"display_name": name, "always_online": True},
            "slash_commands": [command],
        },
        "oauth_config": oauth_config,
        "settings": {
            "event_subscriptions": event_subscriptions,
            "interactivity": interactivity,
            "org_deploy_enabled": False,
            "socket_mode_enabled": socket_mode,
            "token_rotation_enabled": False,
        },
    }


def manifest_yaml(manifest: dict[str, Any]) -> str:
    """The manifest as YAML, in the order Slack's own app settings page shows it."""
    return yaml.safe_dump(manifest, allow_unicode=True, sort_keys=False, width=100)


def manifest_json(manifest: dict[str, Any]) -> str:
    """The manifest as JSON, ending in a newline."""
    return json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
