"""The embedded engine: Rego evaluated in-process by regopy (rego-cpp).

Compiling builds a regopy bundle with the decision rule as its entrypoint;
strict builtin errors are on, so a builtin that fails is an error rather than
an undefined value. Evaluation runs on a small thread pool with one
interpreter per thread: regopy releases the GIL while it evaluates, so the
event loop keeps serving.

Per call, the input is handed to rego-cpp and the answer read back through
rego-cpp's C API directly (the functions regopy itself binds with ctypes),
which skips what regopy's Python wrappers add around the same calls: a
buffer copy per string, ``Output`` parsing the answer's JSON once for its
own use before ours, and the GIL released and taken back around each of the
~70 tiny calls that build one input (under load, each time the GIL is given
up the worker may wait up to a switch interval to get it back from the event
loop; bench/README.md measures it). The evaluation itself still releases
the GIL. The values reach the engine through the same C calls in the same
order, so the answers are the same; if a regopy release ever lacks those
functions, the engine falls back to regopy's public API.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import threading
from collections.abc import Mapping, Sequence, Set
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import regopy
import regopy.rego_shared

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


class _Native:
    """rego-cpp's C API for one call: set the input, evaluate, read the answer.

    The short calls (building the input, reading the output) go through a
    ``ctypes.PyDLL`` handle, which keeps the GIL; the evaluation goes through
    regopy's own ``ctypes.CDLL`` handle, which releases it. Both handles open
    the same shared library, so they reach the same functions.
    """

    def __init__(self, shared: Any) -> None:
        pydll = ctypes.PyDLL(shared.path)
        ptr, u32 = ctypes.c_void_p, ctypes.c_uint32

        def bind(name: str, restype: Any, argtypes: list[Any]) -> Any:
            fn = getattr(pydll, name)
            fn.restype, fn.argtypes = restype, argtypes
            return fn

        self.new_input = bind("regoNewInput", ptr, [])
        self.free_input = bind("regoFreeInput", None, [ptr])
        self.input_int = bind("regoInputInt", u32, [ptr, ctypes.c_int64])
        self.input_float = bind("regoInputFloat", u32, [ptr, ctypes.c_double])
        self.input_str = bind("regoInputString", u32, [ptr, ctypes.c_char_p])
        self.input_bool = bind("regoInputBoolean", u32, [ptr, ctypes.c_bool])
        self.input_null = bind("regoInputNull", u32, [ptr])
        self.input_item = bind("regoInputObjectItem", u32, [ptr])
        self.input_object = bind("regoInputObject", u32, [ptr, u32])
        self.input_array = bind("regoInputArray", u32, [ptr, u32])
        self.input_set = bind("regoInputSet", u32, [ptr, u32])
        self.set_input = bind("regoSetInput", u32, [ptr, ptr])
        self.output_ok = bind("regoOutputOk", ctypes.c_bool, [ptr])
        self.output_size = bind("regoOutputJSONSize", u32, [ptr])
        self.output_json = bind("regoOutputJSON", u32, [ptr, ctypes.POINTER(ctypes.c_char), u32])
        self.free_output = bind("regoFreeOutput", None, [ptr])
        self.query = shared.rego.regoBundleQueryEntrypoint  # CDLL: releases the GIL
        self.error = shared.rego_get_error
        self.rego_error = shared.RegoError

    @classmethod
    def load(cls) -> _Native | None:
        try:
            return cls(regopy.rego_shared)
        except (AttributeError, OSError):
            return None

    def build_input(self, value: Any) -> int:
        """A rego-cpp input holding value, as regopy.Input builds it (same calls, same order)."""
        handle = self.new_input()
        add_str, add_bool, add_int, add_float = (
            self.input_str,
            self.input_bool,
            self.input_int,
            self.input_float,
        )
        add_null, add_item, add_object, add_array = (
            self.input_null,
            self.input_item,
            self.input_object,
            self.input_array,
        )

        def add(val: Any) -> None:
            kind = type(val)
            if kind is str:
                res = add_str(handle, val.encode("utf-8"))
            elif kind is dict:
                for k, v in val.items():
                    add(k)
                    add(v)
                    item = add_item(handle)
                    if item:
                        raise self.rego_error("Unable to create input", item)
                res = add_object(handle, len(val))
            elif kind is bool:
                res = add_bool(handle, val)
            elif kind is int:
                res = add_int(handle, val)
            elif kind is float:
                res = add_float(handle, val)
            elif val is None:
                res = add_null(handle)
            elif kind is list:
                for v in val:
                    add(v)
                res = add_array(handle, len(val))
            else:
                res = other(val)
            if res:
                raise self.rego_error("Unable to create input", res)

        def other(val: Any) -> int:
            """Any other type, checked in regopy's order (rego_input_from_value)."""
            if val is True or val is False:
                return int(add_bool(handle, val))
            if isinstance(val, int):
                return int(add_int(handle, val))
            if isinstance(val, float):
                return int(add_float(handle, val))
            if isinstance(val, str):
                return int(add_str(handle, val.encode("utf-8")))
            if isinstance(val, Set):
                for v in val:
                    add(v)
                return int(self.input_set(handle, len(val)))
            if isinstance(val, Mapping):
                for k, v in val.items():
                    add(k)
                    add(v)
                    item = add_item(handle)
                    if item:
                        raise self.rego_error("Unable to create input", item)
                return int(add_object(handle, len(val)))
            if isinstance(val, Sequence):
                for v in val:
                    add(v)
                return int(add_array(handle, len(val)))
            raise ValueError("Cannot convert object of type " + str(type(val)) + " to rego input")

        try:
            add(value)
        except BaseException:
            self.free_input(handle)
            raise
        return int(handle)

    def evaluate(self, interp: int, bundle: int, entrypoint: bytes, value: Any) -> str:
        """Set the input, evaluate the entrypoint: the answer's JSON text.

        Raises PolicyEvaluationError when the engine reports an error, as
        EmbeddedPolicy's regopy path does.
        """
        handle = self.build_input(value)
        try:
            res = self.set_input(interp, handle)
        finally:
            self.free_input(handle)
        if res:
            raise self.rego_error(self.error(interp), res)
        output = self.query(interp, bundle, entrypoint)
        if not output:
            raise self.rego_error(self.error(interp))
        try:
            size = self.output_size(output)
            buf = ctypes.create_string_buffer(size)
            res = self.output_json(output, buf, size)
            if res:
                raise self.rego_error(self.error(output), res)
            text: str = buf.value.decode("utf-8")
            if not self.output_ok(output):
                raise PolicyEvaluationError(f"embedded engine: {_clean(text)}")
            return text
        finally:
            self.free_output(output)


