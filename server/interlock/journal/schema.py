"""The journal's schema and its versioned migrations, for both backends.

Each :class:`Migration` has a version, a description and its statements for
SQLite and for PostgreSQL. At start-up the journal reads ``schema_version``
and applies, in one transaction, every migration above it (on PostgreSQL
under an advisory lock, so replicas starting together migrate once). A
database whose version is higher than :data:`SCHEMA_VERSION` was written by
a newer Interlock: the journal refuses to start and names both versions.

A SQLite file written before versioned migrations (it has the tables but no
``schema_version``) is taken as version 1 after the columns version 1 added
late are made sure of.

Why no migration library: the migrations run on the journal's own writer
connection at start-up, under PostgreSQL's advisory lock, and must refuse a
newer schema; that is one table and a loop. yoyo-migrations and alembic
(with SQLAlchemy) would each bring a second connection layer for it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]

    def statements(self, dialect: str) -> tuple[str, ...]:
        return self.sqlite if dialect == "sqlite" else self.postgresql


def _tables(real: str, seq: str, identity: str, rowid: str) -> tuple[str, ...]:
    """Version 1, the tables of 0.1, in a dialect's words for floats and keys."""
    return (
        f"""CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT PRIMARY KEY,
    decided_at {real} NOT NULL,
    agent_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    plan_id TEXT NOT NULL DEFAULT '',
    step_id TEXT NOT NULL DEFAULT '',
    confidence {real} NOT NULL,
    verdict TEXT NOT NULL,
    mode TEXT NOT NULL,
    needs_approval INTEGER NOT NULL,
    reasons TEXT NOT NULL,
    policy_revision TEXT NOT NULL,
    engine TEXT NOT NULL,
    input_hash TEXT NOT NULL,
    arguments TEXT NOT NULL,
    fail_closed INTEGER NOT NULL,
    live_deadline {real}
)""",
        f"""CREATE TABLE IF NOT EXISTS results (
    decision_id TEXT PRIMARY KEY REFERENCES decisions(decision_id),
    agent_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    output TEXT NOT NULL,
    error_message TEXT NOT NULL,
    duration_seconds {real} NOT NULL,
    reported_at {real} NOT NULL
)""",
        f"""CREATE TABLE IF NOT EXISTS plans (
    plan_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    source_format TEXT NOT NULL,
    labels TEXT NOT NULL,
    conflicts TEXT NOT NULL,
    message TEXT NOT NULL,
    submitted_at {real} NOT NULL,
    updated_at {real} NOT NULL,
    submitted_by TEXT NOT NULL DEFAULT ''
)""",
        f"""CREATE TABLE IF NOT EXISTS steps (
    plan_id TEXT NOT NULL REFERENCES plans(plan_id),
    step_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    tool TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    arguments TEXT,
    confidence {real} NOT NULL,
    depends_on TEXT NOT NULL,
    state TEXT NOT NULL,
    mode TEXT NOT NULL DEFAULT '',
    decision_id TEXT NOT NULL DEFAULT '',
    work_id TEXT NOT NULL DEFAULT '',
    attempt INTEGER NOT NULL DEFAULT 0,
    not_before {real} NOT NULL DEFAULT 0,
    deadline {real} NOT NULL DEFAULT 0,
    compensates TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '',
    result TEXT NOT NULL DEFAULT '{{}}',
    updated_at {real} NOT NULL,
    PRIMARY KEY (plan_id, step_id)
)""",
        f"""CREATE TABLE IF NOT EXISTS audit_outbox (
    file TEXT NOT NULL,
    seq BIGINT NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (file, seq)
){rowid}""",
        f"""CREATE TABLE IF NOT EXISTS approvals (
    approval_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    decision_id TEXT NOT NULL,
    plan_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    arguments_hash TEXT NOT NULL,
    policy_revision TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requirement TEXT NOT NULL,
    approver_roles TEXT NOT NULL,
    approvals TEXT NOT NULL,
    escalation_level INTEGER NOT NULL,
    created_at {real} NOT NULL,
    expires_at {real} NOT NULL,
    confidence {real} NOT NULL,
    reason TEXT NOT NULL,
    resolved_by TEXT NOT NULL,
    resolved_at {real} NOT NULL,
    used_by_decision_id TEXT NOT NULL
)""",
        "CREATE INDEX IF NOT EXISTS approvals_decision ON approvals(decision_id)",
        "CREATE INDEX IF NOT EXISTS approvals_state ON approvals(state)",
        f"""CREATE TABLE IF NOT EXISTS store_probe (
    id INTEGER PRIMARY KEY,
    at {real} NOT NULL
)""",
        f"""CREATE TABLE IF NOT EXISTS events (
    seq {seq},
    time {real} NOT NULL,
    kind TEXT NOT NULL,
    plan_id TEXT NOT NULL DEFAULT '',
    step_id TEXT NOT NULL DEFAULT '',
    agent_id TEXT NOT NULL DEFAULT '',
    decision_id TEXT NOT NULL DEFAULT '',
    tool TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '',
    payload TEXT NOT NULL DEFAULT '{{}}'
)""",
        f"""CREATE TABLE IF NOT EXISTS signals (
    id {identity},
    signal_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    tool TEXT NOT NULL DEFAULT '',
    agent_id TEXT NOT NULL DEFAULT '',
    value {real} NOT NULL,
    evidence TEXT NOT NULL,
    created_at {real} NOT NULL
)""",
        "CREATE INDEX IF NOT EXISTS signals_by_kind ON signals (kind, tool)",
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "the tables of 0.1: decisions, results, plans, steps, approvals, events, signals, outbox",
        _tables(
            "REAL",
            "INTEGER PRIMARY KEY AUTOINCREMENT",
            "INTEGER PRIMARY KEY AUTOINCREMENT",
            " WITHOUT ROWID",
        ),
        # PostgreSQL: events.seq is given by the journal under its advisory
        # lock (MAX + 1), so it is gapless and in commit order across replicas.
        _tables(
            "DOUBLE PRECISION",
            "BIGINT PRIMARY KEY",
            "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
            "",
        ),
    ),
    Migration(
        2,
        "decisions.supersedes: the decision a step's hand-off decision replaces;"
        " indexes for decisions by time and approvals by the decision that used them",
        (
            "ALTER TABLE decisions ADD COLUMN supersedes TEXT NOT NULL DEFAULT ''",
            "CREATE INDEX IF NOT EXISTS decisions_by_time ON decisions (decided_at)",
            "CREATE INDEX IF NOT EXISTS approvals_used_by ON approvals (used_by_decision_id)",
        ),
        (
            "ALTER TABLE decisions ADD COLUMN supersedes TEXT NOT NULL DEFAULT ''",
            "CREATE INDEX IF NOT EXISTS decisions_by_time ON decisions (decided_at)",
            "CREATE INDEX IF NOT EXISTS approvals_used_by ON approvals (used_by_decision_id)",
        ),
    ),
)


