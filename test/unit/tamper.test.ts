// One table of tampering and damage, each with the exact FormatError code it
// must produce (docs/format.md, "Threat model" and "Errors"). Every case is
// built from a genuine volume object and changed in one way only.

import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { gcmSeal } from "../../src/crypto/aead.js";
import { Keyring, deriveEpochKeys } from "../../src/crypto/keys.js";
import {
  ARGON2_MAX_MEMORY_KIB,
  ARGON2_MINIMUM,
  CONFIG_VERSION,
  KNOWN_FEATURES,
  V1_FEATURES,
  openMountKeys,
  openSlot,
  parseConfig,
  sealMountKeys,
  sealSlot,
  sealVolumeSecret,
  serializeConfig,
  signConfig,
  unlockConfig,
  type VolumeConfig,
} from "../../src/format/config.js";
import {
  BLOCK_OVERHEAD,
  ContentGeometry,
  openBlocks,
  sealBlocks,
} from "../../src/format/content.js";
import { FormatError, type FormatErrorCode } from "../../src/format/errors.js";
import { HEADER_SIZE, SLOT_OFFSETS, createHeader, openHeader } from "../../src/format/header.js";
import { decryptName, encryptName, lowerEntryFor, verifyLongName } from "../../src/format/names.js";
import { formatRecoveryKey, parseRecoveryKey } from "../../src/format/recovery.js";
import { decryptSymlink, encryptSymlink } from "../../src/format/symlink.js";
import { decryptXattrValue, encryptXattrName, encryptXattrValue } from "../../src/format/xattr.js";
import { FsError } from "../../src/fs/errors.js";
import type { OpenFile } from "../../src/fs/open-file.js";
import { openLowerFile } from "../helpers/lower-files.js";
import { decryptFile } from "./lower-walk.js";

const B = 4096;
const S = B + BLOCK_OVERHEAD;
const geometry = new ContentGeometry(B);
const volumeId = randomBytes(16);
const volumeIdText = volumeId.toString("base64url");
const mountKey = randomBytes(32);
const volumeSecret = randomBytes(32);
const keyring = new Keyring(volumeId, 1, new Map([[1, mountKey]]), volumeSecret);
const otherMountKey = new Keyring(volumeId, 1, new Map([[1, randomBytes(32)]]), volumeSecret);
const epoch2Only = new Keyring(volumeId, 2, new Map([[2, randomBytes(32)]]), volumeSecret);

function sealFile(data: Buffer, kr: Keyring = keyring): Buffer {
  const { bytes, header } = createHeader(kr, { blockSize: B });
  return Buffer.concat([
    bytes,
    sealBlocks({ fileKey: header.fileKey, fileId: header.fileId, geometry }, 0, data, true),
  ]);
}
const blockAt = (lower: Buffer, i: number) =>
  lower.subarray(geometry.blockOffset(i), geometry.blockOffset(i) + S);
const flip = (buf: Buffer, byte: number, bit = 0) => {
  const copy = Buffer.from(buf);
  copy[byte]! ^= 1 << bit;
  return copy;
};

/** Three full blocks and a partial final one, and a second file of the same shape. */
const fileA = sealFile(randomBytes(3 * B + 500));
const fileB = sealFile(randomBytes(3 * B + 500));
/** Exactly two full blocks, so its final block (index 2) is empty: 28 bytes. */
const aligned = sealFile(randomBytes(2 * B));
const EMPTY_FINAL = BLOCK_OVERHEAD;
const read =
  (lower: Buffer, kr: Keyring = keyring) =>
  () =>
    decryptFile(kr, geometry, lower);

// --- names ---------------------------------------------------------------------
const nameKey = keyring.volume.names;
const dirA = randomBytes(16);
const dirB = randomBytes(16);
const longA = lowerEntryFor(encryptName(nameKey, dirA, "A".repeat(150)));
const longB = lowerEntryFor(encryptName(nameKey, dirA, "B".repeat(150)));

