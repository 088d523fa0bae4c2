import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { status } from "@grpc/grpc-js";

import { DEFAULT_RETRY_POLICY, backoffMs, isIdempotent, shouldRetry, validateRetryPolicy } from "../retry";

const READS = ["ListTools", "GetPlan", "ListPlans", "ListApprovals", "GetHealth", "ListSignals"];
const NEVER = [
  "RequestToolCall",
  "ReportToolResult",
  "SubmitPlan",
  "ResolveApproval",
  "CancelPlan",
  "AwaitApproval",
  "PullWork",
  "WatchEvents",
];

describe("retry decisions", () => {
  test("the idempotent reads are retried on UNAVAILABLE", () => {
    for (const method of READS) {
      assert.ok(isIdempotent(method), method);
      assert.ok(shouldRetry(method, status.UNAVAILABLE, 0, DEFAULT_RETRY_POLICY), method);
    }
  });

  test("calls that decide, record or change something are never retried", () => {
    for (const method of NEVER) {
      assert.equal(isIdempotent(method), false, method);
      assert.equal(shouldRetry(method, status.UNAVAILABLE, 0, DEFAULT_RETRY_POLICY), false, method);
    }
  });

  test("only UNAVAILABLE is retried", () => {
    for (const code of [
      status.DEADLINE_EXCEEDED,
      status.NOT_FOUND,
      status.INVALID_ARGUMENT,
      status.INTERNAL,
      status.UNKNOWN,
      status.CANCELLED,
      status.RESOURCE_EXHAUSTED,
      status.UNAUTHENTICATED,
      status.PERMISSION_DENIED,
    ]) {
      assert.equal(shouldRetry("GetPlan", code, 0, DEFAULT_RETRY_POLICY), false, String(code));
    }
  });

  test("at most maxRetries retries", () => {
    const policy = { maxRetries: 2, initialBackoffMs: 10, maxBackoffMs: 100 };
    assert.ok(shouldRetry("ListTools", status.UNAVAILABLE, 0, policy));
    assert.ok(shouldRetry("ListTools", status.UNAVAILABLE, 1, policy));
    assert.equal(shouldRetry("ListTools", status.UNAVAILABLE, 2, policy), false);
    assert.equal(shouldRetry("ListTools", status.UNAVAILABLE, 0, { ...policy, maxRetries: 0 }), false);
  });
});

describe("backoff", () => {
  const policy = { maxRetries: 10, initialBackoffMs: 100, maxBackoffMs: 1000 };

  test("doubles, within [step/2, step]", () => {
    assert.equal(
      backoffMs(0, policy, () => 0),
      50,
    );
    assert.equal(
      backoffMs(0, policy, () => 0.999999),
      100,
    );
    assert.equal(
      backoffMs(1, policy, () => 0.999999),
      200,
    );
    assert.equal(
      backoffMs(2, policy, () => 0),
      200,
    );
    for (let i = 0; i < 100; i++) {
      const ms = backoffMs(3, policy);
      assert.ok(ms >= 400 && ms <= 800, String(ms));
    }
  });

  test("is capped", () => {
    assert.equal(
      backoffMs(4, policy, () => 0.999999),
      1000,
    );
    assert.equal(
      backoffMs(60, policy, () => 0.999999),
      1000,
    );
    assert.equal(
      backoffMs(5000, policy, () => 0),
      500,
    );
  });

  test("policy validation", () => {
    assert.deepEqual(validateRetryPolicy(policy), policy);
    assert.throws(() => validateRetryPolicy({ ...policy, maxRetries: -1 }), RangeError);
    assert.throws(() => validateRetryPolicy({ ...policy, maxRetries: 1.5 }), RangeError);
    assert.throws(() => validateRetryPolicy({ ...policy, initialBackoffMs: -1 }), RangeError);
    assert.throws(() => validateRetryPolicy({ ...policy, maxBackoffMs: 50 }), RangeError);
    assert.throws(() => validateRetryPolicy({ ...policy, maxBackoffMs: Infinity }), RangeError);
  });
});
