/**
 * {@link InterlockClient}: a promise-based wrapper of the Interlock gRPC API
 * (package interlock.v1) on @grpc/grpc-js.
 *
 * - Every method returns the server's message (the generated types in
 *   `src/gen`) and rejects with an {@link InterlockError} when the call fails.
 *   A response with a single message field is unwrapped (requestToolCall gives
 *   a `Decision`, getPlan a `Plan`); the others come whole.
 * - Deadlines: each unary call (each attempt, when retried) gets
 *   `defaultTimeoutMs` unless the call's options say otherwise. The streams
 *   (pullWork, watchEvents) have no deadline unless given one.
 * - Retries: only the idempotent reads (listTools, getPlan, listPlans,
 *   listApprovals, getHealth, listSignals) are retried, on UNAVAILABLE only,
 *   with a capped exponential backoff. Calls that decide, record or change
 *   something are never retried, nor are the streams.
 * - Authentication: see {@link ConnectionOptions} (bearer token, TLS, mTLS).
 */

import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import {
  type CallOptions as GrpcCallOptions,
  type ChannelOptions,
  type ClientReadableStream,
  type ClientUnaryCall,
  Metadata,
  type ServiceError,
  status as Status,
} from "@grpc/grpc-js";

import {
  type ConnectionMode,
  type ConnectionOptions,
  type TokenSource,
  channelTarget,
  resolveConnection,
} from "./connection";
import { InterlockError } from "./errors";
import { DEFAULT_RETRY_POLICY, type RetryPolicy, backoffMs, shouldRetry, validateRetryPolicy } from "./retry";
import {
  ControlPlaneClient,
  GetHealthRequest,
  type GetHealthResponse,
  ListApprovalsRequest,
  type ListApprovalsResponse,
  ListPlansRequest,
  type ListPlansResponse,
  ListSignalsRequest,
  type ListSignalsResponse,
  ListToolsRequest,
  type ListToolsResponse,
  type AwaitApprovalRequest,
  type AwaitApprovalResponse,
  type CancelPlanRequest,
  type CancelPlanResponse,
  type GetPlanRequest,
  type GetPlanResponse,
  type ReportToolResultRequest,
  type ReportToolResultResponse,
  RequestToolCallRequest,
  type RequestToolCallResponse,
  type ResolveApprovalRequest,
  type ResolveApprovalResponse,
  SubmitPlanRequest,
  type SubmitPlanResponse,
  WatchEventsRequest,
} from "./gen/interlock/v1/control_plane";
import {
  ApprovalResolution,
  ApprovalState,
  type Approval,
  type Event,
  EventKind,
  SignalKind,
} from "./gen/interlock/v1/observe";
import {
  type CreateGrantRequest,
  type CreateGrantResponse,
  type Grant,
  GrantServiceClient,
  GrantState,
  ListGrantsRequest,
  type ListGrantsResponse,
  type RevokeGrantRequest,
  type RevokeGrantResponse,
} from "./gen/interlock/v1/grants";
import { Phase21Plan, PlanSpec, PlanState, type Plan, type WorkItem } from "./gen/interlock/v1/plans";
import {
  EvaluatePolicyRequest,
  type EvaluatePolicyResponse,
  type GetPolicyStatusRequest,
  type GetPolicyStatusResponse,
  PolicyServiceClient,
  type ReloadPoliciesRequest,
  type ReloadPoliciesResponse,
} from "./gen/interlock/v1/policy_service";
import {
  type GetTrustRequest,
  type GetTrustResponse,
  type PairTrust,
  type ResetTrustRequest,
  type ResetTrustResponse,
  TrustServiceClient,
} from "./gen/interlock/v1/trust";
import { type Decision, type ToolResult, ToolOutcome } from "./gen/interlock/v1/types";

export const DEFAULT_TARGET = "127.0.0.1:50051";
export const DEFAULT_TIMEOUT_MS = 5000;

/** A JSON object (tool arguments, outputs). */
export type JsonObject = { [key: string]: unknown };

/** Every field optional, all the way down: what a request may leave out (proto3 defaults apply). */
export type DeepPartial<T> = T extends Date | Uint8Array | string | number | boolean | undefined
  ? T
  : T extends Array<infer U>
    ? Array<DeepPartial<U>>
    : T extends object
      ? { [K in keyof T]?: DeepPartial<T[K]> }
      : T;

/** Options of an {@link InterlockClient}. */
export interface InterlockClientOptions extends ConnectionOptions {
  /** The deadline of each unary call (each attempt), in milliseconds [5000]. */
  defaultTimeoutMs?: number;
  /** How idempotent reads are retried on UNAVAILABLE; `{maxRetries: 0}` disables it. */
  retry?: Partial<RetryPolicy>;
  /** Extra @grpc/grpc-js channel options. */
  channelOptions?: ChannelOptions;
  /**
   * Extra metadata on every call and stream, e.g. `x-request-id`, or
   * `x-interlock-dev-principal` to name the caller of a development server.
   */
  metadata?: Record<string, string>;
}

