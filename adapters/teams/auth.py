"""Tokens between Teams and Boeket: checking the Bot Framework's, fetching Boeket's own.

Incoming: every request from the Bot Connector carries a JWT. It is accepted when it is signed
(RS256) by a key from the JSON Web Key Set that the OpenID metadata document names, its issuer is
that document's `issuer` (`https://api.botframework.com` in the public cloud), its audience is
Boeket's app (client) id, and it is within its validity (five minutes of clock skew, as the Bot
Framework allows). A key that lists `endorsements` may sign activities only for those channels.

Outgoing: Boeket's calls to the connector carry a token for the app, fetched with the OAuth 2.0
client-credentials grant from `{login_url}/{tenant}/oauth2/v2.0/token` and cached until shortly
before it expires.

Why not the SDK's own: its `JwtTokenValidator` reads keys from hard-coded URLs with a blocking
HTTP client in a thread (a hanging key host costs 30 s), and MSAL's client application accepts
only HTTPS authorities that Microsoft's instance discovery knows. Both metadata and login URL
are settings here, so a sovereign cloud — or a test's fake login server — can be named.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import ClientError, ClientSession, ClientTimeout
from azure.core.credentials_async import AsyncTokenCredential
from microsoft_agents.hosting.core import AgentAuthConfiguration

log = logging.getLogger(__name__)

ALGORITHMS = ("RS256",)
CLOCK_SKEW = 300.0  # seconds, as the Bot Framework's own validators allow
METADATA_TTL = 24 * 3600.0
REFRESH_AT_MOST_EVERY = 300.0  # an unknown key id refetches the key set, but not more often
TOKEN_MARGIN = 300.0  # fetch a new outgoing token this long before the old one expires
TIMEOUT = ClientTimeout(total=10)


class TokenRefused(Exception):
    """The request's token is not acceptable; the reason is safe to log (no token content)."""


class KeysUnavailable(Exception):
    """The OpenID metadata or its key set could not be read: nobody's token can be checked."""


class HttpSession:
    """One aiohttp session for Microsoft's login endpoints, opened on first use."""

    def __init__(self) -> None:
        self._session: ClientSession | None = None

    def get(self) -> ClientSession:
        if self._session is None or self._session.closed:
            self._session = ClientSession(timeout=TIMEOUT)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


@dataclass(frozen=True, slots=True)
class Verified:
    """A token's claims, and the channels its signing key is endorsed for (empty: any)."""

    claims: dict[str, Any]
    endorsements: frozenset[str]


@dataclass(slots=True)
class _KeySet:
    issuer: str
    keys: dict[str, tuple[jwt.PyJWK, frozenset[str]]]
    fetched: float


