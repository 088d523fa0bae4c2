/**
 * The client and the example worker against a REAL Interlock server
 * (`interlock serve` from the repository's .venv, on a free loopback port,
 * with a temporary data dir and the repository's policies/).
 */

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";

import { status } from "@grpc/grpc-js";

import { InterlockClient, planFromJson } from "../client";
import { InterlockError } from "../errors";
import { ApprovalState, EventKind } from "../gen/interlock/v1/observe";
import { type Plan, PlanState, StepState } from "../gen/interlock/v1/plans";
import { ExecutionMode, ToolOutcome, Verdict } from "../gen/interlock/v1/types";
import { RealServer, WorkerProcess } from "./helpers";

const STEP_TIMEOUT_MS = 20_000;

function uniqueId(prefix: string): string {
  return `${prefix}_${randomUUID().slice(0, 8)}`;
}

/** Waits for the plan's PLAN_FINISHED event (watchEvents), then returns the plan. */
async function finished(client: InterlockClient, planId: string): Promise<Plan> {
  for await (const event of client.watchEvents({ planId, kinds: ["PLAN_FINISHED"] }, { timeoutMs: STEP_TIMEOUT_MS })) {
    assert.equal(event.kind, EventKind.EVENT_KIND_PLAN_FINISHED);
    break;
  }
  return client.getPlan(planId);
}