// --- config --------------------------------------------------------------------
const epochKeys = deriveEpochKeys(mountKey, volumeId, 1);
const slotKey = randomBytes(32);
const kek = randomBytes(32);
const slot = sealSlot(
  volumeIdText,
  { id: 1, kind: "passphrase", salt: randomBytes(16).toString("base64url"), kdf: ARGON2_MINIMUM },
  kek,
  slotKey,
);
const config: VolumeConfig = signConfig(epochKeys, {
  format: "cryptmount",
  version: CONFIG_VERSION,
  volumeId: volumeIdText,
  created: new Date(0).toISOString(),
  features: [...KNOWN_FEATURES],
  blockSize: B,
  epoch: 1,
  volumeSecret: sealVolumeSecret(volumeIdText, epochKeys, volumeSecret),
  keys: sealMountKeys(volumeIdText, slotKey, new Map([[1, mountKey]])),
  slots: [slot],
});
type Json = Record<string, unknown>;
/** Parses, opens the slot, the bundle and the config, as an unlock does. */
const unlock = (text: string) => () => {
  const parsed = parseConfig(text);
  const key = openSlot(parsed.volumeId, parsed.slots[0]!, kek);
  if (!key) throw new Error("slot did not open");
  unlockConfig(parsed, openMountKeys(parsed, key));
};
const edited = (change: (c: Json) => void) => {
  const copy = JSON.parse(serializeConfig(config)) as Json;
  change(copy);
  return JSON.stringify(copy);
};
const slotOf = (c: Json) => (c.slots as Json[])[0]!;

// A fixed key, so that the one-symbol typo below is known not to collide with the 16-bit checksum.
const recoveryKey = formatRecoveryKey(Buffer.alloc(32, 0x42));
const typo = (() => {
  // Change one symbol of the first group (never the padding bits at the end).
  const first = recoveryKey[0] === "A" ? "B" : "A";
  return first + recoveryKey.slice(1);
})();

interface Case {
  readonly name: string;
  readonly code: FormatErrorCode;
  readonly run: () => unknown;
}

