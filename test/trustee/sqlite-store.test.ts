// The SQLite store against the TrusteeStore contract, and a trustee
// directory made before migration 2 (grants) opening with its data.

import Database from "better-sqlite3";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { SqliteTrusteeStore, STATE_MIGRATIONS } from "../../src/trustee/sqlite-store.js";
import { describeTrusteeStore } from "./store-contract.js";

describeTrusteeStore("SQLite", async () => {
  const dir = await mkdtemp(join(tmpdir(), "cm-store-"));
  const store = new SqliteTrusteeStore(dir);
  return {
    store,
    async cleanup() {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

describe("SQLite store schema upgrade", () => {
  it("a state.db of schema 1 migrates on open and keeps its policies", async () => {
    const dir = await mkdtemp(join(tmpdir(), "cm-store-"));
    try {
      const old = new Database(join(dir, "state.db"));
      old.exec(STATE_MIGRATIONS[0]!);
      old.pragma("user_version = 1");
      old
        .prepare(
          "INSERT INTO policies (volume_id, version, policy, updated_at) VALUES (?, ?, ?, ?)",
        )
        .run(
          "vol_OLDOLDOLDOLDOLD",
          1,
          '{"volumeId":"vol_OLDOLDOLDOLDOLD","version":1,"members":["m"]}',
          "2026-01-01T00:00:00Z",
        );
      old.close();
      const store = new SqliteTrusteeStore(dir);
      try {
        expect((await store.getPolicy("vol_OLDOLDOLDOLDOLD"))!.members).toEqual(["m"]);
        expect(await store.countRegistered("m")).toBe(0);
        await store.setGrant({ deviceId: "m", maxVolumes: 1, rules: {} }, new Date());
        expect(await store.getGrant("m")).toBeDefined();
      } finally {
        await store.close();
      }
      const check = new Database(join(dir, "state.db"), { readonly: true });
      expect(check.pragma("user_version", { simple: true })).toBe(STATE_MIGRATIONS.length);
      check.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
