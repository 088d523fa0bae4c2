/**
 * The one error the client throws for a failed RPC: {@link InterlockError}.
 *
 * The server answers an error with a gRPC status code and a `google.rpc.Status`
 * in the `grpc-status-details-bin` trailer. Its details carry an `ErrorInfo`
 * (reason, domain "interlock.v1", metadata) and, for bad input, a `BadRequest`
 * naming every offending field. This module decodes them (a small hand-written
 * protobuf reader: only these three messages are needed) into plain fields.
 */

import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { Metadata, status as Status } from "@grpc/grpc-js";

/** The trailer that carries the serialized `google.rpc.Status`. */
export const STATUS_DETAILS_KEY = "grpc-status-details-bin";
export const ERROR_INFO_TYPE = "google.rpc.ErrorInfo";
export const BAD_REQUEST_TYPE = "google.rpc.BadRequest";

/** One `google.protobuf.Any` of a status's details, still packed. */
export interface PackedDetail {
  typeUrl: string;
  value: Uint8Array;
}

/** A decoded `google.rpc.Status`. */
export interface RpcStatus {
  code: number;
  message: string;
  details: PackedDetail[];
}

/** A decoded `google.rpc.ErrorInfo`. */
export interface ErrorInfo {
  reason: string;
  domain: string;
  metadata: Record<string, string>;
}

/** One `google.rpc.BadRequest.FieldViolation`. */
export interface FieldViolation {
  field: string;
  description: string;
}

/** The name of a gRPC status code ("NOT_FOUND"), or "CODE_<n>" for an unknown one. */
export function codeName(code: number): string {
  const name = (Status as unknown as Record<number, string | undefined>)[code];
  return typeof name === "string" ? name : `CODE_${code}`;
}

/** Calls `field(fieldNo, wireType)` for every field of a message; unread fields are skipped. */
function readFields(
  bytes: Uint8Array,
  field: (reader: BinaryReader, fieldNo: number, wireType: WireType) => boolean,
): void {
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [fieldNo, wireType] = reader.tag();
    if (!field(reader, fieldNo, wireType)) {
      reader.skip(wireType, fieldNo);
    }
  }
}

/** Decodes a serialized `google.rpc.Status`. Throws on malformed bytes. */
export function decodeRpcStatus(bytes: Uint8Array): RpcStatus {
  const out: RpcStatus = { code: 0, message: "", details: [] };
  readFields(bytes, (reader, fieldNo, wireType) => {
    if (fieldNo === 1 && wireType === WireType.Varint) {
      out.code = reader.int32();
    } else if (fieldNo === 2 && wireType === WireType.LengthDelimited) {
      out.message = reader.string();
    } else if (fieldNo === 3 && wireType === WireType.LengthDelimited) {
      out.details.push(decodeAny(reader.bytes()));
    } else {
      return false;
    }
    return true;
  });
  return out;
}

function decodeAny(bytes: Uint8Array): PackedDetail {
  const out: PackedDetail = { typeUrl: "", value: new Uint8Array(0) };
  readFields(bytes, (reader, fieldNo, wireType) => {
    if (wireType !== WireType.LengthDelimited) return false;
    if (fieldNo === 1) out.typeUrl = reader.string();
    else if (fieldNo === 2) out.value = reader.bytes();
    else return false;
    return true;
  });
  return out;
}

/** The message type an Any's type URL names ("type.googleapis.com/google.rpc.ErrorInfo" -> "google.rpc.ErrorInfo"). */
export function anyTypeName(typeUrl: string): string {
  return typeUrl.slice(typeUrl.lastIndexOf("/") + 1);
}

/** Decodes a serialized `google.rpc.ErrorInfo`. */
export function decodeErrorInfo(bytes: Uint8Array): ErrorInfo {
  const out: ErrorInfo = { reason: "", domain: "", metadata: {} };
  readFields(bytes, (reader, fieldNo, wireType) => {
    if (wireType !== WireType.LengthDelimited) return false;
    if (fieldNo === 1) out.reason = reader.string();
    else if (fieldNo === 2) out.domain = reader.string();
    else if (fieldNo === 3) {
      let key = "";
      let value = "";
      readFields(reader.bytes(), (entry, n, t) => {
        if (t !== WireType.LengthDelimited) return false;
        if (n === 1) key = entry.string();
        else if (n === 2) value = entry.string();
        else return false;
        return true;
      });
      out.metadata[key] = value;
    } else return false;
    return true;
  });
  return out;
}

