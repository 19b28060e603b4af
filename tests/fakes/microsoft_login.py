"""A fake of Microsoft's login services: a real aiohttp server on port 0.

It plays both sides of Teams' authentication, as the Bot Framework and Microsoft Entra do:

* `GET /v1/.well-known/openidconfiguration` and `GET /v1/.well-known/keys` — the OpenID metadata
  and signing keys of the tokens the Bot Connector sends (login.botframework.com). The key is an
  RSA key made for this test run; `token()` signs activities' tokens with it.
* `POST /{tenant}/oauth2/v2.0/token` — the client-credentials grant that gives Boeket a token for
  its own calls (login.microsoftonline.com); it checks the app's id and secret, and issues a
  token for whatever scope is asked (the Bot Connector's, Microsoft Graph's), remembered in
  `scopes` so a fake API can refuse a token meant for another.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://api.botframework.com"
METADATA_PATH = "/v1/.well-known/openidconfiguration"
KEYS_PATH = "/v1/.well-known/keys"
KID = "boeket-test-key"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class TokenRequest:
    tenant: str
    form: dict[str, str]
    status: int


@dataclass
class FakeLogin:
    tenant: str
    client_id: str
    client_secret: str
    endorsements: tuple[str, ...] = ("msteams",)
    key: rsa.RSAPrivateKey = field(default_factory=new_key)
    server: TestServer | None = None
    token_requests: list[TokenRequest] = field(default_factory=list)
    key_fetches: int = 0
    _issued: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    issued: list[str] = field(default_factory=list)
    scopes: dict[str, str] = field(default_factory=dict)  # token → the scope it was issued for

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/")).rstrip("/")

    @property
    def metadata_url(self) -> str:
        return self.url + METADATA_PATH

    def token(
        self,
        *,
        audience: str | None = None,
        issuer: str = ISSUER,
        service_url: str | None = None,
        lifetime: float = 3600.0,
        key: rsa.RSAPrivateKey | None = None,
        kid: str = KID,
        **claims: Any,
    ) -> str:
        """A Bot Connector token as Teams sends it, signed with this server's key by default."""
        now = time.time()
        body: dict[str, Any] = {
            "iss": issuer,
            "aud": self.client_id if audience is None else audience,
            "nbf": int(now) - 60,
            "exp": int(now + lifetime),
            **claims,
        }
        if service_url is not None:
            body["serviceurl"] = service_url
        return jwt.encode(body, key or self.key, algorithm="RS256", headers={"kid": kid})

    def _jwk(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        public.update(kid=KID, use="sig", endorsements=list(self.endorsements))
        return dict(public)

    async def _metadata(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": ISSUER,
                "authorization_endpoint": "https://invalid.botframework.com",
                "jwks_uri": self.url + KEYS_PATH,
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            }
        )

    async def _keys(self, request: web.Request) -> web.Response:
        self.key_fetches += 1
        # A key of another kind sits in Microsoft's set too; it must be skipped, not fatal.
        other = {"kty": "EC", "kid": "not-rsa", "crv": "P-256", "x": "AA", "y": "AA"}
        return web.json_response({"keys": [other, self._jwk()]})

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        tenant = request.match_info["tenant"]
        ok = (
            tenant == self.tenant
            and form.get("grant_type") == "client_credentials"
            and form.get("client_id") == self.client_id
            and form.get("client_secret") == self.client_secret
        )
        self.token_requests.append(TokenRequest(tenant, form, 200 if ok else 401))
        if not ok:
            return web.json_response(
                {"error": "invalid_client", "error_description": "AADSTS7000215: fake"},
                status=401,
            )
        value = f"app-token-{next(self._issued)}"
        self.issued.append(value)
        self.scopes[value] = form.get("scope", "")
        return web.json_response(
            {"token_type": "Bearer", "expires_in": 3599, "access_token": value}
        )

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(METADATA_PATH, self._metadata)
        app.router.add_get(KEYS_PATH, self._keys)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        return app
