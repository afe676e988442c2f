import Database from "better-sqlite3";
import { join } from "node:path";
import type { AuditRecord, ChainHead } from "./audit.js";
import { serializeRecord } from "./audit.js";
import type { VolumeGrant } from "./grants.js";
import type { VolumePolicy } from "./policy.js";
import type {
  DepositRecord,
  DeviceRecord,
  EnrollOutcome,
  InvitationRecord,
  RecordBuilder,
  RegisterOutcome,
  TrusteeStore,
} from "./store.js";

/**
 * TrusteeStore on two SQLite files in the trustee directory: state.db
 * (devices, invitations, policies, deposits, nonces, release history, the
 * audit head) and audit.db (the append-only log, so it can be archived or
 * made read-only on its own). WAL journal, synchronous=FULL: a commit is
 * on disk before the call returns, a kill -9 loses at most the transaction
 * in flight.
 */

/** Exported for the upgrade test: a directory made by an older build migrates on open. */
export const STATE_MIGRATIONS: readonly string[] = [
  `CREATE TABLE devices (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     state TEXT NOT NULL CHECK (state IN ('pending', 'active', 'revoked')),
     sig_jwk TEXT NOT NULL,
     kem_jwk TEXT NOT NULL,
     kem_thumbprint TEXT NOT NULL,
     spki TEXT NOT NULL UNIQUE,
     approval TEXT,
     created_at TEXT NOT NULL,
     approved_at TEXT,
     revoked_at TEXT,
     revoke_reason TEXT
   );
   CREATE TABLE invitations (
     hash TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     created_at TEXT NOT NULL,
     expires_at TEXT NOT NULL,
     used_at TEXT,
     used_by TEXT
   );
   CREATE TABLE policies (
     volume_id TEXT PRIMARY KEY,
     version INTEGER NOT NULL,
     policy TEXT NOT NULL,
     updated_at TEXT NOT NULL
   );
   CREATE TABLE deposits (
     volume_id TEXT NOT NULL,
     key_version INTEGER NOT NULL,
     recipient TEXT NOT NULL,
     hdr TEXT NOT NULL,
     enc TEXT NOT NULL,
     ct TEXT NOT NULL,
     created_by TEXT NOT NULL,
     created_at TEXT NOT NULL,
     PRIMARY KEY (volume_id, key_version, recipient)
   );
   CREATE TABLE nonces (
     device_id TEXT NOT NULL,
     nonce TEXT NOT NULL,
     expires_at INTEGER NOT NULL,
     PRIMARY KEY (device_id, nonce)
   );
   CREATE INDEX nonces_expiry ON nonces (expires_at);
   CREATE TABLE releases (
     device_id TEXT NOT NULL,
     volume_id TEXT NOT NULL,
     at INTEGER NOT NULL
   );
   CREATE INDEX releases_by ON releases (device_id, volume_id, at);
   CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);`,
  // 2: volume-creation grants (docs/trustee.md §8.4)
  `ALTER TABLE policies ADD COLUMN created_by TEXT;
   CREATE INDEX policies_by ON policies (created_by);
   CREATE TABLE grants (
     device_id TEXT PRIMARY KEY,
     grant_json TEXT NOT NULL,
     updated_at TEXT NOT NULL
   );`,
];

const AUDIT_MIGRATIONS: readonly string[] = [
  `CREATE TABLE audit (seq INTEGER PRIMARY KEY, record TEXT NOT NULL);
   CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
     BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
   CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
     BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;`,
];

function migrate(db: Database.Database, migrations: readonly string[]): void {
  const current = db.pragma("user_version", { simple: true }) as number;
  if (current > migrations.length)
    throw new Error(
      `database schema ${current} is newer than this cryptmount (${migrations.length})`,
    );
  for (let v = current; v < migrations.length; v++) {
    db.transaction(() => {
      db.exec(migrations[v]!);
      db.pragma(`user_version = ${v + 1}`);
    }).immediate();
  }
}

