// The audit chain: verify passes on a clean log, finds each kind of
// tampering at its record, survives kill -9 during appends, and a trustee
// whose audit store cannot be written releases nothing.

import Database from "better-sqlite3";
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { deposit, release, TrusteeRefusal } from "../../src/agent/trustee-client.js";
import { verifyAudit } from "../../src/trustee/admin.js";
import { buildRecord, serializeRecord, type AuditRecord } from "../../src/trustee/audit.js";
import { generateEd25519 } from "../../src/trustee/identity.js";
import { enrolled, policy, startFixture, VOLUME, type Fixture } from "./helpers.js";

const ROOT = resolve(__dirname, "../..");

describe("audit chain", () => {
  let f: Fixture;
  beforeEach(async () => {
    f = await startFixture();
    const { device } = await enrolled(f, "auditor");
    await policy(f, [device]);
    await deposit(device, VOLUME, randomBytes(32));
    for (let i = 0; i < 3; i++) await release(device, VOLUME);
    await f.server.close();
    await f.home.store.close();
  });
  afterEach(async () => {
    await f.cleanup();
  });

  /** Edits audit.db directly, as an attacker with file access would (triggers dropped first). */
  function tamper(edit: (db: Database.Database, rows: { seq: number; record: string }[]) => void) {
    const db = new Database(join(f.dir, "audit.db"));
    db.exec("DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete;");
    edit(
      db,
      db.prepare("SELECT seq, record FROM audit ORDER BY seq").all() as {
        seq: number;
        record: string;
      }[],
    );
    db.close();
  }

  async function check() {
    await f.restart();
    return verifyAudit(f.home);
  }

  it("a clean log verifies", async () => {
    const v = await check();
    expect(v.problem).toBeUndefined();
    expect(v.records).toBeGreaterThanOrEqual(8);
  });

  it("append-only inside SQLite: UPDATE and DELETE are refused", () => {
    const db = new Database(join(f.dir, "audit.db"));
    expect(() => db.prepare("DELETE FROM audit WHERE seq = 1").run()).toThrow(/append-only/);
    expect(() => db.prepare("UPDATE audit SET record = '{}' WHERE seq = 1").run()).toThrow(
      /append-only/,
    );
    db.close();
  });

  it("an altered record is found at that record", async () => {
    tamper((db, rows) => {
      const r = JSON.parse(rows[3]!.record) as AuditRecord;
      db.prepare("UPDATE audit SET record = ? WHERE seq = ?").run(
        serializeRecord({ ...r, ip: "203.0.113.9" }),
        r.seq,
      );
    });
    expect((await check()).problem).toMatchObject({ seq: 4, kind: "altered" });
  });

  it("a record re-hashed and signed by another key is found", async () => {
    tamper((db, rows) => {
      const prev = JSON.parse(rows[2]!.record) as AuditRecord;
      const forged = buildRecord(
        { seq: prev.seq, hash: prev.hash },
        { event: "release", outcome: "deny", rule: "forged" },
        new Date(),
        generateEd25519(),
      );
      db.prepare("UPDATE audit SET record = ? WHERE seq = ?").run(
        serializeRecord(forged),
        forged.seq,
      );
    });
    expect((await check()).problem).toMatchObject({ seq: 4, kind: "bad_signature" });
  });

  it("a deleted record is found where it is missing", async () => {
    tamper((db) => db.prepare("DELETE FROM audit WHERE seq = 5").run());
    expect((await check()).problem).toMatchObject({ seq: 5, kind: "missing" });
  });

  it("reordered records are found", async () => {
    tamper((db, rows) => {
      const a = rows[4]!;
      const b = rows[5]!;
      db.prepare("UPDATE audit SET record = ? WHERE seq = ?").run(b.record, a.seq);
      db.prepare("UPDATE audit SET record = ? WHERE seq = ?").run(a.record, b.seq);
    });
    expect((await check()).problem).toMatchObject({ seq: 5, kind: "out_of_order" });
  });

  it("a truncated log is found against the head kept in state.db", async () => {
    let last = 0;
    tamper((db, rows) => {
      last = rows.length;
      db.prepare("DELETE FROM audit WHERE seq >= ?").run(last - 1);
    });
    expect((await check()).problem).toMatchObject({ seq: last - 1, kind: "truncated" });
  });

  it("kill -9 during appends leaves a log that verifies", async () => {
    execFileSync("npx", ["tsc", "-p", "tsconfig.json"], { cwd: ROOT });
    const script = `
      import { SqliteTrusteeStore } from ${JSON.stringify(join(ROOT, "dist/trustee/sqlite-store.js"))};
      import { buildRecord } from ${JSON.stringify(join(ROOT, "dist/trustee/audit.js"))};
      import { readKeyFile } from ${JSON.stringify(join(ROOT, "dist/trustee/identity.js"))};
      const dir = process.argv[1];
      const key = await readKeyFile(dir + "/trustee.key");
      const store = new SqliteTrusteeStore(dir);
      for (let i = 0; ; i++) {
        await store.appendAudit((h) => buildRecord(h, { event: "stress", outcome: "info", detail: { i } }, new Date(), key));
        if (i === 10) process.stdout.write("running\\n");
      }`;
    for (let round = 0; round < 3; round++) {
      const child = spawn(process.execPath, ["--input-type=module", "-e", script, f.dir], {
        stdio: ["ignore", "pipe", "inherit"],
      });
      await new Promise<void>((ok) => child.stdout.once("data", () => ok()));
      await new Promise((r) => setTimeout(r, 150 + round * 100));
      child.kill("SIGKILL");
      await new Promise((r) => child.once("exit", r));
    }
    const v = await check();
    expect(v.problem).toBeUndefined();
    expect(v.records).toBeGreaterThan(30);
  });

  it("a read-only audit store: releases are refused with audit_unavailable", async () => {
    await f.restart();
    const { device } = await enrolled(f, "second");
    await policy(f, [device]);
    await deposit(device, VOLUME, randomBytes(32));
    await f.server.close();
    await f.home.store.close();
    const file = join(f.dir, "audit.db");
    const root = process.getuid?.() === 0;
    if (root) execFileSync("chattr", ["+i", file]);
    else chmodSync(file, 0o444);
    try {
      await f.restart();
      const before = (await f.home.store.readAudit()).length;
      const err = await release(device, VOLUME).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TrusteeRefusal);
      expect(err).toMatchObject({ rule: "audit_unavailable", status: 503 });
      expect((await f.home.store.readAudit()).length).toBe(before);
      expect(f.logs.some((l) => l.includes("audit append failed"))).toBe(true);
    } finally {
      if (root) execFileSync("chattr", ["-i", file]);
      else chmodSync(file, 0o600);
    }
  });
});