_NATIVE = _Native.load()


class EmbeddedPolicy:
    def __init__(self, engine: EmbeddedEngine, revision: str, bundle: regopy.Bundle) -> None:
        self._engine = engine
        self.revision = revision
        self._bundle = bundle

    def evaluate_sync(self, policy_input: dict[str, Any]) -> PolicyDecision:
        return parse_decision(self.query_sync(ENTRYPOINT, policy_input))

    def query_sync(self, entrypoint: str, policy_input: dict[str, Any]) -> Any:
        interp = self._engine.interpreter()
        native = self._engine.native
        try:
            if native is not None:
                text = native.evaluate(
                    interp._impl, self._bundle._impl, entrypoint.encode("utf-8"), policy_input
                )
            else:
                interp.set_input(regopy.Input(policy_input))
                output = interp.query_bundle_entrypoint(self._bundle, entrypoint)
                if not output.ok():
                    raise PolicyEvaluationError(f"embedded engine: {_clean(str(output))}")
                text = str(output)
            doc = json.loads(text)
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

    def __init__(self, threads: int = 2, *, native: bool = False) -> None:
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rego")
        self._local = threading.local()
        self.native = _NATIVE if native else None
        """rego-cpp's C API directly, or None: regopy's public API (slower, same answers)."""

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