function openDb(
  path: string,
  migrations: readonly string[],
  readonly: boolean,
  tolerateReadOnlyFile = false,
): Database.Database {
  const db = new Database(path, { fileMustExist: readonly });
  db.pragma("busy_timeout = 5000");
  if (!db.readonly) {
    try {
      db.pragma("journal_mode = WAL");
      migrate(db, migrations);
    } catch (err) {
      // A write-protected audit file opens read-only: the trustee still starts,
      // and every append (so every decision) fails closed.
      const code = String((err as { code?: string }).code ?? "");
      if (!tolerateReadOnlyFile || !code.startsWith("SQLITE_READONLY")) throw err;
    }
  }
  db.pragma("synchronous = FULL");
  db.pragma("foreign_keys = ON");
  return db;
}

interface DeviceRow {
  id: string;
  name: string;
  state: DeviceRecord["state"];
  sig_jwk: string;
  kem_jwk: string;
  kem_thumbprint: string;
  spki: string;
  approval: string | null;
  created_at: string;
  approved_at: string | null;
  revoked_at: string | null;
  revoke_reason: string | null;
}

const toDevice = (r: DeviceRow): DeviceRecord => ({
  id: r.id,
  name: r.name,
  state: r.state,
  sigJwk: r.sig_jwk,
  kemJwk: r.kem_jwk,
  kemThumbprint: r.kem_thumbprint,
  spki: r.spki,
  approval: r.approval,
  createdAt: r.created_at,
  approvedAt: r.approved_at,
  revokedAt: r.revoked_at,
  revokeReason: r.revoke_reason,
});

interface DepositRow {
  volume_id: string;
  key_version: number;
  recipient: string;
  hdr: string;
  enc: string;
  ct: string;
  created_by: string;
  created_at: string;
}

export class SqliteTrusteeStore implements TrusteeStore {
  private readonly state: Database.Database;
  private readonly audit: Database.Database;

  constructor(dir: string, options: { readonly?: boolean } = {}) {
    this.state = openDb(join(dir, "state.db"), STATE_MIGRATIONS, options.readonly ?? false);
    this.audit = openDb(join(dir, "audit.db"), AUDIT_MIGRATIONS, options.readonly ?? false, true);
  }

  async addInvitation(inv: InvitationRecord): Promise<void> {
    this.state
      .prepare("INSERT INTO invitations (hash, name, created_at, expires_at) VALUES (?, ?, ?, ?)")
      .run(inv.hash, inv.name, inv.createdAt, inv.expiresAt);
  }

