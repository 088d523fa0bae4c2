/**
 * An example agent worker: runs the plan steps Interlock hands to one agent.
 *
 *     node clients/typescript/dist/examples/agent_worker.js --agent agent1 [--target HOST:PORT]
 *         [--token-file PATH] [--ca-file PEM [--cert-file PEM --key-file PEM]]
 *         [--fail TOOL ...] [--max-items N]
 *
 * It pulls the agent's work items (PullWork), "runs" each tool in the mode
 * Interlock granted, and reports the outcome (ReportToolResult with the work id):
 *
 *     MOCK, DRY_RUN  validate only: no side effects
 *     LIVE           a simulated side effect: says what it would do, returns a fake receipt
 *     compensation   an item that undoes an earlier step during a rollback
 *
 * For every item handled it prints one JSON line on stdout
 * ({"work_id","plan_id","step_id","tool","mode","compensation","outcome"});
 * its log goes to stderr. Tools named with --fail are reported FAILED, to see
 * a plan fail and roll back. When the work stream drops (UNAVAILABLE: the
 * server restarts or cannot be reached) the worker reconnects with an
 * exponential backoff; a report that meets UNAVAILABLE is sent again until
 * the item's deadline. SIGINT or SIGTERM stops it, after the item in hand is
 * finished and reported (a second signal stops it at once). Other errors (e.g. NOT_FOUND for an agent the policy
 * does not know) end it with exit status 1; a usage error with 2.
 */

import { randomUUID } from "node:crypto";
import { parseArgs } from "node:util";

import { status as Status } from "@grpc/grpc-js";

import { InterlockClient, type InterlockClientOptions, type JsonObject, type WorkReport, enumName } from "../client";
import { InterlockError } from "../errors";
import type { WorkItem } from "../gen/interlock/v1/plans";
import { ExecutionMode } from "../gen/interlock/v1/types";

const MIN_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 10_000;
/** How long a report is retried on UNAVAILABLE when the item names no deadline. */
const REPORT_RETRY_WITHOUT_DEADLINE_MS = 60_000;

const USAGE = `usage: agent_worker --agent ID [--target HOST:PORT] [--token-file PATH]
                    [--ca-file PEM] [--cert-file PEM --key-file PEM]
                    [--fail TOOL ...] [--max-items N]

Runs the plan steps Interlock hands to one agent (simulated tools) and reports them.

  --target HOST:PORT  the server [default: $INTERLOCK_SERVER or 127.0.0.1:50051]
  --agent ID          the agent this worker runs for (required)
  --token-file PATH   a file holding the bearer token [default: the token in $INTERLOCK_TOKEN]
  --ca-file PEM       trust this CA for the server's certificate (TLS)
  --cert-file PEM     client certificate (mutual TLS; with --key-file)
  --key-file PEM      client private key (mutual TLS; with --cert-file)
  --fail TOOL         report this tool FAILED (repeatable)
  --max-items N       exit 0 after handling N items [default: 0 = run until stopped]
  -h, --help          show this help

One JSON line per item on stdout; the log on stderr. Exit status: 0 stopped
(signal or --max-items), 1 an error, 2 a usage error.`;

/** The parsed command line. */
export interface WorkerArgs {
  target: string;
  agent: string;
  connection: InterlockClientOptions;
  fail: Set<string>;
  maxItems: number;
}

export class UsageError extends Error {}

/** Parses the worker's flags (and INTERLOCK_SERVER / INTERLOCK_TOKEN); throws UsageError. */
export function parseWorkerArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): WorkerArgs | "help" {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        target: { type: "string" },
        agent: { type: "string" },
        "token-file": { type: "string" },
        "ca-file": { type: "string" },
        "cert-file": { type: "string" },
        "key-file": { type: "string" },
        fail: { type: "string", multiple: true },
        "max-items": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) return "help";
  const agent = values.agent ?? "";
  if (agent.trim() === "") throw new UsageError("--agent is required");
  const target = values.target ?? (env.INTERLOCK_SERVER || "127.0.0.1:50051");
  const maxText = values["max-items"] ?? "0";
  if (!/^\d+$/.test(maxText)) throw new UsageError(`--max-items must be a whole number >= 0, not ${maxText}`);
  if ((values["cert-file"] === undefined) !== (values["key-file"] === undefined)) {
    throw new UsageError("--cert-file and --key-file go together");
  }
  const connection: InterlockClientOptions = {};
  if (values["token-file"] !== undefined) connection.tokenFile = values["token-file"];
  else if (env.INTERLOCK_TOKEN) connection.token = env.INTERLOCK_TOKEN.trim();
  if (values["ca-file"] !== undefined) connection.caFile = values["ca-file"];
  if (values["cert-file"] !== undefined) connection.certFile = values["cert-file"];
  if (values["key-file"] !== undefined) connection.keyFile = values["key-file"];
  if (connection.certFile !== undefined && connection.caFile === undefined) connection.tls = true;
  return { target, agent, connection, fail: new Set(values.fail ?? []), maxItems: Number(maxText) };
}