/** Options of one unary call. */
export interface CallOptions {
  /** This call's deadline in milliseconds (each attempt), instead of defaultTimeoutMs. */
  timeoutMs?: number;
  /** Cancels the call (it then rejects with CANCELLED). */
  signal?: AbortSignal;
  /** Extra metadata (e.g. x-request-id). */
  metadata?: Record<string, string>;
}

/** Options of a stream. */
export interface StreamOptions {
  /** A deadline for the whole stream, in milliseconds; none by default. */
  timeoutMs?: number;
  /** Ends the stream: the iteration then just stops (no error). */
  signal?: AbortSignal;
  /** Extra metadata. */
  metadata?: Record<string, string>;
}

/** An outcome by name ("SUCCEEDED", "FAILED", "TIMED_OUT", any case, prefix optional) or value. */
export type OutcomeInput = ToolOutcome | "SUCCEEDED" | "FAILED" | "TIMED_OUT" | string;

/** What {@link InterlockClient.reportToolResult} sends. */
export interface ReportInput {
  decisionId: string;
  agentId: string;
  outcome: OutcomeInput;
  output?: JsonObject;
  errorMessage?: string;
  /** How long the call ran, in milliseconds. */
  durationMs?: number;
  /** The work item's id, when reporting a plan step. */
  workId?: string;
}

/** Optional parts of a work report ({@link InterlockClient.reportWork}). */
export interface WorkReport {
  output?: JsonObject;
  errorMessage?: string;
  durationMs?: number;
  /** Report as this agent instead of the item's (the server refuses another agent). */
  agentId?: string;
}

type EnumObject = Record<string, string | number>;

/**
 * An enum value from a name ("RUNNING" or "PLAN_STATE_RUNNING", any case) or a
 * number. Throws a RangeError for an unknown name.
 */
export function enumValue(enumObject: EnumObject, prefix: string, value: string | number, what: string): number {
  if (typeof value === "number") return value;
  const name = value.trim().toUpperCase().replace(/-/g, "_");
  const full = name.startsWith(`${prefix}_`) ? name : `${prefix}_${name}`;
  const found = enumObject[full];
  if (typeof found !== "number" || found <= 0) {
    throw new RangeError(`unknown ${what} ${JSON.stringify(value)}`);
  }
  return found;
}

/** The name of an enum value without its prefix (ExecutionMode.EXECUTION_MODE_LIVE -> "LIVE"). */
export function enumName(enumObject: EnumObject, prefix: string, value: number): string {
  const name = enumObject[value];
  if (typeof name !== "string") return String(value);
  return name.startsWith(`${prefix}_`) ? name.slice(prefix.length + 1) : name;
}

/** A ToolOutcome from a name or value; only SUCCEEDED, FAILED and TIMED_OUT are reports. */
export function outcomeValue(outcome: OutcomeInput): ToolOutcome {
  const value = enumValue(ToolOutcome as unknown as EnumObject, "TOOL_OUTCOME", outcome, "outcome");
  if (
    value !== ToolOutcome.TOOL_OUTCOME_SUCCEEDED &&
    value !== ToolOutcome.TOOL_OUTCOME_FAILED &&
    value !== ToolOutcome.TOOL_OUTCOME_TIMED_OUT
  ) {
    throw new RangeError(`outcome must be SUCCEEDED, FAILED or TIMED_OUT, not ${JSON.stringify(outcome)}`);
  }
  return value;
}

/** Milliseconds as a google.protobuf.Duration. */
export function durationFromMs(ms: number): { seconds: number; nanos: number } {
  if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`a duration must be >= 0 ms, not ${ms}`);
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * The SubmitPlanRequest of a plan JSON document as the CLI reads it, in either
 * format: explicit steps (`plan_id`, `labels`, `steps` of `step_id`, `tool`,
 * `agent_id`, `arguments`, `confidence`, `depends_on`) or Phase-21 (`plan_id`,
 * `agent_assignments` {agent: [tools]}, `execution_order`, `confidence_scores`).
 * camelCase keys work too. The server validates the rest and lists every problem.
 */
