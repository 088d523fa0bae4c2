/**
 * Trust (docs/trust.md) through the client, against a REAL Interlock server
 * (`interlock serve` from the repository's .venv on a free loopback port).
 */

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";

import { status } from "@grpc/grpc-js";

import { InterlockClient } from "../client";
import { InterlockError } from "../errors";
import { TrustState } from "../gen/interlock/v1/trust";
import { ExecutionMode, ToolOutcome } from "../gen/interlock/v1/types";
import { RealServer } from "./helpers";

describe("trust against a real server", { timeout: 60_000 }, () => {
  let server: RealServer;
  let agent: InterlockClient;
  let approver: InterlockClient;

  before(async () => {
    server = await RealServer.start();
    // A development server takes the caller's name from x-interlock-dev-principal.
    agent = new InterlockClient(server.target, { metadata: { "x-interlock-dev-principal": "agent1" } });
    approver = new InterlockClient(server.target, { metadata: { "x-interlock-dev-principal": "alice" } });
  });

  after(async () => {
    agent?.close();
    approver?.close();
    await server?.stop();
  });

  test("three failures demote a pair to DRY_RUN; an approver's reset makes it LIVE again", async () => {
    const call = {
      agentId: "agent1",
      tool: "form_clear",
      arguments: { form_id: `form-${randomUUID().slice(0, 6)}` },
      confidence: 0.95,
    };
    for (let i = 0; i < 3; i++) {
      const d = await agent.requestToolCall(call);
      assert.equal(d.mode, ExecutionMode.EXECUTION_MODE_LIVE);
      await agent.reportToolResult({ decisionId: d.decisionId, agentId: "agent1", outcome: ToolOutcome.TOOL_OUTCOME_FAILED });
    }
    const demoted = await agent.requestToolCall(call);
    assert.equal(demoted.mode, ExecutionMode.EXECUTION_MODE_DRY_RUN);
    assert.ok(
      demoted.reasons.some((r) => r.startsWith("form_clear demoted for agent1 until ") && r.endsWith("after 3 failures in 10 min")),
      demoted.reasons.join("; "),
    );

    const [pair] = await agent.getTrust({ agentId: "agent1", tool: "form_clear" });
    assert.equal(pair.state, TrustState.TRUST_STATE_DEMOTED);
    assert.equal(pair.demotions, 1);

    await assert.rejects(approver.resetTrust("agent1", "form_clear", ""), (err) => {
      assert.ok(err instanceof InterlockError);
      assert.equal(err.code, status.INVALID_ARGUMENT);
      return true;
    });
    const reset = await approver.resetTrust("agent1", "form_clear", "typescript client test");
    assert.equal(reset.state, TrustState.TRUST_STATE_TRUSTED);
    assert.equal((await agent.requestToolCall(call)).mode, ExecutionMode.EXECUTION_MODE_LIVE);
  });
});
