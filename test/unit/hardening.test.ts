// The hardening addon (native/secure/secure.c), exercised in a child process
// of its own: a process it marks not dumpable stays that way.

import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { SECURE_PATH, secureNative } from "../../src/mount/hardening.js";

const built = existsSync(SECURE_PATH);

/** Runs `body` in a fresh node with the addon as `m`; returns what it printed as JSON. */
function inChild(body: string): Record<string, unknown> {
  const script = `const m = require(${JSON.stringify(SECURE_PATH)}); const out = {}; ${body}; console.log(JSON.stringify(out));`;
  const r = spawnSync(process.execPath, ["-e", script], { encoding: "utf8" });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

describe.skipIf(!built)("hardening addon", () => {
  it("loads with the version the loader expects", () => {
    expect(secureNative().version).toBe(1);
  });

  it("disableCoreDumps: not dumpable, no core file", () => {
    const out = inChild(`
      out.before = m.isDumpable();
      m.disableCoreDumps();
      out.after = m.isDumpable();
      out.core = m.coreLimit();
      out.procLimit = require("fs").readFileSync("/proc/self/limits", "utf8").split("\\n").find((l) => l.startsWith("Max core file size"));
    `);
    expect(out.before).toBe(true);
    expect(out.after).toBe(false);
    expect(out.core).toBe(0);
    expect(out.procLimit).toMatch(/^Max core file size\s+0\s+0\s/);
  });

  it("lockMemory locks a Buffer or typed array where the limit allows, and refuses anything else", () => {
    const out = inChild(`
      out.buffer = m.lockMemory(Buffer.alloc(64, 1));
      out.typed = m.lockMemory(new Uint32Array(16));
      out.empty = m.lockMemory(Buffer.alloc(0));
      try { m.lockMemory("not a buffer"); } catch (e) { out.error = e.message; }
      out.locked = require("fs").readFileSync("/proc/self/status", "utf8").match(/VmLck:\\s+(\\d+)/)[1];
    `);
    expect(typeof out.buffer).toBe("boolean");
    if (process.getuid?.() === 0) {
      expect(out.buffer).toBe(true);
      expect(out.typed).toBe(true);
      expect(Number(out.locked)).toBeGreaterThan(0);
    }
    expect(out.empty).toBe(true);
    expect(out.error).toMatch(/Buffer or typed array/);
  });

  it("raiseOpenFileLimit raises the soft limit to the hard one", () => {
    const out = inChild(`
      out.soft = m.raiseOpenFileLimit();
      out.line = require("fs").readFileSync("/proc/self/limits", "utf8").split("\\n").find((l) => l.startsWith("Max open files"));
    `);
    const [, soft, hard] = /^Max open files\s+(\S+)\s+(\S+)/.exec(String(out.line))!;
    expect(soft).toBe(hard);
    expect(String(out.soft)).toBe(soft === "unlimited" ? "-1" : soft);
  });
});