export function planFromJson(doc: unknown): SubmitPlanRequest {
  if (!isPlainObject(doc)) throw new TypeError("a plan must be a JSON object");
  if ("steps" in doc) {
    return { spec: PlanSpec.fromJSON(doc), phase21: undefined };
  }
  if ("agent_assignments" in doc || "agentAssignments" in doc || "execution_order" in doc || "executionOrder" in doc) {
    const assignments = doc["agent_assignments"] ?? doc["agentAssignments"];
    const plan = Phase21Plan.fromJSON({ ...doc, agent_assignments: undefined, agentAssignments: undefined });
    if (assignments !== undefined && assignments !== null) {
      if (!isPlainObject(assignments)) throw new TypeError("agent_assignments must be an object of tool lists");
      for (const [agent, tools] of Object.entries(assignments)) {
        const list = Array.isArray(tools)
          ? tools
          : isPlainObject(tools) && Array.isArray(tools["tools"])
            ? tools["tools"]
            : null;
        if (list === null) throw new TypeError(`agent_assignments.${agent} must be an array of tool names`);
        plan.agentAssignments[agent] = { tools: list.map((t) => String(t)) };
      }
    }
    return { phase21: plan, spec: undefined };
  }
  throw new TypeError(
    "the document is neither plan format: expected 'steps' (a spec plan) or 'agent_assignments' and 'execution_order' (a Phase-21 plan)",
  );
}

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<GrpcCallOptions>,
  callback: (error: ServiceError | null, response?: Res) => void,
) => ClientUnaryCall;

