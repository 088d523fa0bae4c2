"""A policy set's own Rego tests (``*_test.rego``), run on the engine in use.

The reload gate (:mod:`interlock.policy.gate`) runs them before a set goes
live. A test is a rule ``test_<name>`` at the top of a test module; it passes
when it is true, as with ``opa test``. Tests are found by their text (a line
starting ``test_``), so a test the engine cannot even see still counts: a
test whose rule is undefined fails.

- **OPA**: ``opa test`` on the set's modules, tests and data (written to a
  temporary folder), with the OPA binary the server checks candidates on
  (``opa_bin``); the serving OPA, which holds only the active bundle, is not
  touched.
- **regorus**: in this process, on a thread, on a regorus engine of its own
  holding the set's modules, tests and data (regorus returns errors; it does
  not abort). regorus 0.14.1 leaves ``x == r with data.p as r`` undefined
  when ``r`` is a rule named on both sides (OPA: true); bind first
  (``v := x with data.p as r; v == r``), as the shipped tests do.
- **embedded**: regopy in a child process (:func:`_child`), so an engine that aborts takes only the
  child with it. regopy 1.5.2 aborts the process on ``with input as``
  (rego-cpp: "shape `rego-localref` has no field `rego-refhead`"), so a test
  module using it is not given to regopy: its tests are reported as
  *skipped*, naming why; every other test module runs. A child that dies
  anyway fails the run (fail closed) and says so.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interlock.errors import InterlockError
from interlock.policy.bundle import PolicySet

_PACKAGE = re.compile(r"^\s*package\s+([\w.]+)", re.MULTILINE)
_TEST_RULE = re.compile(r"^(test_\w+)\b", re.MULTILINE)
_WITH_INPUT = re.compile(r"\bwith\s+input\s+as\b")
CHILD_TIMEOUT_SECONDS = 60.0
_MARK = "\n@@interlock-test-results@@\n"
"""Precedes the child's JSON answer (regopy prints its parse errors on stdout)."""
EMBEDDED_SKIP = (
    "regopy 1.5.2 aborts on `with input as`; run them with `make policy-test` or engine: opa"
)


@dataclass
class TestRun:
    """What a set's tests gave: by full name (``package.test_name``)."""

    engine: str
    passed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    """Name -> why ("false or undefined", or the engine's error)."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Name -> why the engine did not run it."""

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "passed": len(self.passed),
            "failed": sorted(self.failed),
            "skipped": len(self.skipped),
        }

    def record(self, results: Mapping[str, str]) -> TestRun:
        """Add results by name ("" passed, else why it failed); returns self."""
        for name, why in results.items():
            if why:
                self.failed[name] = why
            else:
                self.passed.append(name)
        return self

    def describe(self) -> str:
        return "; ".join(f"{name}: {why}" for name, why in sorted(self.failed.items()))


def discover(tests: Mapping[str, str]) -> dict[str, list[str]]:
    """Test module path -> the full names of its tests (``pkg.test_x``), in order."""
    out: dict[str, list[str]] = {}
    for path, source in sorted(tests.items()):
        package = _PACKAGE.search(source)
        if package is None:
            continue
        names = list(dict.fromkeys(_TEST_RULE.findall(source)))
        out[path] = [f"{package.group(1)}.{n}" for n in names]
    return out


def _verdict(value: Any) -> str:
    return "" if value is True else "false or undefined"


# --- OPA ---------------------------------------------------------------------


async def run_opa(engine: Any, policy_set: PolicySet) -> TestRun:
    """Run the set's tests with ``opa test`` on the OPA binary the server
    runs candidates on (``engine`` is an :class:`OpaEngine`)."""
    run = TestRun("opa")
    found = discover(policy_set.tests)
    if not any(found.values()):
        return run
    try:
        binary = engine.opa_binary()
    except InterlockError as exc:
        run.failed["(engine)"] = exc.message
        return run
    with tempfile.TemporaryDirectory(prefix="interlock-opa-test-") as tmp:
        root = Path(tmp)

        def write() -> None:
            for path, source in {**policy_set.modules, **policy_set.tests}.items():
                target = root / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(source, encoding="utf-8")
            (root / "data.json").write_text(json.dumps(dict(policy_set.data)), encoding="utf-8")

        await asyncio.to_thread(write)
        proc = await asyncio.create_subprocess_exec(
            binary,
            "test",
            "--format",
            "json",
            str(root),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), CHILD_TIMEOUT_SECONDS)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            run.failed["(engine)"] = f"opa test did not finish within {CHILD_TIMEOUT_SECONDS:g}s"
            return run
    try:
        results = json.loads(out) if out.strip() else None
    except ValueError:
        results = None
    if not isinstance(results, list):
        detail = " ".join((err or out).decode(errors="replace").split())[:300]
        run.failed["(compile)"] = detail or f"opa test exited with {proc.returncode}"
        return run
    seen: dict[str, str] = {}
    for result in results:
        if not isinstance(result, dict):
            continue
        name = f"{str(result.get('package', '')).removeprefix('data.')}.{result.get('name', '')}"
        if result.get("error"):
            seen[name] = " ".join(str(result["error"]).split())[:300]
        else:
            seen[name] = "false or undefined" if result.get("fail") else ""
    for names in found.values():
        for name in names:
            why = seen.get(name, "false or undefined")
            if why:
                run.failed[name] = why
            else:
                run.passed.append(name)
    return run