const cases: Case[] = [
  // file header
  { name: "bad magic", code: "BAD_MAGIC", run: read(flip(fileA, 0)) },
  {
    name: "unknown version (2)",
    code: "UNKNOWN_VERSION",
    run: read(Buffer.concat([fileA.subarray(0, 4), Buffer.from([2]), fileA.subarray(5)])),
  },
  { name: "unknown flags", code: "UNKNOWN_FLAGS", run: read(flip(fileA, 5, 7)) },
  { name: "header kind above 5", code: "UNKNOWN_FLAGS", run: read(flip(fileA, 7, 3)) },
  { name: "HOLES flag set behind our back", code: "HEADER_AUTH", run: read(flip(fileA, 5)) },
  { name: "file made an object (kind 1)", code: "HEADER_AUTH", run: read(flip(fileA, 7)) },
  {
    name: "block size differs from the volume's",
    code: "BLOCK_SIZE_MISMATCH",
    run: read(flip(fileA, 6, 0)),
  },
  { name: "short header (100 bytes)", code: "SHORT_HEADER", run: read(fileA.subarray(0, 100)) },
  { name: "empty lower file", code: "SHORT_HEADER", run: read(Buffer.alloc(0)) },
  { name: "flipped bit in the file ID", code: "HEADER_AUTH", run: read(flip(fileA, 8 + 5, 3)) },
  {
    name: "flipped bit in slot A's nonce",
    code: "HEADER_AUTH",
    run: read(flip(fileA, SLOT_OFFSETS[0] + 4)),
  },
  {
    name: "flipped bit in slot A's wrapped key",
    code: "HEADER_AUTH",
    run: read(flip(fileA, SLOT_OFFSETS[0] + 20, 6)),
  },
  {
    name: "flipped bit in slot A's tag",
    code: "HEADER_AUTH",
    run: read(flip(fileA, SLOT_OFFSETS[0] + 63, 1)),
  },
  {
    name: "slot A's epoch changed",
    code: "UNKNOWN_EPOCH",
    run: read(flip(fileA, SLOT_OFFSETS[0] + 3, 2)),
  },
  {
    name: "garbage in the empty slot B",
    code: "HEADER_AUTH",
    run: read(
      Buffer.concat([
        fileA.subarray(0, SLOT_OFFSETS[1]),
        Buffer.from([0, 0, 0, 1]),
        randomBytes(60),
        fileA.subarray(HEADER_SIZE),
      ]),
    ),
  },
  {
    name: "both slots emptied",
    code: "HEADER_AUTH",
    run: read(
      Buffer.concat([
        fileA.subarray(0, SLOT_OFFSETS[0]),
        Buffer.alloc(128),
        fileA.subarray(HEADER_SIZE),
      ]),
    ),
  },
  { name: "wrong mount key", code: "HEADER_AUTH", run: read(fileA, otherMountKey) },
  {
    name: "unknown key epoch (file wrapped under epoch 2)",
    code: "UNKNOWN_EPOCH",
    run: read(sealFile(Buffer.from("x"), epoch2Only)),
  },
  // content
  {
    name: "flipped bit in a block",
    code: "BLOCK_AUTH",
    run: read(flip(fileA, geometry.blockOffset(1) + 100, 4)),
  },
  {
    name: "flipped bit in a block nonce",
    code: "BLOCK_AUTH",
    run: read(flip(fileA, geometry.blockOffset(2))),
  },
  {
    name: "zeroed block",
    code: "BLOCK_AUTH",
    run: read(
      Buffer.concat([
        fileA.subarray(0, geometry.blockOffset(1)),
        Buffer.alloc(S),
        fileA.subarray(geometry.blockOffset(2)),
      ]),
    ),
  },
  {
    name: "blocks swapped within a file",
    code: "BLOCK_AUTH",
    run: read(
      Buffer.concat([
        fileA.subarray(0, HEADER_SIZE),
        blockAt(fileA, 1),
        blockAt(fileA, 0),
        fileA.subarray(geometry.blockOffset(2)),
      ]),
    ),
  },
  {
    name: "block moved from another file",
    code: "BLOCK_AUTH",
    run: read(
      Buffer.concat([
        fileA.subarray(0, geometry.blockOffset(1)),
        blockAt(fileB, 1),
        fileA.subarray(geometry.blockOffset(2)),
      ]),
    ),
  },
  {
    name: "headers swapped between two files",
    code: "BLOCK_AUTH",
    run: read(Buffer.concat([fileB.subarray(0, HEADER_SIZE), fileA.subarray(HEADER_SIZE)])),
  },
  {
    name: "truncated at a block boundary (final block and a full block removed)",
    code: "TRUNCATED",
    run: read(fileA.subarray(0, geometry.blockOffset(2))),
  },
  {
    name: "empty final block removed: the file ends on a full block",
    code: "TRUNCATED",
    run: read(aligned.subarray(0, aligned.length - EMPTY_FINAL)),
  },
  {
    name: "final block cut off, leaving only the header",
    code: "TRUNCATED",
    run: read(fileA.subarray(0, HEADER_SIZE)),
  },
  {
    name: "header and a few bytes (too short for a final block)",
    code: "BAD_LENGTH",
    run: read(fileA.subarray(0, HEADER_SIZE + 20)),
  },
  {
    name: "empty final block removed and the last full block cut short",
    code: "BLOCK_AUTH",
    run: read(aligned.subarray(0, aligned.length - EMPTY_FINAL - 7)),
  },
  {
    name: "empty final block removed and the last full block cut inside its overhead",
    code: "BAD_LENGTH",
    run: read(aligned.subarray(0, geometry.blockOffset(1) + 10)),
  },
  {
    name: "empty final block moved earlier (the last full block dropped)",
    code: "BLOCK_AUTH",
    run: read(
      Buffer.concat([
        aligned.subarray(0, geometry.blockOffset(1)),
        aligned.subarray(geometry.blockOffset(2)),
      ]),
    ),
  },
  {
    name: "partial final block moved earlier (a full block dropped)",
    code: "BLOCK_AUTH",
    run: read(
      Buffer.concat([
        fileA.subarray(0, geometry.blockOffset(2)),
        fileA.subarray(geometry.blockOffset(3)),
      ]),
    ),
  },
  {
    name: "extended by a whole block after the final block",
    code: "BLOCK_AUTH",
    run: read(Buffer.concat([aligned, blockAt(aligned, 1)])),
  },
  {
    name: "extended by the final block of another file",
    code: "BLOCK_AUTH",
    run: read(Buffer.concat([fileA, fileB.subarray(geometry.blockOffset(3))])),
  },
  {
    name: "a second copy of the empty final block appended",
    code: "BLOCK_AUTH",
    run: read(Buffer.concat([aligned, aligned.subarray(geometry.blockOffset(2))])),
  },
  {
    name: "invalid lower length (cut inside the overhead)",
    code: "BAD_LENGTH",
    run: read(fileA.subarray(0, geometry.blockOffset(3) + 10)),
  },
  {
    name: "invalid lower length (the empty final block replaced by 10 bytes)",
    code: "BAD_LENGTH",
    run: read(Buffer.concat([aligned.subarray(0, geometry.blockOffset(2)), randomBytes(10)])),
  },
  {
    name: "truncated inside the final block",
    code: "BLOCK_AUTH",
    run: read(fileA.subarray(0, fileA.length - 7)),
  },
  {
    name: "a non-final block offered as the last one (reader told the file ends there)",
    code: "TRUNCATED",
    run: () => {
      const header = openHeader(keyring, fileA, B);
      const file = { fileKey: header.fileKey, fileId: header.fileId, geometry };
      const { failure } = openBlocks(file, 1, blockAt(fileA, 1), 1);
      if (failure) throw failure.error;
    },
  },
  {
    name: "the final block offered with more to follow (reader told the file goes on)",
    code: "EXTENDED",
    run: () => {
      const header = openHeader(keyring, fileA, B);
      const file = { fileKey: header.fileKey, fileId: header.fileId, geometry };
      const { failure } = openBlocks(file, 3, fileA.subarray(geometry.blockOffset(3)), 4);
      if (failure) throw failure.error;
    },
  },
  // names and symlinks
  {
    name: "name moved to another directory",
    code: "NAME_AUTH",
    run: () => decryptName(nameKey, dirB, encryptName(nameKey, dirA, "secret.txt")),
  },
  {
    name: "name not base64url",
    code: "NAME_ENCODING",
    run: () => decryptName(nameKey, dirA, "abc*def"),
  },
  {
    name: "long-name sidecar of another entry",
    code: "LONG_NAME_MISMATCH",
    run: () => verifyLongName(longA.entry, longB.longName!),
  },
  {
    name: "flipped bit in a symlink target",
    code: "SYMLINK_AUTH",
    run: () => {
      const stored = Buffer.from(encryptSymlink(keyring.volume.symlinks, "../target"), "base64url");
      stored[20]! ^= 1;
      return decryptSymlink(keyring.volume.symlinks, stored.toString("base64url"));
    },
  },
  {
    name: "extended attribute value moved to another attribute",
    code: "BLOCK_AUTH",
    run: () => {
      const from = encryptXattrName(keyring.volume, "user.a");
      const to = encryptXattrName(keyring.volume, "user.b");
      return decryptXattrValue(
        keyring.volume,
        to,
        encryptXattrValue(keyring.volume, from, Buffer.from("v")),
      );
    },
  },
  // config
  { name: "config: garbage JSON", code: "CONFIG_INVALID", run: unlock("{ this is not json") },
  { name: "config: JSON but not an object", code: "CONFIG_INVALID", run: unlock("[1, 2, 3]") },
  {
    name: "config: block size altered, MAC left",
    code: "CONFIG_AUTH",
    run: unlock(edited((c) => (c.blockSize = 8192))),
  },
  {
    name: "config: slot label altered, MAC left",
    code: "CONFIG_AUTH",
    run: unlock(edited((c) => (slotOf(c).label = "evil"))),
  },
  {
    name: "config: extra member added, MAC left",
    code: "CONFIG_AUTH",
    run: unlock(edited((c) => (c.note = "hello"))),
  },
  {
    name: "config: mount-key bundle damaged",
    code: "CONFIG_AUTH",
    run: unlock(
      edited(
        (c) =>
          (c.keys = flip(Buffer.from(c.keys as string, "base64url"), 30).toString("base64url")),
      ),
    ),
  },
  {
    name: "config: epoch raised, bundle lacks its key",
    code: "CONFIG_AUTH",
    run: unlock(edited((c) => (c.epoch = 2))),
  },
  {
    name: "config: unknown feature",
    code: "UNKNOWN_FEATURE",
    run: unlock(edited((c) => (c.features as string[]).push("zstd-blocks"))),
  },
  {
    name: "config: weak Argon2 parameters",
    code: "WEAK_KDF",
    run: unlock(edited((c) => (slotOf(c).kdf = { ...ARGON2_MINIMUM, memoryKiB: 1024 }))),
  },
  {
    name: "config: Argon2 iterations below minimum",
    code: "WEAK_KDF",
    run: unlock(edited((c) => (slotOf(c).kdf = { ...ARGON2_MINIMUM, iterations: 1 }))),
  },
  {
    name: "config: Argon2 memory above the 4 GiB bound (read before authentication)",
    code: "CONFIG_INVALID",
    run: unlock(
      edited((c) => (slotOf(c).kdf = { ...ARGON2_MINIMUM, memoryKiB: ARGON2_MAX_MEMORY_KIB + 1 })),
    ),
  },
  {
    name: "config: Argon2 algorithm other than argon2id",
    code: "CONFIG_INVALID",
    run: unlock(edited((c) => (slotOf(c).kdf = { ...ARGON2_MINIMUM, algorithm: "argon2i" }))),
  },
  {
    name: "config: version 4",
    code: "UNKNOWN_VERSION",
    run: unlock(edited((c) => (c.version = 4))),
  },
  {
    name: "config: version 1 with the version-2 feature list",
    code: "CONFIG_INVALID",
    run: unlock(edited((c) => (c.version = 1))),
  },
  {
    name: "config: version 2 without authenticated-dir-ids",
    code: "CONFIG_INVALID",
    run: unlock(edited((c) => (c.features = [...V1_FEATURES]))),
  },
  {
    name: "config: version 1 relabelled from 2 (feature dropped too), MAC left",
    code: "CONFIG_AUTH",
    run: unlock(
      edited((c) => {
        c.version = 1;
        c.features = [...V1_FEATURES];
      }),
    ),
  },
  {
    name: "config: not a cryptmount config",
    code: "CONFIG_INVALID",
    run: unlock(edited((c) => (c.format = "gocryptfs"))),
  },
  {
    name: "config: block size not a power of two",
    code: "CONFIG_INVALID",
    run: unlock(edited((c) => (c.blockSize = 5000))),
  },
  {
    name: "config: block size too small",
    code: "CONFIG_INVALID",
    run: unlock(edited((c) => (c.blockSize = 2048))),
  },
  {
    name: "config: volume ID of the wrong length",
    code: "CONFIG_INVALID",
    run: unlock(edited((c) => (c.volumeId = "AAAA"))),
  },
  {
    name: "config: duplicate slot IDs",
    code: "CONFIG_INVALID",
    run: unlock(edited((c) => (c.slots = [slotOf(c), slotOf(c)]))),
  },
  {
    name: "config: unknown slot kind",
    code: "CONFIG_INVALID",
    run: unlock(edited((c) => (slotOf(c).kind = "fingerprint"))),
  },
  { name: "config: no slots", code: "CONFIG_INVALID", run: unlock(edited((c) => (c.slots = []))) },
  {
    name: "config: rekey state not ending at the epoch",
    code: "CONFIG_INVALID",
    run: unlock(edited((c) => (c.rekey = { from: 1, to: 3 }))),
  },
  { name: "config: MAC missing", code: "CONFIG_INVALID", run: unlock(edited((c) => delete c.mac)) },
  {
    name: "config: slot opens to a payload of the wrong size",
    code: "CONFIG_INVALID",
    run: () => {
      const base = { id: 1, kind: "keyfile" as const, salt: "AAAAAAAAAAAAAAAAAAAAAA" };
      return openSlot(
        volumeIdText,
        { ...base, wrapped: sealSlot(volumeIdText, base, kek, randomBytes(31)).wrapped },
        kek,
      );
    },
  },
  {
    name: "config: volume secret sealed for another epoch",
    code: "CONFIG_AUTH",
    run: () => {
      const wrong = gcmSeal(
        epochKeys.configWrap,
        randomBytes(12),
        Buffer.from(`cryptmount v1 volume secret ${volumeIdText} 2`),
        volumeSecret,
      );
      const forged = signConfig(epochKeys, {
        ...config,
        volumeSecret: wrong.toString("base64url"),
      });
      return unlock(serializeConfig(forged))();
    },
  },
  // recovery key
  { name: "recovery key typo", code: "RECOVERY_KEY_INVALID", run: () => parseRecoveryKey(typo) },
  {
    name: "recovery key with a group missing",
    code: "RECOVERY_KEY_INVALID",
    run: () => parseRecoveryKey(recoveryKey.slice(6)),
  },
  {
    name: "recovery key with a letter outside the alphabet",
    code: "RECOVERY_KEY_INVALID",
    run: () => parseRecoveryKey("U" + recoveryKey.slice(1)),
  },
];

