"""The regorus engine (engine: regorus): the server decides with it, its errors
fail closed, its threads agree, and without the binding the server falls
back to the embedded engine and says so.

Its answers against real OPA are in tests/test_differential.py.
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from interlock.errors import PolicyEvaluationError, PolicyLoadError
from interlock.policy.bundle import PolicySet
from interlock.policy.engine import AUTHZ_ENTRYPOINT
from interlock.policy.regorus_engine import RegorusEngine
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import control_plane_pb2_grpc, types_pb2

from tests.conftest import POLICIES, StartServer
from tests.helpers.calls import tool_call
from tests.helpers.opa import opa_binary
from tests.helpers.process import ServerProcess
from tests.test_embedded_native import VALID


async def test_the_server_decides_with_regorus(start_server: StartServer) -> None:
    s = await start_server(engine="regorus")
    health = await s.cp.GetHealth(pb.GetHealthRequest())
    assert health.engine == "regorus"
    live = (await s.cp.RequestToolCall(tool_call(confidence=0.9))).decision
    assert live.mode == types_pb2.EXECUTION_MODE_LIVE
    low = (await s.cp.RequestToolCall(tool_call(confidence=0.6))).decision
    assert low.mode == types_pb2.EXECUTION_MODE_DRY_RUN
    # Numbers in reasons print as OPA prints them (regorus's own sprintf: 6e-1).
    assert any("confidence 0.6 meets the DRY_RUN threshold 0.5" in r for r in low.reasons)


@pytest.fixture(scope="module")
def policy() -> Any:
    return RegorusEngine(threads=1).compile_sync(PolicySet.from_dir(POLICIES))


def test_an_unknown_rule_or_an_input_that_is_not_json_is_an_evaluation_error(
    policy: Any,
) -> None:
    with pytest.raises(PolicyEvaluationError, match="regorus engine"):
        policy.query_sync("interlock/not/an/entrypoint", VALID)
    with pytest.raises(PolicyEvaluationError, match="regorus engine"):
        policy.query_sync("interlock/decision/main", {**VALID, "arguments": {"object": object()}})
    # Still usable after an error.
    assert policy.evaluate_sync(VALID).verdict == "ALLOW"


def test_a_set_that_does_not_compile_is_refused() -> None:
    good = PolicySet.from_dir(POLICIES)
    files = dict(good.files)
    files["interlock/broken.rego"] = "package interlock.broken\n\nx := \n"
    with pytest.raises(PolicyLoadError, match="does not compile"):
        RegorusEngine(threads=1).compile_sync(PolicySet.from_files(files))
    files = dict(good.files)
    decision = "interlock/decision/decision.rego"
    files[decision] = files[decision].replace("main := {", "unused := {", 1)
    with pytest.raises(PolicyLoadError, match="does not define the decision rule"):
        RegorusEngine(threads=1).compile_sync(PolicySet.from_files(files))


def test_threads_evaluating_at_once_get_the_answers_one_thread_gets(policy: Any) -> None:
    inputs = [{**VALID, "confidence": c / 20, "arguments": {"n": c}} for c in range(21)]
    expected = [policy.evaluate_sync(i) for i in inputs]
    authz = {
        "method": "RequestToolCall",
        "principal": {"id": "agent1", "kind": "agent", "roles": [], "agents": ["agent1"]},
        "request": {"agent_id": "agent1"},
    }
    expected_authz = policy.query_sync(AUTHZ_ENTRYPOINT, authz)
    wrong: list[Any] = []

    def work() -> None:
        for _ in range(20):
            got = [policy.evaluate_sync(i) for i in inputs]
            if got != expected:
                wrong.append(got)
            if policy.query_sync(AUTHZ_ENTRYPOINT, authz) != expected_authz:
                wrong.append("authz")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not wrong
    assert len({d.mode for d in expected}) == 3  # MOCK, DRY_RUN and LIVE all reached


@pytest.mark.integration  # an `interlock serve` process
async def test_without_the_binding_the_server_uses_embedded_and_says_so(
    policy_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A module of that name that fails to import, first on the path: as on a
    # machine where `make install` had no cargo to build the binding.
    shadow = tmp_path / "shadow" / "interlock_regorus"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("not built here")\n')
    monkeypatch.setenv("PYTHONPATH", str(shadow.parent))
    proc = ServerProcess(tmp_path / "data", policy_dir, tmp_path / "logs")
    try:
        channel = await proc.start("--engine", "regorus")
        cp = control_plane_pb2_grpc.ControlPlaneStub(channel)
        health = await cp.GetHealth(pb.GetHealthRequest())
        assert health.engine == "embedded"
        decision = (await cp.RequestToolCall(tool_call(confidence=0.9))).decision
        assert decision.mode == types_pb2.EXECUTION_MODE_LIVE
        warnings = [line for line in proc.log().splitlines() if "WARNING" in line]
        assert any(
            "regorus binding (interlock_regorus) is not installed (not built here)" in line
            and "using the embedded regopy engine instead" in line
            for line in warnings
        ), proc.log()[-3000:]
    finally:
        await proc.close()


# sprintf(format, args) cases: the binding's sprintf must print what OPA prints.
# Left out: integral floats written as floats (100000.0 with %g, 1234567.0 or
# 1e21 with %v), which regorus cannot tell from integers.
SPRINTF = [
    ("%v", [0.6]),
    ("%v", [1]),
    ("%v", [1.5e-7]),
    ("%v", [-0.25]),
    ("%.6g", [0.6]),
    ("%.6g", [0.69]),
    ("%.6g", [1234567.5]),
    ("%.6g", [100]),
    ("%.3g", [0.0001234]),
    ("%g", [0.00001]),
    ("%d", [42]),
    ("%05d", [-42]),
    ("%x %X %o %b %+d % d %#x", [255, 255, 8, 5, 3, 5, 255]),
    ("%d", [1.5]),
    ("%s", [5]),
    ("%q", ['a"b\n']),
    ("%5s|%-5s|%.2s", ["ab", "cd", "hello"]),
    ("%f %.2f %.0f %8.3f", [3.14159, 3.14159, 2.5, 3.14159]),
    ("%e %E", [1234.5678, 0.000123]),
    ("%.1f %.1f", [0.05, 0.15]),
    ("%v", [[1, "a", None, True]]),
    ("%v", [{"b": 1, "a": [2]}]),
    ("%v %v %t", [True, None, True]),
    ("%v %v", [1]),
    ("%v", [1, 2]),
    ("100%%", []),
    ("%x", ["hi"]),
    ("%v %d", [12345678901234567890, 12345678901234567890]),
    ("%v", ["é☃"]),
    ("%c %U", [65, 128512]),
    ("%6.2f%%", [99.5]),
    ("%z", [1]),
    ("%", [1]),
]


@pytest.mark.opa
@pytest.mark.integration  # runs `opa eval`
def test_sprintf_prints_what_opa_prints(tmp_path: Path) -> None:
    import interlock_regorus

    module = "package t\n\n" + "\n".join(
        f"r{i} := sprintf({json.dumps(f)}, {json.dumps(a)})" for i, (f, a) in enumerate(SPRINTF)
    )
    (tmp_path / "t.rego").write_text(module)
    out = subprocess.run(
        [opa_binary(), "eval", "-d", str(tmp_path / "t.rego"), "--format", "json", "data.t"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    expected = json.loads(out)["result"][0]["expressions"][0]["value"]
    engine = interlock_regorus.Engine(strict_builtin_errors=False)
    engine.add_policy("t.rego", module)
    got = {f"r{i}": json.loads(engine.eval_rule(f"data.t.r{i}", "{}")) for i in range(len(SPRINTF))}
    assert got == expected
    assert got[f"r{SPRINTF.index(('%.6g', [0.6]))}"] == "0.6"  # regorus's own sprintf: 6e-1
