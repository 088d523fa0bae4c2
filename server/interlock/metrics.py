"""Prometheus metrics on a registry of Interlock's own (never the global one).

Names are ``interlock_<subsystem>_<name>_<unit>``; counters end in
``_total``. Labels are bounded: tool names come from the catalog, methods
from the API; no decision, plan or agent ids are used as labels.

Plans and approvals:

``interlock_plans_submitted_total{result}``
    Plans submitted, by result (``accepted``, ``rejected`` by a conflict).
``interlock_plans_finished_total{state}``
    Plans that reached a final state (SUCCEEDED, FAILED, FAILED_PARTIAL,
    CANCELLED, ROLLED_BACK).
``interlock_plans_conflicts_total{type,resolution}``
    Conflicts detected, by type (RESOURCE, ORDERING, RATE_LIMIT,
    DUPLICATE_ACTION, PERMISSION, TIMEOUT) and resolution (serialize,
    reorder, reject, throttle, dedupe, deny, cancel).
``interlock_plans_rollback_actions_total{action}``
    Rollback actions (compensate, compensated, compensation_failed, barrier,
    nothing_to_undo).
``interlock_approvals_waiting``
    Approvals now PENDING (held calls and plan steps; computed on scrape).
``interlock_approvals_oldest_age_seconds``
    How long the oldest of them has waited; 0 when none waits.
``interlock_approvals_total{event}``
    Approval lifecycle events: requested, approved, denied, expired,
    escalated, used.
``interlock_approvals_refused_total{reason}``
    Approval misuse refused, by reason code (APPROVAL_NOT_USABLE,
    APPROVAL_MISMATCH, ALREADY_APPROVED_BY_YOU, ...); each is also an
    access_denials.jsonl line.

Shadow evaluation (docs/policies.md):

``interlock_policy_shadow_evaluations_total{result}``
    Sampled live decisions evaluated again by the shadow candidate, by
    result (``agreed``, ``disagreed``, ``error``), and those ``dropped``
    because the shadow's queue was full (never evaluated, never waited for).
``interlock_policy_shadow_disagreements_total{from_verdict,from_mode,to_verdict,to_mode}``
    Decisions the candidate answered otherwise than the active set: from the
    active set's verdict and mode to the candidate's.

Security:

``interlock_auth_failures_total{reason}``
    Calls refused before any handler ran: missing_credentials, unknown_token,
    unknown_certificate.
``interlock_authz_denied_total{method}``
    Calls the authorization policy refused (PERMISSION_DENIED).
``interlock_limits_exceeded_total{limit}``
    Calls refused by a limit (RESOURCE_EXHAUSTED): rate, streams.

The process:

``interlock_build_info{version,engine,store}``
    Always 1; its labels say which build serves, on which policy engine and
    store (join on it: ``* on(instance) group_left(version) interlock_build_info``).
``process_*``, ``python_info``, ``python_gc_*``
    The client library's process and platform collectors (CPU, memory, open
    file descriptors, start time; the Python version; garbage collection),
    on this registry as on the library's default one.

Deployment: ``deploy/prometheus.yml`` scrapes this endpoint and
``deploy/grafana/interlock-dashboard.json`` charts every metric here; see
``deploy/README.md``; ``deploy/prometheus/alerts.yml`` alerts on them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from interlock import __version__

LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class Metrics:
    """Every metric of one server, on ``registry`` (a new one by default).

    ``engine`` and ``store`` label ``interlock_build_info``.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, engine: str, store: str
    ) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.build_info = Gauge(
            "interlock_build_info",
            "Always 1: the version, policy engine and store of this server.",
            ["version", "engine", "store"],
            registry=r,
        )
        self.build_info.labels(__version__, engine, store).set(1)
        self.decisions = Counter(
            "interlock_decisions_total",
            "Tool-call decisions, by verdict, execution mode and tool.",
            ["verdict", "mode", "tool"],
            registry=r,
        )
        self.decision_latency = Histogram(
            "interlock_decision_latency_seconds",
            "Time to decide a tool call, from request to durable record.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.policy_evaluation = Histogram(
            "interlock_policy_evaluation_seconds",
            "Time the policy engine took to evaluate one decision.",
            ["engine"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decision_cache_hits = Counter(
            "interlock_policy_cache_hits_total",
            "Decisions answered from the decision cache without evaluating the policy.",
            registry=r,
        )
        self.fail_closed = Counter(
            "interlock_policy_fail_closed_total",
            "Decisions denied because the policy could not be evaluated.",
            ["engine"],
            registry=r,
        )
        self.stale_revisions = Counter(
            "interlock_policy_stale_revision_total",
            "Decisions failed closed because OPA evaluated another policy revision than the "
            "active one (it has not loaded the active bundle yet).",
            registry=r,
        )
        self.reloads = Counter(
            "interlock_policy_reloads_total",
            "Policy reload attempts, by result (applied, unchanged, refused).",
            ["result"],
            registry=r,
        )
        self.shadow_evaluations = Counter(
            "interlock_policy_shadow_evaluations_total",
            "Sampled live decisions the shadow candidate evaluated, by result "
            "(agreed, disagreed, error, dropped: the queue was full).",
            ["result"],
            registry=r,
        )
        self.shadow_disagreements = Counter(
            "interlock_policy_shadow_disagreements_total",
            "Decisions the shadow candidate answered otherwise than the active set, "
            "from the active verdict and mode to the candidate's.",
            ["from_verdict", "from_mode", "to_verdict", "to_mode"],
            registry=r,
        )
        self.policy_loaded = Gauge(
            "interlock_policy_loaded_timestamp_seconds",
            "When the active policy set went live.",
            registry=r,
        )
        self.engine_up = Gauge(
            "interlock_policy_engine_up",
            "1 while the policy engine answers, else 0.",
            ["engine"],
            registry=r,
        )
        self.results = Counter(
            "interlock_tool_results_total",
            "Reported tool-call results, by tool, mode and outcome.",
            ["tool", "mode", "outcome"],
            registry=r,
        )
        self.live_in_flight = Gauge(
            "interlock_executions_live_in_flight",
            "LIVE executions allowed and not yet reported or past their timeout.",
            registry=r,
        )
        self.grpc_requests = Counter(
            "interlock_grpc_requests_total",
            "gRPC requests handled, by method and status code.",
            ["method", "code"],
            registry=r,
        )
        self.grpc_latency = Histogram(
            "interlock_grpc_request_duration_seconds",
            "gRPC request handling time, by method.",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.store_batch = Histogram(
            "interlock_store_batch_size_records",
            "Records committed per group-commit batch.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.audit_lag = Gauge(
            "interlock_audit_lag_lines",
            "Audit lines committed to the store that the JSONL files lack (0 unless a "
            "file could not be written, e.g. a full disk; they catch up by themselves).",
            registry=r,
        )
        self.health_score = Gauge(
            "interlock_health_score",
            "The health score, 0-100 (see docs/health.md).",
            registry=r,
        )
        self.health_component_score = Gauge(
            "interlock_health_component_score",
            "Each health component's score, 0-100.",
            ["component"],
            registry=r,
        )
        self.health_anomalies = Gauge(
            "interlock_health_anomalies",
            "Anomalies the health monitor currently reports.",
            registry=r,
        )
        self.plans_submitted = Counter(
            "interlock_plans_submitted_total",
            "Plans submitted, by result (accepted, rejected).",
            ["result"],
            registry=r,
        )
        self.plans_finished = Counter(
            "interlock_plans_finished_total",
            "Plans that reached a final state, by that state.",
            ["state"],
            registry=r,
        )
        self.plan_conflicts = Counter(
            "interlock_plans_conflicts_total",
            "Plan conflicts detected, by conflict type and resolution.",
            ["type", "resolution"],
            registry=r,
        )
        self.rollback_actions = Counter(
            "interlock_plans_rollback_actions_total",
            "Rollback actions taken on failed plans, by action.",
            ["action"],
            registry=r,
        )
        self.approvals_waiting = Gauge(
            "interlock_approvals_waiting",
            "Approvals pending now.",
            registry=r,
        )
        self.approvals_oldest_age = Gauge(
            "interlock_approvals_oldest_age_seconds",
            "How long the oldest pending approval has waited (0 when none).",
            registry=r,
        )
        self.approvals = Counter(
            "interlock_approvals_total",
            "Approval lifecycle events: requested, approved, denied, expired, escalated, used.",
            ["event"],
            registry=r,
        )
        self.approvals_refused = Counter(
            "interlock_approvals_refused_total",
            "Approval misuse refused (reuse, mismatch, approving twice), by reason code.",
            ["reason"],
            registry=r,
        )
        self.auth_failures = Counter(
            "interlock_auth_failures_total",
            "Calls refused for want of valid credentials, by reason.",
            ["reason"],
            registry=r,
        )
        self.authz_denied = Counter(
            "interlock_authz_denied_total",
            "Calls the authorization policy refused, by method.",
            ["method"],
            registry=r,
        )
        self.limits_exceeded = Counter(
            "interlock_limits_exceeded_total",
            "Calls refused by a per-principal limit (rate, streams).",
            ["limit"],
            registry=r,
        )

    def track_approvals(
        self,
        waiting_since: Callable[[], Iterable[float]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Compute the approval gauges on each scrape from ``waiting_since``: the
        times at which each approval now pending was requested."""
        self.approvals_waiting.set_function(lambda: float(len(list(waiting_since()))))
        self.approvals_oldest_age.set_function(
            lambda: max((clock() - t for t in waiting_since()), default=0.0)
        )


__all__ = ["Metrics"]
