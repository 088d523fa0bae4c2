"""The operator console in a real browser (Debian's chromium, headless).

Sign in; a plan's HIGH-risk step waits for approval; the inbox shows it with
the count in the header; approving it with a reason lets it go LIVE and finish
on the plan's page without a reload; a denial fails the plan with its reason;
an approval someone else resolved meanwhile gets a clear message; an agent's
token is refused the console; a state change without the session's CSRF token
is refused; an expired session sends the person back to sign in.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from interlock.v1 import control_plane_pb2 as pb
from interlock.v1 import observe_pb2, plans_pb2, types_pb2
from playwright.async_api import BrowserContext, expect

from tests.conftest import MakeTeam
from tests.console.conftest import ConsoleTeam, screenshots, sign_in
from tests.helpers.workers import FINISHED, TRANSFER, Worker, wait_plan, wait_step
from tests.test_approvals import APPROVE, resolve
from tests.test_plans_api import spec, step

PENDING = observe_pb2.APPROVAL_STATE_PENDING


def transfer_plan(plan_id: str) -> pb.SubmitPlanRequest:
    """A LIVE lookup, then a HIGH-risk transfer that needs an approval."""
    return spec(
        plan_id,
        step("look", "crm_lookup", "ops", 0.9, {"record_id": "CU-12345"}),
        step("pay", "transfer_funds", "ops", 0.9, TRANSFER, ("look",)),
    )


def hold_transfers(item: plans_pb2.WorkItem) -> tuple[int, dict[str, Any], str] | None:
    """ops' worker: the lookup succeeds at once; a transfer is held until the test reports."""
    if item.tool == "transfer_funds":
        return None
    return types_pb2.TOOL_OUTCOME_SUCCEEDED, {"ran": item.tool}, ""


async def held(team: ConsoleTeam, plan_id: str) -> observe_pb2.Approval:
    await wait_step(team["alice"].cp, plan_id, "pay", plans_pb2.STEP_STATE_AWAITING_APPROVAL)
    listed = await team["alice"].cp.ListApprovals(pb.ListApprovalsRequest(plan_id=plan_id))
    (approval,) = listed.approvals
    return approval


