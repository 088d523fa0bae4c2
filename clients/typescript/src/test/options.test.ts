import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  DEFAULT_TIMEOUT_MS,
  InterlockClient,
  durationFromMs,
  enumName,
  enumValue,
  outcomeValue,
  planFromJson,
} from "../client";
import {
  type FileAccess,
  TOKEN_FILE_CHECK_MS,
  TokenFile,
  isLoopbackTarget,
  resolveConnection,
  targetHost,
  validateToken,
} from "../connection";
import { UsageError, parseWorkerArgs } from "../examples/agent_worker";
import { ExecutionMode, ToolOutcome } from "../gen/interlock/v1/types";
import { PlanState } from "../gen/interlock/v1/plans";

/** An in-memory file system: content and a version per path. */
class FakeFiles implements FileAccess {
  files = new Map<string, { text: string; version: number }>();

  constructor(initial: Record<string, string>) {
    for (const [path, text] of Object.entries(initial)) this.write(path, text);
  }

  write(path: string, text: string): void {
    this.files.set(path, { text, version: (this.files.get(path)?.version ?? 0) + 1 });
  }

  readFile(path: string): Buffer {
    const file = this.files.get(path);
    if (file === undefined) throw new Error(`ENOENT: no such file, open '${path}'`);
    return Buffer.from(file.text);
  }

  version(path: string): string {
    const file = this.files.get(path);
    if (file === undefined) throw new Error(`ENOENT: no such file, stat '${path}'`);
    return String(file.version);
  }
}

const LOCAL = "127.0.0.1:50051";

function files(): FakeFiles {
  return new FakeFiles({
    "/t/token": "  s3cr3t.token-value\n",
    "/t/empty-token": "\n",
    "/t/ca.pem": "CA",
    "/t/cert.pem": "CERT",
    "/t/key.pem": "KEY",
  });
}