# --- regorus -------------------------------------------------------------------


async def run_regorus(policy_set: PolicySet) -> TestRun:
    """Run the set's tests on regorus (the binding engines/regorus-py)."""
    run = TestRun("regorus")
    found = discover(policy_set.tests)
    if not any(found.values()):
        return run
    try:
        results = await asyncio.wait_for(
            asyncio.to_thread(_regorus_results, policy_set, found), CHILD_TIMEOUT_SECONDS
        )
    except TimeoutError:
        run.failed["(engine)"] = f"the tests did not finish within {CHILD_TIMEOUT_SECONDS:g}s"
        return run
    return run.record(results)


def _regorus_results(policy_set: PolicySet, found: Mapping[str, list[str]]) -> dict[str, str]:
    from interlock.policy.regorus_engine import holding, module

    rg = module()
    try:
        engine = holding({**policy_set.modules, **policy_set.tests}, policy_set.data)
        engine.set_input_json("{}")
    except rg.RegoError as exc:  # a test module that does not parse
        return {"(compile)": " ".join(str(exc).split())[:300]}
    results: dict[str, str] = {}
    for names in found.values():
        for name in names:
            try:
                text = engine.eval_rule(f"data.{name}")
                results[name] = _verdict(None if text is None else json.loads(text))
            except rg.RegoError as exc:
                results[name] = " ".join(str(exc).split())[:300] or "error"
    return results


async def run_tests(engine: Any, policy_set: PolicySet) -> TestRun:
    """The set's tests on ``engine``, the engine in use: OPA, regorus or regopy."""
    if engine.name == "opa":
        return await run_opa(engine, policy_set)
    if engine.name == "regorus":
        return await run_regorus(policy_set)
    return await run_embedded(policy_set)


# --- embedded ------------------------------------------------------------------


async def run_embedded(policy_set: PolicySet) -> TestRun:
    """Run the set's tests on regopy, in a child process."""
    run = TestRun("embedded")
    found = discover(policy_set.tests)
    runnable: dict[str, str] = {}
    for path, names in found.items():
        if _WITH_INPUT.search(policy_set.tests[path]):
            for name in names:
                run.skipped[name] = EMBEDDED_SKIP
        elif names:
            runnable[path] = policy_set.tests[path]
    if not runnable:
        return run
    request = json.dumps(
        {
            "modules": dict(policy_set.modules),
            "tests": runnable,
            "data": dict(policy_set.data),
            "names": [n for p in runnable for n in found[p]],
        }
    ).encode()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from interlock.policy.regotests import _child; _child()",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(request), CHILD_TIMEOUT_SECONDS)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        run.failed["(engine)"] = f"the tests did not finish within {CHILD_TIMEOUT_SECONDS:g}s"
        return run
    if proc.returncode != 0:
        detail = " ".join(err.decode(errors="replace").split())[-300:]
        run.failed["(engine)"] = (
            f"the embedded engine stopped running the tests (exit {proc.returncode}): {detail}"
        )
        return run
    text = out.decode(errors="replace")
    if _MARK not in text:
        run.failed["(engine)"] = "the embedded engine gave no test results"
        return run
    results: dict[str, str] = json.loads(text.rsplit(_MARK, 1)[1])
    return run.record(results)


def _child() -> None:
    """Evaluate each named test rule; print {name: "" (pass) or why} as JSON."""
    import regopy

    request = json.loads(sys.stdin.buffer.read())
    interp = regopy.Interpreter()
    interp.strict_built_in_errors = True
    results: dict[str, str] = {}
    try:
        for path, source in sorted({**request["modules"], **request["tests"]}.items()):
            interp.add_module(path, source)
        interp.add_data(request["data"])
        interp.set_input(regopy.Input({}))
    except Exception as exc:  # RegoError: a test module that does not parse
        results["(compile)"] = " ".join(str(exc).split())[:300] or type(exc).__name__
        sys.stdout.write(_MARK + json.dumps(results))
        return
    for name in request["names"]:
        try:
            output = interp.query(f"data.{name}")
            if not output.ok():
                results[name] = " ".join(str(output).split())[:300]
                continue
            text = str(output).strip()
            doc = json.loads(text) if text.startswith("{") else None
            value = doc.get("expressions", [None])[0] if isinstance(doc, dict) else None
            results[name] = _verdict(value)
        except Exception as exc:  # RegoError
            results[name] = " ".join(str(exc).split())[:300] or type(exc).__name__
    sys.stdout.write(_MARK + json.dumps(results))


__all__ = ["TestRun", "discover", "run_embedded", "run_opa", "run_regorus", "run_tests"]