async def test_approve_in_the_inbox_and_watch_the_step_go_live(
    console_team: ConsoleTeam, context: BrowserContext
) -> None:
    team = console_team
    inbox = await context.new_page()
    await sign_in(inbox, team.base, team.team.tokens["alice"])
    await expect(inbox).to_have_url(re.compile(r"/approvals$"))
    await expect(inbox.locator("#pending-count")).to_have_text("0")
    async with Worker(team["ops"].channel, "ops", hold_transfers) as worker:
        await team["planner"].cp.SubmitPlan(transfer_plan("pay1"))
        approval = await held(team, "pay1")
        # The inbox is live: the request appears, and the header counts it, without a reload.
        card = inbox.locator(f"#approval-{approval.approval_id}")
        await expect(card).to_be_visible()
        await expect(inbox.locator("#pending-count")).to_have_text("1")
        await expect(card).to_contain_text("transfer_funds by ops")
        await expect(card).to_contain_text("HIGH risk")
        await expect(card).to_contain_text("0 of 1 approvals")
        await expect(card).to_contain_text('"amount": 10')
        await expect(card.locator(".waited")).to_have_text(re.compile(r"^\d+s$"))
        await screenshots(inbox, "approvals")

        # The plan's page, open while the step waits; it must follow without a reload.
        plan = await context.new_page()
        await plan.goto(team.url("/plans/pay1"))
        await expect(plan.locator("#step-pay")).to_have_attribute("data-state", "AWAITING_APPROVAL")
        await expect(plan.locator("body")).to_have_attribute("data-live", "on")
        await plan.evaluate("window.__notReloaded = true")

        await card.get_by_label("Reason (required to deny)").fill("checked with finance")
        await card.get_by_role("button", name="Approve").click()
        await expect(inbox.locator("#notice")).to_have_text(f"You approved {approval.approval_id}.")
        await expect(inbox.locator("#pending-count")).to_have_text("0")
        history = inbox.locator(f"#history-{approval.approval_id}")
        await expect(history).to_contain_text(
            re.compile(r"APPROVED|USED")
        )  # USED once the step took it
        await expect(history).to_contain_text("checked with finance")

        # The worker gets the transfer LIVE; the page shows it dispatched LIVE...
        items = await worker.wait_for(2)
        assert items[1].tool == "transfer_funds" and items[1].mode == types_pb2.EXECUTION_MODE_LIVE
        pay = plan.locator("#step-pay")
        await expect(pay).to_have_attribute("data-state", "DISPATCHED")
        await expect(pay).to_have_attribute("data-mode", "LIVE")
        await expect(pay).to_have_class(re.compile(r"\blive\b"))
        await screenshots(plan, "plan-live")
        # ...and finished once the worker reports.
        await worker.report(items[1], types_pb2.TOOL_OUTCOME_SUCCEEDED, {"ran": "transfer_funds"})
        await expect(pay).to_have_attribute("data-state", "SUCCEEDED")
        await expect(plan.locator("#plan-state")).to_have_text("SUCCEEDED")
        assert await plan.evaluate("window.__notReloaded === true")
        await screenshots(plan, "plan")

    # Every other page, at both widths.
    page = inbox
    for path, name in (
        ("/plans", "plans"),
        ("/events", "events"),
        ("/decisions", "decisions"),
        ("/health", "health"),
        ("/policy", "policy"),
    ):
        await page.goto(team.url(path))
        await expect(page.locator("h1")).to_be_visible()
        await screenshots(page, name)
    await page.goto(team.url("/decisions?tool=transfer_funds&verdict=ALLOW"))
    await page.locator("table a[href^='/decisions/']").first.click()
    await expect(page.locator("h1")).to_have_text("ALLOW LIVE for transfer_funds by ops")
    await expect(page.locator(".audit").first).to_contain_text('"kind": "decision"')
    await expect(page.locator("main")).to_contain_text("SUCCEEDED")  # its result
    await screenshots(page, "decision")


async def test_deny_with_a_reason_and_the_plan_fails_with_it(
    console_team: ConsoleTeam, context: BrowserContext
) -> None:
    team = console_team
    page = await context.new_page()
    await sign_in(page, team.base, team.team.tokens["alice"])
    async with Worker(team["ops"].channel, "ops", hold_transfers):
        await team["planner"].cp.SubmitPlan(transfer_plan("pay2"))
        approval = await held(team, "pay2")
        await page.reload()
        card = page.locator(f"#approval-{approval.approval_id}")
        # Denying needs a reason: the browser says so before anything is sent.
        await card.get_by_role("button", name="Deny").click()
        await expect(page.locator("#error-message")).to_contain_text("reason: is required to deny")
        card = page.locator(f"#approval-{approval.approval_id}")
        await card.get_by_label("Reason (required to deny)").fill("not this account")
        await card.get_by_role("button", name="Deny").click()
        await expect(page.locator("#notice")).to_have_text(f"You denied {approval.approval_id}.")
        await wait_plan(team["planner"].cp, "pay2", FINISHED)
    await page.goto(team.url("/plans/pay2"))
    await expect(page.locator("#plan-state")).to_have_text("FAILED")
    await expect(page.locator("#step-pay")).to_have_attribute("data-state", "FAILED")
    await expect(page.locator("#step-pay")).to_contain_text("denied by alice: not this account")