describe("connection options", () => {
  test("none: plaintext, no token", () => {
    const c = resolveConnection(LOCAL, {}, files());
    assert.equal(c.mode, "insecure");
    assert.equal(c.token, undefined);
    assert.equal(c.credentials._isSecure(), false);
  });

  test("plaintext only to loopback, unless insecure", () => {
    for (const target of [
      "127.0.0.1:1",
      "localhost:50051",
      "[::1]:50051",
      "ipv4:127.0.0.2:1",
      "dns:///localhost:1",
      "unix:/tmp/s",
    ]) {
      assert.equal(resolveConnection(target, {}, files()).mode, "insecure", target);
    }
    for (const target of ["10.0.0.1:50051", "interlock.internal:50051", "dns:///example.com:443", "[2001:db8::1]:1"]) {
      assert.throws(() => resolveConnection(target, {}, files()), /plaintext to .* refused/, target);
      assert.equal(resolveConnection(target, { insecure: true }, files()).mode, "insecure", target);
      assert.equal(resolveConnection(target, { tls: true }, files()).mode, "tls", target);
    }
  });

  test("target hosts", () => {
    assert.equal(targetHost("127.0.0.1:50051"), "127.0.0.1");
    assert.equal(targetHost("localhost"), "localhost");
    assert.equal(targetHost("[::1]:50051"), "::1");
    assert.equal(targetHost("ipv6:[::1]:50051"), "::1");
    assert.equal(targetHost("dns:///interlock.internal:443"), "interlock.internal");
    assert.equal(targetHost("dns://8.8.8.8/interlock.internal:443"), "interlock.internal");
    assert.equal(targetHost("unix:///run/interlock.sock"), "");
    assert.ok(isLoopbackTarget("127.255.0.1:1"));
    assert.equal(isLoopbackTarget("128.0.0.1:1"), false);
    assert.equal(isLoopbackTarget("127.0.0.1.example.com:1"), false);
  });

  test("token, or a token file (trimmed)", () => {
    assert.equal(resolveConnection(LOCAL, { token: "abc" }, files()).token?.token(), "abc");
    const c = resolveConnection(LOCAL, { tokenFile: "/t/token" }, files());
    assert.equal(c.token?.token(), "s3cr3t.token-value");
    assert.equal(c.mode, "insecure");
  });

  test("a rotated token file is read again", () => {
    const fs = files();
    let now = 1_000_000;
    const source = new TokenFile("/t/token", fs, () => now);
    assert.equal(source.token(), "s3cr3t.token-value");
    fs.write("/t/token", "second-token\n");
    assert.equal(source.token(), "s3cr3t.token-value"); // checked at most once a second
    now += TOKEN_FILE_CHECK_MS;
    assert.equal(source.token(), "second-token");
    fs.write("/t/token", ""); // caught half-written: the last good token stays
    now += TOKEN_FILE_CHECK_MS;
    assert.equal(source.token(), "second-token");
    fs.files.delete("/t/token"); // briefly missing
    now += TOKEN_FILE_CHECK_MS;
    assert.equal(source.token(), "second-token");
    fs.write("/t/token", "third-token");
    now += TOKEN_FILE_CHECK_MS;
    assert.equal(source.token(), "third-token");
  });

  test("token problems are named, the token never shown", () => {
    assert.throws(() => resolveConnection(LOCAL, { token: "a", tokenFile: "/t/token" }, files()), /not both/);
    assert.throws(
      () => resolveConnection(LOCAL, { tokenFile: "/t/missing" }, files()),
      /cannot read the token file \/t\/missing/,
    );
    assert.throws(() => resolveConnection(LOCAL, { tokenFile: "/t/empty-token" }, files()), /is empty/);
    assert.throws(
      () => validateToken("two words", "token"),
      (err: Error) => !err.message.includes("two words"),
    );
    assert.throws(() => validateToken("line\nbreak", "token"), /cannot have/);
    assert.equal(validateToken("eyJhbGciOi.J9.x-_~+/=", "token"), "eyJhbGciOi.J9.x-_~+/=");
  });

  // (the double's and the auth tests connect with real certificates; these fake files are no PEM)
  test("TLS: a CA file without a certificate is refused", () => {
    assert.throws(
      () => resolveConnection(LOCAL, { caFile: "/t/ca.pem", token: "t" }, files()),
      /CA file \/t\/ca\.pem holds no usable certificate/,
    );
  });

  test("TLS with the system roots", () => {
    assert.equal(resolveConnection(LOCAL, { tls: true }, files()).mode, "tls");
  });

  test("mutual TLS needs both certificate and key", () => {
    assert.throws(
      () => resolveConnection(LOCAL, { tls: true, certFile: "/t/cert.pem", keyFile: "/t/key.pem" }, files()),
      /TLS files \(\/t\/cert\.pem, \/t\/key\.pem\) are not usable PEM/,
    );
    assert.throws(() => resolveConnection(LOCAL, { certFile: "/t/cert.pem" }, files()), /both certFile and keyFile/);
    assert.throws(() => resolveConnection(LOCAL, { keyFile: "/t/key.pem" }, files()), /both certFile and keyFile/);
  });

  test("a missing TLS file is named", () => {
    assert.throws(() => resolveConnection(LOCAL, { caFile: "/t/nope.pem" }, files()), /CA file \/t\/nope\.pem/);
    assert.throws(
      () => resolveConnection(LOCAL, { tls: true, certFile: "/t/cert.pem", keyFile: "/t/nokey" }, files()),
      /client key file \/t\/nokey/,
    );
  });

  test("server name override", () => {
    const c = resolveConnection(LOCAL, { tlsServerName: "interlock.internal" }, files());
    assert.equal(c.mode, "tls");
    assert.equal(c.channelOptions["grpc.ssl_target_name_override"], "interlock.internal");
    assert.throws(() => resolveConnection(LOCAL, { tls: false, caFile: "/t/ca.pem" }, files()), /tls is false/);
  });
});

