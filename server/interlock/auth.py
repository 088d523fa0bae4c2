"""Who is calling: principals, the principals file, and authentication.

A principal is an identity the server knows: an id, a kind (agent, operator
or admin), roles, and the catalog agents it acts as. The principals file
(``principals_file``, YAML) maps credentials to principals::

    tokens:                       # SHA-256 (hex) of a bearer token -> principal
      9f86d0…: {id: agent1, kind: agent}
      60303a…: {id: alice, kind: operator, roles: [approver]}
    certificates:                 # a client certificate's CN or SAN -> principal
      bob.ops.example: {id: bob, kind: operator, roles: [approver, approval-lead]}

``agents`` defaults to ``[id]`` for an agent and ``[]`` otherwise. Tokens are
stored only as hashes; ``interlock auth token`` makes a token and its entry.

A call is authenticated by its ``authorization: Bearer <token>`` metadata,
else by the client certificate TLS verified (mutual TLS). A token that is
given but unknown is refused even when a certificate is valid. Without a
principals file the server is in its insecure development mode: nobody is
authenticated and every caller is the dev principal (an admin, named by the
``x-interlock-dev-principal`` header or "dev").
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from interlock.errors import Unauthenticated

log = logging.getLogger(__name__)

KINDS = ("agent", "operator", "admin")
DEV_HEADER = "x-interlock-dev-principal"
DEV_ROLES = ("approver", "approval-lead", "data-steward", "planner")
"""The dev principal's roles: every role the shipped policies name."""
RELOAD_CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class Principal:
    id: str
    kind: str
    roles: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()
    via: str = ""
    """How it was authenticated: token, certificate or dev."""

    def as_input(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "roles": list(self.roles),
            "agents": list(self.agents),
        }


DEV = Principal("dev", "admin", DEV_ROLES, (), "dev")

current_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar(
    "interlock_principal", default=DEV
)
"""The caller of the RPC being handled (set by the interceptor)."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return f"ilk_{secrets.token_urlsafe(32)}"


class PrincipalsFileError(ValueError):
    pass


def _principal(raw: Any, where: str) -> Principal:
    if not isinstance(raw, Mapping):
        raise PrincipalsFileError(f"{where}: must be a mapping with id and kind")
    pid, kind = raw.get("id"), raw.get("kind")
    if not isinstance(pid, str) or not pid:
        raise PrincipalsFileError(f"{where}.id: must be a non-empty string")
    if kind not in KINDS:
        raise PrincipalsFileError(f"{where}.kind: must be one of {', '.join(KINDS)}, not {kind!r}")
    roles = raw.get("roles", [])
    default_agents = [pid] if kind == "agent" else []
    agents = raw.get("agents", default_agents)
    for name, value in (("roles", roles), ("agents", agents)):
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise PrincipalsFileError(f"{where}.{name}: must be a list of names")
    unknown = sorted(set(raw) - {"id", "kind", "roles", "agents"})
    if unknown:
        raise PrincipalsFileError(f"{where}: unknown field(s) {', '.join(unknown)}")
    return Principal(pid, kind, tuple(roles), tuple(agents))


def parse_principals(
    doc: Any,
) -> tuple[dict[str, Principal], dict[str, Principal]]:
    """(tokens by SHA-256, certificates by name) from the file's YAML document."""
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise PrincipalsFileError("the principals file must be a mapping (tokens, certificates)")
    unknown = sorted(set(doc) - {"tokens", "certificates"})
    if unknown:
        raise PrincipalsFileError(f"unknown section(s) {', '.join(map(str, unknown))}")
    tokens: dict[str, Principal] = {}
    for digest, raw in (doc.get("tokens") or {}).items():
        key = str(digest).lower()
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise PrincipalsFileError(f"tokens: {digest!r} is not a SHA-256 hex digest")
        tokens[key] = _principal(raw, f"tokens.{key[:12]}…")
    certificates = {
        str(name): _principal(raw, f"certificates.{name}")
        for name, raw in (doc.get("certificates") or {}).items()
    }
    return tokens, certificates