async def test_an_approval_resolved_by_someone_else_says_so(
    console_team: ConsoleTeam, browser: Any
) -> None:
    team = console_team
    # Without the live layer the form stays on screen after bob resolves it.
    ctx = await browser.new_context(java_script_enabled=False)
    try:
        page = await ctx.new_page()
        await sign_in(page, team.base, team.team.tokens["alice"])
        async with Worker(team["ops"].channel, "ops", hold_transfers):
            await team["planner"].cp.SubmitPlan(transfer_plan("pay3"))
            approval = await held(team, "pay3")
            await page.reload()
            await resolve(team["bob"], approval.approval_id, APPROVE, "bob was quicker")
            card = page.locator(f"#approval-{approval.approval_id}")
            await card.get_by_label("Reason (required to deny)").fill("me too")
            await card.get_by_role("button", name="Approve").click()
            await expect(page.locator("#error-message")).to_have_text(
                re.compile(
                    rf"^{approval.approval_id} was already approved by bob \(bob was quicker\)"
                    r"( and used by its call)?; nothing was changed\.$"
                )
            )
    finally:
        await ctx.close()


async def test_an_agent_token_is_refused_the_console(
    console_team: ConsoleTeam, context: BrowserContext
) -> None:
    team = console_team
    page = await context.new_page()
    response = await page.goto(team.url("/approvals"))
    assert response is not None
    await expect(page).to_have_url(re.compile(r"/signin\?"))
    await expect(page.locator("main")).to_contain_text("sign in to use the console")
    await sign_in(page, team.base, team.team.tokens["agent1"])
    await expect(page.locator(".error")).to_have_text(
        "agent1 may not use the console: it is for operators and admins, not agent principals"
    )
    await page.goto(team.url("/approvals"))
    await expect(page).to_have_url(re.compile(r"/signin\?"))
    await sign_in(page, team.base, "ilk_not_a_token")
    await expect(page.locator(".error")).to_have_text("the bearer token is not valid")
    await screenshots(page, "signin")


async def test_a_state_change_without_the_csrf_token_is_refused(
    console_team: ConsoleTeam, browser: Any
) -> None:
    team = console_team
    contexts = [await browser.new_context() for _ in range(2)]
    try:
        alice, bob = [await c.new_page() for c in contexts]
        await sign_in(alice, team.base, team.team.tokens["alice"])
        await sign_in(bob, team.base, team.team.tokens["bob"])
        bobs_token = await bob.locator("input[name=csrf]").first.get_attribute("value")
        async with Worker(team["ops"].channel, "ops", hold_transfers):
            await team["planner"].cp.SubmitPlan(transfer_plan("pay4"))
            approval = await held(team, "pay4")
            url = team.url(f"/approvals/{approval.approval_id}/resolve")
            form = {"decision": "approve", "reason": "forged"}
            # alice's session cookie goes along (same site), but no token / bob's token.
            for extra in ({}, {"csrf": "0" * 64}, {"csrf": bobs_token or ""}):
                answer = await contexts[0].request.post(url, form={**form, **extra})
                assert answer.status == 403, await answer.text()
                assert "CSRF" in await answer.text()
            still = await team["alice"].cp.ListApprovals(pb.ListApprovalsRequest(plan_id="pay4"))
            assert [a.state for a in still.approvals] == [PENDING]
    finally:
        for c in contexts:
            await c.close()


async def test_an_expired_session_signs_in_again(
    make_team: MakeTeam, context: BrowserContext
) -> None:
    team = ConsoleTeam(
        await make_team(console_listen="127.0.0.1:0", console_session_ttl_seconds=1.5)
    )
    page = await context.new_page()
    await sign_in(page, team.base, team.team.tokens["alice"])
    await expect(page.locator("h1")).to_have_text("Approvals")
    await asyncio.sleep(1.6)
    await page.goto(team.url("/plans"))
    await expect(page).to_have_url(re.compile(r"/signin\?"))
    await expect(page.locator(".notice")).to_have_text("your session expired; sign in again")
    # Signing in again goes back where the person was going.
    await page.get_by_label("Your Interlock token").fill(team.team.tokens["alice"])
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(re.compile(r"/plans$"))