describe("client options", () => {
  test("defaults", () => {
    const client = new InterlockClient();
    try {
      assert.equal(client.target, "127.0.0.1:50051");
      assert.equal(client.defaultTimeoutMs, DEFAULT_TIMEOUT_MS);
      assert.equal(client.mode, "insecure");
      assert.equal(client.retryPolicy.maxRetries, 2);
      assert.equal(client.metadata().get("authorization").length, 0);
    } finally {
      client.close();
    }
  });

  test("the token goes in the authorization metadata", () => {
    const client = new InterlockClient("127.0.0.1:1", { token: "abc", retry: { maxRetries: 0 } });
    try {
      assert.deepEqual(client.metadata().get("authorization"), ["Bearer abc"]);
      assert.deepEqual(client.metadata({ "x-request-id": "r1" }).get("x-request-id"), ["r1"]);
      const named = new InterlockClient("127.0.0.1:1", { metadata: { "x-interlock-dev-principal": "alice" } });
      assert.deepEqual(named.metadata().get("x-interlock-dev-principal"), ["alice"]);
      assert.deepEqual(named.metadata({ "x-interlock-dev-principal": "bob" }).get("x-interlock-dev-principal"), [
        "bob",
      ]);
      named.close();
      assert.throws(() => new InterlockClient("127.0.0.1:1", { metadata: { authorization: "x" } }), /token/);
      assert.throws(() => client.metadata({ Authorization: "Bearer other" }), /token/);
      assert.equal(client.retryPolicy.maxRetries, 0);
    } finally {
      client.close();
    }
  });

  test("bad options throw at construction", () => {
    assert.throws(() => new InterlockClient("", {}), TypeError);
    assert.throws(() => new InterlockClient("h:1", { defaultTimeoutMs: 0 }), RangeError);
    assert.throws(() => new InterlockClient("h:1", { defaultTimeoutMs: Number.NaN }), RangeError);
    assert.throws(() => new InterlockClient("h:1", { retry: { maxRetries: -2 } }), RangeError);
    assert.throws(() => new InterlockClient("h:1", { caFile: "/nonexistent/ca.pem" }), /CA file/);
    assert.throws(() => new InterlockClient("interlock.internal:50051"), /plaintext .* refused/);
  });

  test("a closed client refuses calls", async () => {
    const client = new InterlockClient("127.0.0.1:1");
    client.close();
    client.close();
    await assert.rejects(client.listTools(), /closed/);
  });
});

describe("request helpers", () => {
  test("enum names and values", () => {
    const states = PlanState as unknown as Record<string, string | number>;
    assert.equal(enumValue(states, "PLAN_STATE", "running", "plan state"), PlanState.PLAN_STATE_RUNNING);
    assert.equal(
      enumValue(states, "PLAN_STATE", "PLAN_STATE_ROLLED_BACK", "plan state"),
      PlanState.PLAN_STATE_ROLLED_BACK,
    );
    assert.equal(enumValue(states, "PLAN_STATE", "rolled-back", "plan state"), PlanState.PLAN_STATE_ROLLED_BACK);
    assert.equal(enumValue(states, "PLAN_STATE", 3, "plan state"), 3);
    assert.throws(() => enumValue(states, "PLAN_STATE", "nope", "plan state"), /unknown plan state "nope"/);
    assert.throws(() => enumValue(states, "PLAN_STATE", "UNSPECIFIED", "plan state"), RangeError);
    const modes = ExecutionMode as unknown as Record<string, string | number>;
    assert.equal(enumName(modes, "EXECUTION_MODE", ExecutionMode.EXECUTION_MODE_DRY_RUN), "DRY_RUN");
    assert.equal(enumName(modes, "EXECUTION_MODE", 42), "42");
  });

  test("outcomes", () => {
    assert.equal(outcomeValue("succeeded"), ToolOutcome.TOOL_OUTCOME_SUCCEEDED);
    assert.equal(outcomeValue("TOOL_OUTCOME_FAILED"), ToolOutcome.TOOL_OUTCOME_FAILED);
    assert.equal(outcomeValue("timed_out"), ToolOutcome.TOOL_OUTCOME_TIMED_OUT);
    assert.equal(outcomeValue(ToolOutcome.TOOL_OUTCOME_FAILED), ToolOutcome.TOOL_OUTCOME_FAILED);
    assert.throws(() => outcomeValue("maybe"), RangeError);
    assert.throws(() => outcomeValue(ToolOutcome.TOOL_OUTCOME_UNSPECIFIED), RangeError);
  });

  test("durations", () => {
    assert.deepEqual(durationFromMs(0), { seconds: 0, nanos: 0 });
    assert.deepEqual(durationFromMs(1500.25), { seconds: 1, nanos: 500_250_000 });
    assert.throws(() => durationFromMs(-1), RangeError);
  });

  test("plan JSON documents, both formats", () => {
    const phase21 = planFromJson({
      plan_id: "plan_1",
      agent_assignments: { agent1: ["vision_inspect", "form_fill"], agent2: ["button_click"] },
      execution_order: ["vision_inspect", "form_fill", "button_click"],
      confidence_scores: { vision_inspect: 0.8, form_fill: 0.75, button_click: 0.9 },
    });
    assert.equal(phase21.spec, undefined);
    assert.equal(phase21.phase21?.planId, "plan_1");
    assert.deepEqual(phase21.phase21?.agentAssignments, {
      agent1: { tools: ["vision_inspect", "form_fill"] },
      agent2: { tools: ["button_click"] },
    });
    assert.deepEqual(phase21.phase21?.executionOrder, ["vision_inspect", "form_fill", "button_click"]);
    assert.equal(phase21.phase21?.confidenceScores["form_fill"], 0.75);

    const spec = planFromJson({
      plan_id: "refund_1",
      labels: { team: "billing" },
      steps: [
        { step_id: "a", tool: "crm_lookup", agent_id: "ops", confidence: 0.9, arguments: { record_id: "CU-12345" } },
        { step_id: "b", tool: "crm_lookup", agent_id: "ops", confidence: 0.9, depends_on: ["a"] },
      ],
    });
    assert.equal(spec.phase21, undefined);
    assert.equal(spec.spec?.planId, "refund_1");
    assert.deepEqual(spec.spec?.labels, { team: "billing" });
    assert.equal(spec.spec?.steps[0]?.agentId, "ops");
    assert.deepEqual(spec.spec?.steps[0]?.arguments, { record_id: "CU-12345" });
    assert.equal(spec.spec?.steps[1]?.arguments, undefined);
    assert.deepEqual(spec.spec?.steps[1]?.dependsOn, ["a"]);

    assert.throws(() => planFromJson([]), TypeError);
    assert.throws(() => planFromJson({ plan_id: "x" }), /neither plan format/);
    assert.throws(
      () => planFromJson({ plan_id: "x", agent_assignments: { a: "t" }, execution_order: [] }),
      /array of tool names/,
    );
  });
});

