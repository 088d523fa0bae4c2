/**
 * Authentication against a REAL server: bearer tokens over TLS, and mutual TLS
 * (a client certificate names the principal). The server runs with
 * `--no-insecure`, a principals file and test certificates.
 */

import assert from "node:assert/strict";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { status } from "@grpc/grpc-js";

import { InterlockClient, type InterlockClientOptions } from "../client";
import { InterlockError } from "../errors";
import { PlanState } from "../gen/interlock/v1/plans";
import { Verdict } from "../gen/interlock/v1/types";
import { RealServer, type TestCerts, WorkerProcess, makeTestCerts } from "./helpers";

const TIMEOUT_MS = 20_000;

function newToken(): string {
  return `ilk_${randomBytes(24).toString("base64url")}`;
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

function code(expected: number): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof InterlockError, String(err));
    assert.equal(err.code, expected, err.message);
    return true;
  };
}

async function runPlan(planner: InterlockClient, worker: WorkerProcess, agent: string): Promise<void> {
  const planId = `ts_auth_${randomUUID().slice(0, 8)}`;
  await planner.submitPlan({
    spec: {
      planId,
      steps: [{ stepId: "look", tool: "vision_inspect", agentId: agent, confidence: 0.9, arguments: { target: "x" } }],
    },
  });
  assert.equal(await worker.wait(TIMEOUT_MS), 0, worker.stderr);
  assert.equal(worker.items[0]?.["plan_id"], planId);
  assert.equal(worker.items[0]?.["outcome"], "SUCCEEDED");
  for (let i = 0; i < 200; i++) {
    const plan = await planner.getPlan(planId);
    if (plan.state === PlanState.PLAN_STATE_SUCCEEDED) return;
    assert.ok(plan.state <= PlanState.PLAN_STATE_RUNNING, `plan ${PlanState[plan.state]}: ${plan.message}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail("the plan did not succeed");
}

describe("authentication against a real server", { timeout: 60_000 }, () => {
  let certs: TestCerts;
  const agentToken = newToken();
  const plannerToken = newToken();
  let agentTokenFile = "";

  before(() => {
    certs = makeTestCerts();
    agentTokenFile = join(certs.dir, "agent1.token");
    writeFileSync(agentTokenFile, `${agentToken}\n`);
    writeFileSync(
      join(certs.dir, "principals.yaml"),
      [
        "tokens:",
        `  ${sha256(agentToken)}: {id: agent1, kind: agent}`,
        `  ${sha256(plannerToken)}: {id: olivia, kind: operator, roles: [planner]}`,
        "certificates:",
        "  agent1: {id: agent1, kind: agent}", // the client certificate's CN
        "",
      ].join("\n"),
    );
  });

  after(() => rmSync(certs.dir, { recursive: true, force: true }));

  function serverArgs(mutual: boolean): string[] {
    const args = [
      "--no-insecure",
      "--principals-file",
      join(certs.dir, "principals.yaml"),
      "--tls-cert-file",
      certs.serverCert,
      "--tls-key-file",
      certs.serverKey,
    ];
    return mutual ? [...args, "--tls-client-ca-file", certs.caCert] : args;
  }

  describe("TLS and bearer tokens", () => {
    let server: RealServer;
    const clients: InterlockClient[] = [];
    const connect = (options: InterlockClientOptions): InterlockClient => {
      const client = new InterlockClient(server.target, { retry: { maxRetries: 0 }, ...options });
      clients.push(client);
      return client;
    };

    before(async () => {
      server = await RealServer.start(serverArgs(false), { caFile: certs.caCert });
    });
    after(async () => {
      for (const client of clients) client.close();
      await server?.stop();
    });

    test("no token or an unknown one: UNAUTHENTICATED; plaintext: no connection", async () => {
      await assert.rejects(connect({ caFile: certs.caCert }).listTools(), code(status.UNAUTHENTICATED));
      await assert.rejects(
        connect({ caFile: certs.caCert, token: newToken() }).listTools(),
        code(status.UNAUTHENTICATED),
      );
      await assert.rejects(connect({ token: agentToken }).listTools(), (err: unknown) => err instanceof InterlockError);
    });

    test("an agent's token: it acts as its agent only", async () => {
      const agent = connect({ caFile: certs.caCert, tokenFile: agentTokenFile });
      assert.equal(agent.mode, "tls");
      assert.ok((await agent.listTools()).tools.length > 0);
      const decision = await agent.requestToolCall({
        agentId: "agent1",
        tool: "vision_inspect",
        arguments: { target: "x" },
        confidence: 0.9,
      });
      assert.equal(decision.verdict, Verdict.VERDICT_ALLOW);
      await assert.rejects(
        agent.requestToolCall({
          agentId: "agent2",
          tool: "vision_inspect",
          arguments: { target: "x" },
          confidence: 0.9,
        }),
        code(status.PERMISSION_DENIED),
      );
    });

    test("the worker with --token-file and --ca-file runs a step; a bad $INTERLOCK_TOKEN is refused", async () => {
      const planner = connect({ caFile: certs.caCert, token: plannerToken });
      const worker = new WorkerProcess([
        "--target",
        server.target,
        "--agent",
        "agent1",
        "--token-file",
        agentTokenFile,
        "--ca-file",
        certs.caCert,
        "--max-items",
        "1",
      ]);
      await runPlan(planner, worker, "agent1");

      const refused = new WorkerProcess(["--target", server.target, "--agent", "agent1", "--ca-file", certs.caCert], {
        ...process.env,
        INTERLOCK_TOKEN: newToken(),
      });
      assert.equal(await refused.wait(TIMEOUT_MS), 1);
      assert.match(refused.stderr, /giving up: UNAUTHENTICATED/);
    });
  });

  describe("mutual TLS", () => {
    let server: RealServer;
    const clients: InterlockClient[] = [];
    const withCert = { caFile: "", certFile: "", keyFile: "" };
    const connect = (options: InterlockClientOptions): InterlockClient => {
      const client = new InterlockClient(server.target, { retry: { maxRetries: 0 }, ...options });
      clients.push(client);
      return client;
    };

    before(async () => {
      Object.assign(withCert, { caFile: certs.caCert, certFile: certs.clientCert, keyFile: certs.clientKey });
      server = await RealServer.start(serverArgs(true), withCert);
    });
    after(async () => {
      for (const client of clients) client.close();
      await server?.stop();
    });

    test("the client certificate authenticates; without one there is no connection", async () => {
      const agent = connect(withCert);
      assert.equal(agent.mode, "mtls");
      const decision = await agent.requestToolCall({
        agentId: "agent1",
        tool: "vision_inspect",
        arguments: { target: "x" },
        confidence: 0.9,
      });
      assert.equal(decision.verdict, Verdict.VERDICT_ALLOW);
      await assert.rejects(connect({ caFile: certs.caCert, token: agentToken }).listTools(), code(status.UNAVAILABLE));
    });

    test("the worker with --ca-file, --cert-file and --key-file runs a step", async () => {
      const planner = connect({ ...withCert, token: plannerToken }); // the token names the principal
      const worker = new WorkerProcess([
        "--target",
        server.target,
        "--agent",
        "agent1",
        "--ca-file",
        certs.caCert,
        "--cert-file",
        certs.clientCert,
        "--key-file",
        certs.clientKey,
        "--max-items",
        "1",
      ]);
      await runPlan(planner, worker, "agent1");
    });
  });
});
