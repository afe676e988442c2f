// cryptmount passwd: changing, adding and removing key slots, the recovery
// key, and the promise that only the config changes (every other lower file
// stays byte-identical and the cleartext reads the same).

import { randomBytes } from "node:crypto";
import { existsSync, statSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { Sandbox, haveFuse, isMounted, seededBytes, sandboxSuite } from "../helpers/volume.js";
import {
  MIN_KDF,
  checksumTree,
  cli,
  cliOk,
  configCopies,
  expectCliError,
  info,
  initVolume,
  lowerSnapshot,
  mountVolume,
  recoveryKeyIn,
  secretFile,
  unmountVolume,
  writeFiles,
  type Manifest,
} from "../helpers/volume-tools.js";

let sb: Sandbox;

interface Volume {
  lower: string;
  recoveryKey?: string;
  manifest: Manifest;
  lowerBefore: Record<string, string>;
}

describe.skipIf(!haveFuse)("passwd", () => {
  let counter = 0;
  sandboxSuite("vpasswd", (s) => {
    sb = s;
  });

  /** A small volume with seeded content; its manifest and a snapshot of the lower files. */
  async function fresh(extra: string[] = []): Promise<Volume> {
    const { lower, recoveryKey } = await initVolume(sb, extra);
    const m = await mountVolume(sb, lower);
    const manifest = await writeFiles(m.mountpoint, `passwd-${++counter}`, 3, 8, 9000);
    await unmountVolume(sb, m);
    return {
      lower,
      manifest,
      lowerBefore: lowerSnapshot(lower),
      ...(recoveryKey ? { recoveryKey } : {}),
    };
  }

  /** Only the config changed: lower files byte-identical, cleartext identical when opened with `key`. */
  async function expectDataUntouched(v: Volume, key: string[]): Promise<void> {
    expect(lowerSnapshot(v.lower)).toEqual(v.lowerBefore);
    const m = await mountVolume(sb, v.lower, { key });
    expect(await checksumTree(m.mountpoint)).toEqual(v.manifest);
    await unmountVolume(sb, m);
  }

  /** `key` unlocks the volume (checked with fsck, which also verifies every block; no check record, so the lower stays as it was). */
  async function expectKeyWorks(v: Volume, key: string[]): Promise<void> {
    const r = await cli(sb, ["fsck", "--no-record", ...key, v.lower]);
    expect(r.code, r.stderr).toBe(0);
    expect(lowerSnapshot(v.lower)).toEqual(v.lowerBefore);
  }

  /** Mounting with `key` fails as a wrong key (exit 3) and leaves nothing mounted. */
  async function expectMountRefused(v: Volume, key: string[], pattern: RegExp): Promise<void> {
    const mnt = await sb.mkdir("mnt");
    const r = await cli(sb, ["mount", ...key, v.lower, mnt]);
    expectCliError(r, 3, pattern);
    expect(isMounted(mnt)).toBe(false);
  }

  it("changing the passphrase: the new one mounts, the old one fails with exit 3; data untouched", async () => {
    const v = await fresh();
    const configBefore = await configCopies(v.lower);
    const newPass = await secretFile(sb, "new.pass", "a brand new passphrase");
    const out = await cliOk(sb, [
      "passwd",
      v.lower,
      "--passfile",
      sb.passfile,
      "--new-passfile",
      newPass,
      ...MIN_KDF,
    ]);
    expect(out).toMatch(/Set passphrase in key slot 1/);

    const [primary, backup] = await configCopies(v.lower);
    expect(primary).toBe(backup);
    expect(primary).not.toBe(configBefore[0]);
    const i = await info(sb, v.lower);
    expect(i.slots.map((s) => [s.id, s.kind])).toEqual([
      [1, "passphrase"],
      [2, "recovery"],
    ]);

    await expectMountRefused(v, ["--passfile", sb.passfile], /wrong passphrase/);
    for (const command of [
      ["fsck"],
      ["rekey"],
      ["passwd", "--new-passfile", newPass, ...MIN_KDF],
    ]) {
      const r = await cli(sb, [...command, "--passfile", sb.passfile, v.lower]);
      expectCliError(r, 3, /wrong passphrase/);
    }
    await expectDataUntouched(v, ["--passfile", newPass]);
    // The recovery key is unaffected.
    const rk = await secretFile(sb, "recovery", v.recoveryKey!);
    await expectKeyWorks(v, ["--recovery", "--passfile", rk]);
  });

  it("a wrong old passphrase: passwd exits 3 and the config is unchanged", async () => {
    const v = await fresh();
    const before = await configCopies(v.lower);
    const wrong = await secretFile(sb, "wrong.pass", "not it");
    const newPass = await secretFile(sb, "new.pass", "whatever");
    const keyFile = sb.path("new-recovery-key");
    for (const extra of [
      ["--new-passfile", newPass, ...MIN_KDF],
      ["--remove-slot", "2"],
      ["--new-recovery-key", "--recovery-key-file", keyFile],
      ["--add-passphrase", "--new-passfile", newPass, ...MIN_KDF],
    ]) {
      const r = await cli(sb, ["passwd", v.lower, "--passfile", wrong, ...extra]);
      expectCliError(r, 3, /wrong passphrase/);
      expect(r.stdout).toBe("");
    }
    // The key file made up front for --new-recovery-key is gone again.
    expect(existsSync(keyFile)).toBe(false);
    expect(await configCopies(v.lower)).toEqual(before);
    await expectDataUntouched(v, ["--passfile", sb.passfile]);
  });

  it("adding a key-file slot: --keyfile and -o keyfile= mount; other key files fail; the passphrase still works", async () => {
    const v = await fresh();
    const keyfile = await secretFile(sb, "data.key", seededBytes("keyfile", 64));
    const out = await cliOk(sb, [
      "passwd",
      v.lower,
      "--passfile",
      sb.passfile,
      "--add-keyfile",
      keyfile,
    ]);
    expect(out).toMatch(/Added key-file slot 3/);
    const i = await info(sb, v.lower);
    expect(i.slots.find((s) => s.id === 3)?.kind).toBe("keyfile");

    const m = await mountVolume(sb, v.lower, { key: ["--keyfile", keyfile] });
    const status = JSON.parse(await cliOk(sb, ["status", "--json"])) as {
      mountpoint: string;
      keySource: string;
    }[];
    expect(status.find((s) => s.mountpoint === m.mountpoint)?.keySource).toBe("keyfile");
    expect(await checksumTree(m.mountpoint)).toEqual(v.manifest);
    await unmountVolume(sb, m);

    const m2 = await mountVolume(sb, v.lower, { key: ["-o", `keyfile=${keyfile}`] });
    expect(await checksumTree(m2.mountpoint)).toEqual(v.manifest);
    await unmountVolume(sb, m2);

    const other = await secretFile(sb, "other.key", seededBytes("other keyfile", 64));
    await expectMountRefused(v, ["--keyfile", other], /wrong key file/);
    // Too short to be a key file: a usage error, not a wrong key.
    const short = await secretFile(sb, "short.key", Buffer.alloc(8, 1));
    expectCliError(
      await cli(sb, ["mount", "--keyfile", short, v.lower, await sb.mkdir("mnt")]),
      2,
      /at least 32 bytes/,
    );

    await expectDataUntouched(v, ["--passfile", sb.passfile]);
  });

  it("removing a slot: its key stops working, the others keep working", async () => {
    const v = await fresh();
    const keyfile = await secretFile(sb, "data.key", seededBytes("keyfile-2", 48));
    await cliOk(sb, ["passwd", v.lower, "--passfile", sb.passfile, "--add-keyfile", keyfile]);
    await mountVolume(sb, v.lower, { key: ["--keyfile", keyfile] }).then((m) =>
      unmountVolume(sb, m),
    );

    // Remove the key-file slot, unlocking with the passphrase.
    const out = await cliOk(sb, [
      "passwd",
      v.lower,
      "--passfile",
      sb.passfile,
      "--remove-slot",
      "3",
    ]);
    expect(out).toMatch(/Removed key slot 3/);
    expect((await info(sb, v.lower)).slots.map((s) => s.id)).toEqual([1, 2]);
    await expectMountRefused(v, ["--keyfile", keyfile], /no keyfile key slot/);

    // Remove the recovery slot with the recovery key itself: allowed (another slot remains), and it stops working.
    const rk = await secretFile(sb, "recovery", v.recoveryKey!);
    await cliOk(sb, ["passwd", v.lower, "--recovery", "--passfile", rk, "--remove-slot", "2"]);
    expect((await info(sb, v.lower)).slots.map((s) => s.kind)).toEqual(["passphrase"]);
    await expectMountRefused(v, ["--recovery", "--passfile", rk], /no recovery key slot/);

    // A slot that does not exist: usage error, config unchanged.
    const before = await configCopies(v.lower);
    expectCliError(
      await cli(sb, ["passwd", v.lower, "--passfile", sb.passfile, "--remove-slot", "9"]),
      2,
      /no key slot 9/,
    );
    expect(await configCopies(v.lower)).toEqual(before);

    await expectDataUntouched(v, ["--passfile", sb.passfile]);
  });

  it("refuses to remove the last slot (exit 2, config unchanged)", async () => {
    const v = await fresh(["--no-recovery"]);
    expect((await info(sb, v.lower)).slots.map((s) => [s.id, s.kind])).toEqual([[1, "passphrase"]]);
    const before = await configCopies(v.lower);
    const r = await cli(sb, ["passwd", v.lower, "--passfile", sb.passfile, "--remove-slot", "1"]);
    expectCliError(r, 2, /last key slot/);
    expect(await configCopies(v.lower)).toEqual(before);
    await expectDataUntouched(v, ["--passfile", sb.passfile]);
  });

  it("the recovery key printed at init resets a lost passphrase (passwd --recovery)", async () => {
    const v = await fresh();
    expect(v.recoveryKey).toMatch(/^[0-9A-Z]{5}(-[0-9A-Z]{5})+$/);
    const rk = await secretFile(sb, "recovery", v.recoveryKey!);
    const newPass = await secretFile(sb, "reset.pass", "reset after loss");
    const out = await cliOk(sb, [
      "passwd",
      "--recovery",
      "--passfile",
      rk,
      "--new-passfile",
      newPass,
      ...MIN_KDF,
      v.lower,
    ]);
    expect(out).toMatch(/Set passphrase in key slot 1/);
    expect((await info(sb, v.lower)).slots.map((s) => [s.id, s.kind])).toEqual([
      [1, "passphrase"],
      [2, "recovery"],
    ]);
    await expectMountRefused(v, ["--passfile", sb.passfile], /wrong passphrase/);
    await expectDataUntouched(v, ["--passfile", newPass]);
    // The recovery key keeps working after it was used.
    await expectKeyWorks(v, ["--recovery", "--passfile", rk]);

    // A well-formed but different recovery key, and a malformed one: exit 3.
    const otherVolume = await initVolume(sb);
    const otherKey = await secretFile(sb, "other-recovery", otherVolume.recoveryKey!);
    expectCliError(
      await cli(sb, [
        "passwd",
        "--recovery",
        "--passfile",
        otherKey,
        "--new-passfile",
        newPass,
        ...MIN_KDF,
        v.lower,
      ]),
      3,
      /recovery key/,
    );
    const garbage = await secretFile(sb, "garbage-recovery", "not-a-recovery-key");
    expectCliError(
      await cli(sb, [
        "passwd",
        "--recovery",
        "--passfile",
        garbage,
        "--new-passfile",
        newPass,
        ...MIN_KDF,
        v.lower,
      ]),
      3,
    );
  });

  it("--new-recovery-key: the old recovery key fails (exit 3), the new one works", async () => {
    const v = await fresh();
    const oldRk = await secretFile(sb, "old-recovery", v.recoveryKey!);
    // Standard output is not a terminal: the new key needs a file, and nothing changes without one.
    const unchanged = await configCopies(v.lower);
    expectCliError(
      await cli(sb, ["passwd", v.lower, "--passfile", sb.passfile, "--new-recovery-key"]),
      2,
      /printed only to a terminal.*--recovery-key-file/,
    );
    expect(await configCopies(v.lower)).toEqual(unchanged);
    const keyFile = sb.path("new-recovery-key");
    const out = await cliOk(sb, [
      "passwd",
      v.lower,
      "--passfile",
      sb.passfile,
      "--new-recovery-key",
      "--recovery-key-file",
      keyFile,
    ]);
    expect(out).toMatch(/Recovery key written to /);
    expect(out).not.toMatch(/[0-9A-Z]{5}-[0-9A-Z]{5}-/);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    const newKey = await recoveryKeyIn(keyFile);
    expect(newKey).not.toBe(v.recoveryKey);
    const recoverySlots = (await info(sb, v.lower)).slots.filter((s) => s.kind === "recovery");
    expect(recoverySlots).toHaveLength(1);

    const before = await configCopies(v.lower);
    const newPass = await secretFile(sb, "x.pass", "x");
    expectCliError(
      await cli(sb, [
        "passwd",
        "--recovery",
        "--passfile",
        oldRk,
        "--new-passfile",
        newPass,
        ...MIN_KDF,
        v.lower,
      ]),
      3,
      /wrong recovery key/,
    );
    expect(await configCopies(v.lower)).toEqual(before);
    await expectMountRefused(v, ["--recovery", "--passfile", oldRk], /wrong recovery key/);

    const newRk = await secretFile(sb, "new-recovery", newKey);
    await expectDataUntouched(v, ["--recovery", "--passfile", newRk]);
    await expectKeyWorks(v, ["--passfile", sb.passfile]);
  });

  it("--add-passphrase adds a second passphrase; --slot changes that one only", async () => {
    const v = await fresh();
    const second = await secretFile(
      sb,
      "second.pass",
      "second passphrase " + randomBytes(4).toString("hex"),
    );
    const out = await cliOk(sb, [
      "passwd",
      v.lower,
      "--passfile",
      sb.passfile,
      "--add-passphrase",
      "--new-passfile",
      second,
      ...MIN_KDF,
    ]);
    expect(out).toMatch(/Added passphrase in key slot 3/);
    await expectKeyWorks(v, ["--passfile", second]);
    await expectKeyWorks(v, ["--passfile", sb.passfile]);

    const third = await secretFile(sb, "third.pass", "third passphrase");
    await cliOk(sb, [
      "passwd",
      v.lower,
      "--passfile",
      sb.passfile,
      "--slot",
      "3",
      "--new-passfile",
      third,
      ...MIN_KDF,
    ]);
    await expectMountRefused(v, ["--passfile", second], /wrong passphrase/);
    await expectKeyWorks(v, ["--passfile", third]);
    await expectDataUntouched(v, ["--passfile", sb.passfile]);

    // --slot naming a slot that is not a passphrase: usage error, config unchanged.
    const before = await configCopies(v.lower);
    expectCliError(
      await cli(sb, [
        "passwd",
        v.lower,
        "--passfile",
        sb.passfile,
        "--slot",
        "2",
        "--new-passfile",
        third,
        ...MIN_KDF,
      ]),
      2,
      /not a passphrase slot/,
    );
    expect(await configCopies(v.lower)).toEqual(before);
  });
});
