/**
 * When a failed call may be sent again, and how long to wait first.
 *
 * Only idempotent reads are retried, and only on UNAVAILABLE (the request
 * never reached a server that could answer it). Calls that decide, record or
 * change something are never retried: a retry could record a call twice, or
 * run a LIVE tool call twice. Streams are never retried either: their callers
 * reconnect (see the example worker).
 */

import { status as Status } from "@grpc/grpc-js";

/** The RPCs that only read, and so may be retried. */
export const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set([
  "ListTools",
  "GetPlan",
  "ListPlans",
  "ListApprovals",
  "GetTrust",
  "ListGrants",
  "GetHealth",
  "ListSignals",
  "GetPolicyStatus",
]);

/** How many retries, and the backoff between attempts. */
export interface RetryPolicy {
  /** Retries after the first attempt (0 disables retrying). */
  maxRetries: number;
  /** The wait before the first retry, in milliseconds; it doubles each time. */
  initialBackoffMs: number;
  /** The longest wait between two attempts, in milliseconds. */
  maxBackoffMs: number;
}

export const DEFAULT_RETRY_POLICY: Readonly<RetryPolicy> = Object.freeze({
  maxRetries: 2,
  initialBackoffMs: 100,
  maxBackoffMs: 1000,
});

/** Whether `method` (the RPC's name, e.g. "GetPlan") may be retried at all. */
export function isIdempotent(method: string): boolean {
  return IDEMPOTENT_METHODS.has(method);
}

/**
 * Whether attempt number `attempt` (0 for the first) of `method`, which failed
 * with gRPC status `code`, may be sent again.
 */
export function shouldRetry(method: string, code: number, attempt: number, policy: RetryPolicy): boolean {
  return isIdempotent(method) && code === Status.UNAVAILABLE && attempt < policy.maxRetries;
}

/**
 * The wait before retry number `retry` (0 for the first): capped exponential
 * backoff with "equal jitter" (between half and all of the step), so clients
 * that failed together do not all come back at once. `random` is in [0, 1).
 */
export function backoffMs(retry: number, policy: RetryPolicy, random: () => number = Math.random): number {
  const step = Math.min(policy.maxBackoffMs, policy.initialBackoffMs * 2 ** Math.max(0, retry));
  return Math.round(step / 2 + (step / 2) * random());
}

/** Checks a retry policy's numbers; throws a RangeError naming the bad one. */
export function validateRetryPolicy(policy: RetryPolicy): RetryPolicy {
  if (!Number.isInteger(policy.maxRetries) || policy.maxRetries < 0) {
    throw new RangeError(`maxRetries must be a whole number >= 0, not ${policy.maxRetries}`);
  }
  if (!(policy.initialBackoffMs >= 0) || !Number.isFinite(policy.initialBackoffMs)) {
    throw new RangeError(`initialBackoffMs must be >= 0, not ${policy.initialBackoffMs}`);
  }
  if (!(policy.maxBackoffMs >= policy.initialBackoffMs) || !Number.isFinite(policy.maxBackoffMs)) {
    throw new RangeError(`maxBackoffMs must be >= initialBackoffMs, not ${policy.maxBackoffMs}`);
  }
  return policy;
}
