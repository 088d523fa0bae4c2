"""The active policy set: loading, checking, atomic swaps and hot reload.

A new set is parsed, its catalog checked, compiled by the engine and probed
(the decision rule must give a well-formed decision for every tool) before it
goes live. Going live is one assignment of an immutable :class:`ActivePolicy`,
so an evaluation in flight finishes on the set it started with and the next
one sees the new set: no decision is lost or half-evaluated during a swap.
A refused set leaves the active one serving, and the refusal is reported
through the ``on_reload`` callback (event, metric) and to the caller.

On OPA, the set is checked on an OPA process of its own and then given to
the serving OPA as a bundle (:meth:`~interlock.policy.opa.OpaEngine.activate`);
the swap waits, bounded, until OPA reports the new revision.

A reload also passes the gate, when one is given (:mod:`interlock.policy.gate`:
the set's own tests, a replay over recorded decisions, the LIVE widening
budget) after the probes and before the swap; its record goes on the outcome.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interlock.contracts import Catalog
from interlock.errors import PolicyLoadError, Unavailable
from interlock.policy.bundle import PolicySet, dir_fingerprint
from interlock.policy.engine import CompiledPolicy, PolicyDecision, PolicyEngine
from interlock.policy.gate import FILE_WATCHER, GateRefusal, ReloadRequest
from interlock.policy.opa import OpaEngine
from interlock.policy.prepare import prepare_set, probe_inputs
from interlock.tasks import cancel_and_wait

log = logging.getLogger(__name__)

RETIRE_AFTER_SECONDS = 30.0


@dataclass(frozen=True)
class ActivePolicy:
    policy_set: PolicySet
    catalog: Catalog
    compiled: CompiledPolicy
    loaded_at: float

    @property
    def revision(self) -> str:
        return self.policy_set.revision


@dataclass(frozen=True)
class ReloadOutcome:
    ok: bool
    revision: str
    previous_revision: str
    changed: bool
    error: str = ""
    trigger: str = ""
    error_reason: str = ""
    """The refusal's ErrorInfo reason (POLICY_INVALID, POLICY_TESTS_FAILED, POLICY_WIDENS_LIVE)."""
    gate: dict[str, Any] | None = None
    """The gate's record (who asked, tests, replay digest and counts), when it ran."""
    principal: str = ""
    """Who asked: the authenticated principal, or "file watcher"."""


ReloadCallback = Callable[[ReloadOutcome], Awaitable[None]]
Commit = Callable[[PolicySet], Awaitable[None]]
Gate = Callable[
    [PolicySet, Catalog, CompiledPolicy, PolicyEngine, ReloadRequest],
    Awaitable[dict[str, Any]],
]