def _replicas(real: str) -> tuple[str, ...]:
    """Version 3: what replicas sharing one database need (docs/replicas.md)."""
    return (
        "ALTER TABLE events ADD COLUMN replica TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE audit_outbox ADD COLUMN replica TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX IF NOT EXISTS audit_outbox_by_replica ON audit_outbox (replica, file, seq)",
        f"""CREATE TABLE IF NOT EXISTS live_holds (
    decision_id TEXT PRIMARY KEY,
    replica TEXT NOT NULL,
    until {real} NOT NULL
)""",
        f"""CREATE TABLE IF NOT EXISTS replicas (
    replica_id TEXT PRIMARY KEY,
    revision TEXT NOT NULL,
    loaded_at {real} NOT NULL,
    policy_dir TEXT NOT NULL,
    started_at {real} NOT NULL,
    heartbeat {real} NOT NULL
)""",
    )


MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        3,
        "replicas: events.replica and audit_outbox.replica (who committed them), live_holds"
        " (LIVE executions in flight, counted for the cap), replicas (policy revision, heartbeat)",
        _replicas("REAL"),
        _replicas("DOUBLE PRECISION"),
    ),
)


def _leases(real: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE IF NOT EXISTS plan_leases (
    plan_id TEXT PRIMARY KEY REFERENCES plans(plan_id),
    owner TEXT NOT NULL,
    term BIGINT NOT NULL,
    expires_at {real} NOT NULL,
    cancel_requested TEXT NOT NULL DEFAULT ''
)""",
        "CREATE INDEX IF NOT EXISTS plan_leases_by_owner ON plan_leases (owner)",
        # Plans running before leases: expired, so the first replica to look takes them.
        "INSERT INTO plan_leases (plan_id, owner, term, expires_at)"
        " SELECT plan_id, '', 0, 0 FROM plans WHERE state IN ('PENDING', 'RUNNING')",
    )


MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        4,
        "plan_leases: the replica driving each plan, under a term every write checks",
        _leases("REAL"),
        _leases("DOUBLE PRECISION"),
    ),
)


_DECISION_INPUTS = (
    """CREATE TABLE IF NOT EXISTS decision_inputs (
    decision_id TEXT PRIMARY KEY REFERENCES decisions(decision_id),
    input TEXT NOT NULL
)""",
)

MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        5,
        "decision_inputs: each decision's policy input as evaluated (canonical JSON), for replay",
        _DECISION_INPUTS,
        _DECISION_INPUTS,
    ),
)


def _work_items(real: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE IF NOT EXISTS work_items (
    work_id TEXT PRIMARY KEY,
    plan_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    decision_id TEXT NOT NULL,
    arguments TEXT NOT NULL,
    mode TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    compensation INTEGER NOT NULL,
    revision TEXT NOT NULL,
    owner TEXT NOT NULL,
    state TEXT NOT NULL,
    holding INTEGER NOT NULL,
    claimed_by TEXT NOT NULL DEFAULT '',
    deadline {real} NOT NULL DEFAULT 0,
    result TEXT NOT NULL DEFAULT '',
    offered_at {real} NOT NULL,
    updated_at {real} NOT NULL
)""",
        "CREATE INDEX IF NOT EXISTS work_items_by_agent ON work_items (agent_id, state)",
        "CREATE INDEX IF NOT EXISTS work_items_by_tool ON work_items (tool, holding)",
        "CREATE INDEX IF NOT EXISTS work_items_by_step ON work_items (plan_id, step_id)",
    )


MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        6,
        "work_items: plan work offered to any replica's workers, claimed once",
        _work_items("REAL"),
        _work_items("DOUBLE PRECISION"),
    ),
)


def _trust_pairs(real: str) -> tuple[str, ...]:
    """Version 8: the trust state of each (agent, tool) pair (issue 16, item 2)."""
    return (
        f"""CREATE TABLE IF NOT EXISTS trust_pairs (
    agent_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'TRUSTED',
    failures TEXT NOT NULL DEFAULT '[]',
    demoted_at {real} NOT NULL DEFAULT 0,
    demoted_until {real} NOT NULL DEFAULT 0,
    demotions INTEGER NOT NULL DEFAULT 0,
    clean_runs INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    version INTEGER NOT NULL DEFAULT 0,
    updated_at {real} NOT NULL DEFAULT 0,
    PRIMARY KEY (agent_id, tool)
)""",
        "CREATE INDEX IF NOT EXISTS trust_pairs_by_tool ON trust_pairs (tool, state)",
    )


MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        8,
        "trust_pairs: demotion and promotion of each (agent, tool) pair",
        _trust_pairs("REAL"),
        _trust_pairs("DOUBLE PRECISION"),
    ),
)


def _shadow(real: str) -> tuple[str, ...]:
    """Version 9, shadow evaluation (interlock.shadow): the candidate beside the
    active set, what each replica counted, and the decisions they disagreed on."""
    return (
        f"""CREATE TABLE IF NOT EXISTS shadows (
    shadow_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    candidate_revision TEXT NOT NULL,
    files TEXT NOT NULL,
    sample {real} NOT NULL,
    started_by TEXT NOT NULL,
    started_at {real} NOT NULL,
    active_revision TEXT NOT NULL,
    ended_at {real} NOT NULL DEFAULT 0,
    ended_by TEXT NOT NULL DEFAULT '',
    accept_widening INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT ''
)""",
        """CREATE TABLE IF NOT EXISTS shadow_running (
    slot TEXT PRIMARY KEY,
    shadow_id TEXT NOT NULL
)""",
        f"""CREATE TABLE IF NOT EXISTS shadow_replicas (
    shadow_id TEXT NOT NULL,
    replica TEXT NOT NULL,
    evaluated INTEGER NOT NULL,
    disagreements INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    dropped INTEGER NOT NULL,
    updated_at {real} NOT NULL,
    PRIMARY KEY (shadow_id, replica)
)""",
        """CREATE TABLE IF NOT EXISTS shadow_counts (
    shadow_id TEXT NOT NULL,
    replica TEXT NOT NULL,
    from_verdict TEXT NOT NULL,
    from_mode TEXT NOT NULL,
    from_approval INTEGER NOT NULL,
    to_verdict TEXT NOT NULL,
    to_mode TEXT NOT NULL,
    to_approval INTEGER NOT NULL,
    agent_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (shadow_id, replica, from_verdict, from_mode, from_approval,
                 to_verdict, to_mode, to_approval, agent_id, tool)
)""",
        f"""CREATE TABLE IF NOT EXISTS shadow_disagreements (
    shadow_id TEXT NOT NULL,
    decision_id TEXT NOT NULL,
    replica TEXT NOT NULL,
    decided_at {real} NOT NULL,
    agent_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    confidence {real} NOT NULL,
    input_hash TEXT NOT NULL,
    active_revision TEXT NOT NULL,
    active_verdict TEXT NOT NULL,
    active_mode TEXT NOT NULL,
    active_approval INTEGER NOT NULL,
    active_reasons TEXT NOT NULL,
    candidate_verdict TEXT NOT NULL,
    candidate_mode TEXT NOT NULL,
    candidate_approval INTEGER NOT NULL,
    candidate_reasons TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (shadow_id, decision_id)
)""",
    )


MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        9,
        "shadows: a candidate policy set evaluated beside the active one on sampled live decisions",
        _shadow("REAL"),
        _shadow("DOUBLE PRECISION"),
    ),
)


def _grants(real: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE IF NOT EXISTS grants (
    grant_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    plan_id TEXT NOT NULL,
    constraint_json TEXT NOT NULL,
    expires_at {real} NOT NULL,
    max_uses INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    created_at {real} NOT NULL,
    reason TEXT NOT NULL,
    approval_id TEXT NOT NULL,
    revoked_by TEXT NOT NULL DEFAULT '',
    revoked_at {real} NOT NULL DEFAULT 0,
    revoke_reason TEXT NOT NULL DEFAULT '',
    last_used_at {real} NOT NULL DEFAULT 0
)""",
        "CREATE INDEX IF NOT EXISTS grants_by_call ON grants (agent_id, tool, state)",
        f"""CREATE TABLE IF NOT EXISTS grant_uses (
    grant_id TEXT NOT NULL REFERENCES grants(grant_id),
    decision_id TEXT NOT NULL,
    used_at {real} NOT NULL,
    replica TEXT NOT NULL,
    PRIMARY KEY (grant_id, decision_id)
)""",
    )


MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        7,
        "grants: standing approvals (agent, tool, argument constraint, plan, expiry, max uses);"
        " grant_uses: each decision a grant covered, counted against max_uses",
        _grants("REAL"),
        _grants("DOUBLE PRECISION"),
    ),
)


# Migrations are applied in version order, whichever block above added them.
MIGRATIONS = tuple(sorted(MIGRATIONS, key=lambda m: m.version))
if len({m.version for m in MIGRATIONS}) != len(MIGRATIONS):
    raise RuntimeError("two journal migrations share a version number")

SCHEMA_VERSION = MIGRATIONS[-1].version
"""The schema this code reads and writes."""

VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
)

LEGACY_COLUMNS = (("plans", "submitted_by", "TEXT NOT NULL DEFAULT ''"),)
"""Columns version 1 gained before migrations were versioned (SQLite only)."""


class SchemaTooNew(RuntimeError):
    """The database was written by a newer Interlock."""

    def __init__(self, found: int) -> None:
        super().__init__(
            f"the database's schema is version {found}, but this Interlock knows versions up to "
            f"{SCHEMA_VERSION}: it was written by a newer Interlock; run that version (or newer)"
        )
        self.found = found


def pending(current: int) -> list[Migration]:
    """The migrations to apply to a database at ``current``; refuses a newer one."""
    if current > SCHEMA_VERSION:
        raise SchemaTooNew(current)
    return [m for m in MIGRATIONS if m.version > current]


__all__ = [
    "LEGACY_COLUMNS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "VERSION_TABLE",
    "Migration",
    "SchemaTooNew",
    "pending",
]
