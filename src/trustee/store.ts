import type { AuditEvent, AuditRecord, ChainHead } from "./audit.js";
import type { VolumeGrant } from "./grants.js";
import type { DeviceState, VolumePolicy } from "./policy.js";

/**
 * Everything the trustee keeps, behind one interface (docs/trustee.md §10).
 * The SQLite implementation (sqlite-store.ts) is the only module with SQL;
 * a PostgreSQL backend implements the same interface. Methods are async so
 * a networked backend fits; each method is one transaction.
 */

export interface DeviceRecord {
  readonly id: string;
  readonly name: string;
  readonly state: DeviceState;
  /** Public JWKs as JSON text. */
  readonly sigJwk: string;
  readonly kemJwk: string;
  readonly kemThumbprint: string;
  /** SPKI pin of the device's TLS (= signing) key. */
  readonly spki: string;
  /** The admin's approval statement (flattened JWS JSON), once approved. */
  readonly approval: string | null;
  readonly createdAt: string;
  readonly approvedAt: string | null;
  readonly revokedAt: string | null;
  readonly revokeReason: string | null;
}

export interface InvitationRecord {
  /** SHA-256 of the token, base64url: the token itself is never stored. */
  readonly hash: string;
  readonly name: string;
  readonly createdAt: string;
  readonly expiresAt: string;
}

export interface DepositRecord {
  readonly volumeId: string;
  readonly keyVersion: number;
  readonly recipient: string;
  readonly hdr: string;
  readonly enc: string;
  readonly ct: string;
  readonly createdBy: string;
  readonly createdAt: string;
}

export type RegisterOutcome = "ok" | "volume_exists" | "grant_exhausted";

export type EnrollOutcome = "ok" | "invitation_invalid" | "already_enrolled";

/** Builds the next audit record from the current head; called inside the append transaction. */
export type RecordBuilder = (head: ChainHead | undefined) => AuditRecord;

export interface TrusteeStore {
  // invitations and devices
  addInvitation(inv: InvitationRecord): Promise<void>;
  /** Consumes the invitation and inserts the device as pending, atomically. */
  enrollDevice(invitationHash: string, now: Date, device: DeviceRecord): Promise<EnrollOutcome>;
  getDevice(id: string): Promise<DeviceRecord | undefined>;
  getDeviceBySpki(spki: string): Promise<DeviceRecord | undefined>;
  listDevices(): Promise<DeviceRecord[]>;
  approveDevice(id: string, approval: string, now: Date): Promise<boolean>;
  /** Marks the device revoked and deletes its deposits; false if unknown or already revoked. */
  revokeDevice(id: string, reason: string, now: Date): Promise<boolean>;

  // policies and deposits
  setPolicy(policy: VolumePolicy, now: Date): Promise<void>;
  getPolicy(volumeId: string): Promise<VolumePolicy | undefined>;
  /** Deletes the policy (its deposits stay, released to nobody); false if there was none. */
  removePolicy(volumeId: string): Promise<boolean>;
  /**
   * Creates `policy` for a volume registered under a grant (§8.4), atomically:
   * only if no policy has that name and `policy.createdBy` has registered
   * fewer than `maxVolumes` volumes.
   */
  registerVolume(policy: VolumePolicy, maxVolumes: number, now: Date): Promise<RegisterOutcome>;
  /** How many volumes this device registered (policies whose createdBy it is). */
  countRegistered(deviceId: string): Promise<number>;

  // volume-creation grants (§8.4)
  setGrant(grant: VolumeGrant, now: Date): Promise<void>;
  getGrant(deviceId: string): Promise<VolumeGrant | undefined>;
  /** False when the device had no grant. */
  removeGrant(deviceId: string): Promise<boolean>;

  /** Replaces every deposit of (volume, key version) with `deposits`, atomically. */
  putDeposits(volumeId: string, keyVersion: number, deposits: DepositRecord[]): Promise<void>;
  /** The deposit for this device at `keyVersion`, or at the highest version when undefined. */
  getDeposit(
    volumeId: string,
    recipient: string,
    keyVersion?: number,
  ): Promise<DepositRecord | undefined>;

  // replay cache and rate history
  /** Remembers (device, nonce) until expiresAt; false when it was already seen. */
  rememberNonce(deviceId: string, nonce: string, expiresAt: number, now: number): Promise<boolean>;
  recordRelease(deviceId: string, volumeId: string, at: number): Promise<void>;
  recentReleases(deviceId: string, volumeId: string, since: number): Promise<number[]>;

  // audit
  /** Appends one record durably (commit + fsync) or throws: callers fail closed. */
  appendAudit(build: RecordBuilder): Promise<AuditRecord>;
  /** Stored rows in storage order, with the row number each claims. */
  readAudit(): Promise<{ rowSeq: number; text: string }[]>;
  /** The head kept apart from the log (truncation detection). */
  auditHead(): Promise<ChainHead | undefined>;

  close(): Promise<void>;
}

export type { AuditEvent };