function isError(code: number, reason?: string): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof InterlockError, `an InterlockError, not ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (reason !== undefined) {
      assert.equal(err.reason, reason, err.message);
      assert.equal(err.domain, "interlock.v1");
    }
    return true;
  };
}

describe("against a real server", { timeout: 60_000 }, () => {
  let server: RealServer;
  let client: InterlockClient;

  before(async () => {
    server = await RealServer.start();
    client = new InterlockClient(server.target, { defaultTimeoutMs: 5000 });
  });

  after(async () => {
    client?.close();
    await server?.stop();
  });

  test("health and tools", async () => {
    assert.equal(await client.checkHealth(), "SERVING");
    const { tools, policyRevision } = await client.listTools();
    assert.ok(policyRevision.length > 0);
    const names = tools.map((t) => t.name);
    for (const name of ["vision_inspect", "form_fill", "form_clear", "button_click"])
      assert.ok(names.includes(name), name);
    const formFill = tools.find((t) => t.name === "form_fill");
    assert.equal(formFill?.compensatingTool, "form_clear");
    assert.equal(formFill?.argumentsSchema?.["type"], "object");
    const health = await client.getHealth();
    assert.ok(health.engineAvailable);
    assert.ok(health.startedAt instanceof Date);
    await client.listSignals({ kinds: ["TOOL_RELIABILITY"], limit: 5 });
    const policy = await client.getPolicyStatus();
    assert.match(policy.revision, /^[0-9a-f]{12,}$/);
    assert.ok(policy.toolCount >= 9);
  });

  test("request a tool call and report it", async () => {
    const decision = await client.requestToolCall({
      agentId: "agent1",
      tool: "vision_inspect",
      arguments: { target: "signup button" },
      confidence: 0.9,
    });
    assert.equal(decision.verdict, Verdict.VERDICT_ALLOW);
    assert.equal(decision.mode, ExecutionMode.EXECUTION_MODE_LIVE);
    assert.match(decision.decisionId, /.+/);
    assert.ok(decision.reasons.length > 0);

    const result = await client.reportToolResult({
      decisionId: decision.decisionId,
      agentId: "agent1",
      outcome: "SUCCEEDED",
      output: { seen: "a blue button" },
      durationMs: 42,
    });
    assert.equal(result.outcome, ToolOutcome.TOOL_OUTCOME_SUCCEEDED);
    assert.deepEqual(result.output, { seen: "a blue button" });
    assert.equal(result.duration?.nanos, 42_000_000);

    await assert.rejects(
      client.reportToolResult({ decisionId: decision.decisionId, agentId: "agent1", outcome: "SUCCEEDED" }),
      isError(status.ALREADY_EXISTS, "RESULT_ALREADY_REPORTED"),
    );
  });

  test("errors: unknown agent, bad arguments, no confidence, bad plan, unknown plan", async () => {
    await assert.rejects(
      client.requestToolCall({
        agentId: "nobody",
        tool: "vision_inspect",
        arguments: { target: "x" },
        confidence: 0.9,
      }),
      isError(status.NOT_FOUND, "UNKNOWN_AGENT"),
    );
    await assert.rejects(
      client.requestToolCall({
        agentId: "agent1",
        tool: "vision_inspect",
        arguments: { target: "", extra: 1 },
        confidence: 0.9,
      }),
      (err: unknown) => {
        isError(status.INVALID_ARGUMENT, "ARGUMENTS_SCHEMA")(err);
        const fields = (err as InterlockError).fieldViolations.map((v) => v.field);
        assert.ok(fields.includes("arguments.target"), fields.join(", "));
        assert.ok(fields.includes("arguments"), fields.join(", "));
        return true;
      },
    );
    await assert.rejects(
      client.requestToolCall({ agentId: "agent1", tool: "vision_inspect", arguments: { target: "x" } }),
      (err: unknown) => {
        isError(status.INVALID_ARGUMENT, "INVALID_ARGUMENT")(err);
        assert.ok((err as InterlockError).fieldViolations.some((v) => v.field === "confidence"));
        return true;
      },
    );
    await assert.rejects(
      client.submitPlan({
        spec: {
          planId: uniqueId("ts_bad"),
          steps: [
            { stepId: "a", tool: "no_such_tool", agentId: "agent1", confidence: 0.5 },
            { stepId: "b", tool: "vision_inspect", agentId: "nobody", confidence: 1.5, dependsOn: ["zzz"] },
          ],
        },
      }),
      (err: unknown) => {
        isError(status.INVALID_ARGUMENT, "INVALID_PLAN")(err);
        assert.ok(
          (err as InterlockError).fieldViolations.length >= 3,
          JSON.stringify((err as InterlockError).fieldViolations),
        );
        return true;
      },
    );
    await assert.rejects(client.getPlan(uniqueId("ts_missing")), isError(status.NOT_FOUND, "UNKNOWN_PLAN"));
    await assert.rejects(
      (async () => {
        for await (const item of client.pullWork("nobody")) assert.fail(`no work for an unknown agent: ${item.workId}`);
      })(),
      isError(status.NOT_FOUND, "UNKNOWN_AGENT"),
    );
  });

  test("pull a DRY_RUN step, report it with the work id, the plan succeeds", async () => {
    const planId = uniqueId("ts_dry");
    const plan = await client.submitPlan({
      spec: {
        planId,
        labels: { suite: "typescript" },
        steps: [
          {
            stepId: "fill",
            tool: "form_fill",
            agentId: "agent1",
            confidence: 0.7, // MEDIUM risk: DRY_RUN from 0.65, LIVE from 0.8
            arguments: { form_id: "signup", fields: { email: "a@example.com" } },
          },
        ],
      },
    });
    assert.equal(plan.planId, planId);
    assert.deepEqual(plan.labels, { suite: "typescript" });

    for await (const item of client.pullWork("agent1", { timeoutMs: STEP_TIMEOUT_MS })) {
      assert.equal(item.planId, planId);
      assert.equal(item.stepId, "fill");
      assert.equal(item.tool, "form_fill");
      assert.equal(item.mode, ExecutionMode.EXECUTION_MODE_DRY_RUN);
      assert.equal(item.compensation, false);
      assert.equal(item.agentId, "agent1");
      assert.deepEqual(item.arguments, { form_id: "signup", fields: { email: "a@example.com" } });
      const result = await client.reportWork(item, "SUCCEEDED", { output: { validated: true }, durationMs: 3 });
      assert.equal(result.outcome, ToolOutcome.TOOL_OUTCOME_SUCCEEDED);
      await assert.rejects(client.reportWork(item, "SUCCEEDED"), (err: unknown) => err instanceof InterlockError);
      break;
    }

    const done = await finished(client, planId);
    assert.equal(done.state, PlanState.PLAN_STATE_SUCCEEDED, done.message);
    assert.equal(done.steps[0]?.state, StepState.STEP_STATE_SUCCEEDED);
    const listed = await client.listPlans({ states: ["SUCCEEDED"], pageSize: 100 });
    assert.ok(listed.plans.some((p) => p.planId === planId));
  });

  test("watch a plan's events, in order, from the start", async () => {
    const planId = uniqueId("ts_watch");
    const worker = new WorkerProcess(["--target", server.target, "--agent", "agent1", "--max-items", "1"]);
    await client.submitPlan({
      spec: {
        planId,
        steps: [
          { stepId: "look", tool: "vision_inspect", agentId: "agent1", confidence: 0.6, arguments: { target: "logo" } },
        ],
      },
    });
    const kinds: EventKind[] = [];
    const seqs: number[] = [];
    for await (const event of client.watchEvents({ planId }, { timeoutMs: STEP_TIMEOUT_MS })) {
      assert.ok(event.seq > (seqs.at(-1) ?? 0), `seq ${event.seq} after ${seqs.at(-1)}`);
      seqs.push(event.seq);
      assert.equal(event.planId, planId);
      assert.ok(event.time instanceof Date);
      kinds.push(event.kind);
      if (event.kind === EventKind.EVENT_KIND_PLAN_FINISHED) break; // cancels the stream
    }
    for (const kind of [EventKind.EVENT_KIND_DECISION, EventKind.EVENT_KIND_DISPATCH, EventKind.EVENT_KIND_RESULT]) {
      assert.ok(kinds.includes(kind), `${EventKind[kind]} in ${kinds.map((k) => EventKind[k]).join(", ")}`);
    }
    assert.equal(await worker.wait(STEP_TIMEOUT_MS), 0, worker.stderr);
    // Resuming after a seq gives exactly what came after it.
    const resumed: number[] = [];
    for await (const event of client.watchEvents({ planId, afterSeq: seqs[0] }, { timeoutMs: STEP_TIMEOUT_MS })) {
      resumed.push(event.seq);
      if (resumed.length === seqs.length - 1) break;
    }
    assert.deepEqual(resumed, seqs.slice(1));
  });

  test("the example worker runs a LIVE step until the plan SUCCEEDS", async () => {
    const planId = uniqueId("ts_live");
    const worker = new WorkerProcess(["--target", server.target, "--agent", "agent1", "--max-items", "1"]);
    await client.submitPlan({
      spec: {
        planId,
        steps: [
          { stepId: "look", tool: "vision_inspect", agentId: "agent1", confidence: 0.9, arguments: { target: "logo" } },
        ],
      },
    });
    assert.equal(await worker.wait(STEP_TIMEOUT_MS), 0, worker.stderr);
    const [item, ...rest] = worker.items;
    assert.deepEqual(rest, []);
    assert.deepEqual(Object.keys(item ?? {}), [
      "work_id",
      "plan_id",
      "step_id",
      "tool",
      "mode",
      "compensation",
      "outcome",
    ]);
    assert.equal(item?.["plan_id"], planId);
    assert.equal(item?.["step_id"], "look");
    assert.equal(item?.["tool"], "vision_inspect");
    assert.equal(item?.["mode"], "LIVE");
    assert.equal(item?.["compensation"], false);
    assert.equal(item?.["outcome"], "SUCCEEDED");
    assert.match(String(item?.["work_id"]), /.+/);
    const done = await finished(client, planId);
    assert.equal(done.state, PlanState.PLAN_STATE_SUCCEEDED, done.message);
    assert.equal(done.steps[0]?.result?.output?.["simulated"], true);
  });

  test("a Phase-21 plan from its JSON document, run DRY_RUN by the worker", async () => {
    const planId = uniqueId("ts_p21");
    const worker = new WorkerProcess(["--target", server.target, "--agent", "agent1", "--max-items", "1"]);
    const doc = JSON.parse(
      `{"plan_id": "${planId}", "agent_assignments": {"agent1": ["vision_inspect"]},
        "execution_order": ["vision_inspect"], "confidence_scores": {"vision_inspect": 0.6}}`,
    ) as unknown;
    await client.submitPlan(planFromJson(doc));
    assert.equal(await worker.wait(STEP_TIMEOUT_MS), 0, worker.stderr);
    assert.equal(worker.items[0]?.["mode"], "DRY_RUN");
    assert.equal(worker.items[0]?.["step_id"], "vision_inspect");
    const done = await client.waitForPlan(planId, { timeoutMs: STEP_TIMEOUT_MS, pollMs: 50 });
    assert.equal(done.state, PlanState.PLAN_STATE_SUCCEEDED, done.message);
  });

  test("--fail makes the plan fail and the LIVE step is rolled back", async () => {
    const planId = uniqueId("ts_fail");
    const worker = new WorkerProcess([
      "--target",
      server.target,
      "--agent",
      "agent1",
      "--fail",
      "vision_inspect",
      "--max-items",
      "3",
    ]);
    await client.submitPlan({
      spec: {
        planId,
        steps: [
          {
            stepId: "fill",
            tool: "form_fill",
            agentId: "agent1",
            confidence: 0.9,
            arguments: { form_id: "f1", fields: { name: "Ada" } },
          },
          {
            stepId: "look",
            tool: "vision_inspect",
            agentId: "agent1",
            confidence: 0.9,
            arguments: { target: "result" },
            dependsOn: ["fill"],
          },
        ],
      },
    });
    assert.equal(await worker.wait(STEP_TIMEOUT_MS), 0, worker.stderr);
    const seen = worker.items.map((i) => [i["step_id"], i["tool"], i["mode"], i["compensation"], i["outcome"]]);
    assert.deepEqual(seen, [
      ["fill", "form_fill", "LIVE", false, "SUCCEEDED"],
      ["look", "vision_inspect", "LIVE", false, "FAILED"],
      ["fill.undo", "form_clear", "LIVE", true, "SUCCEEDED"], // the compensation of "fill"
    ]);
    const done = await finished(client, planId);
    assert.equal(done.state, PlanState.PLAN_STATE_ROLLED_BACK, done.message);
  });

  test("the worker exits 1 with a clear message for an unknown agent, 2 for a usage error", async () => {
    const unknown = new WorkerProcess(["--target", server.target, "--agent", "nobody"]);
    assert.equal(await unknown.wait(STEP_TIMEOUT_MS), 1);
    assert.match(unknown.stderr, /giving up: NOT_FOUND: .*nobody.*\(UNKNOWN_AGENT\)/);
    assert.equal(unknown.stdout, "");
    const usage = new WorkerProcess(["--target", server.target]);
    assert.equal(await usage.wait(STEP_TIMEOUT_MS), 2);
    assert.match(usage.stderr, /--agent is required/);
  });

  test("the worker stops cleanly on SIGTERM", async () => {
    const worker = new WorkerProcess(["--target", server.target, "--agent", "agent2"]);
    await worker.waitForLog("pulling work for agent2", STEP_TIMEOUT_MS);
    worker.child.kill("SIGTERM");
    assert.equal(await worker.wait(STEP_TIMEOUT_MS), 0, worker.stderr);
    assert.match(worker.stderr, /SIGTERM: stopping/);
    assert.match(worker.stderr, /stopped/);
  });

  test("approvals: a held call, approved by someone else, then run LIVE with the approval id", async () => {
    // A development server takes the caller's name from x-interlock-dev-principal.
    const agent = new InterlockClient(server.target, { metadata: { "x-interlock-dev-principal": "agent2" } });
    const approver = new InterlockClient(server.target, { metadata: { "x-interlock-dev-principal": "alice" } });
    try {
      const args = { selector: `#submit-${randomUUID().slice(0, 6)}` };
      const held = await agent.requestToolCall({
        agentId: "agent2",
        tool: "button_click",
        arguments: args,
        confidence: 0.9,
      });
      assert.equal(held.verdict, Verdict.VERDICT_PENDING_APPROVAL);
      assert.match(held.approvalId, /.+/);
      const waiting = agent.awaitApproval(held.approvalId, 10_000);
      const pending = await approver.listApprovals({ agentId: "agent2", tool: "button_click" });
      assert.ok(pending.approvals.some((a) => a.approvalId === held.approvalId));
      const approved = await approver.resolveApproval({ approvalId: held.approvalId, resolution: "APPROVE" });
      assert.equal(approved.state, ApprovalState.APPROVAL_STATE_APPROVED);
      assert.deepEqual(approved.approvedBy, ["alice"]);
      assert.equal((await waiting).state, ApprovalState.APPROVAL_STATE_APPROVED);
      const live = await agent.requestToolCall({
        agentId: "agent2",
        tool: "button_click",
        arguments: args,
        confidence: 0.9,
        approvalId: held.approvalId,
      });
      assert.equal(live.verdict, Verdict.VERDICT_ALLOW);
      assert.equal(live.mode, ExecutionMode.EXECUTION_MODE_LIVE);
      await assert.rejects(
        approver.resolveApproval({ approvalId: "apr_nope", resolution: "DENY", reason: "no" }),
        isError(status.NOT_FOUND),
      );
    } finally {
      agent.close();
      approver.close();
    }
  });
});
