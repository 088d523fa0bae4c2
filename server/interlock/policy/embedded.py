"""The embedded engine: Rego evaluated in-process by regopy (rego-cpp).

Compiling builds a regopy bundle with the decision rule as its entrypoint;
strict builtin errors are on, so a builtin that fails is an error rather than
an undefined value. Evaluation runs on a small thread pool with one
interpreter per thread: regopy releases the GIL while it evaluates, so the
event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import regopy

from interlock.errors import PolicyEvaluationError, PolicyLoadError
from interlock.policy.bundle import PolicySet
from interlock.policy.engine import (
    AUTHZ_ENTRYPOINT,
    DECISION_PACKAGE,
    DECISION_RULE,
    PolicyDecision,
    parse_decision,
)

ENTRYPOINT = f"{DECISION_PACKAGE.replace('.', '/')}/{DECISION_RULE}"
ENTRYPOINTS = [ENTRYPOINT, AUTHZ_ENTRYPOINT]


def _build(policy_set: PolicySet) -> regopy.Bundle:
    interp = regopy.Interpreter()
    interp.strict_built_in_errors = True
    try:
        for path in sorted(policy_set.modules):
            interp.add_module(path, policy_set.modules[path])
        interp.add_data(dict(policy_set.data))
        bundle = interp.build(None, ENTRYPOINTS)
    except regopy.RegoError as exc:
        raise PolicyLoadError(f"the policy set does not compile: {_clean(str(exc))}") from None
    if not bundle.ok():
        raise PolicyLoadError("the policy set does not compile")
    return bundle


def _clean(text: str) -> str:
    return " ".join(text.split())[:2000]


class EmbeddedPolicy:
    def __init__(self, engine: EmbeddedEngine, revision: str, bundle: regopy.Bundle) -> None:
        self._engine = engine
        self.revision = revision
        self._bundle = bundle

    def evaluate_sync(self, policy_input: dict[str, Any]) -> PolicyDecision:
        return parse_decision(self.query_sync(ENTRYPOINT, policy_input))

    def query_sync(self, entrypoint: str, policy_input: dict[str, Any]) -> Any:
        interp = self._engine.interpreter()
        try:
            interp.set_input(regopy.Input(policy_input))
            output = interp.query_bundle_entrypoint(self._bundle, entrypoint)
            if not output.ok():
                raise PolicyEvaluationError(f"embedded engine: {_clean(str(output))}")
            doc = json.loads(str(output))
        except PolicyEvaluationError:
            raise
        except Exception as exc:  # RegoError, or output regopy could not encode as JSON
            detail = _clean(str(exc)) or type(exc).__name__
            raise PolicyEvaluationError(f"embedded engine: {detail}") from None
        expressions = doc.get("expressions") if isinstance(doc, dict) else None
        return expressions[0] if expressions else None

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


class EmbeddedEngine:
    name = "embedded"

    def __init__(self, threads: int = 2) -> None:
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rego")
        self._local = threading.local()

    def interpreter(self) -> regopy.Interpreter:
        interp = getattr(self._local, "interp", None)
        if interp is None:
            interp = regopy.Interpreter()
            interp.strict_built_in_errors = True
            self._local.interp = interp
        return interp

    def compile_sync(self, policy_set: PolicySet) -> EmbeddedPolicy:
        return EmbeddedPolicy(self, policy_set.revision, _build(policy_set))

    async def compile(self, policy_set: PolicySet) -> EmbeddedPolicy:
        return await asyncio.to_thread(self.compile_sync, policy_set)

    async def available(self) -> bool:
        return True

    async def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


__all__ = ["ENTRYPOINT", "EmbeddedEngine", "EmbeddedPolicy"]