class PrincipalDirectory:
    """The principals file, re-read when it changes (a bad edit keeps the old one)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._mtime = 0.0
        self._checked = 0.0
        self.tokens: dict[str, Principal] = {}
        self.certificates: dict[str, Principal] = {}
        self.load()

    def load(self) -> None:
        """Read the file; raise PrincipalsFileError naming what is wrong."""
        try:
            stat = self.path.stat()
            doc = yaml.safe_load(self.path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise PrincipalsFileError(f"{self.path}: {exc}") from None
        try:
            self.tokens, self.certificates = parse_principals(doc)
        except PrincipalsFileError as exc:
            raise PrincipalsFileError(f"{self.path}: {exc}") from None
        self._mtime = stat.st_mtime
        log.info(
            "principals: %d token(s), %d certificate name(s) from %s",
            len(self.tokens),
            len(self.certificates),
            self.path,
        )

    def refresh(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if now - self._checked < RELOAD_CHECK_SECONDS:
            return
        self._checked = now
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return
        if mtime != self._mtime:
            try:
                self.load()
            except PrincipalsFileError as exc:
                self._mtime = mtime
                log.error("principals file not reloaded, keeping the previous one: %s", exc)

    def by_token(self, token: str) -> Principal | None:
        return self.tokens.get(token_hash(token))

    def by_certificate(self, names: Iterable[str]) -> Principal | None:
        for name in names:
            principal = self.certificates.get(name)
            if principal is not None:
                return principal
        return None


def bearer_token(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    """The token of an ``authorization: Bearer`` header; "" when malformed."""
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
            scheme, _, token = text.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


def certificate_names(auth_context: Mapping[str, Sequence[bytes]] | None) -> list[str]:
    """The verified client certificate's common name, then its SANs."""
    if not auth_context:
        return []
    names = []
    for key in ("x509_common_name", "x509_subject_alternative_name"):
        names += [v.decode(errors="replace") for v in auth_context.get(key, ())]
    return names


def dev_principal(metadata: Sequence[tuple[str, Any]] | None) -> Principal:
    for key, value in metadata or ():
        if key == DEV_HEADER and isinstance(value, str) and 0 < len(value) <= 128:
            return Principal(value, "admin", DEV_ROLES, (), "dev")
    return DEV


def authenticate(
    directory: PrincipalDirectory | None,
    metadata: Sequence[tuple[str, Any]] | None,
    auth_context: Callable[[], Mapping[str, Sequence[bytes]] | None],
) -> Principal:
    """The caller's principal, or Unauthenticated saying what is missing or wrong.
    ``auth_context`` is called (it costs) only when no token names the caller."""
    if directory is None:
        return dev_principal(metadata)
    directory.refresh()
    token = bearer_token(metadata)
    if token is not None:
        principal = directory.by_token(token) if token else None
        if principal is None:
            raise Unauthenticated(
                "the bearer token is not valid"
                if token
                else "malformed authorization header; expected 'Bearer <token>'",
                reason="INVALID_TOKEN",
            )
        return dataclasses.replace(principal, via="token")
    names = certificate_names(auth_context())
    if names:
        principal = directory.by_certificate(names)
        if principal is None:
            raise Unauthenticated(
                f"client certificate {names[0]!r} is not mapped to a principal",
                reason="UNKNOWN_CERTIFICATE",
            )
        return dataclasses.replace(principal, via="certificate")
    raise Unauthenticated(
        "no credentials: send 'authorization: Bearer <token>' or a client certificate",
        reason="MISSING_CREDENTIALS",
    )


__all__ = [
    "DEV",
    "DEV_HEADER",
    "Principal",
    "PrincipalDirectory",
    "PrincipalsFileError",
    "authenticate",
    "current_principal",
    "new_token",
    "parse_principals",
    "token_hash",
]