/** Decodes the field violations of a serialized `google.rpc.BadRequest`. */
export function decodeBadRequest(bytes: Uint8Array): FieldViolation[] {
  const out: FieldViolation[] = [];
  readFields(bytes, (reader, fieldNo, wireType) => {
    if (fieldNo !== 1 || wireType !== WireType.LengthDelimited) return false;
    const violation: FieldViolation = { field: "", description: "" };
    readFields(reader.bytes(), (entry, n, t) => {
      if (t !== WireType.LengthDelimited) return false;
      if (n === 1) violation.field = entry.string();
      else if (n === 2) violation.description = entry.string();
      else return false;
      return true;
    });
    out.push(violation);
    return true;
  });
  return out;
}

/** What an {@link InterlockError} is built from. */
export interface InterlockErrorInit {
  code: number;
  message: string;
  reason?: string;
  domain?: string;
  metadata?: Record<string, string>;
  fieldViolations?: FieldViolation[];
  statusDetails?: PackedDetail[];
  trailers?: Metadata;
  cause?: unknown;
}

/**
 * A failed call to the Interlock server.
 *
 * `code` is the gRPC status code (compare with `status.NOT_FOUND` from
 * `@grpc/grpc-js`, or use `codeName`); `details` the server's message;
 * `reason`, `domain` and `metadata` come from the `ErrorInfo` (empty when the
 * server sent none, e.g. it could not be reached); `fieldViolations` lists
 * every offending request field of a `BadRequest`.
 */
export class InterlockError extends Error {
  override readonly name = "InterlockError";
  /** The gRPC status code (a `status` value of @grpc/grpc-js). */
  readonly code: number;
  /** The code's name, e.g. "NOT_FOUND". */
  readonly codeName: string;
  /** The server's message, for people. */
  readonly details: string;
  /** The ErrorInfo reason, e.g. "UNKNOWN_AGENT"; "" when none was sent. */
  readonly reason: string;
  /** The ErrorInfo domain ("interlock.v1"); "" when none was sent. */
  readonly domain: string;
  /** The ErrorInfo metadata. */
  readonly metadata: Readonly<Record<string, string>>;
  /** Every offending request field (BadRequest), in the server's order. */
  readonly fieldViolations: readonly FieldViolation[];
  /** Every detail of the google.rpc.Status, still packed (ErrorInfo and BadRequest included). */
  readonly statusDetails: readonly PackedDetail[];
  /** The call's trailing metadata, when there was a call. */
  readonly trailers: Metadata | undefined;

  constructor(init: InterlockErrorInit) {
    const name = codeName(init.code);
    const reason = init.reason ?? "";
    super(`${name}: ${init.message}${reason && reason !== name ? ` (${reason})` : ""}`, {
      cause: init.cause,
    });
    this.code = init.code;
    this.codeName = name;
    this.details = init.message;
    this.reason = reason;
    this.domain = init.domain ?? "";
    this.metadata = { ...(init.metadata ?? {}) };
    this.fieldViolations = (init.fieldViolations ?? []).map((v) => ({ ...v }));
    this.statusDetails = init.statusDetails ?? [];
    this.trailers = init.trailers;
  }

  /**
   * Builds the error from what a failed @grpc/grpc-js call gives (a `ServiceError`,
   * or any object with `code`, `details` and `metadata`). A status detail that
   * cannot be decoded is ignored: the code and message still tell what happened.
   */
  static fromServiceError(error: unknown): InterlockError {
    if (error instanceof InterlockError) return error;
    const e = (error ?? {}) as { code?: unknown; details?: unknown; message?: unknown; metadata?: unknown };
    const code = typeof e.code === "number" ? e.code : Status.UNKNOWN;
    let message = typeof e.details === "string" ? e.details : typeof e.message === "string" ? e.message : String(error);
    const trailers = e.metadata instanceof Metadata ? e.metadata : undefined;
    const init: InterlockErrorInit = { code, message, trailers, cause: error };
    const raw = trailers?.get(STATUS_DETAILS_KEY)[0];
    if (raw instanceof Uint8Array) {
      try {
        const rpcStatus = decodeRpcStatus(raw);
        message = rpcStatus.message || message;
        init.message = message;
        init.statusDetails = rpcStatus.details;
        const violations: FieldViolation[] = [];
        for (const detail of rpcStatus.details) {
          const type = anyTypeName(detail.typeUrl);
          if (type === ERROR_INFO_TYPE) {
            const info = decodeErrorInfo(detail.value);
            init.reason = info.reason;
            init.domain = info.domain;
            init.metadata = info.metadata;
          } else if (type === BAD_REQUEST_TYPE) {
            violations.push(...decodeBadRequest(detail.value));
          }
        }
        init.fieldViolations = violations;
      } catch {
        // A malformed trailer: keep what the status line said.
      }
    }
    return new InterlockError(init);
  }
}