describe("worker command line", () => {
  test("flags and defaults", () => {
    const args = parseWorkerArgs(["--agent", "agent1"], {});
    assert.ok(args !== "help");
    assert.equal(args.target, "127.0.0.1:50051");
    assert.equal(args.agent, "agent1");
    assert.equal(args.maxItems, 0);
    assert.deepEqual([...args.fail], []);
    assert.deepEqual(args.connection, {});
  });

  test("environment and every flag", () => {
    const fromEnv = parseWorkerArgs(["--agent", "a"], { INTERLOCK_SERVER: "h:1", INTERLOCK_TOKEN: " tok\n" });
    assert.ok(fromEnv !== "help");
    assert.equal(fromEnv.target, "h:1");
    assert.deepEqual(fromEnv.connection, { token: "tok" });
    const all = parseWorkerArgs(
      [
        "--target",
        "h:2",
        "--agent",
        "a",
        "--token-file",
        "/t",
        "--ca-file",
        "/ca",
        "--cert-file",
        "/c",
        "--key-file",
        "/k",
        "--fail",
        "x",
        "--fail",
        "y",
        "--max-items",
        "3",
      ],
      { INTERLOCK_SERVER: "h:1", INTERLOCK_TOKEN: "ignored" },
    );
    assert.ok(all !== "help");
    assert.equal(all.target, "h:2");
    assert.deepEqual(all.connection, { tokenFile: "/t", caFile: "/ca", certFile: "/c", keyFile: "/k" });
    assert.deepEqual([...all.fail], ["x", "y"]);
    assert.equal(all.maxItems, 3);
    assert.equal(parseWorkerArgs(["--help"], {}), "help");
  });

  test("usage errors", () => {
    assert.throws(() => parseWorkerArgs([], {}), UsageError);
    assert.throws(() => parseWorkerArgs(["--agent", "a", "--max-items", "-1"], {}), UsageError);
    assert.throws(() => parseWorkerArgs(["--agent", "a", "--max-items", "two"], {}), UsageError);
    assert.throws(() => parseWorkerArgs(["--agent", "a", "--bogus"], {}), UsageError);
    assert.throws(() => parseWorkerArgs(["--agent", "a", "extra"], {}), UsageError);
    assert.throws(() => parseWorkerArgs(["--agent", "a", "--cert-file", "/c"], {}), UsageError);
  });
});
