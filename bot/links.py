"""Signed, expiring links: how Boeket lets a person open the dashboard or their own overview from
chat without accounts, and why no page is open to whoever guesses its address.

A link carries its scope (`dashboard`, or `person:<platform>:<id>`), its expiry and an HMAC-SHA256
over both and the organisation's id with a secret every replica shares: `BOEKET_SECRET`, or else
one Boeket generates once and keeps in its database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from storage.repositories import StateStore

SECRET_KEY = "link-secret"  # noqa: S105 - the name of the stored key, not a secret


class Signer:
    def __init__(self, secret: bytes, *, organisation: str = "") -> None:
        if len(secret) < 16:
            raise ValueError("the link secret must be at least 16 bytes")
        self._secret = secret
        self._organisation = organisation

    @classmethod
    async def shared(
        cls, configured: str, state: StateStore, now: datetime, *, organisation: str = ""
    ) -> Signer:
        """The configured secret, or the one in the database (made once, by whoever is first).

        Organisations that share a database share that secret, so a link names its organisation
        in what is signed: one organisation's link opens nothing of another's.
        """
        if configured:
            return cls(configured.encode(), organisation=organisation)
        await state.add(SECRET_KEY, {"key": secrets.token_hex(32)}, now)
        stored = await state.get(SECRET_KEY)  # ours, or the one another replica added first
        if stored is None:
            raise RuntimeError("the link secret could not be stored in the database")
        return cls(bytes.fromhex(stored["key"]), organisation=organisation)

    def _mac(self, scope: str, expires: int) -> str:
        signed = f"{scope}\n{expires}"
        if self._organisation:
            signed = f"{self._organisation}\n{signed}"
        digest = hmac.new(self._secret, signed.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def sign(self, scope: str, now: datetime, valid: timedelta) -> str:
        expires = int((now + valid).timestamp())
        token = f"{scope}|{expires}|{self._mac(scope, expires)}"
        return base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")

    def verify(self, token: str, now: datetime) -> str | None:
        """The scope a valid, unexpired token grants; None for anything else."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            scope, expires_text, mac = raw.rsplit("|", 2)
            expires = int(expires_text)
        except (ValueError, UnicodeDecodeError):
            return None
        if not hmac.compare_digest(mac, self._mac(scope, expires)):
            return None
        if now.timestamp() >= expires:
            return None
        return scope


def person_scope(platform: str, person_id: str) -> str:
    return f"person:{platform}:{person_id}"
