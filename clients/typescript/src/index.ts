/** @interlock/client: the TypeScript client of the Interlock control plane. */

export * from "./client";
export * from "./connection";
export * from "./errors";
export * from "./retry";
export * from "./gen/interlock/v1/types";
export * from "./gen/interlock/v1/plans";
export * from "./gen/interlock/v1/observe";
export * from "./gen/interlock/v1/control_plane";
export * from "./gen/interlock/v1/policy_service";
