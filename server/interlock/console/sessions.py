"""Console sessions: a signed, expiring cookie, and the CSRF token bound to it.

A person signs in once (a bearer token, a client certificate, or, in the
insecure development mode, a name) and gets a session cookie. The cookie is
``<payload>.<mac>``: the payload (URL-safe base64 of JSON) names a random
session id, the principal, how it was authenticated and what credential to
check again (the SHA-256 of the token, the certificate's name, the dev name),
and when it expires; the MAC is HMAC-SHA256 under a key kept in
``data_dir/console.key`` (created 0600 at first start). So a session survives
a server restart, and a forged or edited cookie is refused. It never holds the
token itself: on every request the principal is looked up again from the
credential, so a token removed from the principals file ends its sessions.

The CSRF token of a session is HMAC(key, "csrf:" + session id): every
state-changing request must carry it (a hidden form field or the
``X-CSRF-Token`` header), compared in constant time. A token of another
session, or of a session signed out, does not pass. Signing out revokes the
session id until it would have expired (kept in ``data_dir/console.revoked``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

KEY_FILE = "console.key"
REVOKED_FILE = "console.revoked"
COOKIE = "interlock_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"


class SessionError(Exception):
    """The request has no usable session; the message says why, for the sign-in page."""


@dataclass(frozen=True)
class Session:
    sid: str
    principal_id: str
    via: str
    """token, certificate or dev."""
    credential: str
    """What is checked again on each request: the token's SHA-256, the
    certificate's name, or the dev principal's name."""
    expires_at: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionKeeper:
    def __init__(
        self, data_dir: Path, ttl_seconds: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._revoked_path = data_dir / REVOKED_FILE
        self._key = self._load_key(data_dir / KEY_FILE)
        self._revoked: dict[str, float] = self._load_revoked()

    @staticmethod
    def _load_key(path: Path) -> bytes:
        """Read the signing key, or make one (start-up only: blocking is fine here)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            key = path.read_bytes()
        except FileNotFoundError:
            key = secrets.token_bytes(32)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key)
        if len(key) < 32:
            raise ValueError(f"{path}: the console's session key is too short; delete it")
        return key

    def _load_revoked(self) -> dict[str, float]:
        try:
            doc = orjson.loads(self._revoked_path.read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return {}
        now = self.clock()
        return {str(k): float(v) for k, v in doc.items() if float(v) > now}

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def issue(self, principal_id: str, via: str, credential: str) -> tuple[str, Session]:
        """A new session and its cookie value."""
        session = Session(
            sid=secrets.token_urlsafe(16),
            principal_id=principal_id,
            via=via,
            credential=credential,
            expires_at=self.clock() + self.ttl_seconds,
        )
        payload = _b64(
            orjson.dumps(
                {
                    "sid": session.sid,
                    "p": session.principal_id,
                    "via": session.via,
                    "c": session.credential,
                    "exp": session.expires_at,
                }
            )
        )
        return f"{payload}.{self._mac(payload)}", session

    def read(self, cookie: str | None) -> Session:
        """The session a cookie names, or SessionError saying why not."""
        if not cookie:
            raise SessionError("sign in to use the console")
        payload, _, mac = cookie.partition(".")
        if not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            raise SessionError("your session cookie is not valid; sign in again")
        try:
            doc = orjson.loads(_unb64(payload))
            session = Session(
                sid=str(doc["sid"]),
                principal_id=str(doc["p"]),
                via=str(doc["via"]),
                credential=str(doc["c"]),
                expires_at=float(doc["exp"]),
            )
        except (binascii.Error, ValueError, KeyError, TypeError):
            raise SessionError("your session cookie is not valid; sign in again") from None
        if session.expires_at <= self.clock():
            raise SessionError("your session expired; sign in again")
        if session.sid in self._revoked:
            raise SessionError("you signed out of this session; sign in again")
        return session

    def csrf_token(self, session: Session) -> str:
        return hmac.new(self._key, f"csrf:{session.sid}".encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        """Whether ``token`` is this session's CSRF token (constant-time)."""
        if not token:
            return False
        return hmac.compare_digest(token.encode(), self.csrf_token(session).encode())

    async def revoke(self, session: Session) -> None:
        """Sign the session out for good (kept until it would have expired)."""
        now = self.clock()
        self._revoked = {k: v for k, v in self._revoked.items() if v > now}
        self._revoked[session.sid] = session.expires_at
        document = orjson.dumps(self._revoked)
        await asyncio.to_thread(self._write_revoked, document)

    def _write_revoked(self, document: bytes) -> None:
        tmp = self._revoked_path.with_suffix(".tmp")
        tmp.write_bytes(document)
        os.replace(tmp, self._revoked_path)


__all__ = [
    "COOKIE",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "Session",
    "SessionError",
    "SessionKeeper",
]
