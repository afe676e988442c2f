import type { Logger } from "../log.js";
import type { AuditEvent, AuditRecord } from "./audit.js";
import type { TrusteeHome } from "./home.js";
import type { DeviceStanding, VolumePolicy } from "./policy.js";
import type { RefusalName, RequestPayload } from "./protocol.js";
import type { DeviceRecord, TrusteeStore } from "./store.js";

/**
 * What every request handler of the trustee works with (docs/trustee.md
 * §4–§8): the authenticated request, the refusal it may throw, and the
 * server's context. Handlers are grouped by family (device-handlers.ts,
 * volume-handlers.ts); the server (server.ts) only authenticates, routes
 * and answers.
 */

export class Refusal extends Error {
  constructor(
    readonly rule: RefusalName,
    readonly detail: string,
    readonly auditEvent: string = "request.deny",
    readonly device: string | null = null,
    readonly volume: string | null = null,
  ) {
    super(detail);
  }
}

export interface Authenticated {
  readonly payload: RequestPayload<Record<string, unknown>>;
  readonly device: DeviceRecord | undefined;
  readonly deviceId: string;
  readonly jwsDigest: string;
  readonly ip: string;
}

/** A handler answers [status, body]; the server signs the body (§4.5). */
export type Handler = (a: Authenticated, volumeId: string) => Promise<[number, unknown]>;

export interface TrusteeContext {
  readonly home: TrusteeHome;
  readonly store: TrusteeStore;
  readonly config: TrusteeHome["config"];
  readonly log: Logger;
  readonly now: () => Date;
  /** Appends an audit record or throws the `audit_unavailable` refusal (fail closed). */
  record(event: AuditEvent): Promise<AuditRecord>;
  /** The device's standing, its admin approval verified (§8.1). */
  standingOf(d: DeviceRecord): Promise<DeviceStanding>;
  /** The volume's policy; one this build does not fully understand is none (default deny). */
  loadPolicy(volumeId: string): Promise<VolumePolicy | undefined>;
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function exactKeys(
  v: Record<string, unknown>,
  required: string[],
  optional: string[] = [],
): boolean {
  const keys = Object.keys(v);
  return (
    required.every((k) => k in v) && keys.every((k) => required.includes(k) || optional.includes(k))
  );
}

/** What an audit record keeps of a request: its nonce and a digest, never the body. */
export function requestInfo(a: Authenticated) {
  return { nonce: a.payload.nonce, jws_sha256: a.jwsDigest };
}
