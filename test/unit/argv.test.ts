// Device IDs are RFC 7638 thumbprints in base64url: one in 32 begins with
// "-". The CLI must take them as operands wherever they stand.

import { describe, expect, it } from "vitest";
import { protectDashedOperands } from "../../src/cli/argv.js";
import { buildProgram } from "../../src/cli/main.js";

const ID = "-vy0E7vvtdIVByvp1togYNjJcEJbdyF0_KoK85L77U4";
const DOUBLE = "--y0E7vvtdIVByvp1togYNjJcEJbdyF0_KoK85L77U4";

describe("operands that begin with a dash", () => {
  const program = buildProgram();
  const protect = (args: string[]) => protectDashedOperands(program, args);

  it("a dashed device ID moves behind --, options stay in front with their values", () => {
    expect(protect(["trustee", "approve", ID, "--dir", "/t", "--code", "AB-CD"])).toEqual([
      "trustee",
      "approve",
      "--dir",
      "/t",
      "--code",
      "AB-CD",
      "--",
      ID,
    ]);
    expect(protect(["trustee", "revoke", "--dir=/t", DOUBLE])).toEqual([
      "trustee",
      "revoke",
      "--dir=/t",
      "--",
      DOUBLE,
    ]);
  });

  it("an option's value that looks like an ID stays the option's", () => {
    const args = ["trustee", "policy", "vol", "--member", ID, "--dir", "/t"];
    expect(protect(args)).toEqual(args);
  });

  it("anything else is left as it was: plain IDs, an explicit --, unknown options", () => {
    for (const args of [
      ["trustee", "approve", "vy0E7vvtdIVByvp1togYNjJcEJbdyF0_KoK85L77U4", "--code", "X"],
      ["trustee", "approve", "--code", "X", "--", ID],
      ["trustee", "approve", "--bogus", "x"],
      ["mount", "/lower", "/mnt", "-o", "ro"],
    ])
      expect(protect(args)).toEqual(args);
  });
});
