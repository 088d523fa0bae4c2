"""The ``interlock`` command, run as a user runs it: a subprocess of the console script.

The client commands talk to a real server (conftest's `target`) started in-process on
a loopback port (port 0); the CLI runs with asyncio.create_subprocess_exec so
this event loop keeps serving while it waits. ``interlock serve`` itself is
started as a subprocess too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import CATALOG

REPO = Path(__file__).resolve().parents[1]
POLICY_DIR = REPO / "policies"
INTERLOCK = Path(sys.executable).parent / "interlock"


@dataclass
class Run:
    code: int
    out: str
    err: str


def clean_env() -> dict[str, str]:
    """The environment without the developer's INTERLOCK_* settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}


async def run(*args: str, program: tuple[str, ...] = (str(INTERLOCK),)) -> Run:
    proc = await asyncio.create_subprocess_exec(
        *program,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env=clean_env(),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return Run(await proc.wait(), out.decode(), err.decode())


def field(text: str, name: str) -> str:
    """The value on the ``name   value`` line of the human output."""
    match = re.search(rf"^{re.escape(name)}\s+(.*)$", text, re.MULTILINE)
    assert match, f"no {name!r} line in:\n{text}"
    return match.group(1).strip()


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(target: str) -> str:
    """The CLI tests need only the live server's address."""
    return target


async def cli(server: str, *args: str) -> Run:
    return await run("--server", server, *args)


async def active_revision(server: str) -> str:
    result = await cli(server, "policy", "status", "--json")
    assert result.code == 0, result.err
    return str(json.loads(result.out)["revision"])


# tools, decide, report ---------------------------------------------------------------


async def test_tools_list_shows_the_catalog(server: str) -> None:
    result = await cli(server, "tools", "list")

    assert result.code == 0, result.err
    assert "send_email" in result.out
    names = {line.split()[0] for line in result.out.splitlines()[1:] if line.strip()}
    assert CATALOG <= names
    assert "9 tools" in result.out
    assert await active_revision(server) in result.out


async def test_tools_list_json(server: str) -> None:
    result = await cli(server, "tools", "list", "--json")

    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert {t["name"] for t in data["tools"]} == CATALOG
    assert data["policy_revision"] == await active_revision(server)


async def test_decide_prints_verdict_mode_and_reasons(server: str) -> None:
    result = await cli(
        server,
        "decide",
        "--agent",
        "agent1",
        "--tool",
        "vision_inspect",
        "--confidence",
        "0.9",
        "--args",
        '{"target": "x"}',
    )

    assert result.code == 0, result.err
    assert field(result.out, "verdict") == "ALLOW"
    assert field(result.out, "mode") == "LIVE"
    assert field(result.out, "decision").startswith("dec_")
    assert field(result.out, "revision") == await active_revision(server)
    assert re.search(r"^reasons\n  - ", result.out, re.MULTILINE)
    assert result.err == ""


async def test_decide_json_then_report_twice(server: str, tmp_path: Path) -> None:
    args_file = tmp_path / "args.json"
    args_file.write_text('{"target": "the OK button"}')
    decided = await cli(
        server,
        "decide",
        "--json",
        "--agent",
        "agent1",
        "--tool",
        "vision_inspect",
        "--confidence",
        "0.9",
        "--args-file",
        str(args_file),
    )
    assert decided.code == 0, decided.err
    decision = json.loads(decided.out)
    assert decision["verdict"] == "VERDICT_ALLOW"
    assert decision["mode"] == "EXECUTION_MODE_LIVE"
    assert decision["needs_approval"] is False

    report = (
        "report",
        "--decision",
        decision["decision_id"],
        "--agent",
        "agent1",
        "--outcome",
        "succeeded",
        "--output",
        '{"seen": "a green button"}',
        "--duration",
        "0.25",
    )
    first = await cli(server, *report)
    assert first.code == 0, first.err
    assert field(first.out, "recorded") == "SUCCEEDED"
    assert field(first.out, "duration") == "0.25s"

    second = await cli(server, *report)
    assert second.code == 1
    assert second.err.startswith("error: ALREADY_EXISTS: ")
    assert second.out == ""


async def test_bad_confidence_exits_1_with_the_field(server: str) -> None:
    result = await cli(
        server,
        "decide",
        "--agent",
        "agent1",
        "--tool",
        "vision_inspect",
        "--confidence",
        "1.5",
        "--args",
        '{"target": "x"}',
    )

    assert result.code == 1
    assert result.out == ""
    first, *rest = result.err.splitlines()
    assert first.startswith("error: INVALID_ARGUMENT: ")
    assert any(line.strip().startswith("confidence: ") for line in rest)


async def test_unknown_tool_exits_1_not_found(server: str) -> None:
    result = await cli(
        server, "decide", "--agent", "agent1", "--tool", "launch_rockets", "--confidence", "0.9"
    )

    assert result.code == 1
    assert result.err.startswith("error: NOT_FOUND: ")
    assert "launch_rockets" in result.err


async def test_usage_errors_exit_2(server: str) -> None:
    not_an_object = await cli(
        server, "decide", "--agent", "a", "--tool", "t", "--confidence", "0.5", "--args", "[1]"
    )
    not_json = await cli(server, "policy", "eval", "--input", "{nope")
    missing_tool = await cli(server, "decide", "--agent", "a", "--confidence", "0.5")
    bad_outcome = await cli(
        server, "report", "--decision", "d", "--agent", "a", "--outcome", "exploded"
    )

    assert not_an_object.code == 2
    assert "--args: must be a JSON object" in not_an_object.err
    assert not_json.code == 2
    assert "--input: not valid JSON" in not_json.err
    assert missing_tool.code == 2
    assert "--tool" in missing_tool.err
    assert bad_outcome.code == 2
    assert "succeeded" in bad_outcome.err


async def test_unreachable_server_exits_1_unavailable() -> None:
    result = await run("--server", f"127.0.0.1:{free_port()}", "--timeout", "2", "tools", "list")

    assert result.code == 1
    assert result.err.startswith("error: UNAVAILABLE: ")


# policy ---------------------------------------------------------------------------------


async def test_policy_status_shows_the_revision(server: str) -> None:
    revision = await active_revision(server)
    result = await cli(server, "policy", "status")

    assert result.code == 0, result.err
    assert field(result.out, "revision") == revision
    assert len(revision) == 64
    assert field(result.out, "tools") == "9"
    assert field(result.out, "engine") == "regorus (available)"


async def test_policy_reload_of_an_unchanged_folder(server: str) -> None:
    result = await cli(server, "policy", "reload")

    assert result.code == 0, result.err
    assert result.out.startswith("unchanged: ")
    assert await active_revision(server) in result.out


async def test_policy_eval_raw_input(server: str) -> None:
    raw = {"tool": "vision_inspect", "confidence": 7}
    result = await cli(server, "policy", "eval", "--input", json.dumps(raw))
    as_json = await cli(server, "policy", "eval", "--json", "--input", json.dumps(raw))

    assert result.code == 0, result.err
    assert field(result.out, "verdict") == "DENY"
    assert field(result.out, "mode") == "MOCK"
    assert "confidence" in result.out  # a reason names the bad confidence
    assert as_json.code == 0, as_json.err
    data = json.loads(as_json.out)
    assert data["verdict"] == "VERDICT_DENY"
    assert data["input"] == raw


async def test_policy_eval_tool_call(server: str) -> None:
    result = await cli(
        server,
        "policy",
        "eval",
        "--agent",
        "agent1",
        "--tool",
        "vision_inspect",
        "--confidence",
        "0.9",
        "--args",
        '{"target": "x"}',
    )

    assert result.code == 0, result.err
    assert field(result.out, "verdict") == "ALLOW"
    assert field(result.out, "mode") == "LIVE"
    health = await cli(server, "health", "--json")
    assert health.code == 0, health.err
    assert json.loads(health.out)["decisions"] == {}  # evaluating records nothing


async def test_policy_eval_against_a_folder(server: str, tmp_path: Path) -> None:
    same = tmp_path / "same"
    shutil.copytree(POLICY_DIR, same)
    capped = tmp_path / "capped"
    shutil.copytree(POLICY_DIR, capped)
    config = capped / "interlock" / "config" / "data.yaml"
    text = config.read_text()
    assert "dry_run_only: false" in text
    config.write_text(text.replace("dry_run_only: false", "dry_run_only: true"))
    call = ("--agent", "agent1", "--tool", "vision_inspect", "--confidence", "0.9")
    call += ("--args", '{"target": "x"}', "--json")

    same_run = await cli(server, "policy", "eval", *call, "--policy-dir", str(same))
    result = await cli(server, "policy", "eval", *call, "--policy-dir", str(capped))

    assert same_run.code == 0, same_run.err
    as_active = json.loads(same_run.out)
    assert as_active["revision"] == await active_revision(server)
    assert as_active["mode"] == "EXECUTION_MODE_LIVE"
    assert result.code == 0, result.err
    dry = json.loads(result.out)
    assert dry["mode"] == "EXECUTION_MODE_DRY_RUN"
    assert dry["revision"] != as_active["revision"]
    # The folder was only tried: the server still decides LIVE.
    live = await cli(server, "policy", "eval", *call)
    assert live.code == 0, live.err
    assert json.loads(live.out)["mode"] == "EXECUTION_MODE_LIVE"


async def test_python_dash_m_runs_the_same_cli(server: str) -> None:
    result = await run("--server", server, "health", program=(sys.executable, "-m", "interlock"))

    assert result.code == 0, result.err
    assert field(result.out, "status") == "HEALTHY"


# serve ----------------------------------------------------------------------------------


async def test_serve_answers_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    target = f"127.0.0.1:{free_port()}"
    proc = await asyncio.create_subprocess_exec(
        str(INTERLOCK),
        "serve",
        "--listen",
        target,
        "--metrics-listen",
        "",
        "--policy-dir",
        str(POLICY_DIR),
        "--data-dir",
        str(tmp_path / "data"),
        "--policy-watch-interval-seconds",
        "0",
        "--log-json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env=clean_env(),
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            listed = await run("tools", "list", "--server", target, "--timeout", "2")
            if listed.code == 0 or time.monotonic() > deadline or proc.returncode is not None:
                break
            await asyncio.sleep(0.2)
        assert listed.code == 0, listed.err
        assert "send_email" in listed.out

        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    assert proc.returncode == 0, err.decode()
    records = [json.loads(line) for line in err.decode().splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    messages = " | ".join(r["message"] for r in records)
    assert "serving gRPC" in messages
    assert "SIGTERM" in messages
    assert (tmp_path / "data" / "interlock.db").exists()
    gone = await run("tools", "list", "--server", target, "--timeout", "2")
    assert gone.code == 1


async def test_serve_refuses_a_broken_policy_set(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(POLICY_DIR, broken)
    rego = broken / "interlock" / "decision" / "decision.rego"
    rego.write_text(rego.read_text() + "\nthis is not rego {\n")

    result = await run(
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "",
        "--policy-dir",
        str(broken),
        "--data-dir",
        str(tmp_path / "data"),
    )

    assert result.code == 1
    errors = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    assert errors[0].startswith("error: interlock cannot start: ")
    assert "Traceback" not in result.err


async def test_serve_refuses_a_bad_configuration(tmp_path: Path) -> None:
    public = await run("serve", "--listen", "0.0.0.0:50051", "--data-dir", str(tmp_path))
    bad_number = await run("serve", "--eval-threads", "many", "--data-dir", str(tmp_path))

    assert public.code != 0
    assert public.err.startswith("error: configuration: insecure: ")
    assert bad_number.code != 0
    assert bad_number.err.startswith("error: configuration: eval_threads: ")
    assert len(bad_number.err.strip().splitlines()) == 1
