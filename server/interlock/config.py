"""Server configuration: read once at start-up, then passed to constructors.

Precedence, lowest first: the defaults below, a YAML file (``--config`` or
``INTERLOCK_CONFIG``), environment variables ``INTERLOCK_<FIELD>`` (for example
``INTERLOCK_ENGINE=opa``), then command-line flags. Handlers never read the
environment. docs/configuration.md lists every field.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

ENGINES = ("regorus", "embedded", "opa")
PACKAGED_POLICY_DIR = Path(__file__).resolve().parent / "policies"
"""The default policy bundle a built wheel ships (setup.py copies policies/ there)."""
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server can be told. Each field documents itself."""

    listen: str = "127.0.0.1:50051"
    """gRPC listen address, host:port. Port 0 picks a free port."""

    metrics_listen: str = "127.0.0.1:9464"
    """HTTP address of the Prometheus /metrics endpoint; empty disables it."""

    console_listen: str = ""
    """Address (host:port) of the operator console in the browser (docs/console.md); empty disables it. HTTPS when TLS is configured; port 0 picks a free port."""

    console_session_ttl_seconds: float = 8 * 3600.0
    """How long a console sign-in lasts; after it the person signs in again."""

    policy_dir: str = "policies"
    """The policy bundle folder: Rego modules, data.yaml documents, the tool catalog. Left unset, it is ./policies when that folder exists, else the default bundle shipped inside the installed package (interlock/policies), so an installed server serves from any directory."""

    engine: str = "regorus"
    """Policy engine: "regorus" (the default: in-process regorus, Microsoft's Rust Rego interpreter, through the project's binding, engines/regorus-py, which `make install` builds; where it is not installed the server uses embedded and says so in a WARNING), "embedded" (in-process regopy) or "opa" (a real OPA server). No sidecar but with "opa"."""

    opa_url: str = "http://127.0.0.1:8181"
    """Base URL of the OPA server when engine is "opa"."""

    opa_timeout_seconds: float = 1.5
    """Timeout of one OPA REST call; past it the decision fails closed (DENY)."""

    opa_bundle_listen: str = "127.0.0.1:0"
    """When engine is "opa": where Interlock serves the active policy set as an OPA bundle (and takes OPA's decision logs), host:port on loopback; OPA's configuration points its bundle service here (docs/policies.md). Port 0 picks a free port, logged at start: set a fixed one for an OPA configured ahead."""

    opa_bin: str = "opa"
    """When engine is "opa": the OPA binary (a path, or a name on PATH) Interlock runs to check a policy set before it serves (its probes, tests and replay run on an OPA process of their own); use the serving OPA's version."""

    opa_revision_wait_seconds: float = 10.0
    """When engine is "opa": how long a reload waits for OPA to report the new bundle revision before it swaps anyway; decisions OPA makes on another revision than the active one fail closed."""

    policy_watch_interval_seconds: float = 1.0
    """How often to look for changes under policy_dir; 0 disables the watcher."""

    reload_replay_decisions: int = 10_000
    """The gate (docs/policies.md): how many of the newest recorded decisions a reload replays under the new set before it goes live; the report's digest and counts go on the reload's record. 0 disables the replay (and so the widening check)."""

    reload_widening_budget: int = 0
    """The gate: how many replayed decisions a new set may widen to LIVE (a call that would now run LIVE, or run LIVE without the approval it needed) before the reload is refused (POLICY_WIDENS_LIVE) unless it says accept_widening with a reason."""

    data_dir: str = "var/interlock"
    """Where the SQLite store and the JSONL audit files live."""

    store_url: str = ""
    """Where the journal keeps all state: empty for SQLite at DATA_DIR/interlock.db, sqlite:PATH, or postgresql://USER@HOST:PORT/DB (several replicas may share one PostgreSQL database)."""

    store_shared: bool = False
    """SQLite only: other `interlock serve` processes on this host use the same store file, so this one coordinates through it as replicas on PostgreSQL do (docs/replicas.md): the LIVE cap, approvals, grants and the event order hold across them. `workers` sets it for its processes."""

    workers: int = 1
    """Serve from this many processes on one host (docs/replicas.md, "Workers"): a supervisor starts them on the same listen address (SO_REUSEPORT: the kernel spreads connections) sharing the store; worker i > 0 keeps its audit files in DATA_DIR/workers/i and serves metrics on the metrics port + i; the console runs in worker 0. 0: one per CPU core."""

    reuse_port: bool = False
    """Let other processes listen on the same gRPC address (SO_REUSEPORT; the kernel spreads connections over them), as `workers` does for its processes. Off, a second server on a busy port fails instead of splitting the traffic."""

    replica_id: str = ""
    """This replica's name among replicas sharing one store (docs/replicas.md): in the start-up log, on its events' rows, in every audit line it writes and, on PostgreSQL, in GetHealth's policy_agreement component. Empty: the one kept in DATA_DIR/replica_id, made there on first start from the host name and a random suffix."""

    fsync: bool = True
    """fsync the store once per batch of writes (group commit) before answering, and the audit files on their interval."""

    audit_fsync_interval_seconds: float = 0.2
    """Longest time an audit line waits for its fsync; lines a crash cuts off are restored from the store at start."""

    embedded_native: bool = False
    """The embedded engine calls rego-cpp's C API directly (the functions regopy binds; about 180 µs less per call and a shorter tail beside busy Python threads) instead of regopy's public API. Off by default while it is new: one unexplained crash of a test process was seen with it on (bench/README.md)."""

    eval_threads: int = 2
    """Threads evaluating the in-process engine, regorus or embedded (each releases the GIL while it works)."""

    evaluate_timeout_seconds: float = 1.0
    """Longest an EvaluatePolicy (playground) evaluation may run in its sandbox process; past it the process is replaced and the call gets DEADLINE_EXCEEDED."""

    evaluate_workers: int = 2
    """Sandbox processes (at a lower CPU priority) that run EvaluatePolicy, apart from the engine that makes live decisions."""

    decision_cache_size: int = 4096
    """Decisions kept per (policy revision, input hash); a repeated input skips the engine. 0 disables."""

    dry_run_only: bool | None = None
    """Override the policy's dry_run_only switch: cap every call at DRY_RUN."""

    max_concurrent_live: int | None = None
    """Override the policy's cap on LIVE executions in flight across the server."""

    live_confidence_floor: float | None = None
    """Override the policy's global confidence floor for LIVE."""

    approval_required_for_high_risk: bool | None = None
    """Override whether HIGH-risk LIVE calls wait for a human approval."""

    health_interval_seconds: float = 5.0
    """How often the health monitor rewrites system_health.json in data_dir; 0 disables the file."""

    max_plan_steps: int = 256
    """Most steps one plan may have."""

    plan_lease_seconds: float = 10.0
    """With replicas on PostgreSQL: how long a replica's lease on a plan it drives lasts unrenewed (renewed every third of it); a plan whose lease expired is taken over by another replica."""

    rollback_on_failure: bool = True
    """When a plan step fails, compensate the plan's completed LIVE steps (newest first)."""

    max_argument_bytes: int = 65536
    """Largest accepted tool-call arguments, as canonical JSON bytes."""

    grant_max_seconds: float = 7 * 86400.0
    """Longest a grant may last: CreateGrant refuses an expires_at further ahead (docs/grants.md)."""

    max_message_bytes: int = 4 * 1024 * 1024
    """Largest gRPC message the server receives."""

    insecure: bool = True
    """Development mode: no TLS, only allowed on a loopback address; without principals_file also no authentication (every caller is the dev principal)."""

    principals_file: str = ""
    """YAML file mapping SHA-256 hashes of bearer tokens and client-certificate names to principals (docs/security.md); required unless insecure. Re-read when it changes."""

    tls_cert_file: str = ""
    """The server's TLS certificate chain (PEM); required unless insecure."""

    tls_key_file: str = ""
    """The server's TLS private key (PEM); required unless insecure."""

    tls_client_ca_file: str = ""
    """CA certificates (PEM) that sign client certificates; when set, every client must present one (mutual TLS)."""

    rate_limit_per_second: float = 1000.0
    """Requests per second each principal may make (token bucket); past it RESOURCE_EXHAUSTED. 0 disables."""

    rate_limit_burst: int = 2000
    """Requests a principal may make at once before its rate limit applies."""

    rate_limit_dev_principal: bool = False
    """In the insecure development mode, hold the dev principal to the rate limit too (off: it is one person on loopback). Authenticated principals are always limited."""

    max_streams_per_principal: int = 64
    """Open PullWork and WatchEvents streams one principal may hold; past it RESOURCE_EXHAUSTED."""

    max_health_watches: int = 1000
    """Open grpc.health.v1 Health/Watch streams the server holds in all (Health needs no credentials); past it Watch answers RESOURCE_EXHAUSTED. Check is never limited."""

    max_health_watches_per_client: int = 16
    """Open Health/Watch streams one client address (IP, any port) may hold; past it RESOURCE_EXHAUSTED."""

    max_string_length: int = 4096
    """Longest free-text field accepted (error messages, reasons), in characters."""

    log_level: str = "INFO"
    """Python logging level."""

    log_json: bool = False
    """Write logs as one JSON object per line."""

    def switch_overrides(self) -> dict[str, Any]:
        """The switches set here, as the policy input's ``switches`` object."""
        names = (
            "dry_run_only",
            "max_concurrent_live",
            "live_confidence_floor",
            "approval_required_for_high_risk",
        )
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which field and why."""


def _coerce(name: str, annotation: Any, value: Any) -> Any:
    hint = typing.get_type_hints(ServerConfig)[name]
    optional = False
    if isinstance(hint, types.UnionType):
        args = [a for a in hint.__args__ if a is not type(None)]
        optional = len(args) < len(hint.__args__)
        hint = args[0]
    if value is None or (optional and isinstance(value, str) and value.lower() in ("", "none")):
        if optional:
            return None
        raise ConfigError(f"{name}: a value is required")
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"not a boolean: {value!r}")
        if hint is int:
            if isinstance(value, bool):
                raise ValueError("not an integer")
            return int(value)
        if hint is float:
            return float(value)
        return str(value)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def load_config(
    *,
    file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ServerConfig:
    """Build the configuration from defaults, file, environment and flags."""
    env = os.environ if env is None else env
    known = {f.name: f for f in fields(ServerConfig)}
    values: dict[str, Any] = {}

    path = file or env.get("INTERLOCK_CONFIG")
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: the top level must be a mapping")
        unknown = sorted(set(loaded) - set(known))
        if unknown:
            raise ConfigError(f"config file {path}: unknown field(s) {', '.join(unknown)}")
        values.update(loaded)

    for name in known:
        key = f"INTERLOCK_{name.upper()}"
        if key in env:
            values[name] = env[key]

    for name, value in (overrides or {}).items():
        if name not in known:
            raise ConfigError(f"unknown field {name}")
        if value is not None:
            values[name] = value

    coerced = {n: _coerce(n, known[n].type, v) for n, v in values.items()}
    if "policy_dir" not in coerced:
        coerced["policy_dir"] = _default_policy_dir()
    config = dataclasses.replace(ServerConfig(), **coerced)
    _check(config)
    return config


def _default_policy_dir() -> str:
    """./policies in a checkout (or wherever one was put); else the packaged bundle."""
    local = ServerConfig.policy_dir
    if Path(local).is_dir() or not PACKAGED_POLICY_DIR.is_dir():
        return local
    return str(PACKAGED_POLICY_DIR)


def _check(config: ServerConfig) -> None:
    if config.engine not in ENGINES:
        raise ConfigError(f"engine: must be one of {', '.join(ENGINES)}, not {config.engine!r}")
    if config.audit_fsync_interval_seconds <= 0:
        raise ConfigError("audit_fsync_interval_seconds: must be positive")
    if config.decision_cache_size < 0:
        raise ConfigError("decision_cache_size: must not be negative")
    if config.eval_threads < 1:
        raise ConfigError("eval_threads: must be at least 1")
    if config.evaluate_timeout_seconds <= 0 or config.evaluate_workers < 1:
        raise ConfigError("evaluate_timeout_seconds must be positive and evaluate_workers >= 1")
    if config.store_url and not config.store_url.startswith(
        ("sqlite:", "postgresql://", "postgres://")
    ):
        raise ConfigError(
            "store_url: must be empty (SQLite in data_dir), sqlite:PATH or postgresql://..., "
            f"not {config.store_url.split(':')[0]!r}"
        )
    if config.workers < 0:
        raise ConfigError("workers: must not be negative (0: one per CPU core)")
    if config.store_shared and config.store_url.startswith(("postgresql://", "postgres://")):
        raise ConfigError("store_shared: is for SQLite; replicas on PostgreSQL always share")
    if config.reload_replay_decisions < 0 or config.reload_widening_budget < 0:
        raise ConfigError(
            "reload_replay_decisions and reload_widening_budget: must not be negative"
        )
    if config.plan_lease_seconds <= 0:
        raise ConfigError("plan_lease_seconds: must be positive")
    if config.opa_timeout_seconds <= 0:
        raise ConfigError("opa_timeout_seconds: must be positive")
    if config.opa_revision_wait_seconds < 0:
        raise ConfigError("opa_revision_wait_seconds: must not be negative")
    bundle_host, _, bundle_port = config.opa_bundle_listen.rpartition(":")
    if bundle_host.strip("[]") not in LOOPBACK or not bundle_port.isdigit():
        raise ConfigError(
            "opa_bundle_listen: must be a loopback host:port (the bundle server has no "
            f"authentication), not {config.opa_bundle_listen!r}"
        )
    if not config.grant_max_seconds > 0:
        raise ConfigError("grant_max_seconds: must be positive")
    if config.max_argument_bytes < 2:
        raise ConfigError("max_argument_bytes: must be at least 2")
    if config.live_confidence_floor is not None and not 0 <= config.live_confidence_floor <= 1:
        raise ConfigError("live_confidence_floor: must be in [0, 1]")
    if config.max_concurrent_live is not None and config.max_concurrent_live < 0:
        raise ConfigError("max_concurrent_live: must not be negative")
    for name in ("listen", "metrics_listen", "console_listen"):
        value = getattr(config, name)
        if name in ("metrics_listen", "console_listen") and value == "":
            continue
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ConfigError(f"{name}: must be host:port, not {value!r}")
    host = config.listen.rsplit(":", 1)[0].strip("[]")
    if not config.insecure:
        missing = [
            name
            for name in ("principals_file", "tls_cert_file", "tls_key_file")
            if not getattr(config, name)
        ]
        if missing:
            raise ConfigError(
                f"{', '.join(missing)}: required unless insecure (development mode) is on"
            )
    for name in ("principals_file", "tls_cert_file", "tls_key_file", "tls_client_ca_file"):
        value = getattr(config, name)
        if value and not Path(value).is_file():
            raise ConfigError(f"{name}: {value!r} is not a readable file")
    if config.insecure and (config.tls_cert_file or config.tls_client_ca_file):
        raise ConfigError("tls_cert_file/tls_client_ca_file: TLS needs insecure turned off")
    if config.rate_limit_per_second < 0 or config.rate_limit_burst < 1:
        raise ConfigError("rate_limit_per_second must be >= 0 and rate_limit_burst >= 1")
    if config.max_health_watches < 1 or config.max_health_watches_per_client < 1:
        raise ConfigError("max_health_watches and max_health_watches_per_client must be >= 1")
    if config.max_streams_per_principal < 1 or config.max_string_length < 16:
        raise ConfigError("max_streams_per_principal must be >= 1, max_string_length >= 16")
    if config.insecure and host not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError(
            f"insecure: development mode serves without TLS or authentication and may only "
            f"listen on loopback, not {host!r}"
        )
    console_host = config.console_listen.rsplit(":", 1)[0].strip("[]")
    if config.insecure and config.console_listen and console_host not in LOOPBACK:
        raise ConfigError(
            f"console_listen: development mode serves the console without TLS and only on "
            f"loopback, not {console_host!r}"
        )
    if config.console_session_ttl_seconds <= 0:
        raise ConfigError("console_session_ttl_seconds: must be positive")


def describe() -> list[tuple[str, str, str]]:
    """(name, default, doc) for every field, for docs and ``interlock serve --help``."""
    import ast
    import inspect

    source = inspect.getsource(ServerConfig)
    docs: dict[str, str] = {}
    tree = ast.parse(source)
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node, nxt in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
        ):
            docs[node.target.id] = str(nxt.value.value)
    return [(f.name, repr(f.default), docs.get(f.name, "")) for f in fields(ServerConfig)]


__all__ = [
    "ENGINES",
    "PACKAGED_POLICY_DIR",
    "ConfigError",
    "ServerConfig",
    "describe",
    "load_config",
]
