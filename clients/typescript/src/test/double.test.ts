/**
 * The client against an in-process @grpc/grpc-js test double of ControlPlane:
 * the bearer token on every call and stream, TLS and mutual TLS, deadlines,
 * retries (and their absence), cancellation, error details through a real
 * gRPC round trip.
 */

import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import { after, before, beforeEach, describe, test } from "node:test";

import { BinaryWriter } from "@bufbuild/protobuf/wire";
import {
  Metadata,
  Server,
  ServerCredentials,
  type ServerUnaryCall,
  type ServerWritableStream,
  type UntypedServiceImplementation,
  type sendUnaryData,
  status,
} from "@grpc/grpc-js";

import { InterlockClient } from "../client";
import { InterlockError, STATUS_DETAILS_KEY } from "../errors";
import {
  ControlPlaneService,
  type GetPlanRequest,
  type ListToolsRequest,
  type ListToolsResponse,
  type PullWorkRequest,
  type PullWorkResponse,
  type ReportToolResultRequest,
  type ReportToolResultResponse,
  type WatchEventsRequest,
  type WatchEventsResponse,
} from "../gen/interlock/v1/control_plane";
import { EventKind } from "../gen/interlock/v1/observe";
import { ExecutionMode } from "../gen/interlock/v1/types";
import { type TestCerts, WorkerProcess, delay, makeTestCerts } from "./helpers";

/** What the double saw and how it behaves. */
class Double {
  calls: Record<string, number> = {};
  authorization: Record<string, string[]> = {};
  failListTools = 0; // answer UNAVAILABLE this many times first
  failReports = Infinity; // the same for ReportToolResult
  streamCancelled = false;

  reset(): void {
    this.calls = {};
    this.authorization = {};
    this.failListTools = 0;
    this.failReports = Infinity;
    this.streamCancelled = false;
  }

  private saw(method: string, metadata: Metadata): void {
    this.calls[method] = (this.calls[method] ?? 0) + 1;
    (this.authorization[method] ??= []).push(...metadata.get("authorization").map(String));
  }

  implementation(): UntypedServiceImplementation {
    const unavailable = { code: status.UNAVAILABLE, details: "the double says no" };
    return {
      listTools: (call: ServerUnaryCall<ListToolsRequest, ListToolsResponse>, cb: sendUnaryData<ListToolsResponse>) => {
        this.saw("ListTools", call.metadata);
        if (this.failListTools > 0) {
          this.failListTools -= 1;
          return cb(unavailable);
        }
        cb(null, { tools: [], policyRevision: "rev-1" });
      },
      requestToolCall: (call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>) => {
        this.saw("RequestToolCall", call.metadata);
        cb(unavailable);
      },
      reportToolResult: (
        call: ServerUnaryCall<ReportToolResultRequest, ReportToolResultResponse>,
        cb: sendUnaryData<ReportToolResultResponse>,
      ) => {
        this.saw("ReportToolResult", call.metadata);
        if (this.failReports > 0) {
          this.failReports -= 1;
          return cb(unavailable);
        }
        const r = call.request;
        cb(null, {
          result: {
            decisionId: r.decisionId,
            agentId: r.agentId,
            tool: "vision_inspect",
            mode: ExecutionMode.EXECUTION_MODE_DRY_RUN,
            outcome: r.outcome,
            output: r.output,
            errorMessage: r.errorMessage,
            duration: r.duration,
            reportedAt: new Date(),
          },
        });
      },
      submitPlan: (call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>) => {
        this.saw("SubmitPlan", call.metadata);
        const trailers = new Metadata();
        trailers.set(STATUS_DETAILS_KEY, Buffer.from(invalidPlanStatus()));
        cb({ code: status.INVALID_ARGUMENT, details: "the plan is invalid", metadata: trailers });
      },
      getPlan: (call: ServerUnaryCall<GetPlanRequest, unknown>) => {
        this.saw("GetPlan", call.metadata); // never answers: the deadline or the caller ends it
      },
      pullWork: (call: ServerWritableStream<PullWorkRequest, PullWorkResponse>) => {
        this.saw("PullWork", call.metadata);
        call.on("cancelled", () => {
          this.streamCancelled = true;
        });
        for (const n of [1, 2, 3]) {
          call.write({ item: workItem(`w${n}`, call.request.agentId) });
        }
        // and stays open
      },
      watchEvents: (call: ServerWritableStream<WatchEventsRequest, WatchEventsResponse>) => {
        this.saw("WatchEvents", call.metadata);
        for (let seq = call.request.afterSeq + 1; seq <= call.request.afterSeq + 2; seq++) {
          call.write({
            event: {
              seq,
              kind: EventKind.EVENT_KIND_DECISION,
              planId: "",
              stepId: "",
              agentId: "",
              decisionId: "",
              tool: "",
              message: `e${seq}`,
            },
          });
        }
        const trailers = new Metadata();
        trailers.set(STATUS_DETAILS_KEY, Buffer.from(stoppingStatus(call.request.afterSeq + 2)));
        call.emit("error", { code: status.UNAVAILABLE, details: "stopping", metadata: trailers });
      },
    };
  }
}

