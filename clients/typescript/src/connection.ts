/**
 * How the client reaches the server: plaintext, TLS or mutual TLS, and the
 * bearer token it sends on every call.
 *
 * - none: no TLS option: a plaintext channel, for the server's insecure
 *   development mode. Only to a loopback address (127.0.0.0/8, ::1,
 *   localhost, a unix socket) unless `insecure: true`.
 * - token: `token` or `tokenFile`; sent as `authorization: Bearer <token>`
 *   metadata on every call and stream. Use it with TLS: over plaintext the
 *   token travels in clear text (fine on loopback for a development server
 *   with a principals file).
 * - TLS: `caFile` (PEM) holds the CA(s) the server's certificate must chain
 *   to; without it (`tls: true`) the system's roots are trusted.
 * - mutual TLS: also `certFile` and `keyFile` (PEM), the client's certificate
 *   and private key.
 */

import { X509Certificate } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { isIP } from "node:net";
import { ChannelCredentials, type ChannelOptions } from "@grpc/grpc-js";

/** Connection settings of an {@link InterlockClient}. */
export interface ConnectionOptions {
  /** Bearer token sent with every call. */
  token?: string;
  /**
   * A file holding the bearer token (surrounding whitespace is trimmed). Read at
   * construction, then again when the file changes (checked at most once a
   * second), so a rotated token is picked up; a rotation caught half-written
   * keeps the previous token until the file is whole.
   */
  tokenFile?: string;
  /** PEM file of the CA(s) that sign the server's certificate; turns TLS on. */
  caFile?: string;
  /** PEM file of the client certificate (mutual TLS); needs keyFile; turns TLS on. */
  certFile?: string;
  /** PEM file of the client certificate's private key (mutual TLS); needs certFile. */
  keyFile?: string;
  /** TLS with the system's trusted roots even without caFile. */
  tls?: boolean;
  /** The name to check the server's certificate against, when it differs from the target's host. */
  tlsServerName?: string;
  /** Allow plaintext to a non-loopback address (never in production). */
  insecure?: boolean;
}

export type ConnectionMode = "insecure" | "tls" | "mtls";

/** Where the bearer token of each call comes from. */
export interface TokenSource {
  token(): string;
}

/** What {@link resolveConnection} makes of the options. */
export interface ResolvedConnection {
  mode: ConnectionMode;
  credentials: ChannelCredentials;
  /** The bearer token, when one is configured. */
  token: TokenSource | undefined;
  /** Channel options the TLS settings need (server name override). */
  channelOptions: ChannelOptions;
}

/** The file access the options need, replaceable in tests. */
export interface FileAccess {
  readFile(path: string): Buffer;
  /** Something that changes when the file does (mtime, size, inode). */
  version(path: string): string;
}

export const NODE_FILES: FileAccess = {
  readFile: (path) => readFileSync(path),
  version: (path) => {
    const st = statSync(path);
    return `${st.mtimeMs}:${st.size}:${st.ino}`;
  },
};

/** How often a token file is checked for a change, at most. */
export const TOKEN_FILE_CHECK_MS = 1000;

// Visible ASCII only: no spaces, no line breaks, nothing that could break the header.
const TOKEN_PATTERN = /^[\x21-\x7e]+$/;