  async enrollDevice(hash: string, now: Date, d: DeviceRecord): Promise<EnrollOutcome> {
    return this.state
      .transaction((): EnrollOutcome => {
        const inv = this.state
          .prepare("SELECT expires_at, used_at FROM invitations WHERE hash = ?")
          .get(hash) as { expires_at: string; used_at: string | null } | undefined;
        if (!inv || inv.used_at !== null || Date.parse(inv.expires_at) <= now.getTime())
          return "invitation_invalid";
        const exists = this.state
          .prepare("SELECT 1 FROM devices WHERE id = ? OR spki = ?")
          .get(d.id, d.spki);
        if (exists) return "already_enrolled";
        this.state
          .prepare("UPDATE invitations SET used_at = ?, used_by = ? WHERE hash = ?")
          .run(now.toISOString(), d.id, hash);
        this.state
          .prepare(
            `INSERT INTO devices (id, name, state, sig_jwk, kem_jwk, kem_thumbprint, spki, approval,
               created_at, approved_at, revoked_at, revoke_reason)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          )
          .run(
            d.id,
            d.name,
            d.state,
            d.sigJwk,
            d.kemJwk,
            d.kemThumbprint,
            d.spki,
            d.approval,
            d.createdAt,
            d.approvedAt,
            d.revokedAt,
            d.revokeReason,
          );
        return "ok";
      })
      .immediate();
  }

  async getDevice(id: string): Promise<DeviceRecord | undefined> {
    const r = this.state.prepare("SELECT * FROM devices WHERE id = ?").get(id) as
      DeviceRow | undefined;
    return r && toDevice(r);
  }

  async getDeviceBySpki(spki: string): Promise<DeviceRecord | undefined> {
    const r = this.state.prepare("SELECT * FROM devices WHERE spki = ?").get(spki) as
      DeviceRow | undefined;
    return r && toDevice(r);
  }

  async listDevices(): Promise<DeviceRecord[]> {
    return (
      this.state.prepare("SELECT * FROM devices ORDER BY created_at, id").all() as DeviceRow[]
    ).map(toDevice);
  }

  async approveDevice(id: string, approval: string, now: Date): Promise<boolean> {
    const r = this.state
      .prepare(
        "UPDATE devices SET state = 'active', approval = ?, approved_at = ? WHERE id = ? AND state = 'pending'",
      )
      .run(approval, now.toISOString(), id);
    return r.changes === 1;
  }

  async revokeDevice(id: string, reason: string, now: Date): Promise<boolean> {
    return this.state
      .transaction(() => {
        const r = this.state
          .prepare(
            "UPDATE devices SET state = 'revoked', revoked_at = ?, revoke_reason = ? WHERE id = ? AND state != 'revoked'",
          )
          .run(now.toISOString(), reason, id);
        if (r.changes !== 1) return false;
        this.state.prepare("DELETE FROM deposits WHERE recipient = ?").run(id);
        return true;
      })
      .immediate();
  }

  async setPolicy(policy: VolumePolicy, now: Date): Promise<void> {
    this.state
      .prepare(
        `INSERT INTO policies (volume_id, version, policy, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (volume_id) DO UPDATE SET version = excluded.version,
           policy = excluded.policy, updated_at = excluded.updated_at`,
      )
      .run(policy.volumeId, policy.version, JSON.stringify(policy), now.toISOString());
  }

  async removePolicy(volumeId: string): Promise<boolean> {
    return this.state.prepare("DELETE FROM policies WHERE volume_id = ?").run(volumeId).changes > 0;
  }

  async registerVolume(
    policy: VolumePolicy,
    maxVolumes: number,
    now: Date,
  ): Promise<RegisterOutcome> {
    return this.state
      .transaction((): RegisterOutcome => {
        const taken = this.state
          .prepare("SELECT 1 FROM policies WHERE volume_id = ?")
          .get(policy.volumeId);
        if (taken) return "volume_exists";
        const { n } = this.state
          .prepare("SELECT count(*) AS n FROM policies WHERE created_by = ?")
          .get(policy.createdBy ?? null) as { n: number };
        if (n >= maxVolumes) return "grant_exhausted";
        this.state
          .prepare(
            `INSERT INTO policies (volume_id, version, policy, updated_at, created_by)
             VALUES (?, ?, ?, ?, ?)`,
          )
          .run(
            policy.volumeId,
            policy.version,
            JSON.stringify(policy),
            now.toISOString(),
            policy.createdBy ?? null,
          );
        return "ok";
      })
      .immediate();
  }

  async countRegistered(deviceId: string): Promise<number> {
    const { n } = this.state
      .prepare("SELECT count(*) AS n FROM policies WHERE created_by = ?")
      .get(deviceId) as { n: number };
    return n;
  }

  async setGrant(grant: VolumeGrant, now: Date): Promise<void> {
    this.state
      .prepare(
        `INSERT INTO grants (device_id, grant_json, updated_at) VALUES (?, ?, ?)
         ON CONFLICT (device_id) DO UPDATE SET grant_json = excluded.grant_json,
           updated_at = excluded.updated_at`,
      )
      .run(grant.deviceId, JSON.stringify(grant), now.toISOString());
  }

  async getGrant(deviceId: string): Promise<VolumeGrant | undefined> {
    const r = this.state
      .prepare("SELECT grant_json FROM grants WHERE device_id = ?")
      .get(deviceId) as { grant_json: string } | undefined;
    return r && (JSON.parse(r.grant_json) as VolumeGrant);
  }

  async removeGrant(deviceId: string): Promise<boolean> {
    return this.state.prepare("DELETE FROM grants WHERE device_id = ?").run(deviceId).changes > 0;
  }

  async getPolicy(volumeId: string): Promise<VolumePolicy | undefined> {
    const r = this.state
      .prepare("SELECT policy FROM policies WHERE volume_id = ?")
      .get(volumeId) as { policy: string } | undefined;
    return r && (JSON.parse(r.policy) as VolumePolicy);
  }

  async putDeposits(
    volumeId: string,
    keyVersion: number,
    deposits: DepositRecord[],
  ): Promise<void> {
    this.state
      .transaction(() => {
        this.state
          .prepare("DELETE FROM deposits WHERE volume_id = ? AND key_version = ?")
          .run(volumeId, keyVersion);
        const insert = this.state.prepare(
          `INSERT INTO deposits (volume_id, key_version, recipient, hdr, enc, ct, created_by, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
        );
        for (const d of deposits)
          insert.run(
            volumeId,
            keyVersion,
            d.recipient,
            d.hdr,
            d.enc,
            d.ct,
            d.createdBy,
            d.createdAt,
          );
      })
      .immediate();
  }

  async getDeposit(
    volumeId: string,
    recipient: string,
    keyVersion?: number,
  ): Promise<DepositRecord | undefined> {
    const r = (
      keyVersion === undefined
        ? this.state
            .prepare(
              "SELECT * FROM deposits WHERE volume_id = ? AND recipient = ? ORDER BY key_version DESC LIMIT 1",
            )
            .get(volumeId, recipient)
        : this.state
            .prepare(
              "SELECT * FROM deposits WHERE volume_id = ? AND recipient = ? AND key_version = ?",
            )
            .get(volumeId, recipient, keyVersion)
    ) as DepositRow | undefined;
    return (
      r && {
        volumeId: r.volume_id,
        keyVersion: r.key_version,
        recipient: r.recipient,
        hdr: r.hdr,
        enc: r.enc,
        ct: r.ct,
        createdBy: r.created_by,
        createdAt: r.created_at,
      }
    );
  }

  async rememberNonce(
    deviceId: string,
    nonce: string,
    expiresAt: number,
    now: number,
  ): Promise<boolean> {
    return this.state
      .transaction(() => {
        this.state.prepare("DELETE FROM nonces WHERE expires_at < ?").run(now);
        const r = this.state
          .prepare(
            "INSERT INTO nonces (device_id, nonce, expires_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
          )
          .run(deviceId, nonce, expiresAt);
        return r.changes === 1;
      })
      .immediate();
  }

  async recordRelease(deviceId: string, volumeId: string, at: number): Promise<void> {
    this.state
      .prepare("INSERT INTO releases (device_id, volume_id, at) VALUES (?, ?, ?)")
      .run(deviceId, volumeId, at);
  }

  async recentReleases(deviceId: string, volumeId: string, since: number): Promise<number[]> {
    return (
      this.state
        .prepare("SELECT at FROM releases WHERE device_id = ? AND volume_id = ? AND at > ?")
        .all(deviceId, volumeId, since) as { at: number }[]
    ).map((r) => r.at);
  }

  async appendAudit(build: RecordBuilder): Promise<AuditRecord> {
    const record = this.audit
      .transaction(() => {
        const last = this.audit
          .prepare("SELECT record FROM audit ORDER BY seq DESC LIMIT 1")
          .get() as { record: string } | undefined;
        const head = last ? (JSON.parse(last.record) as ChainHead) : undefined;
        const r = build(head && { seq: head.seq, hash: head.hash });
        this.audit
          .prepare("INSERT INTO audit (seq, record) VALUES (?, ?)")
          .run(r.seq, serializeRecord(r));
        return r;
      })
      .immediate();
    // The head in state.db only ever lags the log (a crash here): never leads it.
    this.state
      .prepare(
        `INSERT INTO meta (key, value) VALUES ('audit_head', ?)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value
         WHERE json_extract(excluded.value, '$.seq') > json_extract(meta.value, '$.seq')`,
      )
      .run(JSON.stringify({ seq: record.seq, hash: record.hash }));
    return record;
  }

  async readAudit(): Promise<{ rowSeq: number; text: string }[]> {
    return (
      this.audit.prepare("SELECT seq, record FROM audit ORDER BY rowid").all() as {
        seq: number;
        record: string;
      }[]
    ).map((r) => ({ rowSeq: r.seq, text: r.record }));
  }

  async auditHead(): Promise<ChainHead | undefined> {
    const r = this.state.prepare("SELECT value FROM meta WHERE key = 'audit_head'").get() as
      { value: string } | undefined;
    return r && (JSON.parse(r.value) as ChainHead);
  }

  async close(): Promise<void> {
    this.state.close();
    this.audit.close();
  }
}
