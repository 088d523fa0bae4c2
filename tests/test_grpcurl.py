"""grpcurl, driven only by server reflection, against a live server."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

from tests.conftest import ROOT, Running


def grpcurl_binary() -> str:
    for candidate in (
        os.environ.get("INTERLOCK_GRPCURL_BIN", ""),
        str(ROOT / ".tools/bin/grpcurl"),
        shutil.which("grpcurl") or "",
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    raise RuntimeError("no grpcurl binary: run `make grpcurl` or set INTERLOCK_GRPCURL_BIN")


async def grpcurl(server: Running, *args: str, data: str | None = None) -> str:
    """``grpcurl -plaintext [-d DATA] ADDRESS ARGS...``"""
    flags = ["-d", data] if data is not None else []
    proc = await asyncio.create_subprocess_exec(
        grpcurl_binary(),
        "-plaintext",
        *flags,
        f"127.0.0.1:{server.server.port}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_grpcurl_lists_and_describes_through_reflection(server: Running) -> None:
    services = (await grpcurl(server, "list")).split()
    assert {
        "interlock.v1.ControlPlane",
        "interlock.v1.PolicyService",
        "grpc.health.v1.Health",
    } <= set(services)
    described = await grpcurl(server, "describe", "interlock.v1.ControlPlane")
    assert "rpc RequestToolCall" in described and "rpc WatchEvents" in described


async def test_grpcurl_asks_for_a_decision(server: Running) -> None:
    body = {
        "agent_id": "agent1",
        "tool": "form_fill",
        "confidence": 0.75,
        "arguments": {"form_id": "signup", "fields": {"email": "a@example.com"}},
    }
    out = await grpcurl(server, "interlock.v1.ControlPlane/RequestToolCall", data=json.dumps(body))
    decision = json.loads(out)["decision"]
    assert decision["verdict"] == "VERDICT_ALLOW"
    assert decision["mode"] == "EXECUTION_MODE_DRY_RUN"
    health = json.loads(
        await grpcurl(server, "grpc.health.v1.Health/Check", data='{"service": ""}')
    )
    assert health["status"] == "SERVING"
