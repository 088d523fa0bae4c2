/**
 * Grants (docs/grants.md) through the client, against a REAL Interlock server
 * (`interlock serve` from the repository's .venv on a free loopback port).
 */

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";

import { status } from "@grpc/grpc-js";

import { InterlockClient } from "../client";
import { InterlockError } from "../errors";
import { GrantState } from "../gen/interlock/v1/grants";
import { ExecutionMode, Verdict } from "../gen/interlock/v1/types";
import { RealServer } from "./helpers";

function isError(code: number): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof InterlockError, `an InterlockError, not ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  };
}

describe("grants against a real server", { timeout: 60_000 }, () => {
  let server: RealServer;
  let agent: InterlockClient;
  let approver: InterlockClient;

  before(async () => {
    server = await RealServer.start();
    // A development server takes the caller's name from x-interlock-dev-principal.
    agent = new InterlockClient(server.target, { metadata: { "x-interlock-dev-principal": "agent2" } });
    approver = new InterlockClient(server.target, { metadata: { "x-interlock-dev-principal": "alice" } });
  });

  after(async () => {
    agent?.close();
    approver?.close();
    await server?.stop();
  });

  test("a grant lets its call run LIVE once without an approval, then lists as EXHAUSTED", async () => {
    const selector = `#send-${randomUUID().slice(0, 6)}`;
    const call = { agentId: "agent2", tool: "button_click", arguments: { selector }, confidence: 0.9 };
    assert.equal((await agent.requestToolCall(call)).verdict, Verdict.VERDICT_PENDING_APPROVAL);

    const grant = await approver.createGrant({
      agentId: "agent2",
      tool: "button_click",
      argumentsEqual: { selector },
      expiresAt: new Date(Date.now() + 3_600_000),
      maxUses: 1,
      reason: "typescript client test",
    });
    assert.equal(grant.state, GrantState.GRANT_STATE_ACTIVE);
    assert.equal(grant.createdBy, "alice");

    const covered = await agent.requestToolCall(call);
    assert.equal(covered.verdict, Verdict.VERDICT_ALLOW);
    assert.equal(covered.mode, ExecutionMode.EXECUTION_MODE_LIVE);
    assert.ok(covered.reasons.some((r) => r.startsWith(`covered by grant ${grant.grantId}`)), covered.reasons.join("; "));
    const other = await agent.requestToolCall({ ...call, arguments: { selector: `${selector}-other` } });
    assert.equal(other.verdict, Verdict.VERDICT_PENDING_APPROVAL);
    assert.equal((await agent.requestToolCall(call)).verdict, Verdict.VERDICT_PENDING_APPROVAL);

    const listed = await approver.listGrants({ agentId: "agent2", states: ["EXHAUSTED"] });
    const mine = listed.grants.find((g) => g.grantId === grant.grantId);
    assert.ok(mine, "the grant is listed as EXHAUSTED");
    assert.equal(mine.uses, 1);

    const revoked = await approver.revokeGrant(grant.grantId, "done");
    assert.equal(revoked.state, GrantState.GRANT_STATE_REVOKED);
    await assert.rejects(approver.revokeGrant("grt_nope"), isError(status.NOT_FOUND));
    await assert.rejects(
      approver.createGrant({ agentId: "agent2", tool: "button_click", expiresAt: new Date(Date.now() - 1000) }),
      isError(status.INVALID_ARGUMENT),
    );
  });
});
