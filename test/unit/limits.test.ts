// Bounds checked before a KDF ever runs: at most MAX_KEY_SLOTS key slots, and
// Argon2 parameters within memory, passes, memory x passes and lanes ceilings,
// both when a config is read and when a slot is made.

import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  ARGON2_MAX_COST_KIB,
  ARGON2_MINIMUM,
  MAX_KEY_SLOTS,
  argon2BoundsProblem,
  parseConfig,
} from "../../src/format/config.js";
import { FormatError } from "../../src/format/errors.js";
import { argon2FromOptions } from "../../src/cli/options.js";
import { EXIT } from "../../src/errors.js";
import { addSlot } from "../../src/volume/slots.js";
import { initVolume, unlockVolume } from "../../src/volume/volume.js";
import { rejection } from "../helpers/user-error.js";

const FIXTURE = join(import.meta.dirname, "..", "fixtures", "volume-v1", "cryptmount.conf");
const fixture = () => JSON.parse(readFileSync(FIXTURE, "utf8")) as Record<string, unknown>;
type Slot = { id: number; kind: string; kdf?: Record<string, unknown> };

function codeOf(run: () => unknown): string | undefined {
  try {
    run();
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(FormatError);
    return (err as FormatError).code;
  }
}

describe("config bounds", () => {
  it("the checked-in fixture is within them", () => {
    expect(() => parseConfig(readFileSync(FIXTURE, "utf8"))).not.toThrow();
  });

  it(`more than ${MAX_KEY_SLOTS} key slots is CONFIG_INVALID; exactly ${MAX_KEY_SLOTS} parses`, () => {
    const config = fixture();
    const slot = (config.slots as Slot[]).find(
      (s) => s.kind === "keyfile" || s.kind === "recovery",
    )!;
    const many = (n: number) =>
      JSON.stringify({
        ...config,
        slots: Array.from({ length: n }, (_, i) => ({ ...slot, id: i + 1 })),
      });
    expect(codeOf(() => parseConfig(many(MAX_KEY_SLOTS)))).toBeUndefined();
    expect(codeOf(() => parseConfig(many(MAX_KEY_SLOTS + 1)))).toBe("CONFIG_INVALID");
  });

  it.each([
    ["memory x passes above the ceiling", { memoryKiB: 4 * 1024 * 1024, iterations: 9 }],
    ["passes above 1000", { iterations: 1001 }],
    ["17 lanes", { parallelism: 17 }],
    ["memory above 4 GiB", { memoryKiB: 4 * 1024 * 1024 + 1 }],
  ])("a passphrase slot with %s is CONFIG_INVALID", (_what, change) => {
    const config = fixture();
    const slots = (config.slots as Slot[]).map((s) =>
      s.kind === "passphrase" ? { ...s, kdf: { ...s.kdf, ...change } } : s,
    );
    expect(codeOf(() => parseConfig(JSON.stringify({ ...config, slots })))).toBe("CONFIG_INVALID");
  });

  it("the ceilings themselves are allowed", () => {
    const base = { ...ARGON2_MINIMUM };
    expect(
      argon2BoundsProblem({ ...base, memoryKiB: 4 * 1024 * 1024, iterations: 8 }),
    ).toBeUndefined();
    expect(
      argon2BoundsProblem({
        ...base,
        memoryKiB: Math.floor(ARGON2_MAX_COST_KIB / 1000),
        iterations: 1000,
      }),
    ).toBeUndefined();
    expect(argon2BoundsProblem({ ...base, parallelism: 16 })).toBeUndefined();
  });

  it("the CLI refuses parameters above the bounds as a usage error", () => {
    for (const options of [
      { kdfMemory: 8 * 1024 * 1024 },
      { kdfMemory: 1024 * 1024, kdfIterations: 64 },
      { kdfIterations: 5000 },
      { kdfParallelism: 64 },
    ]) {
      let code: number | undefined;
      try {
        argon2FromOptions(options);
      } catch (err) {
        code = (err as { exitCode?: number }).exitCode;
      }
      expect(code, JSON.stringify(options)).toBe(EXIT.usage);
    }
    expect(argon2FromOptions({ kdfMemory: 1024 * 1024, kdfIterations: 32 }).iterations).toBe(32);
  });
});

describe("slot count", () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it(`adding a slot to a volume with ${MAX_KEY_SLOTS} is refused (exit 2) and leaves the config`, async () => {
    const dir = await mkdtemp(join(tmpdir(), "cryptmount-limits-"));
    dirs.push(dir);
    const lower = join(dir, "v");
    const key = (n: number) => ({ kind: "keyfile" as const, bytes: Buffer.alloc(32, n) });
    await initVolume(lower, { slots: [{ secret: key(0) }], recovery: false });
    let unlocked = await unlockVolume(lower, key(0));
    for (let i = 1; i < MAX_KEY_SLOTS; i++) {
      await addSlot(unlocked, { secret: key(i) });
      unlocked = await unlockVolume(lower, key(0));
    }
    expect(unlocked.config.slots).toHaveLength(MAX_KEY_SLOTS);
    const err = await rejection(addSlot(unlocked, { secret: key(99) }));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toMatch(/32 key slots/);
    expect((await unlockVolume(lower, key(0))).config.slots).toHaveLength(MAX_KEY_SLOTS);
  });
});
