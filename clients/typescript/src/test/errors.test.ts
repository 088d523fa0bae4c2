import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { Metadata, status } from "@grpc/grpc-js";

import {
  InterlockError,
  STATUS_DETAILS_KEY,
  anyTypeName,
  codeName,
  decodeBadRequest,
  decodeErrorInfo,
  decodeRpcStatus,
} from "../errors";

// Encoders of the google.rpc messages, written from their field numbers.
function errorInfo(reason: string, domain: string, metadata: Record<string, string>): Uint8Array {
  const w = new BinaryWriter().uint32(10).string(reason).uint32(18).string(domain);
  for (const [k, v] of Object.entries(metadata)) {
    w.uint32(26).fork().uint32(10).string(k).uint32(18).string(v).join();
  }
  return w.finish();
}

function badRequest(violations: Array<[string, string]>): Uint8Array {
  const w = new BinaryWriter();
  for (const [field, description] of violations) {
    // field 3 ("reason") of a newer FieldViolation must be skipped, not misread.
    w.uint32(10).fork().uint32(10).string(field).uint32(18).string(description).uint32(26).string("X").join();
  }
  return w.finish();
}

function rpcStatus(code: number, message: string, details: Array<[string, Uint8Array]>): Uint8Array {
  const w = new BinaryWriter().uint32(8).int32(code).uint32(18).string(message);
  for (const [type, value] of details) {
    w.uint32(26).fork().uint32(10).string(`type.googleapis.com/${type}`).uint32(18).bytes(value).join();
  }
  return w.finish();
}

function serviceError(code: number, details: string, trailer?: Uint8Array): Error {
  const metadata = new Metadata();
  if (trailer) metadata.set(STATUS_DETAILS_KEY, Buffer.from(trailer));
  return Object.assign(new Error(`${code} ${codeName(code)}: ${details}`), { code, details, metadata });
}

describe("google.rpc decoding", () => {
  test("Status with ErrorInfo and BadRequest", () => {
    const bytes = rpcStatus(3, "bad", [
      ["google.rpc.ErrorInfo", errorInfo("ARGUMENTS_SCHEMA", "interlock.v1", { tool: "form_fill" })],
      ["google.rpc.BadRequest", badRequest([["arguments.form_id", "is required"]])],
    ]);
    const decoded = decodeRpcStatus(bytes);
    assert.equal(decoded.code, 3);
    assert.equal(decoded.message, "bad");
    assert.deepEqual(
      decoded.details.map((d) => anyTypeName(d.typeUrl)),
      ["google.rpc.ErrorInfo", "google.rpc.BadRequest"],
    );
    assert.deepEqual(decodeErrorInfo(decoded.details[0]!.value), {
      reason: "ARGUMENTS_SCHEMA",
      domain: "interlock.v1",
      metadata: { tool: "form_fill" },
    });
    assert.deepEqual(decodeBadRequest(decoded.details[1]!.value), [
      { field: "arguments.form_id", description: "is required" },
    ]);
  });

  test("empty messages decode to defaults", () => {
    assert.deepEqual(decodeRpcStatus(new Uint8Array(0)), { code: 0, message: "", details: [] });
    assert.deepEqual(decodeErrorInfo(new Uint8Array(0)), { reason: "", domain: "", metadata: {} });
    assert.deepEqual(decodeBadRequest(new Uint8Array(0)), []);
  });

  test("malformed bytes throw", () => {
    assert.throws(() => decodeRpcStatus(Uint8Array.from([0x1a, 0x05, 0x01])));
  });

  test("codeName", () => {
    assert.equal(codeName(status.NOT_FOUND), "NOT_FOUND");
    assert.equal(codeName(14), "UNAVAILABLE");
    assert.equal(codeName(99), "CODE_99");
  });
});

describe("InterlockError.fromServiceError", () => {
  test("reads reason, domain, metadata and every field violation", () => {
    const trailer = rpcStatus(status.INVALID_ARGUMENT, "the plan is invalid", [
      ["google.rpc.ErrorInfo", errorInfo("INVALID_PLAN", "interlock.v1", { plan_id: "p1" })],
      [
        "google.rpc.BadRequest",
        badRequest([
          ["spec.steps[0].tool", "unknown tool"],
          ["spec.steps[1].confidence", "is required"],
        ]),
      ],
      ["google.rpc.RetryInfo", new Uint8Array(0)],
    ]);
    const err = InterlockError.fromServiceError(serviceError(status.INVALID_ARGUMENT, "status line", trailer));
    assert.ok(err instanceof InterlockError);
    assert.ok(err instanceof Error);
    assert.equal(err.name, "InterlockError");
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.equal(err.codeName, "INVALID_ARGUMENT");
    assert.equal(err.details, "the plan is invalid");
    assert.equal(err.reason, "INVALID_PLAN");
    assert.equal(err.domain, "interlock.v1");
    assert.deepEqual(err.metadata, { plan_id: "p1" });
    assert.deepEqual(err.fieldViolations, [
      { field: "spec.steps[0].tool", description: "unknown tool" },
      { field: "spec.steps[1].confidence", description: "is required" },
    ]);
    assert.equal(err.statusDetails.length, 3);
    assert.equal(err.message, "INVALID_ARGUMENT: the plan is invalid (INVALID_PLAN)");
    assert.ok(err.trailers instanceof Metadata);
  });

  test("without a status trailer: code and message only", () => {
    const err = InterlockError.fromServiceError(serviceError(status.UNAVAILABLE, "No connection established"));
    assert.equal(err.code, status.UNAVAILABLE);
    assert.equal(err.details, "No connection established");
    assert.equal(err.reason, "");
    assert.equal(err.domain, "");
    assert.deepEqual(err.fieldViolations, []);
    assert.equal(err.message, "UNAVAILABLE: No connection established");
  });

  test("a malformed trailer keeps the status line", () => {
    const err = InterlockError.fromServiceError(
      serviceError(status.INTERNAL, "boom", Uint8Array.from([0x1a, 0x09, 0x0a])),
    );
    assert.equal(err.code, status.INTERNAL);
    assert.equal(err.details, "boom");
    assert.equal(err.reason, "");
  });

  test("anything else becomes UNKNOWN; an InterlockError stays itself", () => {
    const err = InterlockError.fromServiceError(new Error("weird"));
    assert.equal(err.code, status.UNKNOWN);
    assert.equal(err.details, "weird");
    assert.equal(InterlockError.fromServiceError(err), err);
  });
});
