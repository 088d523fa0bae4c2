"""Wiring: build the store, engine, policy manager and servicers; serve gRPC.

Serves the ControlPlane and PolicyService, the standard gRPC health service
(Check, Watch, List), server reflection v1 and v1alpha (so ``grpcurl`` works)
and Prometheus ``/metrics`` over HTTP. Shutdown: health goes NOT_SERVING, open
event streams end, then ``server.stop(grace)``, then the policy engine and the
store (which syncs the audit files) close.

The gRPC health status is the AND of the readiness conditions
(:mod:`interlock.readiness`: the engine, the store, the audit files), each
with its reason in GetHealth; :meth:`InterlockServer.set_condition` marks one.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import start_http_server

from interlock.api import reflection
from interlock.api.control_plane import ControlPlane
from interlock.api.grants import GrantRpcs
from interlock.api.health_service import HealthService
from interlock.api.interceptors import ServerInterceptor
from interlock.api.limits import RequestLimits, request_types
from interlock.api.policy_service import PolicyService
from interlock.api.trust import TrustService
from interlock.audit import POLICY_CHANGES, AuditLog
from interlock.auth import PrincipalDirectory
from interlock.config import ServerConfig
from interlock.console import Console, Services
from interlock.decisions import DecisionService
from interlock.events import EventHub
from interlock.guard import Guard
from interlock.health import HealthMonitor
from interlock.journal import EventRecord, Recorded, open_journal
from interlock.metrics import Metrics
from interlock.plans.orchestrator import Orchestrator
from interlock.plans.summary import Summaries
from interlock.policy.bundleserver import BundleServer
from interlock.policy.embedded import EmbeddedEngine
from interlock.policy.engine import PolicyEngine
from interlock.policy.gate import REPORT, PolicyGate
from interlock.policy.manager import PolicyManager, ReloadOutcome
from interlock.policy.opa import OpaEngine
from interlock.policy.regorus_engine import make_regorus_engine
from interlock.policy.sandbox import PolicySandbox
from interlock.readiness import AUDIT_CHAIN, AUDIT_FILES, ENGINE, POLICY_RELOAD, STORE, Readiness
from interlock.replicas import PolicyAgreement, replica_id
from interlock.shadow import ShadowRunner
from interlock.signals import SignalEngine
from interlock.tasks import cancel_and_wait
from interlock.v1 import (
    control_plane_pb2,
    control_plane_pb2_grpc,
    grants_pb2,
    grants_pb2_grpc,
    policy_service_pb2,
    policy_service_pb2_grpc,
    trust_pb2,
    trust_pb2_grpc,
)

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    control_plane_pb2.DESCRIPTOR.services_by_name["ControlPlane"].full_name,
    policy_service_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name,
    grants_pb2.DESCRIPTOR.services_by_name["GrantService"].full_name,
    trust_pb2.DESCRIPTOR.services_by_name["TrustService"].full_name,
)
ENGINE_CHECK_SECONDS = 1.0


def make_engine(config: ServerConfig, metrics: Metrics | None = None) -> PolicyEngine:
    if config.engine == "opa":
        return OpaEngine(
            config.opa_url,
            timeout=config.opa_timeout_seconds,
            bundles=BundleServer(config.opa_bundle_listen, Path(config.data_dir)),
            opa_bin=config.opa_bin,
            revision_wait=config.opa_revision_wait_seconds,
            on_stale=metrics.stale_revisions.inc if metrics is not None else None,
        )
    if config.engine == "regorus":
        return make_regorus_engine(config.eval_threads, native=config.embedded_native)
    return EmbeddedEngine(threads=config.eval_threads, native=config.embedded_native)


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials:
    """TLS with the server's certificate; mutual TLS when a client CA is configured."""
    key = Path(config.tls_key_file).read_bytes()
    chain = Path(config.tls_cert_file).read_bytes()
    if config.tls_client_ca_file:
        return grpc.ssl_server_credentials(
            [(key, chain)],
            root_certificates=Path(config.tls_client_ca_file).read_bytes(),
            require_client_auth=True,
        )
    return grpc.ssl_server_credentials([(key, chain)])


class InterlockServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        store = "postgresql" if config.store_url.startswith("postgres") else "sqlite"
        self.metrics = Metrics(engine=config.engine, store=store)
        data_dir = Path(config.data_dir)
        self.audit = AuditLog(
            data_dir, fsync=config.fsync, fsync_interval=config.audit_fsync_interval_seconds
        )
        self.replica_id = replica_id(config.replica_id, data_dir)
        """This replica's name (interlock.replicas): in health, logs and audit lines."""
        self.journal = open_journal(
            config.store_url,
            data_dir,
            self.audit,
            fsync=config.fsync,
            metrics=self.metrics,
            replica=self.replica_id,
            shared=config.store_shared,
        )
        self.policies = PolicyManager(
            make_engine(config, self.metrics),
            config.policy_dir,
            watch_interval=config.policy_watch_interval_seconds,
            on_reload=self._on_reload,
            gate=PolicyGate(
                self.journal,
                replay_decisions=config.reload_replay_decisions,
                widening_budget=config.reload_widening_budget,
            ),
        )
        self.decisions = DecisionService(config, self.policies, self.journal, self.metrics)
        self.sandbox = PolicySandbox(
            workers=config.evaluate_workers,
            timeout_seconds=config.evaluate_timeout_seconds,
            serving=config.engine,
        )
        self.started_at = time.time()
        self.events = EventHub(self.journal, registry=self.metrics.registry)
        self.events.remote_listeners.append(self.decisions.approvals.on_remote_events)
        self.events.remote_listeners.append(self.decisions.grants.on_events)
        self.agreement: PolicyAgreement | None = None
        """Replicas sharing PostgreSQL: heartbeats and the policy_agreement condition."""
        if self.journal.shared:
            self.agreement = PolicyAgreement(
                self.journal,
                self.replica_id,
                revision=lambda: (self.policies.active.revision, self.policies.active.loaded_at),
                policy_dir=str(Path(config.policy_dir).resolve()),
                on_condition=lambda name, ok, reason: self.set_condition(
                    name, ok, reason, gates=False
                ),
            )
            self.decisions.live_refusal = lambda: (
                self.agreement.live_refused if self.agreement is not None else ""
            )
        self.shadow = ShadowRunner(
            self.journal, self.policies, self.metrics, replica=self.replica_id
        )
        """Shadow evaluation of a candidate set beside the active one (interlock.shadow)."""
        self.decisions.on_decided = self.shadow.offer
        self.orchestrator = Orchestrator(
            config, self.decisions, self.journal, Summaries(data_dir, self.journal.plans)
        )
        self.events.remote_listeners.append(self.orchestrator.on_remote_events)
        self.signals = SignalEngine(self.journal)
        self.decisions.on_schema_failure = self.signals.schema_failed
        self.control_plane = ControlPlane(
            self.decisions,
            self.policies,
            self.started_at,
            events=self.events,
            orchestrator=self.orchestrator,
            signals=self.signals,
        )
        self.health = HealthService(
            max_watches=config.max_health_watches,
            max_watches_per_client=config.max_health_watches_per_client,
        )
        self.readiness = Readiness()
        self._serving_lock = asyncio.Lock()
        self._serving_tasks: set[asyncio.Task[None]] = set()
        self.journal.on_condition = self.set_condition
        self.decisions.on_engine_failure = self._engine_failed
        self.health_monitor = HealthMonitor(
            engine_available=lambda: self.control_plane.engine_available,
            context=self._health_context,
            approvals=self.decisions.approvals.pending_since,
            conditions=self.readiness.conditions,
            metrics=self.metrics,
            data_dir=data_dir,
            interval_seconds=config.health_interval_seconds,
        )
        self.journal.listeners.append(self.health_monitor.on_events)
        self.control_plane.health_monitor = self.health_monitor
        self.directory = (
            PrincipalDirectory(config.principals_file) if config.principals_file else None
        )
        self.guard = Guard(
            config,
            self.policies,
            self.journal,
            self.decisions.approvals,
            self.metrics,
            self.directory,
            engine_available=lambda: self.decisions.engine_available,
        )
        self.request_limits = RequestLimits(
            config,
            request_types(
                (
                    control_plane_pb2.DESCRIPTOR.services_by_name["ControlPlane"],
                    policy_service_pb2.DESCRIPTOR.services_by_name["PolicyService"],
                    grants_pb2.DESCRIPTOR.services_by_name["GrantService"],
                )
            ),
        )
        self.port = 0
        self.metrics_port = 0
        self._grpc: grpc.aio.Server | None = None
        self._http: Any = None
        self._monitor: asyncio.Task[None] | None = None
        self._chain_check: asyncio.Task[None] | None = None
        self.console: Console | None = None
        """The operator console (interlock.console), when console_listen is set."""

    async def start(self) -> int:
        """Start everything; on failure, stop what was started and re-raise."""
        try:
            return await self._start()
        except BaseException:
            await self.stop(grace=0)
            raise

    async def _start(self) -> int:
        if self.config.insecure and self.directory is None:
            log.warning(
                "INSECURE DEVELOPMENT MODE: no TLS, no authentication, no authorization: every "
                "caller is the dev principal (an admin); listening on loopback only (%s)",
                self.config.listen,
            )
        elif self.config.insecure:
            log.warning(
                "INSECURE TRANSPORT: bearer tokens are checked but travel without TLS; "
                "listening on loopback only (%s)",
                self.config.listen,
            )
        await self.journal.start()
        self.set_condition(STORE, True, "every commit succeeds")
        self.set_condition(AUDIT_FILES, True, "the files hold every committed line")
        self._report_chains(
            self.journal.chain_problems, "the tail of every chain matches the store"
        )
        self._chain_check = asyncio.create_task(self._check_chains(), name="audit-chain-check")
        self.decisions.restore()
        await self.events.start()
        await self.signals.start()
        await self.policies.start()
        await self.sandbox.start()
        await self.decisions.approvals.start()
        await self.decisions.grants.start()
        if self.agreement is not None:
            await self.agreement.start()
        await self.orchestrator.restore()
        await self.shadow.start()
        self.metrics.policy_loaded.set(self.policies.active.loaded_at)

        server = grpc.aio.server(
            interceptors=[ServerInterceptor(self.metrics, self.guard, self.request_limits)],
            options=[
                # A second server on a busy port must fail, not split the
                # traffic, unless it is one of the workers (config reuse_port).
                ("grpc.so_reuseport", 1 if self.config.reuse_port else 0),
                ("grpc.max_receive_message_length", self.config.max_message_bytes),
                ("grpc.max_send_message_length", self.config.max_message_bytes),
            ],
        )
        control_plane_pb2_grpc.add_ControlPlaneServicer_to_server(self.control_plane, server)
        policy_service_pb2_grpc.add_PolicyServiceServicer_to_server(
            PolicyService(self.policies, self.decisions, self.sandbox, self.shadow), server
        )
        trust_pb2_grpc.add_TrustServiceServicer_to_server(TrustService(self.decisions), server)
        grants_pb2_grpc.add_GrantServiceServicer_to_server(
            GrantRpcs(
                self.decisions.grants,
                self.decisions.approvals,
                self.policies,
                self.config.max_string_length,
            ),
            server,
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (
                *SERVICE_NAMES,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            ),
            server,
        )
        try:
            if self.config.insecure:
                self.port = server.add_insecure_port(self.config.listen)
            else:
                self.port = server.add_secure_port(
                    self.config.listen, server_credentials(self.config)
                )
        except RuntimeError:  # grpc's way of saying the bind failed
            self.port = 0
        if self.port == 0:
            raise OSError(
                f"cannot listen on {self.config.listen}: the address is in use or not available"
            )
        await server.start()
        self._grpc = server
        await self._set_serving(await self.policies.engine.available())
        # Everything built so far lives as long as the server: keep it out of
        # the cyclic collector's way (fewer, shorter GC pauses on the hot path).
        gc.freeze()
        self._monitor = asyncio.create_task(self._watch_engine(), name="engine-monitor")
        self.health_monitor.start()

        if self.config.console_listen:
            self.console = Console(
                Services(
                    config=self.config,
                    guard=self.guard,
                    directory=self.directory,
                    decisions=self.decisions,
                    approvals=self.decisions.approvals,
                    orchestrator=self.orchestrator,
                    events=self.events,
                    health=self.health_monitor,
                    signals=self.signals,
                    policies=self.policies,
                )
            )
            await self.console.start()
        if self.config.metrics_listen:
            host, _, port = self.config.metrics_listen.rpartition(":")
            self._http, _thread = start_http_server(
                int(port), addr=host, registry=self.metrics.registry
            )
            self.metrics_port = self._http.server_port
        log.info(
            "interlock replica %s serving gRPC on %s:%d (engine %s, policy %s)%s",
            self.replica_id,
            self.config.listen.rpartition(":")[0],
            self.port,
            self.policies.engine.name,
            self.policies.active.policy_set.short_revision,
            f", metrics on http://{self.config.metrics_listen.rpartition(':')[0]}:{self.metrics_port}/metrics"
            if self._http
            else "",
        )
        return self.port

    def _health_context(self) -> dict[str, Any]:
        return {
            "policy_revision": self.policies.active.revision,
            "engine": self.policies.engine.name,
            "started_at": self.started_at,
            "decisions": dict(self.decisions.decision_counts),
        }

    def set_condition(self, name: str, ok: bool, reason: str = "", *, gates: bool = True) -> None:
        """Mark a readiness condition (see :mod:`interlock.readiness`); call on the event loop.

        The gRPC health status of ``""`` and every service becomes the AND of
        the conditions that gate (at once for this object; the health
        servicer follows in a task), and GetHealth shows ``reason``.
        ``engine`` also sets whether decisions may use the engine (fail
        closed otherwise); the engine probe marks it back when it answers.
        """
        changed = self.readiness.set(name, ok, reason, gates=gates)
        if name == ENGINE:
            self.control_plane.engine_available = ok
            self.decisions.engine_available = ok
            self.metrics.engine_up.labels(self.policies.engine.name).set(1 if ok else 0)
        if changed:
            task = asyncio.create_task(self._apply_serving(), name="serving-status")
            self._serving_tasks.add(task)
            task.add_done_callback(self._serving_tasks.discard)

    async def _apply_serving(self) -> None:
        async with self._serving_lock:  # the latest state wins, whatever the order of tasks
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if self.readiness.serving
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            for name in ("", *SERVICE_NAMES):
                await self.health.set(name, status)

    def _engine_failed(self, reason: str) -> None:
        """An evaluation failed: the engine is down from now until a probe answers."""
        engine = self.policies.engine.name
        self.set_condition(ENGINE, False, f"{engine} engine failed an evaluation: {reason}")

    async def _set_serving(self, available: bool) -> None:
        engine = self.policies.engine.name
        self.set_condition(
            ENGINE, available, f"{engine} engine {'answers' if available else 'is unavailable'}"
        )
        await self._apply_serving()

    async def _watch_engine(self) -> None:
        while True:
            await asyncio.sleep(ENGINE_CHECK_SECONDS)
            failures = self.decisions.engine_failures
            now = await self.policies.engine.available()
            if now and self.decisions.engine_failures != failures:
                continue  # an evaluation failed while this probe ran: it is not the last word
            if now != self.readiness.holds(ENGINE):  # also undoes a mark from elsewhere
                log.warning(
                    "policy engine %s is %s",
                    self.policies.engine.name,
                    "back" if now else "UNAVAILABLE",
                )
                await self._set_serving(now)

    def _report_chains(self, problems: dict[str, str], fine: str) -> None:
        if problems:
            reason = "audit chain broken: " + "; ".join(
                problem for _, problem in sorted(problems.items())
            )
            self.set_condition(AUDIT_CHAIN, False, reason, gates=False)
        elif self.readiness.holds(AUDIT_CHAIN):
            self.set_condition(AUDIT_CHAIN, True, fine, gates=False)

    async def _check_chains(self) -> None:
        """Verify every audit chain whole, in a thread, once after start-up."""
        try:
            problems = await asyncio.to_thread(self.audit.verify_written)
        except OSError as exc:
            log.error("audit: could not check the chains: %s", exc)
            return
        for name, problem in sorted(problems.items()):
            log.error("audit: the chain of %s is broken: %s", name, problem)
        problems = {**self.journal.chain_problems, **problems}
        self._report_chains(problems, "every chain verifies (checked at start-up)")

    async def _on_reload(self, outcome: ReloadOutcome) -> None:
        result = "refused" if not outcome.ok else ("applied" if outcome.changed else "unchanged")
        self.metrics.reloads.labels(result).inc()
        if outcome.ok and outcome.changed:
            self.metrics.policy_loaded.set(time.time())
        if self.agreement is not None:
            self.agreement.reloaded()
        if not outcome.ok and outcome.trigger == "file change":
            self.set_condition(
                POLICY_RELOAD,
                False,
                f"the policy folder's new set was refused and {outcome.previous_revision[:12]} "
                f"keeps serving: {outcome.error}",
                gates=False,
            )
        elif outcome.ok and not self.readiness.holds(POLICY_RELOAD):
            self.set_condition(
                POLICY_RELOAD, True, f"policy set {outcome.revision[:12]} is live", gates=False
            )
        if result == "unchanged":
            return
        message = (
            f"policy set {outcome.revision[:12]} is live (was {outcome.previous_revision[:12]})"
            if outcome.ok
            else f"policy reload refused; {outcome.previous_revision[:12]} keeps serving: {outcome.error}"
        )
        payload = {
            "result": result,
            "revision": outcome.revision,
            "previous_revision": outcome.previous_revision,
            "trigger": outcome.trigger,
            "error": outcome.error,
            "error_reason": outcome.error_reason,
            "principal": outcome.principal,
            "gate": outcome.gate,
        }
        event = EventRecord(kind="POLICY", message=message, payload=payload)
        line = {"time": time.time(), **payload}
        if outcome.gate is not None:  # the whole replay report stays on the event
            line["gate"] = {k: v for k, v in outcome.gate.items() if k != REPORT}
        await self.journal.record(Recorded(event_list=[event], audit_list=[(POLICY_CHANGES, line)]))

    async def wait(self) -> None:
        assert self._grpc is not None
        await self._grpc.wait_for_termination()

    async def stop(self, grace: float = 5.0) -> None:
        """Drain and stop; safe to call twice or after a failed start."""
        await self.health.enter_graceful_shutdown()
        await cancel_and_wait(self._monitor, self._chain_check)
        self._monitor = self._chain_check = None
        await self.health_monitor.stop()
        if self.agreement is not None:
            await self.agreement.close()
        # Streams of events never end on their own: end them before the grace period.
        await self.events.close()
        console, self.console = self.console, None
        if console is not None:  # its event streams ended with the hub's watchers
            await console.stop()
        await self.orchestrator.close()  # ends work streams; plans resume at the next start
        await self.decisions.approvals.close()
        await self.decisions.grants.close()
        grpc_server, self._grpc = self._grpc, None
        if grpc_server is not None:
            await grpc_server.stop(grace)
        await self.signals.close()  # commits the signals still queued, briefly
        await self.shadow.close()  # writes its counts
        await self.policies.close()
        await self.sandbox.close()
        await self.journal.close()
        http, self._http = self._http, None
        if http is not None:
            http.shutdown()
            http.server_close()


__all__ = ["InterlockServer", "make_engine"]
