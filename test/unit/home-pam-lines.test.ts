import { describe, expect, test } from "vitest";
import {
  MARK,
  addLine,
  hasOurLine,
  pamLine,
  passwordsBypassCommon,
  removeLines,
} from "../../src/home/pam-lines.js";
import { readNulSecrets, nulJoined } from "../../src/home/secrets.js";
import { Readable } from "node:stream";

const COMMON_AUTH = `#
# /etc/pam.d/common-auth
auth\t[success=1 default=ignore]\tpam_unix.so nullok
auth\trequisite\t\t\tpam_deny.so
auth\trequired\t\t\tpam_permit.so
`;

describe("PAM line edits", () => {
  const line = pamLine("auth", "pam_cryptmount.so", ["node=/usr/bin/node", "cli=/x/main.js"]);

  test("adding appends our line after the stack, once", () => {
    const once = addLine(COMMON_AUTH, line);
    expect(once.endsWith(`${MARK}\n${line}\n`)).toBe(true);
    expect(addLine(once, line)).toBe(once);
    expect(hasOurLine(once, "auth")).toBe(true);
    expect(hasOurLine(once, "session")).toBe(false);
  });

  test("adding replaces an older line instead of doubling it", () => {
    const old = addLine(COMMON_AUTH, pamLine("auth", "pam_cryptmount.so", ["cli=/old.js"]));
    const updated = addLine(old, line);
    expect(updated.match(/pam_cryptmount/g)).toHaveLength(1);
    expect(updated).toContain("cli=/x/main.js");
  });

  test("removing gives back the original text", () => {
    expect(removeLines(addLine(COMMON_AUTH, line))).toBe(COMMON_AUTH);
    expect(removeLines(COMMON_AUTH)).toBe(COMMON_AUTH);
  });

  test("a commented-out line is not ours", () => {
    expect(hasOurLine("#auth optional pam_cryptmount.so\n", "auth")).toBe(false);
  });

  test("services that change passwords without common-password are found", () => {
    expect(passwordsBypassCommon("@include common-password\n")).toBe(false);
    expect(passwordsBypassCommon("password include common-password\n")).toBe(false);
    expect(passwordsBypassCommon("auth required pam_unix.so\n")).toBe(false);
    expect(passwordsBypassCommon("password required pam_unix.so sha512\n")).toBe(true);
    expect(passwordsBypassCommon("# password required pam_unix.so\n")).toBe(false);
  });
});

describe("NUL-separated secrets", () => {
  test("round trip, extra bytes ignored, missing ones left out", async () => {
    const joined = nulJoined([Buffer.from("old pw"), Buffer.from("new\npw")]);
    const [a, b] = await readNulSecrets(
      2,
      Readable.from([joined.subarray(0, 3), joined.subarray(3)]),
    );
    expect(a?.toString()).toBe("old pw");
    expect(b?.toString()).toBe("new\npw");
    expect(await readNulSecrets(2, Readable.from([Buffer.from("only\0")]))).toHaveLength(1);
  });
});