describe("tampering and damage are refused with the documented code", () => {
  it("the untouched objects are all accepted", () => {
    expect(read(fileA)()).toHaveLength(3 * B + 500);
    expect(read(aligned)()).toHaveLength(2 * B);
    expect(unlock(serializeConfig(config))).not.toThrow();
    expect(parseRecoveryKey(recoveryKey)).toHaveLength(32);
    expect(() => verifyLongName(longA.entry, longA.longName!)).not.toThrow();
    expect(openHeader(keyring, fileA, B).slotEpochs).toEqual([1, undefined]);
  });

  it.each(cases)("$name → $code", ({ run, code }) => {
    let caught: unknown;
    try {
      run();
    } catch (err) {
      caught = err;
    }
    expect(caught, "expected a FormatError").toBeInstanceOf(FormatError);
    expect((caught as FormatError).code).toBe(code);
  });
});

describe("through OpenFile: a read that reaches the end of the file verifies the final block", () => {
  const dir = mkdtempSync(join(tmpdir(), "cm-tamper-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const log = pino({ level: "silent" });
  let n = 0;
  const openLower = async (lower: Buffer) => {
    const path = join(dir, `f${n++}`);
    writeFileSync(path, lower);
    return openLowerFile(path, keyring, geometry, log);
  };
  const refused = async (file: OpenFile, position: number, length: number) => {
    const err = await file.read(position, length).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(FsError);
    expect((err as FsError).errno).toBe("EIO");
  };

  it("untouched files read whole", async () => {
    for (const lower of [fileA, aligned]) {
      const file = await openLower(lower);
      expect(await file.read(0, file.size + 1)).toEqual(decryptFile(keyring, geometry, lower));
      await file.close();
    }
  });

  it("empty final block moved earlier: the file looks one block long, and reading it to the end fails", async () => {
    const moved = Buffer.concat([
      aligned.subarray(0, geometry.blockOffset(1)),
      aligned.subarray(geometry.blockOffset(2)),
    ]);
    const file = await openLower(moved);
    expect(file.size).toBe(B); // the length alone is valid
    await refused(file, 0, file.size);
    await refused(file, B - 1, 1);
    await refused(file, 0, 10 * B);
    // A read that stops before the end does not look at the final block (and is genuine data).
    expect(await file.read(0, B - 1)).toEqual(
      decryptFile(keyring, geometry, aligned).subarray(0, B - 1),
    );
    await file.close();
  });

  it("partial final block moved earlier: reading to the end fails", async () => {
    const moved = Buffer.concat([
      fileA.subarray(0, geometry.blockOffset(2)),
      fileA.subarray(geometry.blockOffset(3)),
    ]);
    const file = await openLower(moved);
    expect(file.size).toBe(2 * B + 500);
    await refused(file, 0, file.size);
    await refused(file, 2 * B, 500);
    await file.close();
  });

  it("a file without its final block does not open", async () => {
    const path = join(dir, "truncated");
    writeFileSync(path, aligned.subarray(0, aligned.length - EMPTY_FINAL));
    const err = await openLowerFile(path, keyring, geometry, log).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(FsError);
    expect((err as FsError).errno).toBe("EIO");
  });
});
