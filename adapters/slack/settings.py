"""The Slack adapter's own settings, validated with errors that name the variable."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

DEFAULT_API_URL = "https://slack.com/api/"


class SlackSettingsError(ValueError):
    """The SLACK_* variables do not describe a usable Slack set-up."""


@dataclass(frozen=True, slots=True)
class SlackSettings:
    signing_secret: str
    bot_token: str = ""
    client_id: str = ""
    client_secret: str = ""
    app_token: str = ""
    api_url: str = DEFAULT_API_URL
    state_expiration_seconds: int = 600
    pace_seconds: float = 1.0  # between posts in one channel: Slack allows about one a second
    # Posts per second for the whole workspace (SLACK_WORKSPACE_RATE); 0: no workspace pacing,
    # 429s are then waited out call by call.
    workspace_rate: float = 0.0

    @property
    def mode(self) -> Literal["single", "multi"]:
        return "multi" if self.client_id else "single"

    @property
    def socket_mode(self) -> bool:
        return bool(self.app_token)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SlackSettings | None:
        """None when Slack is not configured at all; an error when half configured."""
        names = (
            "SLACK_BOT_TOKEN",
            "SLACK_SIGNING_SECRET",
            "SLACK_CLIENT_ID",
            "SLACK_CLIENT_SECRET",
            "SLACK_APP_TOKEN",
        )
        if not any(env.get(n) for n in names):
            return None
        signing_secret = env.get("SLACK_SIGNING_SECRET", "")
        bot_token = env.get("SLACK_BOT_TOKEN", "")
        client_id = env.get("SLACK_CLIENT_ID", "")
        client_secret = env.get("SLACK_CLIENT_SECRET", "")
        app_token = env.get("SLACK_APP_TOKEN", "")
        if not signing_secret and not app_token:
            raise SlackSettingsError(
                "SLACK_SIGNING_SECRET is missing: copy it from the app's Basic Information page"
            )
        if client_id or client_secret:
            if not (client_id and client_secret):
                raise SlackSettingsError(
                    "several workspaces need both SLACK_CLIENT_ID and SLACK_CLIENT_SECRET"
                )
            if bot_token:
                raise SlackSettingsError(
                    "set SLACK_BOT_TOKEN for one workspace, or SLACK_CLIENT_ID and "
                    "SLACK_CLIENT_SECRET for several — not both"
                )
        elif not bot_token.startswith("xoxb-"):
            raise SlackSettingsError(
                "SLACK_BOT_TOKEN must be the bot token (xoxb-…) from the app's OAuth page"
            )
        if app_token and not app_token.startswith("xapp-"):
            raise SlackSettingsError("SLACK_APP_TOKEN must be an app-level token (xapp-…)")
        api_url = env.get("BOEKET_SLACK_API_URL", DEFAULT_API_URL)
        if not api_url.startswith(("https://", "http://")):
            raise SlackSettingsError("BOEKET_SLACK_API_URL must be an http(s) URL")
        try:
            workspace_rate = float(env.get("SLACK_WORKSPACE_RATE", "") or 0)
        except ValueError:
            raise SlackSettingsError(
                "SLACK_WORKSPACE_RATE must be a number (posts per second)"
            ) from None
        if not 0 <= workspace_rate <= 1000:
            raise SlackSettingsError("SLACK_WORKSPACE_RATE must be between 0 and 1000")
        return cls(
            workspace_rate=workspace_rate,
            signing_secret=signing_secret,
            bot_token=bot_token,
            client_id=client_id,
            client_secret=client_secret,
            app_token=app_token,
            api_url=api_url if api_url.endswith("/") else api_url + "/",
        )
