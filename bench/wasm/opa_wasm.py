"""A small loader for an OPA wasm policy (`opa build -t wasm`) on wasmtime-py.

It speaks OPA's wasm ABI 1.x (docs: openpolicyagent.org/docs/wasm): the
module imports env.memory, env.opa_abort, env.opa_println and
env.opa_builtin0..4; it exports opa_malloc, opa_json_parse, opa_json_dump,
opa_heap_ptr_get/set, the opa_eval_ctx_* calls, eval, builtins, entrypoints
and, from ABI 1.2 on, the one-call `opa_eval`.

Built-in functions the module does not carry are called back on the host
(opa_builtinN with the id from the module's `builtins` map): the arguments
are dumped to JSON, the Python function computes, its result is parsed back
into wasm memory. Only the built-ins given to the loader are available; a
module that needs another one is refused at load time.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import wasmtime

Builtin = Callable[..., Any]


class OpaWasmError(Exception):
    pass


class OpaWasmPolicy:
    """One instance of a policy module, its data set once.

    Not thread-safe: one evaluation at a time (as a wasm instance is).
    """

    def __init__(self, wasm: bytes, data: Any, builtins: Mapping[str, Builtin]) -> None:
        self._engine = wasmtime.Engine()
        self._store = wasmtime.Store(self._engine)
        module = wasmtime.Module(self._engine, wasm)
        self._builtins_by_id: dict[int, tuple[str, Builtin]] = {}
        self._error: BaseException | None = None
        self.evals = 0
        self.host_calls = 0
        self.host_seconds = 0.0
        """Evaluations, host built-in calls and the time spent in them (wall, with
        the wasm calls they make), since the instance was made."""
        imports: list[wasmtime.Func | wasmtime.Memory] = []
        memory: wasmtime.Memory | None = None
        for imp in module.imports:
            if imp.module != "env":
                raise OpaWasmError(f"unexpected import {imp.module}.{imp.name}")
            ty = imp.type
            if isinstance(ty, wasmtime.MemoryType):
                memory = wasmtime.Memory(self._store, ty)
                imports.append(memory)
            elif isinstance(ty, wasmtime.FuncType):
                imports.append(wasmtime.Func(self._store, ty, self._host(str(imp.name)), True))
            else:
                raise OpaWasmError(f"unexpected import {imp.name}: {ty}")
        if memory is None:
            raise OpaWasmError("the module imports no env.memory")
        self._memory = memory
        instance = wasmtime.Instance(self._store, module, imports)
        exports = instance.exports(self._store)

        def fn(name: str) -> wasmtime.Func:
            f = exports.get(name)
            if not isinstance(f, wasmtime.Func):
                raise OpaWasmError(f"the module exports no function {name}")
            return f

        def glob(name: str) -> int:
            g = exports.get(name)
            return int(g.value(self._store)) if isinstance(g, wasmtime.Global) else 0

        self.abi = (glob("opa_wasm_abi_version"), glob("opa_wasm_abi_minor_version"))
        if self.abi[0] != 1:
            raise OpaWasmError(f"ABI {self.abi} is not 1.x")
        self._malloc = fn("opa_malloc")
        self._json_parse = fn("opa_json_parse")
        self._json_dump = fn("opa_json_dump")
        self._heap_get = fn("opa_heap_ptr_get")
        self._heap_set = fn("opa_heap_ptr_set")
        self._ctx_set_input = fn("opa_eval_ctx_set_input")
        self._ctx_set_entrypoint = fn("opa_eval_ctx_set_entrypoint")
        self._ctx_get_result = fn("opa_eval_ctx_get_result")
        self._eval = fn("eval")
        self._opa_eval = fn("opa_eval") if self.abi >= (1, 2) else None

        self.entrypoints: dict[str, int] = self._dump(fn("entrypoints")(self._store))
        needed: dict[str, int] = self._dump(fn("builtins")(self._store))
        missing = sorted(set(needed) - set(builtins))
        if missing:
            raise OpaWasmError(f"the module needs host built-ins that are not given: {missing}")
        self.host_builtins = sorted(needed)
        self._builtins_by_id = {i: (name, builtins[name]) for name, i in needed.items()}

        self._data_addr = self._parse(orjson.dumps(data))
        self._ctx = int(fn("opa_eval_ctx_new")(self._store))
        fn("opa_eval_ctx_set_data")(self._store, self._ctx, self._data_addr)
        self._base_heap = int(self._heap_get(self._store))
        """The heap pointer after data (and the context): each evaluation starts here."""
        self._input_heap = self._base_heap
        self._entrypoint = 0

    # Memory ----------------------------------------------------------------

    def _cstring(self, addr: int) -> bytes:
        base = ctypes.addressof(self._memory.data_ptr(self._store).contents)
        return ctypes.string_at(base + addr)

    def _dump(self, value_addr: int) -> Any:
        return orjson.loads(self._cstring(int(self._json_dump(self._store, value_addr))))

    def _parse(self, text: bytes, store: wasmtime.Store | wasmtime.Caller | None = None) -> int:
        st = self._store if store is None else store
        addr = int(self._malloc(st, len(text)))
        self._memory.write(st, text, addr)
        value = int(self._json_parse(st, addr, len(text)))
        if value == 0:
            raise OpaWasmError("opa_json_parse failed")
        return value

    def _ensure(self, end: int) -> None:
        """Grow the memory so that [0, end) fits (with room for the evaluation)."""
        need = end + (1 << 20)
        have = self._memory.data_len(self._store)
        if need > have:
            self._memory.grow(self._store, (need - have + 65535) // 65536)

    # Host functions ----------------------------------------------------------

    def _host(self, name: str) -> Callable[..., Any]:
        if name == "opa_abort":

            def abort(caller: wasmtime.Caller, addr: int) -> None:
                raise OpaWasmError(f"opa_abort: {self._cstring(addr).decode(errors='replace')}")

            return abort
        if name == "opa_println":

            def println(caller: wasmtime.Caller, addr: int) -> None:
                print(self._cstring(addr).decode(errors="replace"))

            return println
        if name.startswith("opa_builtin"):

            def builtin(caller: wasmtime.Caller, builtin_id: int, _ctx: int, *args: int) -> int:
                start = time.perf_counter()
                self.host_calls += 1
                try:
                    _name, impl = self._builtins_by_id[builtin_id]
                    values = [
                        orjson.loads(self._cstring(int(self._json_dump(caller, a)))) for a in args
                    ]
                    result = impl(*values)
                    return self._parse(orjson.dumps(result), caller)
                except BaseException as exc:  # kept: a trap loses the Python exception
                    self._error = exc
                    raise
                finally:
                    self.host_seconds += time.perf_counter() - start

            return builtin
        raise OpaWasmError(f"unexpected import env.{name}")

    def _check_error(self, exc: Exception) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise OpaWasmError(f"host built-in failed: {error!r}") from error
        raise OpaWasmError(str(exc)) from exc

    # Evaluation ----------------------------------------------------------------

    def bare_call(self) -> int:
        """One wasm call that does nothing (opa_heap_ptr_get): the binding's cost of a call."""
        return int(self._heap_get(self._store))

    def set_entrypoint(self, name: str) -> None:
        self._entrypoint = self.entrypoints[name]

    def evaluate(self, policy_input: Any) -> Any:
        """The server's path: input value in, the entrypoint's value (or None) out.

        One call (opa_eval, ABI >= 1.2): the input's JSON text is written at
        the heap base, the evaluation allocates after it, the result set comes
        back as JSON text.
        """
        if self._opa_eval is None:
            self.set_input(policy_input)
            self.eval_only()
            return self.result()
        self.evals += 1
        text = orjson.dumps(policy_input)
        addr = self._base_heap
        self._ensure(addr + len(text))
        self._memory.write(self._store, text, addr)
        try:
            out = self._opa_eval(
                self._store, 0, self._entrypoint, self._data_addr, addr, len(text),
                addr + len(text), 0,
            )  # fmt: skip
        except wasmtime.WasmtimeError as exc:
            self._check_error(exc)
        results = orjson.loads(self._cstring(int(out)))
        return results[0].get("result") if results else None

    def set_input(self, policy_input: Any) -> None:
        """Parse the input into wasm memory after data; eval_only then reuses it."""
        self._heap_set(self._store, self._base_heap)
        text = orjson.dumps(policy_input)
        self._ensure(self._base_heap + 2 * len(text))
        value = self._parse(text)
        self._ctx_set_input(self._store, self._ctx, value)
        self._ctx_set_entrypoint(self._store, self._ctx, self._entrypoint)
        self._input_heap = int(self._heap_get(self._store))

    def eval_only(self) -> int:
        """Evaluate with the input already set (the evaluation alone); the result's address."""
        self.evals += 1
        self._heap_set(self._store, self._input_heap)
        try:
            self._eval(self._store, self._ctx)
        except wasmtime.WasmtimeError as exc:
            self._check_error(exc)
        return int(self._ctx_get_result(self._store, self._ctx))

    def result(self) -> Any:
        """The last eval_only's value of the entrypoint (None when undefined)."""
        results = self._dump(int(self._ctx_get_result(self._store, self._ctx)))
        return results[0].get("result") if results else None