class PolicyManager:
    def __init__(
        self,
        engine: PolicyEngine,
        policy_dir: str | Path,
        *,
        watch_interval: float = 1.0,
        on_reload: ReloadCallback | None = None,
        gate: Gate | None = None,
    ) -> None:
        self.engine = engine
        self.policy_dir = Path(policy_dir)
        self.watch_interval = watch_interval
        self._on_reload = on_reload
        self._gate = gate
        self._active: ActivePolicy | None = None
        self._lock = asyncio.Lock()
        self._fingerprint: tuple[Any, ...] = ()
        self._watch_task: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self.reloads = 0
        self.reload_failures = 0
        self.last_error = ""
        self.last_error_at = 0.0

    @property
    def active(self) -> ActivePolicy:
        if self._active is None:
            raise Unavailable("no policy set is loaded")
        return self._active

    async def prepare(self, policy_set: PolicySet) -> tuple[Catalog, CompiledPolicy]:
        """Check and compile a set without making it live (:func:`prepare_set`)."""
        return await prepare_set(self.engine, policy_set)

    async def start(self) -> None:
        """Load the folder; a broken set at start-up is fatal (raises PolicyLoadError)."""
        self._fingerprint = dir_fingerprint(self.policy_dir)
        policy_set = await asyncio.to_thread(PolicySet.from_dir, self.policy_dir)
        catalog, compiled = await self.prepare(policy_set)
        compiled = await self._go_live(policy_set, compiled)
        self._active = ActivePolicy(policy_set, catalog, compiled, time.time())
        log.info(
            "policy set %s loaded from %s (%d modules, %d tools, engine %s)",
            policy_set.short_revision,
            self.policy_dir,
            len(policy_set.modules),
            len(catalog.tools),
            self.engine.name,
        )
        if self.watch_interval > 0:
            self._watch_task = asyncio.create_task(self._watch(), name="policy-watch")

    async def reload(
        self,
        trigger: str = "rpc",
        request: ReloadRequest | None = None,
        *,
        given: PolicySet | None = None,
        commit: Commit | None = None,
    ) -> ReloadOutcome:
        """Re-read the folder and swap the set in if it changed, checks and
        passes the gate.

        ``given``: swap in this set instead of the folder's (a shadow's
        promotion), by the same checks and gate; ``commit`` is awaited after
        the gate passes and before the swap (it records the change and writes
        the set into the folder, so a restart and the watcher keep it); when it
        raises, nothing is swapped."""
        request = request or ReloadRequest()
        request.check()
        who = request.principal
        async with self._lock:
            previous = self.active
            self._fingerprint = dir_fingerprint(self.policy_dir)
            try:
                if given is not None:
                    policy_set = given
                else:
                    policy_set = await asyncio.to_thread(PolicySet.from_dir, self.policy_dir)
                if policy_set.revision == previous.revision:
                    outcome = ReloadOutcome(
                        True,
                        previous.revision,
                        previous.revision,
                        False,
                        trigger=trigger,
                        principal=who,
                    )
                else:
                    gate_record: dict[str, Any] | None = None
                    catalog, compiled = await self.prepare(policy_set)
                    try:
                        if self._gate is not None:
                            gate_record = await self._gate(
                                policy_set, catalog, compiled, self.engine, request
                            )
                        if commit is not None:
                            await commit(policy_set)
                            self._fingerprint = dir_fingerprint(self.policy_dir)
                    except BaseException:
                        await compiled.release()
                        raise
                    compiled = await self._go_live(policy_set, compiled)
                    self._active = ActivePolicy(policy_set, catalog, compiled, time.time())
                    self.reloads += 1
                    self.last_error = ""
                    self._retire(previous.compiled)
                    outcome = ReloadOutcome(
                        True,
                        policy_set.revision,
                        previous.revision,
                        True,
                        trigger=trigger,
                        gate=gate_record,
                        principal=who,
                    )
                    log.info(
                        "policy set %s is live (was %s; %s)",
                        policy_set.short_revision,
                        previous.policy_set.short_revision,
                        trigger,
                    )
            except PolicyLoadError as exc:
                self.reload_failures += 1
                self.last_error = exc.message
                self.last_error_at = time.time()
                outcome = ReloadOutcome(
                    False,
                    previous.revision,
                    previous.revision,
                    False,
                    exc.message,
                    trigger,
                    error_reason=exc.reason,
                    gate=exc.record if isinstance(exc, GateRefusal) else None,
                    principal=who,
                )
                log.error(
                    "policy reload refused (%s); %s keeps serving: %s",
                    trigger,
                    previous.policy_set.short_revision,
                    exc.message,
                )
            if self._on_reload is not None:
                await self._on_reload(outcome)
            return outcome

    async def _go_live(self, policy_set: PolicySet, compiled: CompiledPolicy) -> CompiledPolicy:
        """What serves the set once it is swapped in: the checked set itself,
        except on OPA, where the checked candidate runs on an OPA process of its
        own and the serving OPA is given the set as its bundle (waited for,
        bounded, so the swap does not fail the calls after it)."""
        if not isinstance(self.engine, OpaEngine):
            return compiled
        try:
            return await self.engine.activate(policy_set)
        finally:
            await compiled.release()

    async def evaluate_with(
        self, policy_set: PolicySet, policy_input: dict[str, Any]
    ) -> PolicyDecision:
        """Evaluate on a given set, changing nothing (EvaluatePolicy)."""
        _, compiled = await self.prepare(policy_set)
        try:
            return await compiled.evaluate(policy_input)
        finally:
            await compiled.release()

    def _retire(self, compiled: CompiledPolicy) -> None:
        async def later() -> None:
            await asyncio.sleep(RETIRE_AFTER_SECONDS)
            await compiled.release()

        task = asyncio.create_task(later())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.watch_interval)
            try:
                fingerprint = await asyncio.to_thread(dir_fingerprint, self.policy_dir)
                if fingerprint != self._fingerprint:
                    await self.reload(
                        trigger="file change", request=ReloadRequest(principal=FILE_WATCHER)
                    )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("policy watcher failed; it keeps watching")

    async def close(self) -> None:
        tasks = [t for t in (self._watch_task, *self._retiring) if t is not None]
        await cancel_and_wait(*tasks)
        if self._active is not None:
            await self._active.compiled.release()
        await self.engine.close()


__all__ = ["ActivePolicy", "PolicyManager", "ReloadOutcome", "probe_inputs"]