function workItem(workId: string, agentId: string): PullWorkResponse["item"] {
  return {
    workId,
    planId: "p",
    stepId: "s",
    decisionId: `d-${workId}`,
    tool: "vision_inspect",
    arguments: { target: "x" },
    mode: ExecutionMode.EXECUTION_MODE_DRY_RUN,
    deadline: new Date(Date.now() + 30_000),
    attempt: 1,
    compensation: false,
    agentId,
  };
}

function anyOf(type: string, value: Uint8Array): (w: BinaryWriter) => void {
  return (w) => w.uint32(26).fork().uint32(10).string(`type.googleapis.com/${type}`).uint32(18).bytes(value).join();
}

function invalidPlanStatus(): Uint8Array {
  const info = new BinaryWriter().uint32(10).string("INVALID_PLAN").uint32(18).string("interlock.v1").finish();
  const bad = new BinaryWriter()
    .uint32(10)
    .fork()
    .uint32(10)
    .string("spec.steps[0].tool")
    .uint32(18)
    .string("unknown tool 'nope'")
    .join()
    .uint32(10)
    .fork()
    .uint32(10)
    .string("spec.steps[0].confidence")
    .uint32(18)
    .string("is required")
    .join()
    .finish();
  const w = new BinaryWriter().uint32(8).int32(status.INVALID_ARGUMENT).uint32(18).string("the plan is invalid");
  anyOf("google.rpc.ErrorInfo", info)(w);
  anyOf("google.rpc.BadRequest", bad)(w);
  return w.finish();
}

function stoppingStatus(resume: number): Uint8Array {
  const info = new BinaryWriter()
    .uint32(10)
    .string("SERVER_STOPPING")
    .uint32(18)
    .string("interlock.v1")
    .uint32(26)
    .fork()
    .uint32(10)
    .string("resume_after_seq")
    .uint32(18)
    .string(String(resume))
    .join()
    .finish();
  const w = new BinaryWriter().uint32(8).int32(status.UNAVAILABLE).uint32(18).string("stopping");
  anyOf("google.rpc.ErrorInfo", info)(w);
  return w.finish();
}

function bind(server: Server, credentials: ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", credentials, (err, port) => (err ? reject(err) : resolve(port))),
  );
}

const FAST_RETRY = { maxRetries: 3, initialBackoffMs: 5, maxBackoffMs: 20 };