function readNamed(files: FileAccess, path: string, what: string): Buffer {
  try {
    return files.readFile(path);
  } catch (err) {
    throw new Error(`cannot read the ${what} ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** Throws unless `pem` starts with a parsable PEM certificate (Node accepts a bad CA file silently). */
function checkCertificate(pem: Buffer, what: string): void {
  try {
    if (!pem.includes("-----BEGIN CERTIFICATE-----")) throw new Error("no PEM certificate in it");
    new X509Certificate(pem);
  } catch (err) {
    throw new Error(`${what} holds no usable certificate: ${(err as Error).message}`, { cause: err });
  }
}

/** Checks a bearer token; returns it, or throws naming the problem (never the token). */
export function validateToken(token: string, source: string): string {
  if (token === "") throw new Error(`the bearer token (${source}) is empty`);
  if (!TOKEN_PATTERN.test(token)) {
    throw new Error(`the bearer token (${source}) has characters a token cannot have (spaces, line breaks, non-ASCII)`);
  }
  return token;
}

/** A token read from a file, and read again when the file changes. */
export class TokenFile implements TokenSource {
  private current: string;
  private version: string;
  private checkedAt: number;

  constructor(
    readonly path: string,
    private readonly files: FileAccess = NODE_FILES,
    private readonly now: () => number = Date.now,
  ) {
    this.version = this.versionOrEmpty();
    this.current = this.read();
    this.checkedAt = this.now();
  }

  private versionOrEmpty(): string {
    try {
      return this.files.version(this.path);
    } catch {
      return "";
    }
  }

  private read(): string {
    const text = readNamed(this.files, this.path, "token file").toString("utf8").trim();
    return validateToken(text, `tokenFile ${this.path}`);
  }

  token(): string {
    const now = this.now();
    if (now - this.checkedAt < TOKEN_FILE_CHECK_MS) return this.current;
    this.checkedAt = now;
    const version = this.versionOrEmpty();
    if (version !== "" && version !== this.version) {
      try {
        this.current = this.read();
        this.version = version;
      } catch {
        // Half-written or briefly missing during a rotation: keep the last good token, look again later.
      }
    }
    return this.current;
  }
}

/**
 * The host part of a gRPC target ("127.0.0.1:50051", "dns:///host:443",
 * "ipv6:[::1]:50051", "localhost"); "" for a unix socket.
 */
export function targetHost(target: string): string {
  let rest = target.trim();
  if (/^unix(-abstract)?:/.test(rest)) return "";
  const scheme = /^(dns|ipv4|ipv6):(\/\/[^/]*\/)?/.exec(rest);
  if (scheme) rest = rest.slice(scheme[0].length);
  rest = rest.split(",")[0] ?? ""; // ipv4:a:1,b:2 lists addresses
  if (rest.startsWith("[")) {
    const end = rest.indexOf("]");
    return end > 0 ? rest.slice(1, end) : rest;
  }
  const colons = rest.split(":").length - 1;
  if (colons === 1) return rest.slice(0, rest.indexOf(":"));
  return rest; // a bare host, or a bare IPv6 address
}

/** The service config a client of several replicas uses: calls spread over every address that answers. */
export const ROUND_ROBIN_SERVICE_CONFIG = JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] });

/** What {@link channelTarget} makes of a target. */
export interface ChannelTarget {
  /** The target as given (a list joined with commas), for messages. */
  display: string;
  /** The gRPC target the channel is opened with. */
  uri: string;
  /** The channel options the target needs (round_robin; a list's first address as authority). */
  channelOptions: ChannelOptions;
}

function replicaAddress(text: string): { version: 4 | 6; address: string } {
  const address = text.trim();
  const colon = address.lastIndexOf(":");
  const host = colon > 0 ? address.slice(0, colon) : "";
  const port = colon > 0 ? address.slice(colon + 1) : "";
  if (host === "" || !/^\d+$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    throw new Error(`a replica address must be IP:PORT, not ${JSON.stringify(text)}`);
  }
  const bracketed = host.startsWith("[") && host.endsWith("]");
  const ip = bracketed ? host.slice(1, -1) : host;
  const version = isIP(ip);
  if (version === 0) {
    throw new Error(
      `a list of replicas takes IP addresses (127.0.0.1:50051, [::1]:50051), not the host name in ` +
        `${JSON.stringify(text)}; for names, give one DNS name that resolves to every replica ` +
        "(dns:///interlock.example:50051)",
    );
  }
  if (version === 6 && !bracketed) throw new Error(`an IPv6 address takes brackets: [${ip}]:${port}, not ${text}`);
  return { version: version as 4 | 6, address };
}

/**
 * The channel target of a target: one server's "host:port" or any gRPC target
 * is kept (a "dns:" / "ipv4:" / "ipv6:" one gets round_robin over what it
 * resolves to); a list of replicas' IP:PORT (an array, or a comma-separated
 * string) becomes an "ipv4:" / "ipv6:" target with round_robin. Throws for a
 * host name in a list (grpc-js resolves a list of IP addresses only), mixed
 * IP versions, or a malformed address.
 */
export function channelTarget(target: string | readonly string[]): ChannelTarget {
  const roundRobin: ChannelOptions = { "grpc.service_config": ROUND_ROBIN_SERVICE_CONFIG };
  let parts: string[];
  if (typeof target === "string") {
    const text = target.trim();
    if (text === "") throw new TypeError("the target must be HOST:PORT or a list of IP:PORT");
    if (/^(dns|ipv4|ipv6):/.test(text)) return { display: text, uri: text, channelOptions: roundRobin };
    if (!text.includes(",")) return { display: text, uri: text, channelOptions: {} };
    parts = text.split(",");
  } else {
    if (!Array.isArray(target) || target.length === 0 || !target.every((t) => typeof t === "string")) {
      throw new TypeError("a list of replicas must hold one or more IP:PORT strings");
    }
    if (target.length === 1) return channelTarget(target[0] as string);
    parts = [...target];
  }
  const addresses = parts.map(replicaAddress);
  const versions = new Set(addresses.map((a) => a.version));
  if (versions.size > 1) throw new Error("a list of replicas cannot mix IPv4 and IPv6 addresses");
  const listed = addresses.map((a) => a.address).join(",");
  const first = addresses[0]?.address ?? "";
  return {
    display: listed,
    uri: `ipv${addresses[0]?.version}:${listed}`,
    channelOptions: { ...roundRobin, "grpc.default_authority": first },
  };
}

/** Whether a target names this machine: loopback addresses, localhost, a unix socket. */
export function isLoopbackTarget(target: string): boolean {
  const list = /^(ipv4|ipv6):(\/\/[^/]*\/)?(.*)$/.exec(target.trim());
  if (list?.[3]?.includes(",")) return list[3].split(",").every((address) => isLoopbackTarget(address));
  const host = targetHost(target).toLowerCase();
  return (
    host === "" ||
    host === "localhost" ||
    host.endsWith(".localhost") ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) ||
    host === "::1" ||
    host === "0:0:0:0:0:0:0:1"
  );
}

/**
 * Turns {@link ConnectionOptions} into channel credentials and the token.
 * Reads the files named (synchronously); throws an Error naming a missing or
 * unreadable file, a certificate without its key, a malformed token, or
 * plaintext to a non-loopback target without `insecure`.
 */
export function resolveConnection(
  target: string,
  options: ConnectionOptions,
  files: FileAccess = NODE_FILES,
): ResolvedConnection {
  let token: TokenSource | undefined;
  if (options.token !== undefined && options.tokenFile !== undefined) {
    throw new Error("give token or tokenFile, not both");
  }
  if (options.token !== undefined) {
    const value = validateToken(options.token, "token");
    token = { token: () => value };
  } else if (options.tokenFile !== undefined) {
    token = new TokenFile(options.tokenFile, files);
  }

  if ((options.certFile === undefined) !== (options.keyFile === undefined)) {
    throw new Error("mutual TLS needs both certFile and keyFile");
  }
  const channelOptions: ChannelOptions = {};
  const wantsTls =
    options.tls === true ||
    options.caFile !== undefined ||
    options.certFile !== undefined ||
    options.tlsServerName !== undefined;
  if (!wantsTls) {
    if (!options.insecure && !isLoopbackTarget(target)) {
      throw new Error(
        `plaintext to ${target} refused: it is not a loopback address. Use TLS (caFile, or tls: true), ` +
          "or insecure: true to allow plaintext anyway (never in production)",
      );
    }
    return { mode: "insecure", credentials: ChannelCredentials.createInsecure(), token, channelOptions };
  }
  if (options.tls === false) {
    throw new Error("tls is false but TLS files or a TLS server name are given");
  }
  const rootCerts = options.caFile !== undefined ? readNamed(files, options.caFile, "CA file") : null;
  if (rootCerts !== null) checkCertificate(rootCerts, `the CA file ${options.caFile}`);
  let privateKey: Buffer | null = null;
  let certChain: Buffer | null = null;
  if (options.certFile !== undefined && options.keyFile !== undefined) {
    certChain = readNamed(files, options.certFile, "client certificate file");
    privateKey = readNamed(files, options.keyFile, "client key file");
  }
  if (options.tlsServerName !== undefined) {
    channelOptions["grpc.ssl_target_name_override"] = options.tlsServerName;
    channelOptions["grpc.default_authority"] = options.tlsServerName;
  }
  let credentials: ChannelCredentials;
  try {
    credentials = ChannelCredentials.createSsl(rootCerts, privateKey, certChain);
  } catch (err) {
    const named = [options.caFile, options.certFile, options.keyFile].filter((f) => f !== undefined).join(", ");
    throw new Error(`the TLS files (${named}) are not usable PEM: ${(err as Error).message}`, { cause: err });
  }
  return { mode: certChain !== null ? "mtls" : "tls", credentials, token, channelOptions };
}
