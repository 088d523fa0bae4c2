"""The events page follows a real server process through a SIGKILL and a restart:
it says the connection is lost, reconnects by itself, and resumes from the last
event it showed (Last-Event-ID = the event seq), without a gap or a duplicate."""

from __future__ import annotations

import re
from pathlib import Path

import grpc
from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import control_plane_pb2_grpc
from playwright.async_api import BrowserContext, Page, expect

from tests.console.conftest import screenshots
from tests.helpers.process import ServerProcess, free_port

FORM = {"form_id": "signup", "fields": {"email": "a@example.com"}}


async def decide(channel: grpc.aio.Channel, n: int) -> None:
    stub = control_plane_pb2_grpc.ControlPlaneStub(channel)
    for _ in range(n):
        call = pb.RequestToolCallRequest(agent_id="agent1", tool="form_fill", confidence=0.75)
        call.arguments.update(FORM)
        await stub.RequestToolCall(call)


async def seqs(page: Page) -> list[int]:
    rows = page.locator("#event-rows tr")
    return sorted(int(s) for s in await rows.evaluate_all("rs => rs.map(r => r.dataset.seq)"))


async def test_the_events_page_resumes_after_the_server_restarts(
    tmp_path: Path, policy_dir: Path, context: BrowserContext
) -> None:
    console_port = free_port()
    flags = ("--console-listen", f"127.0.0.1:{console_port}")
    server = ServerProcess(tmp_path / "data", policy_dir, tmp_path / "logs")
    base = f"http://127.0.0.1:{console_port}"
    try:
        channel = await server.start(*flags)
        await decide(channel, 3)  # 3 decisions: 3 DECISION events
        page = await context.new_page()
        await page.goto(base + "/signin")
        await expect(page.locator(".insecure")).to_contain_text("Insecure development mode")
        await page.get_by_role("button", name="Sign in").click()  # as "dev"
        await page.goto(base + "/events")
        await expect(page.locator("body")).to_have_attribute("data-live", "on")
        await expect(page.locator("#event-rows tr")).to_have_count(3)
        await decide(channel, 2)  # live
        await expect(page.locator("#event-rows tr")).to_have_count(5)

        await server.kill()
        banner = page.locator("#connection")
        await expect(banner).to_contain_text("Lost the connection to Interlock; reconnecting")
        await screenshots(page, "events-reconnecting")

        channel = await server.start(*flags)
        await decide(channel, 4)
        await expect(banner).to_contain_text(re.compile(r"Reconnected to Interlock"))
        await expect(page.locator("#event-rows tr")).to_have_count(9)
        shown = await seqs(page)
        assert shown == list(range(shown[0], shown[0] + 9)), shown  # no gap, no duplicate
    finally:
        await server.close()
