/**
 * Test helpers: a real Interlock server process, the example worker as a
 * process, free ports, test certificates.
 */

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

import { InterlockClient, type InterlockClientOptions } from "../client";

/** The repository root (this file is clients/typescript/dist/test/helpers.js). */
export const REPO_ROOT = resolve(__dirname, "..", "..", "..", "..");
export const WORKER_JS = resolve(__dirname, "..", "examples", "agent_worker.js");

/** The venv's interlock binary, or $INTERLOCK_BIN. */
export function interlockBin(): string {
  const bin = process.env.INTERLOCK_BIN || join(REPO_ROOT, ".venv", "bin", "interlock");
  if (!existsSync(bin)) {
    throw new Error(`the Interlock server ${bin} is missing: run \`make install\` in ${REPO_ROOT} first`);
  }
  return bin;
}

/** The venv's python (for test certificates), next to the interlock binary. */
export function venvPython(): string {
  const python = join(resolve(interlockBin(), ".."), "python");
  if (!existsSync(python)) throw new Error(`${python} is missing: run \`make install\` in ${REPO_ROOT} first`);
  return python;
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A real `interlock serve` on a free loopback port, with a temporary dir for its data and a copy of the policies. */
export class RealServer {
  private log = "";
  private exited: Promise<number | null>;

  private constructor(
    readonly target: string,
    readonly dataDir: string,
    private readonly child: ChildProcess,
  ) {
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      this.log = (this.log + chunk).slice(-20000);
    });
    this.exited = new Promise((r) => child.once("exit", (code) => r(code)));
  }

  /**
   * Starts the server and waits until grpc.health.v1 says SERVING. `args` replace
   * the default `--insecure` (e.g. TLS and a principals file); `connect` is how
   * to reach it for the health check.
   */
  static async start(args: string[] = ["--insecure"], connect: InterlockClientOptions = {}): Promise<RealServer> {
    const bin = interlockBin();
    const port = await freePort();
    const dataDir = mkdtempSync(join(tmpdir(), "interlock-ts-test-"));
    // A copy of the policies: an edit in the work tree cannot change them under a test.
    const policyDir = join(dataDir, "policies");
    cpSync(process.env.INTERLOCK_POLICY_DIR || join(REPO_ROOT, "policies"), policyDir, { recursive: true });
    const child = spawn(
      bin,
      [
        "serve",
        "--listen",
        `127.0.0.1:${port}`,
        "--metrics-listen",
        "",
        "--data-dir",
        join(dataDir, "data"),
        "--policy-dir",
        policyDir,
        "--no-fsync",
        ...args,
      ],
      { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, PYTHONUNBUFFERED: "1" } },
    );
    const server = new RealServer(`127.0.0.1:${port}`, dataDir, child);
    let exitCode: number | null | undefined;
    void server.exited.then((code) => {
      exitCode = code;
    });
    let client: InterlockClient;
    try {
      client = new InterlockClient(server.target, { ...connect, defaultTimeoutMs: 1000 });
    } catch (err) {
      await server.stop();
      throw err;
    }
    try {
      const until = Date.now() + 30_000;
      for (;;) {
        if (exitCode !== undefined) {
          throw new Error(`the server exited (status ${exitCode}) before serving:\n${server.log}`);
        }
        try {
          if ((await client.checkHealth()) === "SERVING") return server;
        } catch {
          // not listening yet
        }
        if (Date.now() > until) throw new Error(`the server did not become SERVING in 30 s:\n${server.log}`);
        await delay(100);
      }
    } catch (err) {
      await server.stop();
      throw err;
    } finally {
      client.close();
    }
  }

  /** The server's log so far (stderr). */
  get output(): string {
    return this.log;
  }

  /** SIGTERM, then SIGKILL after 10 s; removes the data dir. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill("SIGTERM");
      const timer = setTimeout(() => this.child.kill("SIGKILL"), 10_000);
      await this.exited;
      clearTimeout(timer);
    }
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** A run of the example worker (dist/examples/agent_worker.js) as a process. */
export class WorkerProcess {
  stdout = "";
  stderr = "";
  readonly exited: Promise<number | null>;
  readonly child: ChildProcess;

  constructor(args: string[], env: NodeJS.ProcessEnv = process.env) {
    this.child = spawn(process.execPath, [WORKER_JS, ...args], { stdio: ["ignore", "pipe", "pipe"], env });
    this.child.stdout?.setEncoding("utf8");
    this.child.stderr?.setEncoding("utf8");
    this.child.stdout?.on("data", (chunk: string) => (this.stdout += chunk));
    this.child.stderr?.on("data", (chunk: string) => (this.stderr += chunk));
    this.exited = new Promise((r) => this.child.once("close", (code) => r(code)));
  }

  /** The JSON lines printed so far. */
  get items(): Array<Record<string, unknown>> {
    return this.stdout
      .split("\n")
      .filter((line) => line.trim() !== "")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  }

  /** Resolves with the exit status; kills the worker (and rejects) after timeoutMs. */
  async wait(timeoutMs: number): Promise<number | null> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.child.kill("SIGKILL");
        reject(
          new Error(`the worker did not exit in ${timeoutMs} ms\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`),
        );
      }, timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Waits until the worker's log contains `text`. */
  async waitForLog(text: string, timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (!this.stderr.includes(text)) {
      if (Date.now() > until) throw new Error(`the worker never logged ${JSON.stringify(text)}:\n${this.stderr}`);
      await delay(25);
    }
  }
}

/** PEM files of a test CA, a server certificate (localhost, 127.0.0.1) and a client certificate. */
export interface TestCerts {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

const MAKE_CERTS = `
import datetime, ipaddress, sys
from pathlib import Path
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

out = Path(sys.argv[1])
now = datetime.datetime.now(datetime.timezone.utc)

def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

def write_key(key, path):
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

ca_key = ec.generate_private_key(ec.SECP256R1())
ca = (x509.CertificateBuilder().subject_name(name("interlock test CA")).issuer_name(name("interlock test CA"))
      .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
      .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
      .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
      .sign(ca_key, hashes.SHA256()))
(out / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))

def leaf(cn, usage, sans, stem):
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    (out / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_key(key, out / f"{stem}.key")

leaf("localhost", ExtendedKeyUsageOID.SERVER_AUTH,
     [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))], "server")
leaf("agent1", ExtendedKeyUsageOID.CLIENT_AUTH, [], "client")
`;

/** Makes test certificates with the venv's python (cryptography, a dev dependency). */
export function makeTestCerts(): TestCerts {
  const dir = mkdtempSync(join(tmpdir(), "interlock-ts-certs-"));
  execFileSync(venvPython(), ["-c", MAKE_CERTS, dir], { stdio: ["ignore", "ignore", "pipe"] });
  return {
    dir,
    caCert: join(dir, "ca.pem"),
    serverCert: join(dir, "server.pem"),
    serverKey: join(dir, "server.key"),
    clientCert: join(dir, "client.pem"),
    clientKey: join(dir, "client.key"),
  };
}
