"""The OPA engine: a real OPA server, driven over its REST API.

Each policy set is uploaded into a namespace of its own,
``data.interlock_rev_<revision>``: its modules' packages and their
``data.interlock`` references are rewritten to live under it, and its data
document is written there too. A new set is uploaded and checked beside the
active one; the swap is then a pointer change in the server, so every
decision sees one whole set, and the old namespace is removed once retired.
This also lets EvaluatePolicy try a given set without touching the live one.

Known pitfalls of opa-python-client handled here: an undefined rule comes
back as ``{}`` (treated as an error, so the decision fails closed); uploads
are sent as Rego v1 with its v0 rewriting turned off; its timeout is set from
the configuration.

Policies must reference their data as ``data.interlock...`` (not through
``data["interlock"]``) for the namespacing to apply.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import urlsplit

from opa_client import AsyncOpaClient

from interlock.errors import PolicyEvaluationError, PolicyLoadError
from interlock.policy.bundle import PolicySet
from interlock.policy.engine import DECISION_PACKAGE, DECISION_RULE, PolicyDecision, parse_decision

_PACKAGE = re.compile(r"^(\s*package\s+)interlock\b", re.MULTILINE)
_DATA_REF = re.compile(r"\bdata\.interlock\b")


def namespace_for(revision: str) -> str:
    return f"interlock_rev_{revision[:20]}"


def rewrite_module(source: str, namespace: str) -> str:
    """Move a module of package interlock.* under data.<namespace>."""
    source = _PACKAGE.sub(lambda m: f"{m.group(1)}{namespace}.interlock", source)
    return _DATA_REF.sub(f"data.{namespace}.interlock", source)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:2000]


class OpaPolicy:
    def __init__(self, engine: OpaEngine, policy_set: PolicySet) -> None:
        self._engine = engine
        self.policy_set = policy_set
        self.revision = policy_set.revision
        self.namespace = namespace_for(policy_set.revision)
        self._decision_path = (
            f"{self.namespace}.{DECISION_PACKAGE}".replace(".", "/") + f"/{DECISION_RULE}"
        )
        self._reupload = asyncio.Lock()

    def policy_ids(self) -> list[str]:
        return [f"{self.namespace}/{path}" for path in sorted(self.policy_set.modules)]

    async def upload(self) -> None:
        client = await self._engine.client()
        try:
            await client.update_or_create_data(
                {k: v for k, v in self.policy_set.data.items()}, self.namespace
            )
            for path in sorted(self.policy_set.modules):
                source = rewrite_module(self.policy_set.modules[path], self.namespace)
                await client.update_policy_from_string(
                    source, f"{self.namespace}/{path}", rego_compat=False
                )
        except Exception as exc:
            await self.release()
            raise PolicyLoadError(f"OPA refused the policy set: {_describe(exc)}") from None

    async def _query(self, policy_input: dict[str, Any], path: str | None = None) -> Any:
        client = await self._engine.client()
        try:
            response = await client.query_rule(policy_input, path or self._decision_path)
        except Exception as exc:
            raise PolicyEvaluationError(f"OPA query failed: {_describe(exc)}") from None
        return response.get("result") if isinstance(response, dict) else None

    async def evaluate(self, policy_input: dict[str, Any]) -> PolicyDecision:
        return parse_decision(await self.query("", policy_input))

    async def query(self, entrypoint: str, policy_input: dict[str, Any]) -> Any:
        path = f"{self.namespace}/{entrypoint}" if entrypoint else None
        raw = await self._query(policy_input, path)
        if raw is None:
            # Undefined: OPA may have restarted and lost the set. Upload it
            # again once, then ask again; still undefined fails closed.
            async with self._reupload:
                raw = await self._query(policy_input, path)
                if raw is None:
                    try:
                        await self.upload()
                    except PolicyLoadError as exc:
                        raise PolicyEvaluationError(str(exc)) from None
                    raw = await self._query(policy_input, path)
        return raw

    async def release(self) -> None:
        try:
            client = await self._engine.client()
            for policy_id in self.policy_ids():
                try:
                    await client.delete_policy(policy_id)
                except Exception:
                    pass
            try:
                await client.delete_data(self.namespace)
            except Exception:
                pass
        except Exception:
            pass


class OpaEngine:
    name = "opa"

    def __init__(self, url: str, *, timeout: float = 1.5) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"opa_url must be http(s)://host:port, not {url!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = parts.scheme == "https"
        self._timeout = timeout
        self._client: AsyncOpaClient | None = None

    async def client(self) -> AsyncOpaClient:
        if self._client is None:
            client = AsyncOpaClient(
                host=self._host, port=self._port, ssl=self._ssl, timeout=self._timeout, retries=0
            )
            await client.__aenter__()
            self._client = client
        return self._client

    async def compile(self, policy_set: PolicySet) -> OpaPolicy:
        policy = OpaPolicy(self, policy_set)
        await policy.upload()
        return policy

    async def available(self) -> bool:
        try:
            client = await self.client()
            return bool(await asyncio.wait_for(client.check_health(), self._timeout))
        except Exception:
            return False

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close_connection()
            self._client = None


__all__ = ["OpaEngine", "OpaPolicy", "namespace_for", "rewrite_module"]