function log(level: string, message: string): void {
  process.stderr.write(`${new Date().toISOString()} ${level} ${message}\n`);
}

class ToolFailed extends Error {}

/** The mode's name without its prefix: "LIVE", "DRY_RUN" or "MOCK". */
function modeName(mode: ExecutionMode): string {
  return enumName(ExecutionMode as unknown as Record<string, string | number>, "EXECUTION_MODE", mode);
}

/** Runs one work item (simulated) and returns its output; throws ToolFailed for a --fail tool. */
export function runTool(item: WorkItem, fail: ReadonlySet<string>): JsonObject {
  const mode = modeName(item.mode);
  const call = `${item.tool}(${JSON.stringify(item.arguments ?? {})}) for ${item.planId}/${item.stepId}`;
  if (fail.has(item.tool)) throw new ToolFailed(`simulated failure of ${item.tool} (--fail)`);
  if (item.compensation) {
    const receipt = `undo_${randomUUID().replace(/-/g, "").slice(0, 12)}`;
    log("INFO", `UNDO ${call}: reverting the earlier step (simulated), receipt ${receipt}`);
    return { undone: item.stepId, receipt, simulated: true };
  }
  if (item.mode === ExecutionMode.EXECUTION_MODE_LIVE) {
    const receipt = `rcpt_${randomUUID().replace(/-/g, "").slice(0, 12)}`;
    log("INFO", `LIVE ${call}: performing it now (simulated), receipt ${receipt}`);
    return { receipt, simulated: true };
  }
  // MOCK or DRY_RUN: check what can be checked, change nothing.
  log("INFO", `${mode} ${call}: arguments checked, nothing changed`);
  return { mode, validated: true };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** Pulls and handles work until stopped, reconnecting with a backoff. */
export class Worker {
  private busy = false;
  private stopping = false;
  private handled = 0;
  private readonly idle = new AbortController();

  constructor(
    private readonly client: InterlockClient,
    private readonly agent: string,
    private readonly fail: ReadonlySet<string>,
    private readonly maxItems: number,
  ) {}

  /** On SIGINT or SIGTERM: stop now if idle, else after the item in hand. */
  stop(): void {
    this.stopping = true;
    if (!this.busy) this.idle.abort();
  }

  /** Resolves when stopped (signal or --max-items); rejects with the error that ended it. */
  async run(): Promise<void> {
    let backoff = MIN_BACKOFF_MS;
    while (!this.stopping) {
      log("INFO", `pulling work for ${this.agent} from ${this.client.target}`);
      try {
        for await (const item of this.client.pullWork(this.agent, { signal: this.idle.signal })) {
          backoff = MIN_BACKOFF_MS; // connected: start the next backoff over
          await this.handle(item);
          if (this.stopping || (this.maxItems > 0 && this.handled >= this.maxItems)) {
            this.stopping = true;
            return;
          }
        }
        if (this.stopping) return;
        log("WARNING", "the server ended the work stream");
      } catch (err) {
        if (!(err instanceof InterlockError) || err.code !== Status.UNAVAILABLE) throw err;
        if (err.reason === "SERVER_STOPPING") log("WARNING", "the server ended the work stream: it is stopping");
        else log("WARNING", `work stream unavailable: ${err.details}`);
      }
      if (this.stopping) return;
      log("INFO", `reconnecting in ${(backoff / 1000).toFixed(1)}s`);
      await sleep(backoff, this.idle.signal);
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  }

  /**
   * Reports an item. A report that meets UNAVAILABLE (the server restarts) is
   * sent again, with a backoff, until the item's deadline: the server takes a
   * work item's late report after a restart and never records one twice (a
   * LIVE item left unreported would end AMBIGUOUS). Other errors are logged:
   * NOT_FOUND means the plan was cancelled or the step timed out meanwhile.
   */
  private async report(item: WorkItem, outcome: "SUCCEEDED" | "FAILED", report: WorkReport): Promise<void> {
    const deadline = item.deadline?.getTime() ?? Date.now() + REPORT_RETRY_WITHOUT_DEADLINE_MS;
    let backoff = MIN_BACKOFF_MS;
    for (;;) {
      try {
        await this.client.reportWork(item, outcome, report);
        const error = report.errorMessage ? ` ${report.errorMessage}` : "";
        log("INFO", `reported ${item.tool} ${item.workId}: ${outcome}${error}`);
        return;
      } catch (err) {
        if (!(err instanceof InterlockError)) throw err;
        if (err.code !== Status.UNAVAILABLE || Date.now() + backoff >= deadline) {
          log("WARNING", `could not report ${item.tool} ${item.workId}: ${err.message}`);
          return;
        }
        log(
          "WARNING",
          `could not report ${item.workId} yet (${err.details}); again in ${(backoff / 1000).toFixed(1)}s`,
        );
        await new Promise((resolve) => setTimeout(resolve, backoff));
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      }
    }
  }

  private async handle(item: WorkItem): Promise<void> {
    this.busy = true;
    try {
      const started = performance.now();
      let output: JsonObject = {};
      let outcome: "SUCCEEDED" | "FAILED" = "SUCCEEDED";
      let error = "";
      try {
        output = runTool(item, this.fail);
      } catch (err) {
        if (!(err instanceof ToolFailed)) throw err;
        outcome = "FAILED";
        error = err.message;
      }
      const durationMs = performance.now() - started;
      await this.report(item, outcome, { output, errorMessage: error, durationMs });
      this.handled += 1;
      process.stdout.write(
        `${JSON.stringify({
          work_id: item.workId,
          plan_id: item.planId,
          step_id: item.stepId,
          tool: item.tool,
          mode: modeName(item.mode),
          compensation: item.compensation,
          outcome,
        })}\n`,
      );
    } finally {
      this.busy = false;
      if (this.stopping) this.idle.abort();
    }
  }
}

/** Runs the worker; resolves to the exit status. */
export async function main(argv: string[] = process.argv.slice(2)): Promise<number> {
  // Signals first: a stop asked for while starting is honoured once the worker exists.
  let worker: Worker | undefined;
  let stopRequested = false;
  let signals = 0;
  const onSignal = (name: string): void => {
    signals += 1;
    if (signals > 1) {
      log("WARNING", `${name} again: stopping now`);
      process.exit(130);
    }
    log("INFO", `${name}: stopping`);
    stopRequested = true;
    worker?.stop();
  };
  process.on("SIGINT", () => onSignal("SIGINT"));
  process.on("SIGTERM", () => onSignal("SIGTERM"));

  let args: WorkerArgs | "help";
  try {
    args = parseWorkerArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`${USAGE}\n\nagent_worker: error: ${err.message}\n`);
    return 2;
  }
  if (args === "help") {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  let client: InterlockClient;
  try {
    client = new InterlockClient(args.target, args.connection);
  } catch (err) {
    log("ERROR", `cannot connect: ${(err as Error).message}`);
    return 1;
  }
  worker = new Worker(client, args.agent, args.fail, args.maxItems);
  if (stopRequested) worker.stop();
  log(
    "INFO",
    `agent ${args.agent}, server ${args.target} (${client.mode}${client.mode === "insecure" ? ", plaintext" : ""})`,
  );
  try {
    await worker.run();
    log("INFO", "stopped");
    return 0;
  } catch (err) {
    log("ERROR", `giving up: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  } finally {
    client.close();
  }
}

if (require.main === module) {
  const exit = (code: number): void => {
    // Exit now (nothing is left to do), once stdout has taken the last line.
    process.stdout.write("", () => process.exit(code));
  };
  main().then(exit, (err: unknown) => {
    log("ERROR", `unexpected: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    exit(1);
  });
}