function cancelledError(what: string): InterlockError {
  return new InterlockError({ code: Status.CANCELLED, message: `${what} was cancelled by the caller` });
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(cancelledError("the call"));
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(cancelledError("the call"));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * A client of one Interlock server, or of several replicas.
 *
 * ```ts
 * const client = new InterlockClient("127.0.0.1:50051", { tokenFile: "token.txt", caFile: "ca.pem" });
 * // Replicas sharing one database: calls spread over them (round_robin).
 * const replicas = new InterlockClient(["10.0.0.1:50051", "10.0.0.2:50051"], { caFile: "ca.pem" });
 * const { tools } = await client.listTools();
 * client.close();
 * ```
 *
 * Construction reads the token and TLS files and throws if one is missing;
 * the connection itself opens on the first call.
 */
export class InterlockClient {
  /** The server's address, or the replicas' addresses joined with commas. */
  readonly target: string;
  /** "insecure" (plaintext), "tls" or "mtls". */
  readonly mode: ConnectionMode;
  readonly defaultTimeoutMs: number;
  readonly retryPolicy: Readonly<RetryPolicy>;
  /** The generated ControlPlane client, for what this wrapper does not cover. */
  readonly controlPlane: ControlPlaneClient;
  /** The generated PolicyService client (same channel). */
  readonly policyService: PolicyServiceClient;
  /** The generated TrustService client (same channel). */
  readonly trustService: TrustServiceClient;
  /** The generated GrantService client (same channel). */
  readonly grantService: GrantServiceClient;
  private readonly token: TokenSource | undefined;
  private readonly extraMetadata: Readonly<Record<string, string>>;
  private readonly inFlight = new Set<{ cancel(): void }>();
  private closed = false;

  constructor(target: string | readonly string[] = DEFAULT_TARGET, options: InterlockClientOptions = {}) {
    if (typeof target !== "string" && !Array.isArray(target)) throw new TypeError("the target must be HOST:PORT");
    const channel = channelTarget(target);
    const timeout = options.defaultTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isFinite(timeout) || timeout <= 0) {
      throw new RangeError(`defaultTimeoutMs must be a positive number, not ${timeout}`);
    }
    this.target = channel.display;
    this.defaultTimeoutMs = timeout;
    this.retryPolicy = Object.freeze(validateRetryPolicy({ ...DEFAULT_RETRY_POLICY, ...options.retry }));
    const connection = resolveConnection(channel.uri, options);
    this.mode = connection.mode;
    this.token = connection.token;
    this.extraMetadata = { ...options.metadata };
    this.metadata(); // checks the extra metadata now
    const channelOptions = { ...channel.channelOptions, ...connection.channelOptions, ...options.channelOptions };
    this.controlPlane = new ControlPlaneClient(channel.uri, connection.credentials, channelOptions);
    this.policyService = new PolicyServiceClient(channel.uri, connection.credentials, {
      ...channelOptions,
      channelOverride: this.controlPlane.getChannel(),
    });
    this.grantService = new GrantServiceClient(channel.uri, connection.credentials, {
      ...channelOptions,
      channelOverride: this.controlPlane.getChannel(),
    });
    this.trustService = new TrustServiceClient(channel.uri, connection.credentials, {
      ...channelOptions,
      channelOverride: this.controlPlane.getChannel(),
    });
  }

  /** Closes the channel; calls and streams in flight are cancelled. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const call of [...this.inFlight]) call.cancel();
    this.inFlight.clear();
    this.controlPlane.close();
  }

  /** Resolves once the channel is connected; rejects (UNAVAILABLE) after timeoutMs. */
  waitForReady(timeoutMs: number = this.defaultTimeoutMs): Promise<void> {
    return new Promise((resolve, reject) => {
      this.controlPlane.waitForReady(Date.now() + timeoutMs, (err) => {
        if (err) {
          reject(
            new InterlockError({ code: Status.UNAVAILABLE, message: `${this.target}: ${err.message}`, cause: err }),
          );
        } else resolve();
      });
    });
  }

  /** The metadata of one call: the bearer token, the client's extra entries, then the call's. */
  metadata(extra?: Record<string, string>): Metadata {
    const md = new Metadata();
    if (this.token !== undefined) md.set("authorization", `Bearer ${this.token.token()}`);
    for (const entries of [this.extraMetadata, extra ?? {}]) {
      for (const [key, value] of Object.entries(entries)) {
        if (key.toLowerCase() === "authorization") throw new Error("set the token with the token or tokenFile option");
        md.set(key, value);
      }
    }
    return md;
  }

  private ensureOpen(): void {
    if (this.closed) throw new Error("the InterlockClient is closed");
  }

  private once<Req, Res>(method: string, fn: UnaryMethod<Req, Res>, request: Req, options: CallOptions): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      const signal = options.signal;
      if (signal?.aborted) return reject(cancelledError(method));
      const timeoutMs = options.timeoutMs ?? this.defaultTimeoutMs;
      let onAbort: (() => void) | undefined;
      const call = fn(
        request,
        this.metadata(options.metadata),
        { deadline: Date.now() + timeoutMs },
        (error, response) => {
          this.inFlight.delete(call);
          if (onAbort) signal?.removeEventListener("abort", onAbort);
          if (error) reject(InterlockError.fromServiceError(error));
          else if (response === undefined) {
            reject(new InterlockError({ code: Status.INTERNAL, message: `${method}: no response` }));
          } else resolve(response);
        },
      );
      this.inFlight.add(call);
      if (signal) {
        onAbort = () => call.cancel();
        signal.addEventListener("abort", onAbort, { once: true });
      }
    });
  }

  /** One unary call, retried on UNAVAILABLE when the method is idempotent. */
  private async unary<Req, Res>(
    method: string,
    fn: UnaryMethod<Req, Res>,
    request: Req,
    options: CallOptions = {},
  ): Promise<Res> {
    for (let attempt = 0; ; attempt++) {
      this.ensureOpen();
      try {
        return await this.once(method, fn, request, options);
      } catch (err) {
        if (!(err instanceof InterlockError) || !shouldRetry(method, err.code, attempt, this.retryPolicy)) throw err;
        if (options.signal?.aborted || this.closed) throw err;
        await sleep(backoffMs(attempt, this.retryPolicy), options.signal);
      }
    }
  }

  /** A server stream as an async generator; breaking out of the loop cancels the call. */
  private async *stream<Res, Item>(
    open: (metadata: Metadata, options: Partial<GrpcCallOptions>) => ClientReadableStream<Res>,
    pick: (response: Res) => Item | undefined,
    options: StreamOptions = {},
  ): AsyncGenerator<Item, void, undefined> {
    this.ensureOpen();
    const signal = options.signal;
    if (signal?.aborted) return;
    const callOptions: Partial<GrpcCallOptions> =
      options.timeoutMs !== undefined ? { deadline: Date.now() + options.timeoutMs } : {};
    const call = open(this.metadata(options.metadata), callOptions);
    let stoppedByUs = false;
    const stop = {
      cancel: (): void => {
        stoppedByUs = true;
        call.cancel();
      },
    };
    this.inFlight.add(stop);
    const onAbort = (): void => stop.cancel();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      for await (const response of call as AsyncIterable<Res>) {
        if (stoppedByUs) return;
        const item = pick(response);
        if (item !== undefined) yield item;
        if (stoppedByUs) return;
      }
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (stoppedByUs && code === Status.CANCELLED) return;
      throw InterlockError.fromServiceError(err);
    } finally {
      this.inFlight.delete(stop);
      signal?.removeEventListener("abort", onAbort);
      call.on("error", () => undefined); // the CANCELLED status of a stream we stopped reading
      call.cancel();
    }
  }

  // ControlPlane: tools and decisions ---------------------------------------------

  /** The tool contracts of the active policy set (`tools`) and its `policyRevision`. Retried. */
  listTools(options?: CallOptions): Promise<ListToolsResponse> {
    return this.unary(
      "ListTools",
      (r, m, o, cb) => this.controlPlane.listTools(r, m, o, cb),
      ListToolsRequest.fromPartial({}),
      options,
    );
  }

  /**
   * Asks whether, and in which mode, `agentId` may call `tool`; never retried.
   * Returns the Decision (`verdict`, `mode`, `reasons`, `decisionId` to report against).
   * The server refuses a call without a `confidence` (INVALID_ARGUMENT).
   */
  async requestToolCall(request: DeepPartial<RequestToolCallRequest>, options?: CallOptions): Promise<Decision> {
    const response = await this.unary<RequestToolCallRequest, RequestToolCallResponse>(
      "RequestToolCall",
      (r, m, o, cb) => this.controlPlane.requestToolCall(r, m, o, cb),
      RequestToolCallRequest.fromPartial(request),
      options,
    );
    return required(response.decision, "RequestToolCall", "decision");
  }

  /** Reports how a decided call ended; never retried. A second report gives ALREADY_EXISTS. */
  async reportToolResult(report: ReportInput, options?: CallOptions): Promise<ToolResult> {
    const request = {
      decisionId: report.decisionId,
      agentId: report.agentId,
      outcome: outcomeValue(report.outcome),
      output: report.output ?? {},
      errorMessage: report.errorMessage ?? "",
      duration: durationFromMs(report.durationMs ?? 0),
      workId: report.workId ?? "",
    };
    const response = await this.unary<ReportToolResultRequest, ReportToolResultResponse>(
      "ReportToolResult",
      (r, m, o, cb) => this.controlPlane.reportToolResult(r, m, o, cb),
      request,
      options,
    );
    return required(response.result, "ReportToolResult", "result");
  }

  // Plans ---------------------------------------------------------------------------

  /**
   * Submits a plan; never retried. Give `{spec: {...}}` or `{phase21: {...}}`, or
   * `planFromJson(doc)` for a plan JSON file. Returns the accepted Plan; an
   * invalid one is refused with INVALID_ARGUMENT (reason INVALID_PLAN) listing
   * every problem in `fieldViolations`.
   */
  async submitPlan(request: DeepPartial<SubmitPlanRequest>, options?: CallOptions): Promise<Plan> {
    const response = await this.unary<SubmitPlanRequest, SubmitPlanResponse>(
      "SubmitPlan",
      (r, m, o, cb) => this.controlPlane.submitPlan(r, m, o, cb),
      SubmitPlanRequest.fromPartial(request),
      options,
    );
    return required(response.plan, "SubmitPlan", "plan");
  }

  /** A plan with its steps and conflicts; NOT_FOUND if unknown. Retried. */
  async getPlan(planId: string, options?: CallOptions): Promise<Plan> {
    const response = await this.unary<GetPlanRequest, GetPlanResponse>(
      "GetPlan",
      (r, m, o, cb) => this.controlPlane.getPlan(r, m, o, cb),
      { planId },
      options,
    );
    return required(response.plan, "GetPlan", "plan");
  }

  /**
   * One page of plans (`plans`, `nextPageToken`: empty on the last page). `states`
   * are names ("RUNNING" or "PLAN_STATE_RUNNING") or PlanState values. Retried.
   */
  listPlans(
    query: { states?: Array<PlanState | string>; pageSize?: number; pageToken?: string } = {},
    options?: CallOptions,
  ): Promise<ListPlansResponse> {
    const request = ListPlansRequest.fromPartial({
      states: (query.states ?? []).map((s) =>
        enumValue(PlanState as unknown as EnumObject, "PLAN_STATE", s, "plan state"),
      ),
      pageSize: query.pageSize ?? 0,
      pageToken: query.pageToken ?? "",
    });
    return this.unary("ListPlans", (r, m, o, cb) => this.controlPlane.listPlans(r, m, o, cb), request, options);
  }

  /**
   * Polls a plan until it finishes (SUCCEEDED, FAILED, FAILED_PARTIAL, CANCELLED
   * or ROLLED_BACK) and returns it; rejects with DEADLINE_EXCEEDED after `timeoutMs`.
   */
  async waitForPlan(
    planId: string,
    wait: { timeoutMs?: number; pollMs?: number; signal?: AbortSignal } = {},
  ): Promise<Plan> {
    const until = Date.now() + (wait.timeoutMs ?? 60_000);
    for (;;) {
      const plan = await this.getPlan(planId, { signal: wait.signal });
      if (FINISHED_PLAN_STATES.has(plan.state)) return plan;
      if (Date.now() >= until) {
        throw new InterlockError({
          code: Status.DEADLINE_EXCEEDED,
          message: `plan ${planId} is still ${enumName(PlanState as unknown as EnumObject, "PLAN_STATE", plan.state)}`,
        });
      }
      await sleep(Math.min(wait.pollMs ?? 200, Math.max(1, until - Date.now())), wait.signal);
    }
  }

  /** Cancels a plan that has not finished; never retried. A finished plan gives FAILED_PRECONDITION. */
  async cancelPlan(planId: string, reason = "", options?: CallOptions): Promise<Plan> {
    const response = await this.unary<CancelPlanRequest, CancelPlanResponse>(
      "CancelPlan",
      (r, m, o, cb) => this.controlPlane.cancelPlan(r, m, o, cb),
      { planId, reason },
      { timeoutMs: Math.max(this.defaultTimeoutMs, 15000), ...options },
    );
    return required(response.plan, "CancelPlan", "plan");
  }

  // Approvals -------------------------------------------------------------------------

  /** Approvals (PENDING ones when `states` is empty), filtered. Retried. */
  listApprovals(
    query: { states?: Array<ApprovalState | string>; planId?: string; agentId?: string; tool?: string } = {},
    options?: CallOptions,
  ): Promise<ListApprovalsResponse> {
    const request = ListApprovalsRequest.fromPartial({
      states: (query.states ?? []).map((s) =>
        enumValue(ApprovalState as unknown as EnumObject, "APPROVAL_STATE", s, "approval state"),
      ),
      planId: query.planId ?? "",
      agentId: query.agentId ?? "",
      tool: query.tool ?? "",
    });
    return this.unary("ListApprovals", (r, m, o, cb) => this.controlPlane.listApprovals(r, m, o, cb), request, options);
  }

  /** Approves or denies a held call ("APPROVE" / "DENY" or the enum); never retried. */
  async resolveApproval(
    input: { approvalId: string; resolution: ApprovalResolution | "APPROVE" | "DENY" | string; reason?: string },
    options?: CallOptions,
  ): Promise<Approval> {
    const request = {
      approvalId: input.approvalId,
      resolution: enumValue(
        ApprovalResolution as unknown as EnumObject,
        "APPROVAL_RESOLUTION",
        input.resolution,
        "approval resolution",
      ),
      reason: input.reason ?? "",
    };
    const response = await this.unary<ResolveApprovalRequest, ResolveApprovalResponse>(
      "ResolveApproval",
      (r, m, o, cb) => this.controlPlane.resolveApproval(r, m, o, cb),
      request,
      options,
    );
    return required(response.approval, "ResolveApproval", "approval");
  }

  // Grants (docs/grants.md) ----------------------------------------------------------

  /**
   * Lets `agentId` call `tool` without a new approval while its arguments satisfy
   * the constraint (exact values, whole-match patterns, a JSON Schema subset),
   * until `expiresAt` and up to `maxUses` times (0: no limit), as the
   * authenticated caller (an approver or an admin). Never retried.
   */
  async createGrant(
    input: {
      agentId: string;
      tool: string;
      expiresAt: Date;
      maxUses?: number;
      argumentsEqual?: Record<string, unknown>;
      argumentPatterns?: Record<string, string>;
      argumentsSchema?: Record<string, unknown>;
      planId?: string;
      reason?: string;
      approvalId?: string;
    },
    options?: CallOptions,
  ): Promise<Grant> {
    const request: CreateGrantRequest = {
      agentId: input.agentId,
      tool: input.tool,
      expiresAt: input.expiresAt,
      maxUses: input.maxUses ?? 0,
      argumentsEqual: input.argumentsEqual,
      argumentPatterns: input.argumentPatterns,
      argumentsSchema: input.argumentsSchema,
      planId: input.planId ?? "",
      reason: input.reason ?? "",
      approvalId: input.approvalId ?? "",
    };
    const response = await this.unary<CreateGrantRequest, CreateGrantResponse>(
      "CreateGrant",
      (r, m, o, cb) => this.grantService.createGrant(r, m, o, cb),
      request,
      options,
    );
    return required(response.grant, "CreateGrant", "grant");
  }

  /** Grants, newest first, of one agent or tool and in `states` (all when empty). Retried. */
  listGrants(
    query: { agentId?: string; tool?: string; states?: Array<GrantState | string> } = {},
    options?: CallOptions,
  ): Promise<ListGrantsResponse> {
    const request = ListGrantsRequest.fromPartial({
      agentId: query.agentId ?? "",
      tool: query.tool ?? "",
      states: (query.states ?? []).map((s) =>
        enumValue(GrantState as unknown as EnumObject, "GRANT_STATE", s, "grant state"),
      ),
    });
    return this.unary("ListGrants", (r, m, o, cb) => this.grantService.listGrants(r, m, o, cb), request, options);
  }

  /** Revokes a grant at once: it covers no call from now on. Never retried. */
  async revokeGrant(grantId: string, reason = "", options?: CallOptions): Promise<Grant> {
    const response = await this.unary<RevokeGrantRequest, RevokeGrantResponse>(
      "RevokeGrant",
      (r, m, o, cb) => this.grantService.revokeGrant(r, m, o, cb),
      { grantId, reason },
      options,
    );
    return required(response.grant, "RevokeGrant", "grant");
  }

  /**
   * Waits until an approval is resolved or expires, for at most `waitMs` (the
   * server's limit when omitted). The call's deadline is `waitMs` plus
   * defaultTimeoutMs unless `options.timeoutMs` is given. Not retried.
   */
  async awaitApproval(approvalId: string, waitMs?: number, options: CallOptions = {}): Promise<Approval> {
    const request = { approvalId, timeout: waitMs !== undefined ? durationFromMs(waitMs) : undefined };
    const timeoutMs = options.timeoutMs ?? (waitMs ?? 0) + this.defaultTimeoutMs;
    const response = await this.unary<AwaitApprovalRequest, AwaitApprovalResponse>(
      "AwaitApproval",
      (r, m, o, cb) => this.controlPlane.awaitApproval(r, m, o, cb),
      request,
      { ...options, timeoutMs },
    );
    return required(response.approval, "AwaitApproval", "approval");
  }

  // Health and signals ------------------------------------------------------------------

  /** The server's health: status, score, components, engine, decision counts. Retried. */
  getHealth(options?: CallOptions): Promise<GetHealthResponse> {
    return this.unary(
      "GetHealth",
      (r, m, o, cb) => this.controlPlane.getHealth(r, m, o, cb),
      GetHealthRequest.fromPartial({}),
      options,
    );
  }

  /** Learning signals, newest first; `kinds` by name ("TOOL_RELIABILITY") or value. Retried. */
  listSignals(
    query: { kinds?: Array<SignalKind | string>; tool?: string; limit?: number } = {},
    options?: CallOptions,
  ): Promise<ListSignalsResponse> {
    const request = ListSignalsRequest.fromPartial({
      kinds: (query.kinds ?? []).map((k) =>
        enumValue(SignalKind as unknown as EnumObject, "SIGNAL_KIND", k, "signal kind"),
      ),
      tool: query.tool ?? "",
      limit: query.limit ?? 0,
    });
    return this.unary("ListSignals", (r, m, o, cb) => this.controlPlane.listSignals(r, m, o, cb), request, options);
  }

  // PolicyService ------------------------------------------------------------------------

  /** The active policy set: revision, engine, modules, reload counts, last refusal. Retried. */
  getPolicyStatus(options?: CallOptions): Promise<GetPolicyStatusResponse> {
    return this.unary<GetPolicyStatusRequest, GetPolicyStatusResponse>(
      "GetPolicyStatus",
      (r, m, o, cb) => this.policyService.getPolicyStatus(r, m, o, cb),
      {},
      options,
    );
  }

  /**
   * Re-reads the server's policy folder and swaps it in; never retried. A broken set:
   * FAILED_PRECONDITION. A set that widens what runs LIVE past the server's budget is refused
   * (FAILED_PRECONDITION, POLICY_WIDENS_LIVE) unless `acceptWidening` is set with a `reason`.
   */
  reloadPolicies(
    widening: { acceptWidening?: boolean; reason?: string } = {},
    options?: CallOptions,
  ): Promise<ReloadPoliciesResponse> {
    return this.unary<ReloadPoliciesRequest, ReloadPoliciesResponse>(
      "ReloadPolicies",
      (r, m, o, cb) => this.policyService.reloadPolicies(r, m, o, cb),
      { acceptWidening: widening.acceptWidening ?? false, reason: widening.reason ?? "" },
      options,
    );
  }

  /**
   * Evaluates a tool call (`{toolCall: {...}}`) or a raw policy input (`{rawInput: {...}}`),
   * against the active policy set or `policySet`, changing nothing. Not retried.
   */
  evaluatePolicy(request: DeepPartial<EvaluatePolicyRequest>, options?: CallOptions): Promise<EvaluatePolicyResponse> {
    return this.unary<EvaluatePolicyRequest, EvaluatePolicyResponse>(
      "EvaluatePolicy",
      (r, m, o, cb) => this.policyService.evaluatePolicy(r, m, o, cb),
      EvaluatePolicyRequest.fromPartial(request),
      options,
    );
  }

  /**
   * The standard gRPC health check (grpc.health.v1.Health/Check) of `service`
   * ("" for the whole server): "SERVING", "NOT_SERVING" (e.g. the policy
   * engine is unreachable), "UNKNOWN" or "SERVICE_UNKNOWN". Not retried.
   */
  checkHealth(service = "", options: CallOptions = {}): Promise<string> {
    const request = new BinaryWriter().uint32(10).string(service).finish();
    return this.unary<Uint8Array, string>(
      "grpc.health.v1.Health/Check",
      (r, m, o, cb) =>
        this.controlPlane.makeUnaryRequest(
          "/grpc.health.v1.Health/Check",
          (value: Uint8Array) => Buffer.from(value),
          (bytes: Buffer) => servingStatusName(bytes),
          r,
          m,
          o,
          cb,
        ),
      request,
      options,
    );
  }

  // Streams ------------------------------------------------------------------------------

  /**
   * The work stream of `agentId`'s worker: each WorkItem as the server hands it out.
   *
   * ```ts
   * for await (const item of client.pullWork("agent1")) {
   *   // run item.tool with item.arguments in item.mode, before item.deadline
   *   await client.reportWork(item, "SUCCEEDED", { output: { receipt: "..." } });
   * }
   * ```
   *
   * Never retried and no deadline by default. Breaking out of the loop (or
   * aborting `options.signal`) cancels the call. It fails with an InterlockError
   * (NOT_FOUND for an unknown agent; UNAVAILABLE when the server cannot be
   * reached or stops, reason SERVER_STOPPING): reconnect by calling it again
   * after a pause. Report every item received before the stream closes: an
   * unreported DRY_RUN item is offered again, a LIVE one is marked AMBIGUOUS.
   */
  pullWork(agentId: string, options?: StreamOptions): AsyncGenerator<WorkItem, void, undefined> {
    return this.stream(
      (m, o) => this.controlPlane.pullWork({ agentId }, m, o),
      (response) => response.item,
      options,
    );
  }

  /** Reports a work item from {@link pullWork}: its work id, decision id and agent. Never retried. */
  reportWork(
    item: WorkItem,
    outcome: OutcomeInput,
    report: WorkReport = {},
    options?: CallOptions,
  ): Promise<ToolResult> {
    const agentId = report.agentId ?? item.agentId;
    if (!agentId) throw new Error(`work item ${item.workId} names no agent: pass agentId`);
    return this.reportToolResult(
      {
        decisionId: item.decisionId,
        agentId,
        outcome,
        output: report.output,
        errorMessage: report.errorMessage,
        durationMs: report.durationMs,
        workId: item.workId,
      },
      options,
    );
  }

  /**
   * Every event after `afterSeq` matching the filters, in order: the history
   * first, then live. `kinds` are names ("DECISION" or "EVENT_KIND_DECISION")
   * or EventKind values; empty means all. Never retried: after an error,
   * resume with `afterSeq` set to the last `seq` received (nothing is skipped
   * or repeated). Breaking out of the loop cancels the call.
   */
  watchEvents(
    query: { afterSeq?: number; planId?: string; agentId?: string; kinds?: Array<EventKind | string> } = {},
    options?: StreamOptions,
  ): AsyncGenerator<Event, void, undefined> {
    const request = WatchEventsRequest.fromPartial({
      afterSeq: query.afterSeq ?? 0,
      planId: query.planId ?? "",
      agentId: query.agentId ?? "",
      kinds: (query.kinds ?? []).map((k) =>
        enumValue(EventKind as unknown as EnumObject, "EVENT_KIND", k, "event kind"),
      ),
    });
    return this.stream(
      (m, o) => this.controlPlane.watchEvents(request, m, o),
      (response) => response.event,
      options,
    );
  }

  // Trust (docs/trust.md) ------------------------------------------------------------

  /**
   * The trust of (agent, tool) pairs: one pair when both are given, else every
   * pair with an outcome so far that matches (empty matches all). Retried.
   */
  async getTrust(query: { agentId?: string; tool?: string } = {}, options?: CallOptions): Promise<PairTrust[]> {
    const request: GetTrustRequest = { agentId: query.agentId ?? "", tool: query.tool ?? "" };
    const response = await this.unary<GetTrustRequest, GetTrustResponse>(
      "GetTrust",
      (r, m, o, cb) => this.trustService.getTrust(r, m, o, cb),
      request,
      options,
    );
    return response.pairs;
  }

  /**
   * Promotes a demoted pair back to TRUSTED at once, as the authenticated
   * caller (an approver or an admin, never as the pair's own agent); the
   * reason is required and audited. Never retried.
   */
  async resetTrust(agentId: string, tool: string, reason: string, options?: CallOptions): Promise<PairTrust> {
    const request: ResetTrustRequest = { agentId, tool, reason };
    const response = await this.unary<ResetTrustRequest, ResetTrustResponse>(
      "ResetTrust",
      (r, m, o, cb) => this.trustService.resetTrust(r, m, o, cb),
      request,
      options,
    );
    return required(response.trust, "ResetTrust", "trust");
  }
}

const FINISHED_PLAN_STATES: ReadonlySet<PlanState> = new Set([
  PlanState.PLAN_STATE_SUCCEEDED,
  PlanState.PLAN_STATE_FAILED,
  PlanState.PLAN_STATE_FAILED_PARTIAL,
  PlanState.PLAN_STATE_CANCELLED,
  PlanState.PLAN_STATE_ROLLED_BACK,
]);

const SERVING_STATUS = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

/** The status of a grpc.health.v1.HealthCheckResponse (field 1, an enum). */
function servingStatusName(bytes: Uint8Array): string {
  const reader = new BinaryReader(bytes);
  let value = 0;
  while (reader.pos < reader.len) {
    const [fieldNo, wireType] = reader.tag();
    if (fieldNo === 1 && wireType === WireType.Varint) value = reader.int32();
    else reader.skip(wireType, fieldNo);
  }
  return SERVING_STATUS[value] ?? `STATUS_${value}`;
}

function required<T>(value: T | undefined, method: string, field: string): T {
  if (value === undefined) {
    throw new InterlockError({ code: Status.INTERNAL, message: `${method}: the response has no ${field}` });
  }
  return value;
}
