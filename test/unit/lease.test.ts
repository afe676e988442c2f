// The mount's lease keeper (src/mount/lease.ts, docs/trustee.md §8.6) with an
// injected renewal: renewed leases keep the mount, a refusal stops it at
// once, an unreachable trustee only when the lease runs out. Short leases
// and generous margins: these check order, not speed.

import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { LeaseKeeper, type RenewOutcome } from "../../src/mount/lease.js";

const log = pino({ level: "silent" });
const inMs = (ms: number) => new Date(Date.now() + ms).toISOString();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("lease keeper", () => {
  let keeper: LeaseKeeper | undefined;
  afterEach(() => keeper?.dispose());

  function start(lease: number, renew: () => Promise<RenewOutcome>, retryMs = 100) {
    const stops: string[] = [];
    keeper = new LeaseKeeper({
      initial: { expiresAt: inMs(lease) },
      renew,
      stop: (w) => stops.push(w),
      log,
      retryMs,
    });
    keeper.start();
    return stops;
  }

  it("renews at half the time left and keeps the mount while renewals succeed", async () => {
    let renewals = 0;
    const stops = start(600, async () => {
      renewals++;
      return { ok: true, expiresAt: inMs(600) };
    });
    await sleep(1500);
    expect(stops).toEqual([]);
    expect(renewals).toBeGreaterThanOrEqual(3);
  });

  it("a refused renewal stops the mount at once, naming the refusal", async () => {
    const stops = start(3000, async () => ({ ok: false, refused: true, reason: "device_revoked" }));
    await sleep(2300); // the first attempt comes at half of 3 s, well before the lease's end
    expect(stops).toHaveLength(1);
    expect(stops[0]).toContain("refused the lease: device_revoked");
  });

  it("an unreachable trustee is retried, and the mount stops when the lease runs out", async () => {
    let attempts = 0;
    const stops = start(1500, async () => {
      attempts++;
      return { ok: false, refused: false, reason: "ECONNREFUSED" };
    });
    await sleep(300);
    expect(stops).toEqual([]);
    await sleep(2000);
    expect(stops).toHaveLength(1);
    expect(stops[0]).toContain("ran out");
    expect(attempts).toBeGreaterThanOrEqual(2);
  });

  it("the deadline holds even while a renewal hangs", async () => {
    const stops = start(600, () => new Promise<RenewOutcome>(() => undefined));
    await sleep(1000);
    expect(stops).toHaveLength(1);
  });

  it("a lease already over stops at start; dispose stops nothing", async () => {
    const stops = start(-1, async () => ({ ok: true, expiresAt: inMs(1000) }));
    expect(stops).toHaveLength(1);
    const quiet = start(300, async () => ({ ok: false, refused: true, reason: "x" }));
    keeper!.dispose();
    await sleep(500);
    expect(quiet).toEqual([]);
  });
});
