"""The regorus engine: Rego evaluated in-process by regorus (Microsoft's Rust Rego interpreter).

Through the project's own small binding, ``interlock_regorus``
(engines/regorus-py: PyO3 over the crates.io ``regorus`` crate, built and
installed by ``make install``). Compiling loads the set's modules and data
into one regorus engine and checks them (the compile step an evaluation
does first); each evaluation thread then works on its own clone of that
prepared engine, which shares the compiled modules and data. The input goes
in as JSON text and the answer comes back as JSON text; the evaluation
releases the GIL. Builtin errors are not strict, as on OPA (its REST API
default): a builtin that fails leaves its expression undefined. (Strict, regorus
stops with an error on ``floor("high")`` in a reason for a malformed
confidence, where OPA answers DENY; the differential test catches it.)

The binding replaces regorus's ``sprintf`` with one that prints as OPA does
(Go's fmt over OPA's conversion of the arguments): regorus 0.14.1 prints
``%.6g`` of 0.6 as ``6e-1``.

When the compiled module is not importable (a machine where ``make install``
could not build it), :func:`make_regorus_engine` gives the embedded regopy
engine instead and says so in a WARNING.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import orjson

from interlock.errors import PolicyEvaluationError, PolicyLoadError
from interlock.policy.bundle import PolicySet
from interlock.policy.embedded import ENTRYPOINT, EmbeddedEngine
from interlock.policy.engine import PolicyDecision, PolicyEngine, parse_decision

log = logging.getLogger(__name__)

_regorus: ModuleType | None
try:
    _regorus = importlib.import_module("interlock_regorus")
    IMPORT_ERROR = ""
except ImportError as exc:  # not built on this machine
    _regorus = None
    IMPORT_ERROR = str(exc) or type(exc).__name__

DECISION_RULE = "data." + ENTRYPOINT.replace("/", ".")


def rule_path(entrypoint: str) -> str:
    """``interlock/authz/main`` -> ``data.interlock.authz.main``."""
    return "data." + entrypoint.strip("/").replace("/", ".")


def _clean(text: str) -> str:
    return " ".join(text.split())[:2000]


def _default(value: Any) -> Any:
    """JSON for what orjson does not know: sets and frozensets as arrays."""
    if isinstance(value, (set, frozenset)):
        return list(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def module() -> ModuleType:
    if _regorus is None:
        raise RuntimeError(f"the regorus binding is not installed: {IMPORT_ERROR}")
    return _regorus


def holding(modules: Mapping[str, str], data: Mapping[str, Any]) -> Any:
    """A new regorus engine (builtin errors not strict, as on OPA) holding the
    modules and the data; the binding's RegoError if one does not parse."""
    engine = module().Engine(strict_builtin_errors=False)
    for path in sorted(modules):
        engine.add_policy(path, modules[path])
    engine.add_data_json(orjson.dumps(dict(data)).decode())
    return engine


def load(policy_set: PolicySet) -> Any:
    """One regorus engine holding the set, checked; PolicyLoadError if refused."""
    rg = module()
    try:
        engine = holding(policy_set.modules, policy_set.data)
    except rg.RegoError as exc:
        raise PolicyLoadError(f"the policy set does not compile: {_clean(str(exc))}") from None
    try:
        engine.prepare(DECISION_RULE)
    except rg.RegoError as exc:
        detail = _clean(str(exc))
        if "not a valid rule path" in detail:
            detail = f"it does not define the decision rule {DECISION_RULE}"
        raise PolicyLoadError(f"the policy set does not compile: {detail}") from None
    return engine


class RegorusPolicy:
    def __init__(self, engine: RegorusEngine, revision: str, prepared: Any) -> None:
        self._engine = engine
        self.revision = revision
        self._prepared = prepared
        self._local = threading.local()

    def _mine(self) -> Any:
        """This thread's clone of the prepared engine."""
        mine = getattr(self._local, "engine", None)
        if mine is None:
            mine = self._prepared.clone()
            self._local.engine = mine
        return mine

    def evaluate_sync(self, policy_input: dict[str, Any]) -> PolicyDecision:
        return parse_decision(self.query_sync(ENTRYPOINT, policy_input))

    def query_sync(self, entrypoint: str, policy_input: Any) -> Any:
        try:
            text = orjson.dumps(policy_input, default=_default).decode()
            out = self._mine().eval_rule(rule_path(entrypoint), text)
            return None if out is None else orjson.loads(out)
        except Exception as exc:  # RegoError, or an input that is not JSON
            detail = _clean(str(exc)) or type(exc).__name__
            raise PolicyEvaluationError(f"regorus engine: {detail}") from None

    async def evaluate(self, policy_input: dict[str, Any]) -> PolicyDecision:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._engine.executor, self.evaluate_sync, policy_input)

    async def query(self, entrypoint: str, policy_input: dict[str, Any]) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._engine.executor, self.query_sync, entrypoint, policy_input
        )

    async def release(self) -> None:
        return None


class RegorusEngine:
    name = "regorus"

    def __init__(self, threads: int = 2) -> None:
        module()  # fail now, not at the first compile
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="regorus")

    def compile_sync(self, policy_set: PolicySet) -> RegorusPolicy:
        return RegorusPolicy(self, policy_set.revision, load(policy_set))

    async def compile(self, policy_set: PolicySet) -> RegorusPolicy:
        return await asyncio.to_thread(self.compile_sync, policy_set)

    async def available(self) -> bool:
        return True

    async def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def make_regorus_engine(threads: int, *, native: bool = False) -> PolicyEngine:
    """The regorus engine, or the embedded one (with a WARNING) when the binding is missing."""
    if _regorus is None:
        log.warning(
            "engine regorus asked for, but the regorus binding (interlock_regorus) is not "
            "installed (%s): using the embedded regopy engine instead; "
            "`make install` builds it (needs cargo)",
            IMPORT_ERROR,
        )
        return EmbeddedEngine(threads=threads, native=native)
    return RegorusEngine(threads=threads)


def local_engine_name(serving: str) -> str:
    """The in-process engine for a server deciding on ``serving``: "regorus"
    where it decides on regorus (and the binding is installed), else "embedded"
    (also for a server on OPA: candidates never go into the serving OPA)."""
    return "regorus" if serving == "regorus" and _regorus is not None else "embedded"


def candidate_engine(serving: str, threads: int) -> PolicyEngine:
    """An in-process engine of its own for a candidate set (shadow, replay,
    the playground's sandbox): the one :func:`local_engine_name` names."""
    if local_engine_name(serving) == "regorus":
        return RegorusEngine(threads=threads)
    return EmbeddedEngine(threads=threads)


__all__ = [
    "RegorusEngine",
    "RegorusPolicy",
    "candidate_engine",
    "holding",
    "load",
    "local_engine_name",
    "make_regorus_engine",
    "rule_path",
]
