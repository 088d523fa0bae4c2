"""The policy playground's sandbox: EvaluatePolicy runs here, apart from live decisions.

An inline policy set is code from the caller: a decision rule can loop for
minutes, and the embedded engine may hold the GIL while it works, so neither a
thread nor a timeout around one would keep it from delaying live decisions.
The sandbox is a small pool of separate Python processes (``evaluate_workers``,
at a lower CPU priority). (No memory limit: rego-cpp's allocator, snmalloc,
will not start under RLIMIT_AS or RLIMIT_DATA.) Each evaluation gets one process and
``evaluate_timeout_seconds`` of wall time; past it the process is killed, a
fresh one replaces it, and the caller gets DEADLINE_EXCEEDED
(``EVALUATION_TIMEOUT``). When every process is busy for as long as the time
limit, the caller gets RESOURCE_EXHAUSTED (``PLAYGROUND_BUSY``).

A process compiles and checks the set exactly as a reload would
(:func:`~interlock.policy.prepare.prepare_set`: catalog, compile, one
probe per tool) on its engine (regorus where the server decides on regorus,
else the embedded regopy engine: :func:`~interlock.policy.regorus_engine.candidate_engine`),
then evaluates the input. It keeps the
last few compiled sets by revision, so asking about the active set again costs
one evaluation. Requests and answers are length-prefixed JSON on the process's
stdin and stdout; the process runs this module (``python -m
interlock.policy.sandbox``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import sys
from collections import OrderedDict
from typing import Any, BinaryIO

import orjson

from interlock.errors import (
    DeadlineExceeded,
    InterlockError,
    PolicyEvaluationError,
    PolicyLoadError,
    ResourceExhausted,
)
from interlock.policy.bundle import PolicySet
from interlock.policy.engine import CompiledPolicy, PolicyDecision, parse_decision
from interlock.policy.regorus_engine import candidate_engine, local_engine_name

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">I")
_READY = b"ready"
CACHED_SETS = 4
"""Compiled sets a sandbox process keeps, by revision."""
NICENESS = 10
"""How much lower than the server's the sandbox processes' CPU priority is."""
SPAWN_TIMEOUT_SECONDS = 60.0


def timed_out(limit: float) -> DeadlineExceeded:
    """The error of a playground evaluation stopped at its time limit."""
    return DeadlineExceeded(
        f"the policy evaluation did not finish within {limit:g}s "
        "(evaluate_timeout_seconds) and was stopped",
        reason="EVALUATION_TIMEOUT",
        metadata={"limit_seconds": f"{limit:g}"},
    )


class _Worker:
    """One sandbox process."""

    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.proc: asyncio.subprocess.Process | None = None
        self._ready = False

    async def spawn(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "interlock.policy.sandbox",
            self.engine,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )

    async def _frame(self) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        header = await self.proc.stdout.readexactly(_HEADER.size)
        return await self.proc.stdout.readexactly(_HEADER.unpack(header)[0])

    async def ready(self) -> None:
        """Wait until the process has started up (outside the time limit)."""
        if not self._ready:
            try:
                first = await asyncio.wait_for(self._frame(), SPAWN_TIMEOUT_SECONDS)
            except TimeoutError:
                first = b""
            if first != _READY:
                raise RuntimeError("the sandbox process did not start")
            self._ready = True

    async def call(self, request: bytes) -> bytes:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(_HEADER.pack(len(request)) + request)
        await self.proc.stdin.drain()
        return await self._frame()

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


class PolicySandbox:
    """Evaluates EvaluatePolicy requests in a pool of killable processes."""

    def __init__(self, *, workers: int, timeout_seconds: float, serving: str = "embedded") -> None:
        self.engine = local_engine_name(serving)
        """The engine the sandbox evaluates on: "regorus" or "embedded"."""
        self.workers = workers
        self.timeout_seconds = timeout_seconds
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._all: set[_Worker] = set()
        self.timeouts = 0
        """Evaluations stopped at the time limit since start."""

    async def start(self) -> None:
        for _ in range(self.workers):
            await self._add()

    async def _add(self) -> None:
        worker = _Worker(self.engine)
        await worker.spawn()
        self._all.add(worker)
        self._idle.put_nowait(worker)

    async def _replace(self, worker: _Worker) -> None:
        self._all.discard(worker)
        await worker.kill()
        await self._add()

    async def evaluate(self, policy_set: PolicySet, policy_input: dict[str, Any]) -> PolicyDecision:
        """The set's decision for the input; PolicyLoadError for a set a reload
        would refuse, PolicyEvaluationError when the rule cannot be evaluated."""
        limit = self.timeout_seconds
        try:
            worker = await asyncio.wait_for(self._idle.get(), limit)
        except TimeoutError:
            raise ResourceExhausted(
                f"the policy playground is busy: {self.workers} evaluations have been "
                f"running for {limit:g}s or more; retry later",
                reason="PLAYGROUND_BUSY",
            ) from None
        request = orjson.dumps({"files": dict(policy_set.files), "input": policy_input})
        healthy = False
        try:
            await worker.ready()
            async with asyncio.timeout(limit):
                reply = orjson.loads(await worker.call(request))
            healthy = True
        except TimeoutError:
            self.timeouts += 1
            log.warning("a playground evaluation ran past %gs and was stopped", limit)
            raise timed_out(limit) from None
        except (OSError, asyncio.IncompleteReadError, RuntimeError, orjson.JSONDecodeError):
            log.warning("a playground evaluation process failed", exc_info=True)
            raise PolicyEvaluationError(
                "the sandbox process evaluating the policy failed"
            ) from None
        finally:
            if healthy:
                self._idle.put_nowait(worker)
            else:  # timed out, failed or cancelled: its answer can no longer be read
                await asyncio.shield(self._replace(worker))
        if "decision" in reply:
            return parse_decision(reply["decision"])
        if reply.get("error") == "POLICY_INVALID":
            raise PolicyLoadError(str(reply.get("message", "")))
        raise PolicyEvaluationError(str(reply.get("message", "")))

    async def close(self) -> None:
        workers, self._all = self._all, set()
        for worker in workers:
            await worker.kill()


# The sandbox process -------------------------------------------------------------------


def _write(out: BinaryIO, data: bytes) -> None:
    out.write(_HEADER.pack(len(data)) + data)
    out.flush()


def _read(stream: BinaryIO) -> bytes | None:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    return stream.read(_HEADER.unpack(header)[0])


async def _serve(stdin: BinaryIO, stdout: BinaryIO, engine_name: str) -> None:
    from interlock.policy.prepare import prepare_set

    engine = candidate_engine(engine_name, threads=1)
    compiled: OrderedDict[str, CompiledPolicy] = OrderedDict()
    _write(stdout, _READY)
    while (raw := _read(stdin)) is not None:
        try:
            request = orjson.loads(raw)
            policy_set = PolicySet.from_files(request["files"])
            policy = compiled.get(policy_set.revision)
            if policy is None:
                _, policy = await prepare_set(engine, policy_set)
                compiled[policy_set.revision] = policy
                if len(compiled) > CACHED_SETS:
                    compiled.popitem(last=False)
            compiled.move_to_end(policy_set.revision)
            decision = await policy.evaluate(request["input"])
            reply: dict[str, Any] = {"decision": decision.as_dict()}
        except PolicyLoadError as exc:
            reply = {"error": "POLICY_INVALID", "message": exc.message}
        except InterlockError as exc:
            reply = {"error": "EVALUATION", "message": exc.message}
        except MemoryError:
            reply = {"error": "EVALUATION", "message": "the evaluation ran out of memory"}
        except Exception as exc:  # a bug must not end the process with a half answer
            reply = {"error": "EVALUATION", "message": f"{type(exc).__name__}: {exc}"}
        _write(stdout, orjson.dumps(reply))


def _main() -> None:
    # Nothing else may write to the answer channel: Python's and rego-cpp's own
    # output (it prints compile errors to fd 1) go to stderr instead.
    stdin = sys.stdin.buffer
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    asyncio.run(_serve(stdin, stdout, sys.argv[1] if len(sys.argv) > 1 else "embedded"))


if __name__ == "__main__":
    _main()


__all__ = ["PolicySandbox", "timed_out"]