describe("against a test double (plaintext)", () => {
  const double = new Double();
  const server = new Server();
  let target = "";
  let client: InterlockClient;

  before(async () => {
    server.addService(ControlPlaneService, double.implementation());
    target = `127.0.0.1:${await bind(server, ServerCredentials.createInsecure())}`;
    client = new InterlockClient(target, { token: "tok-123", defaultTimeoutMs: 2000, retry: FAST_RETRY });
  });
  after(() => {
    client.close();
    server.forceShutdown();
  });
  beforeEach(() => double.reset());

  test("the bearer token rides on unary calls and streams", async () => {
    const tools = await client.listTools();
    assert.equal(tools.policyRevision, "rev-1");
    let n = 0;
    for await (const item of client.pullWork("agent1")) {
      assert.equal(item.agentId, "agent1");
      if (++n === 1) break;
    }
    assert.deepEqual(double.authorization["ListTools"], ["Bearer tok-123"]);
    assert.deepEqual(double.authorization["PullWork"], ["Bearer tok-123"]);
  });

  test("no token, no authorization metadata", async () => {
    const bare = new InterlockClient(target);
    try {
      await bare.listTools();
      assert.deepEqual(double.authorization["ListTools"], []);
    } finally {
      bare.close();
    }
  });

  test("an idempotent read is retried on UNAVAILABLE", async () => {
    double.failListTools = 2;
    const tools = await client.listTools();
    assert.equal(tools.policyRevision, "rev-1");
    assert.equal(double.calls["ListTools"], 3);
  });

  test("retries are capped", async () => {
    double.failListTools = 10;
    await assert.rejects(client.listTools(), (err: InterlockError) => err.code === status.UNAVAILABLE);
    assert.equal(double.calls["ListTools"], 1 + FAST_RETRY.maxRetries);
  });

  test("RequestToolCall and ReportToolResult are never retried", async () => {
    await assert.rejects(
      client.requestToolCall({ agentId: "a", tool: "t", confidence: 0.5 }),
      (err: InterlockError) => err instanceof InterlockError && err.code === status.UNAVAILABLE,
    );
    await assert.rejects(
      client.reportToolResult({ decisionId: "d", agentId: "a", outcome: "SUCCEEDED" }),
      (err: InterlockError) => err.code === status.UNAVAILABLE,
    );
    assert.equal(double.calls["RequestToolCall"], 1);
    assert.equal(double.calls["ReportToolResult"], 1);
  });

  test("the default deadline ends a call that gets no answer", async () => {
    const quick = new InterlockClient(target, { defaultTimeoutMs: 150 });
    try {
      const started = Date.now();
      await assert.rejects(quick.getPlan("p"), (err: InterlockError) => err.code === status.DEADLINE_EXCEEDED);
      assert.ok(Date.now() - started < 1500);
      assert.equal(double.calls["GetPlan"], 1); // DEADLINE_EXCEEDED is not retried
      await assert.rejects(
        client.getPlan("p", { timeoutMs: 100 }),
        (err: InterlockError) => err.code === status.DEADLINE_EXCEEDED,
      );
    } finally {
      quick.close();
    }
  });

  test("an AbortSignal cancels a call", async () => {
    const controller = new AbortController();
    const pending = client.getPlan("p", { signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    await assert.rejects(pending, (err: InterlockError) => err.code === status.CANCELLED);
  });

  test("error details survive the round trip", async () => {
    await assert.rejects(client.submitPlan({ spec: { planId: "p1" } }), (err: InterlockError) => {
      assert.equal(err.code, status.INVALID_ARGUMENT);
      assert.equal(err.reason, "INVALID_PLAN");
      assert.equal(err.domain, "interlock.v1");
      assert.deepEqual(err.fieldViolations, [
        { field: "spec.steps[0].tool", description: "unknown tool 'nope'" },
        { field: "spec.steps[0].confidence", description: "is required" },
      ]);
      return true;
    });
    assert.equal(double.calls["SubmitPlan"], 1);
  });

  test("breaking out of a stream cancels it on the server", async () => {
    const seen: string[] = [];
    for await (const item of client.pullWork("agent1")) {
      seen.push(item.workId);
      if (seen.length === 2) break;
    }
    assert.deepEqual(seen, ["w1", "w2"]);
    for (let i = 0; i < 100 && !double.streamCancelled; i++) await delay(10);
    assert.ok(double.streamCancelled, "the server saw the cancellation");
  });

  test("an AbortSignal ends a stream quietly", async () => {
    const controller = new AbortController();
    const seen: string[] = [];
    setTimeout(() => controller.abort(), 100);
    for await (const item of client.pullWork("agent1", { signal: controller.signal })) seen.push(item.workId);
    assert.deepEqual(seen, ["w1", "w2", "w3"]);
    for (let i = 0; i < 100 && !double.streamCancelled; i++) await delay(10);
    assert.ok(double.streamCancelled);
  });

  test("a stream deadline", async () => {
    const seen: string[] = [];
    await assert.rejects(
      (async () => {
        for await (const item of client.pullWork("agent1", { timeoutMs: 150 })) seen.push(item.workId);
      })(),
      (err: InterlockError) => err.code === status.DEADLINE_EXCEEDED,
    );
    assert.equal(seen.length, 3);
  });

  test("a stream's error comes after its items, with its details", async () => {
    const seqs: number[] = [];
    await assert.rejects(
      (async () => {
        for await (const event of client.watchEvents({ afterSeq: 40 })) seqs.push(event.seq);
      })(),
      (err: InterlockError) => {
        assert.equal(err.code, status.UNAVAILABLE);
        assert.equal(err.reason, "SERVER_STOPPING");
        assert.deepEqual(err.metadata, { resume_after_seq: "42" });
        return true;
      },
    );
    assert.deepEqual(seqs, [41, 42]);
    assert.deepEqual(double.authorization["WatchEvents"], ["Bearer tok-123"]);
  });

  test("closing the client cancels its streams", async () => {
    const closing = new InterlockClient(target);
    const seen: string[] = [];
    setTimeout(() => closing.close(), 100);
    for await (const item of closing.pullWork("agent1")) seen.push(item.workId);
    assert.equal(seen.length, 3);
  });

  test("UNIMPLEMENTED methods reject with an InterlockError", async () => {
    await assert.rejects(client.listApprovals(), (err: InterlockError) => err.code === status.UNIMPLEMENTED);
  });
});

describe("the example worker against a test double", () => {
  const double = new Double();
  const server = new Server();
  let target = "";

  before(async () => {
    server.addService(ControlPlaneService, double.implementation());
    target = `127.0.0.1:${await bind(server, ServerCredentials.createInsecure())}`;
  });
  after(() => server.forceShutdown());
  beforeEach(() => double.reset());

  test("a report that meets UNAVAILABLE is sent again", async () => {
    double.failReports = 2;
    const worker = new WorkerProcess(["--target", target, "--agent", "agent1", "--max-items", "1"], {
      ...process.env,
      INTERLOCK_TOKEN: "env-token",
    });
    assert.equal(await worker.wait(15_000), 0, worker.stderr);
    assert.equal(double.calls["ReportToolResult"], 3);
    assert.deepEqual(double.authorization["PullWork"], ["Bearer env-token"]);
    assert.match(worker.stderr, /could not report w1 yet .* again in 0\.5s/);
    assert.deepEqual(worker.items, [
      {
        work_id: "w1",
        plan_id: "p",
        step_id: "s",
        tool: "vision_inspect",
        mode: "DRY_RUN",
        compensation: false,
        outcome: "SUCCEEDED",
      },
    ]);
  });

  test("SIGTERM stops the worker after the item in hand is reported", async () => {
    double.failReports = 1;
    const worker = new WorkerProcess(["--target", target, "--agent", "agent1"]);
    await worker.waitForLog("could not report w1 yet", 10_000);
    worker.child.kill("SIGTERM");
    assert.equal(await worker.wait(15_000), 0, worker.stderr);
    assert.deepEqual(
      worker.items.map((i) => [i["work_id"], i["outcome"]]),
      [["w1", "SUCCEEDED"]],
    );
    assert.equal(double.calls["ReportToolResult"], 2);
    assert.ok(worker.stderr.indexOf("SIGTERM: stopping") < worker.stderr.indexOf("reported vision_inspect w1"));
  });
});

describe("TLS and mutual TLS (test double)", () => {
  let certs: TestCerts;
  const double = new Double();
  const tlsServer = new Server();
  const mtlsServer = new Server();
  let tlsTarget = "";
  let mtlsTarget = "";

  before(async () => {
    certs = makeTestCerts();
    const keyPair = [{ cert_chain: readFileSync(certs.serverCert), private_key: readFileSync(certs.serverKey) }];
    const ca = readFileSync(certs.caCert);
    tlsServer.addService(ControlPlaneService, double.implementation());
    mtlsServer.addService(ControlPlaneService, double.implementation());
    tlsTarget = `127.0.0.1:${await bind(tlsServer, ServerCredentials.createSsl(ca, keyPair, false))}`;
    mtlsTarget = `127.0.0.1:${await bind(mtlsServer, ServerCredentials.createSsl(ca, keyPair, true))}`;
  });
  after(() => {
    tlsServer.forceShutdown();
    mtlsServer.forceShutdown();
    rmSync(certs.dir, { recursive: true, force: true });
  });
  beforeEach(() => double.reset());

  const noRetry = { retry: { maxRetries: 0 }, defaultTimeoutMs: 3000 };

  test("TLS: trusting the CA file, with a token", async () => {
    const client = new InterlockClient(tlsTarget, { ...noRetry, caFile: certs.caCert, token: "tls-token" });
    try {
      assert.equal(client.mode, "tls");
      assert.equal((await client.listTools()).policyRevision, "rev-1");
      assert.deepEqual(double.authorization["ListTools"], ["Bearer tls-token"]);
    } finally {
      client.close();
    }
  });

  test("TLS: the server name can be overridden", async () => {
    const target = tlsTarget.replace("127.0.0.1", "localhost");
    const client = new InterlockClient(target, { ...noRetry, caFile: certs.caCert, tlsServerName: "localhost" });
    try {
      assert.equal((await client.listTools()).policyRevision, "rev-1");
    } finally {
      client.close();
    }
  });

  test("TLS: a server the CA did not sign is refused", async () => {
    const client = new InterlockClient(tlsTarget, { ...noRetry, tls: true }); // system roots only
    try {
      await assert.rejects(client.listTools(), (err: InterlockError) => err.code === status.UNAVAILABLE);
    } finally {
      client.close();
    }
  });

  test("plaintext against a TLS server fails", async () => {
    const client = new InterlockClient(tlsTarget, noRetry);
    try {
      await assert.rejects(client.listTools(), (err: InterlockError) => err instanceof InterlockError);
    } finally {
      client.close();
    }
  });

  test("mutual TLS: the client certificate is presented", async () => {
    const client = new InterlockClient(mtlsTarget, {
      ...noRetry,
      caFile: certs.caCert,
      certFile: certs.clientCert,
      keyFile: certs.clientKey,
      token: "mtls-token",
    });
    try {
      assert.equal(client.mode, "mtls");
      assert.equal((await client.listTools()).policyRevision, "rev-1");
      assert.deepEqual(double.authorization["ListTools"], ["Bearer mtls-token"]);
    } finally {
      client.close();
    }
  });

  test("mutual TLS: without a client certificate the server refuses", async () => {
    const client = new InterlockClient(mtlsTarget, { ...noRetry, caFile: certs.caCert });
    try {
      await assert.rejects(client.listTools(), (err: InterlockError) => err.code === status.UNAVAILABLE);
      assert.equal(double.calls["ListTools"], undefined);
    } finally {
      client.close();
    }
  });
});