class BotFrameworkTokens:
    """Checks the Bot Framework tokens on incoming requests (see the module docstring)."""

    def __init__(
        self,
        *,
        metadata_url: str,
        audience: str,
        http: HttpSession,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metadata_url = metadata_url
        self._audience = audience
        self._http = http
        self._monotonic = monotonic
        self._keys: _KeySet | None = None
        self._lock = asyncio.Lock()

    async def verify(self, token: str) -> Verified:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenRefused("not a JWT") from exc
        if header.get("alg") not in ALGORITHMS:
            raise TokenRefused(f"algorithm {header.get('alg')!r} is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRefused("no key id")
        keys = await self._key_set(kid)
        found = keys.keys.get(kid)
        if found is None:
            raise TokenRefused("signed with a key that is not in the key set")
        key, endorsements = found
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=list(ALGORITHMS),
                audience=self._audience,
                issuer=keys.issuer,
                leeway=CLOCK_SKEW,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenRefused("expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenRefused("for another audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenRefused("from another issuer") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenRefused("bad signature") from exc
        except jwt.PyJWTError as exc:
            raise TokenRefused(type(exc).__name__) from exc
        return Verified(claims, endorsements)

    async def _key_set(self, kid: str) -> _KeySet:
        """The cached key set; fetched again when a day old, or for an unknown key id."""
        async with self._lock:
            now = self._monotonic()
            current = self._keys
            stale = current is None or now - current.fetched > METADATA_TTL
            unknown = current is not None and kid not in current.keys
            if (
                current is None
                or stale
                or (unknown and now - current.fetched > REFRESH_AT_MOST_EVERY)
            ):
                try:
                    current = self._keys = await self._fetch(now)
                except KeysUnavailable:
                    if current is None or stale:
                        raise
                    log.warning("Teams: could not refresh the signing keys; using the known ones")
            return current

    async def _fetch(self, now: float) -> _KeySet:
        metadata = await self._json(self._metadata_url)
        issuer, jwks_uri = metadata.get("issuer"), metadata.get("jwks_uri")
        if not isinstance(issuer, str) or not issuer or not isinstance(jwks_uri, str):
            raise KeysUnavailable(f"{self._metadata_url} names no issuer and jwks_uri")
        document = await self._json(jwks_uri)
        raw_keys = document.get("keys")
        if not isinstance(raw_keys, list):
            raise KeysUnavailable(f"{jwks_uri} holds no keys")
        keys: dict[str, tuple[jwt.PyJWK, frozenset[str]]] = {}
        for raw in raw_keys:
            if not isinstance(raw, dict) or not isinstance(raw.get("kid"), str):
                continue
            try:
                key = jwt.PyJWK(raw, algorithm="RS256")
            except (jwt.PyJWTError, ValueError, KeyError, TypeError):
                continue  # a key of another kind: not one that signs Bot Framework tokens
            endorsed = raw.get("endorsements")
            channels = (
                frozenset(str(e).lower() for e in endorsed if isinstance(e, str))
                if isinstance(endorsed, list)
                else frozenset()
            )
            keys[raw["kid"]] = (key, channels)
        if not keys:
            raise KeysUnavailable(f"{jwks_uri} holds no usable RS256 key")
        return _KeySet(issuer, keys, now)

    async def _json(self, url: str) -> dict[str, Any]:
        try:
            async with self._http.get().get(url) as response:
                if response.status != 200:
                    raise KeysUnavailable(f"{url} answered {response.status}")
                data = await response.json(content_type=None)
        except (ClientError, TimeoutError, ValueError) as exc:
            raise KeysUnavailable(f"{url}: {type(exc).__name__}") from exc
        if not isinstance(data, dict):
            raise KeysUnavailable(f"{url} did not answer a JSON object")
        return data


@dataclass(slots=True)
class _Token:
    value: str
    expires: float


@dataclass(slots=True)
class ClientCredentials:
    """The Agents SDK's token provider for Boeket's outgoing calls, with a client secret.

    Implements `AccessTokenProviderBase` (a Protocol) for `ConnectionManager`: only plain
    `get_access_token` is used by a Teams bot; the agentic and on-behalf-of flows are not.
    Without a client id (development mode) it gives the empty token, as the SDK's anonymous
    provider does.
    """

    configuration: AgentAuthConfiguration
    login_url: str
    http: HttpSession
    monotonic: Callable[[], float] = time.monotonic
    _tokens: dict[tuple[str, ...], _Token] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def get_access_token(
        self, resource_url: str, scopes: list[str], force_refresh: bool = False
    ) -> str:
        config = self.configuration
        if not config.CLIENT_ID or not config.CLIENT_SECRET:
            return ""
        wanted = tuple(scopes) or (f"{resource_url.rstrip('/')}/.default",)
        async with self._lock:
            now = self.monotonic()
            cached = self._tokens.get(wanted)
            if cached is not None and not force_refresh and cached.expires - TOKEN_MARGIN > now:
                return cached.value
            token = await self._fetch(wanted, now)
            self._tokens[wanted] = token
            return token.value

    async def _fetch(self, scopes: tuple[str, ...], now: float) -> _Token:
        config = self.configuration
        url = f"{self.login_url.rstrip('/')}/{config.TENANT_ID}/oauth2/v2.0/token"
        form = {
            "grant_type": "client_credentials",
            "client_id": config.CLIENT_ID or "",
            "client_secret": config.CLIENT_SECRET or "",
            "scope": " ".join(scopes),
        }
        async with self.http.get().post(url, data=form) as response:
            body: Mapping[str, Any] = await response.json(content_type=None)
        token, lifetime = body.get("access_token"), body.get("expires_in")
        if response.status != 200 or not isinstance(token, str) or not token:
            # The error code (e.g. invalid_client) says what to fix; the description may be long.
            raise PermissionError(
                f"Microsoft Entra refused Boeket's token request ({response.status} "
                f"{body.get('error', '')}): check TEAMS_CLIENT_ID, TEAMS_CLIENT_SECRET and "
                "TEAMS_TENANT_ID"
            )
        try:
            seconds = float(lifetime) if isinstance(lifetime, int | float | str) else 3600.0
        except ValueError:
            seconds = 3600.0
        return _Token(token, now + seconds)

    def get_token_credential(self) -> AsyncTokenCredential:
        raise NotImplementedError("Boeket calls Microsoft Graph with its own token (graph.py)")

    async def acquire_token_on_behalf_of(self, scopes: list[str], user_assertion: str) -> str:
        raise NotImplementedError("Boeket does not act on behalf of a person")

    async def get_agentic_application_token(
        self, tenant_id: str, agent_app_instance_id: str
    ) -> str | None:
        raise NotImplementedError("Boeket is not an agentic app")

    async def get_agentic_instance_token(
        self, tenant_id: str, agent_app_instance_id: str
    ) -> tuple[str, str]:
        raise NotImplementedError("Boeket is not an agentic app")

    async def get_agentic_user_token(
        self,
        tenant_id: str,
        agent_app_instance_id: str,
        agentic_user_id: str,
        scopes: list[str],
    ) -> str | None:
        raise NotImplementedError("Boeket is not an agentic app")
