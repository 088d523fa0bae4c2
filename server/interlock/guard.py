"""The gate every Interlock RPC passes before its handler: authenticate,
rate-limit, authorize.

1. Authentication (:mod:`interlock.auth`) names the principal, or the call
   ends UNAUTHENTICATED.
2. Each principal has a token bucket (``rate_limit_per_second``,
   ``rate_limit_burst``) and a cap on open streams
   (``max_streams_per_principal``); past either, RESOURCE_EXHAUSTED. One
   principal's flood spends its own bucket, not anyone else's. The dev
   principal of the insecure development mode is not limited unless
   ``rate_limit_dev_principal`` is set.
3. With a principals file, the authorization policy
   (``data.interlock.authz.main``, see policies/interlock/authz) decides from
   the method, the principal and the request's facts. A refusal is
   PERMISSION_DENIED, committed as an ACCESS_DENIED event and an
   access_denials.jsonl line (:mod:`interlock.denials`; a slow or failing
   store does not change or hold up the refusal), and counted. When the
   policy cannot be evaluated the call is refused (UNAVAILABLE): fail closed.
   Answers are cached per policy revision and input, as the policy is a pure
   function; the cache is bypassed while the engine is known to be down.

In the insecure development mode (no principals file) step 3 is skipped:
the dev principal may do anything.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from interlock.approvals import Approvals
from interlock.auth import Principal, PrincipalDirectory, authenticate, current_principal
from interlock.config import ServerConfig
from interlock.denials import Denial, DenialLog
from interlock.errors import (
    InterlockError,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from interlock.journal import Journal
from interlock.metrics import Metrics
from interlock.policy.engine import AUTHZ_ENTRYPOINT, parse_authz
from interlock.policy.manager import PolicyManager

log = logging.getLogger(__name__)

GUARDED_SERVICES = (
    "/interlock.v1.ControlPlane/",
    "/interlock.v1.PolicyService/",
    "/interlock.v1.GrantService/",
    "/interlock.v1.TrustService/",
)
AS_AGENT = frozenset({"RequestToolCall", "ReportToolResult", "PullWork"})
CACHE_SIZE = 4096


@dataclass
class _Bucket:
    tokens: float
    last: float


class Guard:
    def __init__(
        self,
        config: ServerConfig,
        policies: PolicyManager,
        journal: Journal,
        approvals: Approvals,
        metrics: Metrics,
        directory: PrincipalDirectory | None,
        engine_available: Callable[[], bool] = lambda: True,
    ) -> None:
        self.config = config
        self.engine_available = engine_available
        """While the engine is known to be down the answer cache is bypassed, so
        authorization fails closed as it would without a cache."""
        self.policies = policies
        self.journal = journal
        self.approvals = approvals
        self.metrics = metrics
        self.directory = directory
        self.denials = DenialLog(journal)
        self._buckets: dict[str, _Bucket] = {}
        self._streams: Counter[str] = Counter()
        self._cache: OrderedDict[str, tuple[bool, str]] = OrderedDict()

    @staticmethod
    def guards(method: str) -> bool:
        return method.startswith(GUARDED_SERVICES)

    async def admit(self, method: str, request: Any, context: Any) -> Principal:
        """Let the call through as its principal, or raise the error that refuses it.
        ``context`` is the call's grpc.aio ServicerContext (metadata, TLS peer)."""
        try:
            principal = authenticate(
                self.directory, context.invocation_metadata(), context.auth_context
            )
        except Unauthenticated as exc:
            self.metrics.auth_failures.labels(exc.reason.lower()).inc()
            log.warning("unauthenticated call to %s refused: %s", method, exc.message)
            raise
        self._spend(principal)
        name = method.rsplit("/", 1)[-1]
        if self.directory is not None:
            await self._authorize(name, principal, request)
        current_principal.set(principal)
        return principal

    async def authorize(self, method: str, principal: Principal, request: Any) -> None:
        """Admit an already authenticated principal to the action named by the RPC
        ``method`` (its short name), as for a call of it: its rate limit, then the
        authorization policy. The console's front door asks this for every page
        and action, so one policy decides for both."""
        self._spend(principal)
        if self.directory is not None:
            await self._authorize(method, principal, request)

    # Limits ------------------------------------------------------------------------

    def _spend(self, principal: Principal, now: float | None = None) -> None:
        rate = self.config.rate_limit_per_second
        if rate <= 0:
            return
        if principal.via == "dev" and not self.config.rate_limit_dev_principal:
            return  # the insecure development mode: one person on loopback
        now = time.monotonic() if now is None else now
        burst = float(self.config.rate_limit_burst)
        bucket = self._buckets.get(principal.id)
        if bucket is None:
            bucket = self._buckets[principal.id] = _Bucket(burst, now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.last) * rate)
        bucket.last = now
        if bucket.tokens < 1.0:
            wait = (1.0 - bucket.tokens) / rate
            self.metrics.limits_exceeded.labels("rate").inc()
            raise ResourceExhausted(
                f"{principal.id} is over its rate limit of {rate:g} requests/s; "
                f"retry in {wait:.3f}s",
                reason="RATE_LIMITED",
                metadata={"retry_after_seconds": f"{wait:.3f}"},
                retry_delay=wait,
            )
        bucket.tokens -= 1.0

    @contextlib.contextmanager
    def stream(self, principal: Principal) -> Iterator[None]:
        """Hold one of the principal's stream slots while a stream is open."""
        cap = self.config.max_streams_per_principal
        if self._streams[principal.id] >= cap:
            self.metrics.limits_exceeded.labels("streams").inc()
            raise ResourceExhausted(
                f"{principal.id} already holds {cap} open streams, the most allowed",
                reason="TOO_MANY_STREAMS",
            )
        self._streams[principal.id] += 1
        try:
            yield
        finally:
            self._streams[principal.id] -= 1
            if self._streams[principal.id] <= 0:
                del self._streams[principal.id]

    # Authorization -------------------------------------------------------------------

    async def policy_input(self, name: str, principal: Principal, request: Any) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "method": name,
            "principal": principal.as_input(),
            "request": {"agent_id": request.agent_id} if name in AS_AGENT else {},
        }
        if name == "CreateGrant":  # who it is for, and who asked for the approval it answers
            doc["request"] = {"agent_id": request.agent_id}
            if request.approval_id:
                approval = await self.approvals.get(request.approval_id)  # NOT_FOUND
                doc["request"]["agent_id"] = request.agent_id or approval.agent_id
                doc["approval"] = {
                    "approver_roles": list(approval.approver_roles),
                    "requested_by": approval.requested_by,
                    "agent_id": approval.agent_id,
                }
        if name == "ResetTrust":  # whose pair it is: nobody resets their own
            doc["request"] = {"agent_id": request.agent_id}
        if name == "ResolveApproval":
            approval = await self.approvals.get(request.approval_id)  # NOT_FOUND when unknown
            doc["approval"] = {
                "approver_roles": list(approval.approver_roles),
                "requested_by": approval.requested_by,
                "agent_id": approval.agent_id,
            }
        return doc

    async def decide(self, policy_input: dict[str, Any]) -> tuple[bool, str]:
        active = self.policies.active
        key = active.revision + orjson.dumps(policy_input, option=orjson.OPT_SORT_KEYS).decode()
        cached = self._cache.get(key) if self.engine_available() else None
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        try:
            answer = parse_authz(await active.compiled.query(AUTHZ_ENTRYPOINT, policy_input))
        except Exception as exc:  # InterlockError from the engine, or an engine bug
            detail = exc.message if isinstance(exc, InterlockError) else type(exc).__name__
            raise Unavailable(
                f"the authorization policy could not be evaluated ({detail}); "
                "failing closed: the call is refused",
                reason="AUTHORIZATION_UNAVAILABLE",
            ) from None
        self._cache[key] = answer
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return answer

    async def _authorize(self, name: str, principal: Principal, request: Any) -> None:
        policy_input = await self.policy_input(name, principal, request)
        allowed, reason = await self.decide(policy_input)
        if allowed:
            return
        self.metrics.authz_denied.labels(name).inc()
        reason = reason or f"{principal.id} may not call {name}"
        await self.denials.record(
            Denial(
                method=name,
                principal=principal.id,
                code="NOT_AUTHORIZED",
                reason=reason,
                kind=principal.kind,
                via=principal.via,
                agent_id=policy_input["request"].get("agent_id", ""),
                approval_id=request.approval_id if name == "ResolveApproval" else "",
                policy_revision=self.policies.active.revision,
            )
        )
        log.warning("%s by %s denied: %s", name, principal.id, reason)
        raise PermissionDenied(reason, reason="NOT_AUTHORIZED")


__all__ = ["Guard"]
