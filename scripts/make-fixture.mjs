#!/usr/bin/env node
// Generates the checked-in test data of volume formats v1, v2 and v3 (docs/format.md).
//
//   node scripts/make-fixture.mjs vectors          writes test/fixtures/vectors.json
//   node scripts/make-fixture.mjs vectors --check  fails unless the file matches
//   node scripts/make-fixture.mjs volume v3 [--force] writes test/fixtures/volume-v3/ and
//                                                     test/fixtures/volume-v3.expected.json
//   node scripts/make-fixture.mjs volume v2 --force   the same for volume-v2 (never needed)
//   node scripts/make-fixture.mjs volume v1 --force   the same for volume-v1 (never needed: that
//                                                     fixture was written by the v1 code and must stay)
//
// Run `npx tsc -p .` first: the script loads the build from dist/.
//
// Known-answer vectors are computed twice: once by a small second
// implementation written from docs/format.md with node:crypto and
// @noble/ciphers only (the `spec` functions below), and once by the code in
// dist/. The script refuses to write anything unless both agree, so the
// vectors pin the code and the document at the same time. Everything is
// deterministic: re-running `vectors` must reproduce the file byte for byte.
//
// The fixture volumes are random (IDs, keys, nonces) and written once by the
// code in dist/; they are never regenerated unless --force is given, because
// their whole point is to be old volumes that future builds must still read.
// volume-v1 was written by the v1 code; volume-v2 by the v2 code, with its
// directory ID entries named by the spec functions below.

import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  hkdfSync,
  randomBytes,
  timingSafeEqual,
} from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { aessiv } from "@noble/ciphers/aes.js";
import argon2 from "argon2";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const fixtures = join(root, "test", "fixtures");

async function load(path) {
  try {
    return await import(new URL(`../dist/${path}`, import.meta.url).href);
  } catch (err) {
    console.error(
      `make-fixture: cannot load dist/${path} (${err.message}); run \`npx tsc -p .\` first`,
    );
    process.exit(1);
  }
}

const keys = await load("crypto/keys.js");
const header = await load("format/header.js");
const content = await load("format/content.js");
const names = await load("format/names.js");
const symlinks = await load("format/symlink.js");
const recovery = await load("format/recovery.js");
const config = await load("format/config.js");
const kek = await load("keys/kek.js");
const volume = await load("volume/volume.js");
const xattr = await load("format/xattr.js");
const dirIds = await load("format/dir-ids.js");
const object = await load("format/object.js");
const checkRecord = await load("format/check-record.js");

// --- helpers -------------------------------------------------------------------

const hex = (b) => Buffer.from(b).toString("hex");
const b64u = (b) => Buffer.from(b).toString("base64url");
const b64 = (b) => Buffer.from(b).toString("base64");
const unhex = (s) => Buffer.from(s, "hex");
const unb64 = (s) => Buffer.from(s, "base64");
/** `length` bytes counting up from `start` (mod 256): easy to recognise in a hex dump. */
const seq = (start, length) => Buffer.from(Array.from({ length }, (_, i) => (start + i) & 0xff));
const u32 = (n) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const u64 = (n) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
};
/** Deterministic filler: byte i is (i * 31 + 7) mod 256. */
const pattern = (length, salt = 7) =>
  Buffer.from(Array.from({ length }, (_, i) => (i * 31 + salt) & 0xff));

function same(what, a, b) {
  const x = typeof a === "string" ? a : hex(a);
  const y = typeof b === "string" ? b : hex(b);
  if (x !== y) {
    console.error(
      `make-fixture: the code and docs/format.md disagree on ${what}\n  spec: ${x}\n  code: ${y}`,
    );
    process.exit(1);
  }
}

/**
 * Like `same`, for a disagreement already reported and awaiting a fix in the code: the vector
 * keeps the document's answer and notes the fix; once the code agrees, the note must go.
 */
function compare(what, a, b, pendingFix) {
  if (!pendingFix) return same(what, a, b);
  if (a === b) {
    console.error(`make-fixture: the code now agrees on ${what}; remove its pendingFix`);
    process.exit(1);
  }
  console.warn(
    `make-fixture: known disagreement on ${what} (${pendingFix})\n  spec: ${a}\n  code: ${b}`,
  );
}

// --- the second implementation, from docs/format.md ------------------------------

const spec = {
  hkdf: (ikm, salt, info, length) =>
    Buffer.from(hkdfSync("sha256", ikm, salt, Buffer.from(info, "utf8"), length)),
  gcm(key, nonce, aad, plaintext) {
    const c = createCipheriv("aes-256-gcm", key, nonce);
    c.setAAD(aad);
    const body = Buffer.concat([c.update(plaintext), c.final()]);
    return Buffer.concat([nonce, body, c.getAuthTag()]);
  },
  subkeys(mountKey, volumeSecret, volumeId) {
    const m = (label, n) => spec.hkdf(mountKey, volumeId, `cryptmount v1 ${label}`, n);
    const v = (label, n) => spec.hkdf(volumeSecret, volumeId, `cryptmount v1 ${label}`, n);
    return {
      headerWrap: m("header-wrap", 32),
      configWrap: m("config-wrap", 32),
      configMac: m("config-mac", 32),
      names: v("names", 64),
      symlinks: v("symlinks", 32),
      xattrNames: v("xattr-names", 64),
      xattrValues: v("xattr-values", 32),
      rootDirId: v("root-dir-id", 16),
    };
  },
  header(headerWrap, epoch, blockSize, fileId, fileKey, nonce) {
    const prefix = Buffer.concat([
      Buffer.from("CRMF", "ascii"),
      Buffer.from([1, 0, Math.log2(blockSize), 0]),
      fileId,
    ]);
    const slotA = Buffer.concat([
      u32(epoch),
      spec.gcm(headerWrap, nonce, Buffer.concat([prefix, u32(epoch)]), fileKey),
    ]);
    return Buffer.concat([prefix, slotA, Buffer.alloc(64)]);
  },
  /** Full blocks (never final), then the final block with the remaining n mod B bytes (maybe none). */
  blocks(fileKey, fileId, blockSize, plaintext, nonces) {
    const count = Math.floor(plaintext.length / blockSize) + 1;
    const out = [];
    for (let i = 0; i < count; i++) {
      const aad = Buffer.concat([fileId, u64(i), Buffer.from([i === count - 1 ? 1 : 0])]);
      out.push(
        spec.gcm(fileKey, nonces[i], aad, plaintext.subarray(i * blockSize, (i + 1) * blockSize)),
      );
    }
    return Buffer.concat(out);
  },
  blockCount: (n, blockSize) => Math.floor(n / blockSize) + 1,
  lowerSize: (n, blockSize) => 152 + n + 28 * spec.blockCount(n, blockSize),
  /** Cleartext size of a lower length, or the error code that refuses it. */
  cleartextSize(lower, blockSize) {
    if (lower < 152) return "SHORT_HEADER";
    const body = lower - 152;
    const sealed = blockSize + 28;
    const full = Math.floor(body / sealed);
    const rest = body - full * sealed;
    if (rest === 0) return "TRUNCATED";
    if (rest < 28) return "BAD_LENGTH";
    return full * blockSize + rest - 28;
  },
  name(nameKey, dirId, name) {
    const bytes = Buffer.from(name, "utf8");
    const n = 16 - (bytes.length % 16);
    const padded = Buffer.concat([bytes, Buffer.alloc(n, n)]);
    const encoded = b64u(aessiv(nameKey, dirId).encrypt(padded));
    if (encoded.length <= 171) return { encoded, entry: encoded };
    const entry = "cm.L." + b64u(createHash("sha256").update(encoded, "ascii").digest());
    return { encoded, entry, sidecar: entry + ".n" };
  },
  symlink: (key, target, nonce) =>
    b64u(
      spec.gcm(
        key,
        nonce,
        Buffer.from("cryptmount v1 symlink", "utf8"),
        Buffer.from(target, "utf8"),
      ),
    ),
  recoveryKey(key) {
    const check = createHash("sha256")
      .update("cryptmount recovery", "utf8")
      .update(key)
      .digest()
      .subarray(0, 2);
    const bits =
      [...Buffer.concat([key, check])].map((b) => b.toString(2).padStart(8, "0")).join("") + "000";
    const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let symbols = "";
    for (let i = 0; i < bits.length; i += 5) symbols += alphabet[parseInt(bits.slice(i, i + 5), 2)];
    return symbols.match(/.{5}/g).join("-");
  },
  canonical(value) {
    if (Array.isArray(value)) return `[${value.map(spec.canonical).join(",")}]`;
    if (value !== null && typeof value === "object") {
      const keys = Object.keys(value)
        .filter((k) => value[k] !== undefined)
        .sort();
      return `{${keys.map((k) => `${JSON.stringify(k)}:${spec.canonical(value[k])}`).join(",")}}`;
    }
    return JSON.stringify(value);
  },
  slotAad: (volumeId, slot) =>
    Buffer.from(
      spec.canonical({
        purpose: "cryptmount v1 key slot",
        volumeId,
        id: slot.id,
        kind: slot.kind,
        salt: slot.salt,
        kdf: slot.kdf,
      }),
      "utf8",
    ),
  mountKeyPayload: (records) =>
    Buffer.concat(records.map(([epoch, key]) => Buffer.concat([u32(epoch), key]))),
  bundleAad: (volumeId) => Buffer.from(`cryptmount v1 mount keys ${volumeId}`, "utf8"),
  volumeSecretAad: (volumeId, epoch) =>
    Buffer.from(`cryptmount v1 volume secret ${volumeId} ${epoch}`, "utf8"),
  configMac: (macKey, unsigned) =>
    createHmac("sha256", macKey).update(spec.canonical(unsigned), "utf8").digest(),
  // Format version 2: authenticated directory IDs (docs/format.md §4.2, §12.1, §12.3).
  dirIdKey: (volumeSecret, volumeId) =>
    spec.hkdf(volumeSecret, volumeId, "cryptmount v2 dir-ids", 32),
  dirIdTag: (key, id) =>
    createHmac("sha256", key)
      .update(Buffer.concat([Buffer.from("cryptmount v2 dir-id", "utf8"), id]))
      .digest()
      .subarray(0, 16),
  dirIdEntry: (key, id) => "cm.d." + b64u(Buffer.concat([id, spec.dirIdTag(key, id)])),
  /** Strict base64url (§1): alphabet, length not 1 mod 4, canonical re-encoding. */
  fromB64u(text) {
    if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return undefined;
    const bytes = Buffer.from(text, "base64url");
    return bytes.toString("base64url") === text ? bytes : undefined;
  },
  /** What a v2 reader makes of a lower name: "id" (genuine), "forged" (a cm.d. entry to ignore) or "other". */
  readDirIdEntry(key, name) {
    const bytes = name.startsWith("cm.d.") ? spec.fromB64u(name.slice(5)) : undefined;
    if (bytes?.length === 16) return { verdict: "forged" };
    if (bytes?.length !== 32) return { verdict: "other" };
    const id = bytes.subarray(0, 16);
    return timingSafeEqual(spec.dirIdTag(key, id), bytes.subarray(16))
      ? { verdict: "id", id: hex(id) }
      : { verdict: "forged" };
  },
  argon2: (passphrase, salt, p) =>
    argon2.hash(passphrase, {
      type: argon2.argon2id,
      version: 0x13,
      raw: true,
      salt,
      hashLength: 32,
      memoryCost: p.memoryKiB,
      timeCost: p.iterations,
      parallelism: p.parallelism,
    }),
};

// Format version 3 (docs/format.md §5.2, §6, §8, §9, §13), written from the
// document like `spec` above: header flags and kind, objects, holes, the
// object length, MAX_FILE_SIZE and the version/feature pairing.
const KINDS = { regular: 0, symlink: 1, fifo: 2, socket: 3, char: 4, block: 5 };
const HOLES_FLAG = 0x01;
const OBJECT_PAYLOAD = 4096;
const OBJECT_RECORD = OBJECT_PAYLOAD + 28;
const V3_FEATURES = [
  "gcm-blocks",
  "final-block-flag",
  "siv-names",
  "long-names",
  "dir-id-sets",
  "authenticated-dir-ids",
  "objects",
  "holes",
];
const isZero = (bytes) => bytes.every((b) => b === 0);
const refused = (code, more = {}) => ({ code, ...more });

const specV3 = {
  gcmOpen(key, aad, sealed) {
    if (sealed.length < 28) return undefined;
    const d = createDecipheriv("aes-256-gcm", key, sealed.subarray(0, 12));
    d.setAAD(aad);
    d.setAuthTag(sealed.subarray(sealed.length - 16));
    try {
      return Buffer.concat([d.update(sealed.subarray(12, sealed.length - 16)), d.final()]);
    } catch {
      return undefined;
    }
  },
  /** §6: bytes 0..24 with flags (byte 5) and kind (byte 7); slots [{ epoch, wrap, nonce }, …], absent = empty. */
  header(blockSize, flags, kind, fileId, fileKey, slots) {
    const prefix = Buffer.concat([
      Buffer.from("CRMF", "ascii"),
      Buffer.from([1, flags, Math.log2(blockSize), kind]),
      fileId,
    ]);
    const slot = (s) =>
      s
        ? Buffer.concat([
            u32(s.epoch),
            spec.gcm(s.wrap, s.nonce, Buffer.concat([prefix, u32(s.epoch)]), fileKey),
          ])
        : Buffer.alloc(64);
    return Buffer.concat([prefix, slot(slots[0]), slot(slots[1])]);
  },
  /** §6 "Reading a header", checks in the document's order. `wraps`: epoch → K_headerWrap. */
  openHeader(wraps, bytes, blockSize, volumeVersion) {
    if (bytes.length < 152) return refused("SHORT_HEADER");
    if (bytes.subarray(0, 4).toString("latin1") !== "CRMF") return refused("BAD_MAGIC");
    if (bytes[4] !== 1) return refused("UNKNOWN_VERSION");
    const flags = bytes[5];
    const kind = bytes[7];
    const badFlags =
      volumeVersion < 3 ? flags !== 0 || kind !== 0 : (flags & ~HOLES_FLAG) !== 0 || kind > 5;
    if (badFlags) return refused("UNKNOWN_FLAGS");
    if (2 ** bytes[6] !== blockSize) return refused("BLOCK_SIZE_MISMATCH");
    let fileKey;
    const epochs = [];
    for (const at of [24, 88]) {
      const slot = bytes.subarray(at, at + 64);
      if (isZero(slot)) {
        epochs.push(null);
        continue;
      }
      const epoch = slot.readUInt32BE(0);
      const wrap = wraps.get(epoch);
      if (!wrap) return refused("UNKNOWN_EPOCH");
      const key = specV3.gcmOpen(
        wrap,
        Buffer.concat([bytes.subarray(0, 24), u32(epoch)]),
        slot.subarray(4),
      );
      if (!key) return refused("HEADER_AUTH");
      if (fileKey && !fileKey.equals(key)) return refused("HEADER_AUTH");
      fileKey = key;
      epochs.push(epoch);
    }
    if (!fileKey) return refused("HEADER_AUTH");
    return {
      fileId: Buffer.from(bytes.subarray(8, 24)),
      fileKey,
      holes: (flags & HOLES_FLAG) !== 0,
      kind,
      epochs,
    };
  },
  /** §9 "Setting the flag": byte 5 gets HOLES, every non-empty slot is sealed again under its epoch. */
  setHolesFlag(wraps, bytes, blockSize, nonces) {
    const opened = specV3.openHeader(wraps, bytes, blockSize, 3);
    if (opened.code) throw new Error(`setHolesFlag on a header refused with ${opened.code}`);
    const slots = opened.epochs.map((epoch, i) =>
      epoch === null ? undefined : { epoch, wrap: wraps.get(epoch), nonce: nonces[i] },
    );
    return specV3.header(
      blockSize,
      bytes[5] | HOLES_FLAG,
      bytes[7],
      opened.fileId,
      opened.fileKey,
      slots,
    );
  },
  /** §13: the 4096-byte payload of an object, or the code a writer refuses it with. */
  payload(value) {
    const p = Buffer.alloc(OBJECT_PAYLOAD);
    if (value.kind === KINDS.symlink) {
      const t = Buffer.from(value.target, "utf8");
      // §17: NAME_TOO_LONG for a target empty or over 4095 bytes.
      if (t.length < 1 || t.length > OBJECT_PAYLOAD - 1) return refused("NAME_TOO_LONG");
      t.copy(p);
    } else if (value.kind === KINDS.char || value.kind === KINDS.block) {
      p.writeUInt32BE(value.major, 0);
      p.writeUInt32BE(value.minor, 4);
    }
    return p;
  },
  recordAad: (fileId) => Buffer.concat([fileId, u64(0), Buffer.from([0x02])]),
  record: (fileKey, fileId, nonce, payload) =>
    spec.gcm(fileKey, nonce, specV3.recordAad(fileId), payload),
  /** The whole lower object: header, record, zero padding up to 152 + S. */
  lower: (headerBytes, record, blockSize) =>
    Buffer.concat([headerBytes, record, Buffer.alloc(blockSize + 28 - OBJECT_RECORD)]),
  /** §13 "Reading": a payload of `kind`, well formed or OBJECT_INVALID. */
  decodePayload(kind, p) {
    if (kind === KINDS.symlink) {
      const end = p.indexOf(0);
      // The target is the bytes before the first zero byte: none means no target (at most 4095 bytes).
      if (end < 1) return refused("OBJECT_INVALID", { why: end === 0 ? "empty" : "no NUL" });
      if (!isZero(p.subarray(end))) return refused("OBJECT_INVALID", { why: "stray bytes" });
      const target = p.subarray(0, end);
      const text = target.toString("utf8");
      // Valid UTF-8 exactly when decoding and encoding again gives the same bytes.
      if (!Buffer.from(text, "utf8").equals(target))
        return refused("OBJECT_INVALID", { why: "not UTF-8" });
      return { kind, target: text };
    }
    if (kind === KINDS.fifo || kind === KINDS.socket)
      return isZero(p) ? { kind } : refused("OBJECT_INVALID");
    if (kind === KINDS.char || kind === KINDS.block)
      // §13: major < 2^12 and minor < 2^20, the range of the kernel's device numbers.
      return isZero(p.subarray(8)) && p.readUInt32BE(0) < 4096 && p.readUInt32BE(4) < 1048576
        ? { kind, major: p.readUInt32BE(0), minor: p.readUInt32BE(4) }
        : refused("OBJECT_INVALID");
    return refused("OBJECT_INVALID"); // kind 0 at an object's length
  },
  /** §13: what a version-3 reader makes of a lower file of the object length. */
  readObject(wraps, lower, blockSize) {
    const h = specV3.openHeader(wraps, lower.subarray(0, 152), blockSize, 3);
    if (h.code) return h;
    if (h.kind === KINDS.regular) return refused("OBJECT_INVALID");
    const payload = specV3.gcmOpen(
      h.fileKey,
      specV3.recordAad(h.fileId),
      lower.subarray(152, 152 + OBJECT_RECORD),
    );
    if (!payload) return refused("OBJECT_AUTH");
    return specV3.decodePayload(h.kind, payload);
  },
  /** §8 and §13: a lower length in a volume of `version`: "object", a cleartext size, or a code. */
  classify(lower, blockSize, version) {
    if (version >= 3 && lower === 152 + blockSize + 28) return "object";
    return spec.cleartextSize(lower, blockSize);
  },
  /** §7 with §9: the cleartext of a whole lower body (after the header), or the first failure. */
  readFile(fileKey, fileId, blockSize, body, holes) {
    const n = spec.cleartextSize(152 + body.length, blockSize);
    if (typeof n === "string") return refused(n);
    const S = blockSize + 28;
    const last = Math.floor(n / blockSize);
    const parts = [];
    for (let i = 0; i <= last; i++) {
      const piece = body.subarray(i * S, Math.min((i + 1) * S, body.length));
      if (holes && i < last && piece.length === S && isZero(piece)) {
        parts.push(Buffer.alloc(blockSize));
        continue;
      }
      const aad = (final) => Buffer.concat([fileId, u64(i), Buffer.from([final ? 1 : 0])]);
      const plain = specV3.gcmOpen(fileKey, aad(i === last), piece);
      if (plain) {
        parts.push(plain);
        continue;
      }
      const other = specV3.gcmOpen(fileKey, aad(i !== last), piece);
      const code = other ? (i === last ? "TRUNCATED" : "EXTENDED") : "BLOCK_AUTH";
      return refused(code, { block: i, before: Buffer.concat(parts) });
    }
    return { cleartext: Buffer.concat(parts) };
  },
  /** §9: the largest n with lower(n) ≤ 2^53 − 1, exactly (BigInt). */
  maxFileSize(blockSize) {
    const B = BigInt(blockSize);
    const S = B + 28n;
    // lower(n) = 180 + q·S + r for n = q·B + r, 0 ≤ r < B.
    const room = 2n ** 53n - 1n - 180n;
    const q = room / S;
    const r = room - q * S;
    return q * B + (r < B ? r : B - 1n);
  },
  /**
   * Not in docs/format.md (§13 says only "st_rdev from (major, minor)"): Linux's 32-bit dev_t as
   * the kernel exchanges it with FUSE (new_encode_dev), for major < 2^12 and minor < 2^20.
   */
  encodeRdev: (major, minor) => (minor % 256) + major * 256 + Math.floor(minor / 256) * 2 ** 20,
  decodeRdev: (rdev) => ({
    major: Math.floor(rdev / 256) % 4096,
    minor: (rdev % 256) + Math.floor(rdev / 2 ** 20) * 256,
  }),
  /** §5.1 and §5.2: the code refusing a version and feature list, or "ok". */
  versionAndFeatures(version, features) {
    if (![1, 2, 3].includes(version)) return "UNKNOWN_VERSION";
    if (features.some((f) => !V3_FEATURES.includes(f))) return "UNKNOWN_FEATURE";
    const has = (f) => features.includes(f);
    if (version === 1 && has("authenticated-dir-ids")) return "CONFIG_INVALID";
    if (version === 2 && !has("authenticated-dir-ids")) return "CONFIG_INVALID";
    if (version === 3 && !["authenticated-dir-ids", "objects", "holes"].every(has))
      return "CONFIG_INVALID";
    if (version < 3 && (has("objects") || has("holes"))) return "CONFIG_INVALID";
    return "ok";
  },
};
const KIND_NAMES = {
  regular: "Regular",
  symlink: "Symlink",
  fifo: "Fifo",
  socket: "Socket",
  char: "CharDevice",
  block: "BlockDevice",
};

// --- vectors ----------------------------------------------------------------------

async function makeVectors() {
  const inputs = {
    volumeId: seq(0xa0, 16),
    mountKey: seq(0x00, 32),
    mountKey2: seq(0xe0, 32),
    volumeSecret: seq(0x20, 32),
    fileId: seq(0x40, 16),
    fileKey: seq(0x50, 32),
    headerNonce: seq(0x70, 12),
    dirId: seq(0xd0, 16),
    slotKey: seq(0xf0, 32),
  };
  const epoch = 1;
  const blockSize = 4096;
  const sub = spec.subkeys(inputs.mountKey, inputs.volumeSecret, inputs.volumeId);
  const sub2 = spec.subkeys(inputs.mountKey2, inputs.volumeSecret, inputs.volumeId);

  const keyring = new keys.Keyring(
    inputs.volumeId,
    epoch,
    new Map([[epoch, inputs.mountKey]]),
    inputs.volumeSecret,
  );
  const ek = keyring.current;
  for (const k of ["headerWrap", "configWrap", "configMac"]) same(`subkey ${k}`, sub[k], ek[k]);
  for (const k of ["names", "symlinks", "xattrNames", "xattrValues", "rootDirId"])
    same(`subkey ${k}`, sub[k], keyring.volume[k]);
  const ek2 = keys.deriveEpochKeys(inputs.mountKey2, inputs.volumeId, 2);
  for (const k of ["headerWrap", "configWrap", "configMac"])
    same(`epoch-2 subkey ${k}`, sub2[k], ek2[k]);

  // Header.
  const headerBytes = spec.header(
    sub.headerWrap,
    epoch,
    blockSize,
    inputs.fileId,
    inputs.fileKey,
    inputs.headerNonce,
  );
  const made = header.createHeader(keyring, {
    blockSize,
    fileId: inputs.fileId,
    fileKey: inputs.fileKey,
    nonce: inputs.headerNonce,
  });
  same("the file header", headerBytes, made.bytes);

  // Content: every file shares the header above; nonces are pinned per block.
  const contentCases = [
    { name: "empty file", plaintext: Buffer.alloc(0) },
    { name: "one partial final block", plaintext: Buffer.from("hello, world\n", "utf8") },
    { name: "one full block then a partial final block", plaintext: pattern(blockSize + 100) },
    { name: "one full block then an empty final block", plaintext: pattern(blockSize, 3) },
  ];
  const geometry = new content.ContentGeometry(blockSize);
  const cipher = { fileKey: inputs.fileKey, fileId: inputs.fileId, geometry };
  const contentVectors = contentCases.map(({ name, plaintext }, c) => {
    const count = spec.blockCount(plaintext.length, blockSize);
    const nonces = Array.from({ length: count }, (_, i) => seq(0x80 + 0x10 * c + i, 12));
    const blocks = spec.blocks(inputs.fileKey, inputs.fileId, blockSize, plaintext, nonces);
    same(`content (${name})`, blocks, content.sealBlocks(cipher, 0, plaintext, true, nonces));
    const lower = Buffer.concat([headerBytes, blocks]);
    same(
      `lower size (${name})`,
      String(lower.length),
      String(spec.lowerSize(plaintext.length, blockSize)),
    );
    same(
      `lower size (${name})`,
      String(lower.length),
      String(geometry.lowerSize(plaintext.length)),
    );
    return {
      name,
      plaintext: b64(plaintext),
      nonces: nonces.map(hex),
      lowerSize: lower.length,
      lower: b64(lower),
    };
  });

  // Size arithmetic: every lower length up to five blocks, spec against code; a few go in the file.
  const codeSize = (lower) => {
    try {
      return geometry.cleartextSize(lower);
    } catch (err) {
      return err.code;
    }
  };
  const S = blockSize + 28;
  for (let lower = 0; lower <= 152 + 5 * S + 1; lower++) {
    same(
      `cleartext size of lower length ${lower}`,
      String(spec.cleartextSize(lower, blockSize)),
      String(codeSize(lower)),
    );
  }
  const sizeVectors = [
    0,
    151,
    152,
    153,
    179,
    180,
    181,
    152 + S - 1,
    152 + S,
    152 + S + 1,
    152 + S + 27,
    152 + S + 28,
    152 + S + 29,
    152 + 2 * S - 1,
    152 + 2 * S,
    152 + 2 * S + 28,
    152 + 3 * S + 28,
  ].map((lower) => ({ lower, cleartext: spec.cleartextSize(lower, blockSize) }));

  // Names.
  const longUnicode = "é".repeat(127) + "x"; // 255 UTF-8 bytes
  const nameCases = [
    { dir: "dirId", name: "hello.txt" },
    { dir: "dirId", name: "Ünïcödé – 日本語 🙂.txt" },
    { dir: "dirId", name: "a".repeat(111), note: "longest name stored directly (171 characters)" },
    { dir: "dirId", name: "a".repeat(112), note: "shortest name stored as a long name" },
    { dir: "dirId", name: longUnicode, note: "255 bytes, the maximum" },
    { dir: "rootDirId", name: "hello.txt", note: "same name in the root directory" },
  ];
  const nameVectors = nameCases.map(({ dir, name, note }) => {
    const dirId = dir === "rootDirId" ? sub.rootDirId : inputs.dirId;
    const s = spec.name(sub.names, dirId, name);
    const encoded = names.encryptName(keyring.volume.names, dirId, name);
    same(`encrypted name ${JSON.stringify(name)}`, s.encoded, encoded);
    const entry = names.lowerEntryFor(encoded);
    same(`lower entry of ${JSON.stringify(name)}`, s.entry, entry.entry);
    return {
      ...(note ? { note } : {}),
      dirId: dir === "rootDirId" ? "rootDirId" : hex(dirId),
      name,
      nameBytes: Buffer.byteLength(name, "utf8"),
      encoded,
      entry: s.entry,
      ...(s.sidecar ? { sidecar: s.sidecar } : {}),
    };
  });
  const dirIdEntry = names.v1DirIdEntryName(inputs.dirId);
  same("dir ID entry", "cm.d." + b64u(inputs.dirId), dirIdEntry);

  // Symlink.
  const symlinkTarget = "../docs/notes – 日本.md";
  const symlinkNonce = seq(0x90, 12);
  const stored = spec.symlink(sub.symlinks, symlinkTarget, symlinkNonce);
  same(
    "symlink target",
    stored,
    symlinks.encryptSymlink(keyring.volume.symlinks, symlinkTarget, symlinkNonce),
  );

  // Extended attributes: SIV name without associated data, GCM value bound to the stored name.
  const xattrName = "user.comment – ü";
  const xattrStoredName =
    "user.cm." +
    b64u(aessiv(sub.xattrNames).encrypt(Buffer.from(xattrName.slice("user.".length), "utf8")));
  same("xattr name", xattrStoredName, xattr.encryptXattrName(keyring.volume, xattrName));
  const xattrValue = Buffer.from("a value\0with a NUL", "utf8");
  const xattrNonce = seq(0x9c, 12);
  const xattrStored = spec.gcm(
    sub.xattrValues,
    xattrNonce,
    Buffer.from(xattrStoredName, "utf8"),
    xattrValue,
  );
  same(
    "xattr value",
    xattr.decryptXattrValue(keyring.volume, xattrStoredName, xattrStored),
    xattrValue,
  );

  // Recovery key.
  const recoveryBytes = seq(0xc0, 32);
  const formatted = spec.recoveryKey(recoveryBytes);
  same("recovery key", formatted, recovery.formatRecoveryKey(recoveryBytes));

  // Key-encryption keys.
  const passphrase = "correct horse battery staple – ü";
  const salt = seq(0x11, 16);
  const params = config.ARGON2_MINIMUM;
  const passKek = await spec.argon2(Buffer.from(passphrase, "utf8"), salt, params);
  same(
    "passphrase KEK",
    passKek,
    await kek.deriveKek(
      { kind: "passphrase", salt: b64u(salt), kdf: params },
      { kind: "passphrase", bytes: Buffer.from(passphrase, "utf8") },
    ),
  );
  const keyfile = seq(0x33, 64);
  const keyfileKek = spec.hkdf(keyfile, salt, "cryptmount v1 keyfile slot", 32);
  same(
    "key file KEK",
    keyfileKek,
    await kek.deriveKek({ kind: "keyfile", salt: b64u(salt) }, { kind: "keyfile", bytes: keyfile }),
  );
  const recoveryKek = spec.hkdf(recoveryBytes, salt, "cryptmount v1 recovery slot", 32);
  same(
    "recovery KEK",
    recoveryKek,
    await kek.deriveKek(
      { kind: "recovery", salt: b64u(salt) },
      { kind: "recovery", bytes: recoveryBytes },
    ),
  );

  // Key slots and the mount-key bundle, sealed by the spec implementation with
  // pinned nonces; the code must open them.
  const volumeIdText = b64u(inputs.volumeId);
  const passSlotBase = { id: 1, kind: "passphrase", label: "test", salt: b64u(salt), kdf: params };
  const passSlot = {
    ...passSlotBase,
    wrapped: b64u(
      spec.gcm(passKek, seq(0xa8, 12), spec.slotAad(volumeIdText, passSlotBase), inputs.slotKey),
    ),
  };
  const recSlotBase = { id: 2, kind: "recovery", label: "recovery key", salt: b64u(salt) };
  const recSlot = {
    ...recSlotBase,
    wrapped: b64u(
      spec.gcm(recoveryKek, seq(0xb8, 12), spec.slotAad(volumeIdText, recSlotBase), inputs.slotKey),
    ),
  };
  same(
    "passphrase slot",
    hex(config.openSlot(volumeIdText, passSlot, passKek) ?? Buffer.alloc(0)),
    hex(inputs.slotKey),
  );
  same(
    "recovery slot",
    hex(config.openSlot(volumeIdText, recSlot, recoveryKek) ?? Buffer.alloc(0)),
    hex(inputs.slotKey),
  );

  const oneEpoch = spec.mountKeyPayload([[1, inputs.mountKey]]);
  const twoEpochs = spec.mountKeyPayload([
    [2, inputs.mountKey2],
    [1, inputs.mountKey],
  ]);
  same("mount-key payload", oneEpoch, config.encodeMountKeys(new Map([[1, inputs.mountKey]])));
  same(
    "two-epoch mount-key payload",
    twoEpochs,
    config.encodeMountKeys(
      new Map([
        [1, inputs.mountKey],
        [2, inputs.mountKey2],
      ]),
    ),
  );
  const bundleKey = spec.hkdf(
    inputs.slotKey,
    inputs.volumeId,
    "cryptmount v1 mount-key bundle",
    32,
  );
  const bundle = b64u(spec.gcm(bundleKey, seq(0x98, 12), spec.bundleAad(volumeIdText), oneEpoch));
  const rekeyBundle = b64u(
    spec.gcm(bundleKey, seq(0x99, 12), spec.bundleAad(volumeIdText), twoEpochs),
  );
  same(
    "opened bundle",
    hex(config.openMountKeys({ volumeId: volumeIdText, keys: bundle }, inputs.slotKey).get(1)),
    hex(inputs.mountKey),
  );
  const opened2 = config.openMountKeys(
    { volumeId: volumeIdText, keys: rekeyBundle },
    inputs.slotKey,
  );
  same(
    "opened two-epoch bundle",
    hex(Buffer.concat([opened2.get(2), opened2.get(1)])),
    hex(Buffer.concat([inputs.mountKey2, inputs.mountKey])),
  );

  // A complete config.
  const sealedSecret = b64u(
    spec.gcm(
      sub.configWrap,
      seq(0xc8, 12),
      spec.volumeSecretAad(volumeIdText, epoch),
      inputs.volumeSecret,
    ),
  );
  const unsigned = {
    format: "cryptmount",
    version: 1,
    volumeId: volumeIdText,
    created: "2025-01-01T00:00:00.000Z",
    features: ["gcm-blocks", "final-block-flag", "siv-names", "long-names", "dir-id-sets"],
    blockSize: 32768,
    epoch,
    volumeSecret: sealedSecret,
    keys: bundle,
    slots: [passSlot, recSlot],
  };
  const mac = b64u(spec.configMac(sub.configMac, unsigned));
  same("config MAC", mac, config.signConfig(ek, unsigned).mac);
  const fullConfig = { ...unsigned, mac };
  const parsed = config.parseConfig(JSON.stringify(fullConfig));
  const unlocked = config.unlockConfig(parsed, config.openMountKeys(parsed, inputs.slotKey));
  same("unwrapped volume secret", unlocked.volumeSecret, inputs.volumeSecret);

  const v2 = makeV2Vectors(inputs, { sealedSecret, bundle, passSlot, recSlot, unsigned });
  const v3 = makeV3Vectors(inputs, { unsigned });
  const fsckRecord = makeCheckRecordVectors(inputs);

  return {
    about: [
      "Known-answer vectors of cryptmount volume format v1 (docs/format.md).",
      "Generated by scripts/make-fixture.mjs from a second implementation of the spec and checked against the code;",
      "test/unit/vectors.test.ts compares the code with these literal values. Never edit by hand: a change here is a format change.",
      "Byte strings are hex unless the field says base64 (standard, padded) or is a base64url field of the format itself.",
    ],
    inputs: {
      volumeId: hex(inputs.volumeId),
      volumeIdBase64url: volumeIdText,
      epoch,
      mountKey: hex(inputs.mountKey),
      epoch2MountKey: hex(inputs.mountKey2),
      volumeSecret: hex(inputs.volumeSecret),
      blockSize,
      fileId: hex(inputs.fileId),
      fileKey: hex(inputs.fileKey),
      headerNonce: hex(inputs.headerNonce),
      dirId: hex(inputs.dirId),
      slotKey: hex(inputs.slotKey),
    },
    subkeys: Object.fromEntries(Object.entries(sub).map(([k, v]) => [k, hex(v)])),
    epoch2Subkeys: {
      headerWrap: hex(sub2.headerWrap),
      configWrap: hex(sub2.configWrap),
      configMac: hex(sub2.configMac),
    },
    header: { hex: hex(headerBytes) },
    content: contentVectors,
    sizes: {
      note: "cleartext size of a lower file length with the block size above, or the error code refusing it",
      cases: sizeVectors,
    },
    names: nameVectors,
    dirIdEntry: { dirId: hex(inputs.dirId), entry: dirIdEntry },
    symlink: { target: symlinkTarget, nonce: hex(symlinkNonce), stored },
    xattr: {
      name: xattrName,
      storedName: xattrStoredName,
      value: hex(xattrValue),
      nonce: hex(xattrNonce),
      storedValue: hex(xattrStored),
    },
    recoveryKey: { key: hex(recoveryBytes), formatted },
    kek: {
      salt: hex(salt),
      passphrase: { passphrase, kdf: params, kek: hex(passKek) },
      keyfile: { keyfile: hex(keyfile), kek: hex(keyfileKek) },
      recovery: { key: hex(recoveryBytes), kek: hex(recoveryKek) },
    },
    slots: { passphrase: passSlot, recovery: recSlot },
    mountKeyPayload: { oneEpoch: hex(oneEpoch), twoEpochs: hex(twoEpochs) },
    bundle: {
      key: hex(bundleKey),
      aad: spec.bundleAad(volumeIdText).toString("utf8"),
      oneEpoch: bundle,
      twoEpochs: rekeyBundle,
    },
    slotAad: spec.canonical({
      purpose: "cryptmount v1 key slot",
      volumeId: volumeIdText,
      id: 1,
      kind: "passphrase",
      salt: b64u(salt),
      kdf: params,
    }),
    config: {
      note: "passphrase slot: the passphrase above; recovery slot: the recovery key above; both wrap the slot key; keys: the one-epoch bundle",
      canonical: spec.canonical(unsigned),
      document: fullConfig,
    },
    v2,
    v3,
    fsckRecord,
  };
}

/** The code's keyring of the inputs, with the one mount key of epoch 1. */
function epochOneKeyring(inputs) {
  return new keys.Keyring(inputs.volumeId, 1, new Map([[1, inputs.mountKey]]), inputs.volumeSecret);
}

/**
 * fsck's check record (docs/format.md §3.4), an addition to version 3: the
 * key, stat digests and one stored record, then the code's own encoding
 * and decoding of it. Appended after every earlier vector.
 */
function makeCheckRecordVectors(inputs) {
  const key = spec.hkdf(inputs.volumeSecret, inputs.volumeId, "cryptmount v3 fsck-record", 32);
  same("K_fsckRecord", key, epochOneKeyring(inputs).volume.fsckRecord);
  const stats = [
    { ino: 12n, size: 152, mtimeNs: 1767225600123456789n, ctimeNs: 1767225601987654321n },
    { ino: 2n ** 64n - 1n, size: 1073758464, mtimeNs: -1n, ctimeNs: 1767225600000000000n },
    { ino: 131075n, size: 32924, mtimeNs: 0n, ctimeNs: 1n },
  ];
  const digestOf = (st) => {
    const input = Buffer.alloc(32);
    input.writeBigUInt64BE(st.ino, 0);
    input.writeBigUInt64BE(BigInt(st.size), 8);
    input.writeBigInt64BE(st.mtimeNs, 16);
    input.writeBigInt64BE(st.ctimeNs, 24);
    return createHash("sha256").update(input).digest().subarray(0, 16);
  };
  const digests = stats.map((st) => {
    const d = digestOf(st);
    same(`stat digest of inode ${st.ino}`, d, checkRecord.statDigest(st));
    return d;
  });
  const writtenAt = 1767312000000; // 2026-01-02T00:00:00Z
  const fullAt = 1767225600000; // 2026-01-01T00:00:00Z
  const sorted = [...digests].sort(Buffer.compare);
  const head = Buffer.alloc(28);
  head.write("CMFK", 0, "latin1");
  head[4] = 1;
  head.writeBigUInt64BE(BigInt(writtenAt), 8);
  head.writeBigUInt64BE(BigInt(fullAt), 16);
  head.writeUInt32BE(sorted.length, 24);
  const body = Buffer.concat([head, ...sorted]);
  const stored = Buffer.concat([body, createHmac("sha256", key).update(body).digest()]);
  // The code sorts, drops the duplicate (a hard link) and authenticates the same bytes.
  const built = checkRecord.CheckRecord.of({ writtenAt, fullAt }, [...digests, digests[0]]);
  same("stored check record", stored, built.encode(key));
  const opened = checkRecord.CheckRecord.decode(key, stored);
  same("check record times", `${writtenAt} ${fullAt}`, `${opened.writtenAt} ${opened.fullAt}`);
  const empty = Buffer.concat([head.subarray(0, 24), Buffer.alloc(4)]);
  const emptyStored = Buffer.concat([empty, createHmac("sha256", key).update(empty).digest()]);
  same(
    "empty check record",
    emptyStored,
    checkRecord.CheckRecord.of({ writtenAt, fullAt }, []).encode(key),
  );
  return {
    about: [
      "fsck's check record (docs/format.md §3.4), an addition to format version 3; inputs: volume secret and ID above.",
      "digest = SHA-256(u64 ino || u64 size || i64 mtime_ns || i64 ctime_ns)[0..16); record = head || sorted digests || HMAC-SHA256(K_fsckRecord, head || digests).",
    ],
    key: hex(key),
    stats: stats.map((st, i) => ({
      ino: st.ino.toString(),
      size: st.size,
      mtimeNs: st.mtimeNs.toString(),
      ctimeNs: st.ctimeNs.toString(),
      digest: hex(digests[i]),
    })),
    writtenAt,
    fullAt,
    stored: hex(stored),
    empty: hex(emptyStored),
  };
}

/**
 * Format version 2 (docs/format.md §22): the directory-ID key, tags, entry
 * names, how a v2 reader takes a few lower names, and a v2 config. Appended
 * after every v1 vector, which stay as they were.
 */
function makeV2Vectors(inputs, v1) {
  const key = spec.dirIdKey(inputs.volumeSecret, inputs.volumeId);
  const keyring = epochOneKeyring(inputs);
  same("subkey dirIds", key, keyring.volume.dirIds);
  const ids = [
    { note: "the dirId input", id: inputs.dirId },
    { note: "all zeros", id: Buffer.alloc(16) },
    { note: "all ones", id: Buffer.alloc(16, 0xff) },
  ];
  const tags = ids.map(({ note, id }) => {
    const tag = spec.dirIdTag(key, id);
    const entry = spec.dirIdEntry(key, id);
    same(`dir-ID tag of ${hex(id)}`, tag, dirIds.dirIdTag(key, id));
    same(`dir-ID entry of ${hex(id)}`, entry, dirIds.dirIdEntryName(key, id));
    return { note, id: hex(id), tag: hex(tag), entry };
  });
  const genuine = tags[0].entry;
  const flipped = (text, at) => {
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const i = alphabet.indexOf(text[at]);
    return text.slice(0, at) + alphabet[i ^ 1] + text.slice(at + 1);
  };
  const otherKey = spec.dirIdKey(seq(0x21, 32), inputs.volumeId);
  const readCases = [
    { note: "genuine v2 entry", name: genuine },
    { note: "v1 form of the same ID: forged in a v2 volume", name: "cm.d." + b64u(inputs.dirId) },
    { note: "one tag bit changed", name: flipped(genuine, genuine.length - 2) },
    { note: "one ID bit changed", name: flipped(genuine, 6) },
    {
      note: "all-zero ID with the tag of the dirId input (a planted ID)",
      name: "cm.d." + b64u(Buffer.concat([Buffer.alloc(16), spec.dirIdTag(key, inputs.dirId)])),
    },
    {
      note: "tag made under another volume secret",
      name: spec.dirIdEntry(otherKey, inputs.dirId),
    },
    {
      note: "a sync-conflict copy of a genuine entry: foreign",
      name: genuine + ".sync-conflict-x",
    },
    {
      note: "stray bits in the last character: not base64url, foreign",
      name: genuine.slice(0, -1) + flipped(genuine, genuine.length - 1).slice(-1),
    },
  ].map(({ note, name }) => {
    const s = spec.readDirIdEntry(key, name);
    const code = dirIds.parseDirIdEntry(key, name);
    const verdict = code === undefined ? "other" : "id" in code ? "id" : "forged";
    same(`v2 reading of ${name}`, s.verdict, verdict);
    if (s.id) same(`ID of ${name}`, s.id, hex(code.id));
    return { note, name, verdict: s.verdict, ...(s.id ? { id: s.id } : {}) };
  });

  // A v2 config: version 2, the feature list with authenticated-dir-ids, the MAC over it.
  const mac1 = spec.hkdf(inputs.mountKey, inputs.volumeId, "cryptmount v1 config-mac", 32);
  const unsigned = {
    ...v1.unsigned,
    version: 2,
    features: [
      "gcm-blocks",
      "final-block-flag",
      "siv-names",
      "long-names",
      "dir-id-sets",
      "authenticated-dir-ids",
    ],
  };
  const mac = b64u(spec.configMac(mac1, unsigned));
  same("v2 config MAC", mac, config.signConfig(keyring.current, unsigned).mac);
  const document = { ...unsigned, mac };
  const parsed = config.parseConfig(JSON.stringify(document));
  same(
    "v2 config volume secret",
    config.unlockConfig(parsed, config.openMountKeys(parsed, inputs.slotKey)).volumeSecret,
    inputs.volumeSecret,
  );
  keyring.wipe();
  return {
    about:
      'Format version 2: K_dirIds = HKDF(volume secret, volume ID, "cryptmount v2 dir-ids", 32); tag = HMAC-SHA256(K_dirIds, "cryptmount v2 dir-id" || id)[0..16); entry = "cm.d." + base64url(id || tag). Inputs are those above.',
    dirIdKey: hex(key),
    dirIds: tags,
    read: {
      note: "how a version-2 reader takes each lower name: id (a genuine ID), forged (a cm.d. entry it ignores and fsck reports) or other (not a directory ID entry)",
      cases: readCases,
    },
    config: {
      note: "the v1 config above as version 2: same keys and slots, the new feature, its MAC",
      canonical: spec.canonical(unsigned),
      document,
    },
  };
}

/**
 * Format version 3 (docs/format.md §23.1): objects of every kind, payloads and
 * headers that must be refused, the HOLES flag, a file with a hole, the object
 * length, MAX_FILE_SIZE, device numbers and a version-3 config. Appended
 * after every v1 and v2 vector, which stay as they were.
 */
function makeV3Vectors(inputs, v1) {
  const wrapKey = (mountKey) =>
    spec.hkdf(mountKey, inputs.volumeId, "cryptmount v1 header-wrap", 32);
  const wraps = new Map([
    [1, wrapKey(inputs.mountKey)],
    [2, wrapKey(inputs.mountKey2)],
  ]);
  const keyring = new keys.Keyring(
    inputs.volumeId,
    2,
    new Map([
      [1, inputs.mountKey],
      [2, inputs.mountKey2],
    ]),
    inputs.volumeSecret,
  );
  /** The code's answer: its value, or the code of the FormatError it threw. */
  const attempt = (run) => {
    try {
      return { value: run() };
    } catch (err) {
      if (typeof err?.code !== "string") throw err;
      return { code: err.code };
    }
  };
  const show = (x) => JSON.stringify(x, (_, v) => (v?.type === "Buffer" ? hex(v.data) : v));
  const flip = (bytes, at, mask = 1) => {
    const out = Buffer.from(bytes);
    out[at] ^= mask;
    return out;
  };
  same("HOLES flag", String(HOLES_FLAG), String(header.HEADER_FLAG_HOLES));
  for (const [name, kind] of Object.entries(KINDS))
    same(`kind ${name}`, String(kind), String(header.FileKind[KIND_NAMES[name]]));
  same("object record size", String(OBJECT_RECORD), String(object.OBJECT_RECORD_SIZE));

  // --- objects of every kind, pinned file ID, file key and nonces, at two block sizes ---
  const objectCases = [
    {
      note: "symlink, short target",
      value: { kind: KINDS.symlink, target: "../docs/notes – 日本.md" },
    },
    {
      note: "symlink, 4095-byte target (the longest)",
      value: { kind: KINDS.symlink, target: "x/".repeat(2047) + "y" },
    },
    { note: "FIFO", value: { kind: KINDS.fifo } },
    { note: "socket", value: { kind: KINDS.socket } },
    { note: "character device 1:3", value: { kind: KINDS.char, major: 1, minor: 3 } },
    { note: "block device 259:65536", value: { kind: KINDS.block, major: 259, minor: 65536 } },
  ];
  const objects = objectCases.map(({ note, value }, j) => {
    const fileId = seq(0x10 * j, 16);
    const fileKey = seq(0x10 * j + 0x08, 32);
    const headerNonce = seq(0x10 * j + 0x01, 12);
    const recordNonce = seq(0x10 * j + 0x02, 12);
    const record = specV3.record(fileKey, fileId, recordNonce, specV3.payload(value));
    const byBlockSize = [4096, 32768].map((blockSize) => {
      const h = specV3.header(blockSize, 0, value.kind, fileId, fileKey, [
        { epoch: 2, wrap: wraps.get(2), nonce: headerNonce },
      ]);
      const sealed = object.sealObject(keyring, blockSize, value, {
        fileId,
        fileKey,
        headerNonce,
        recordNonce,
      });
      same(`object ${note}, B=${blockSize}`, Buffer.concat([h, record]), sealed.bytes);
      const lower = specV3.lower(h, record, blockSize);
      same(
        `object length, B=${blockSize}`,
        String(lower.length),
        String(new content.ContentGeometry(blockSize).objectLowerSize),
      );
      const read = specV3.readObject(wraps, lower, blockSize);
      same(`spec reading of object ${note}`, show(read), show(value));
      same(
        `reading of object ${note}, B=${blockSize}`,
        show(read),
        show(object.openObject(keyring, lower, blockSize)),
      );
      return { blockSize, header: hex(h), lowerLength: lower.length };
    });
    return {
      note,
      value,
      headerEpoch: 2,
      fileId: hex(fileId),
      fileKey: hex(fileKey),
      headerNonce: hex(headerNonce),
      recordNonce: hex(recordNonce),
      record: b64(record),
      byBlockSize,
    };
  });

  // --- lower objects of B = 4096 made by the spec: accepted, and refused with their codes ---
  const otherId = seq(0x60, 16);
  const otherKey = seq(0x68, 32);
  const objectOf = (kind, payload, { aad = specV3.recordAad(otherId), flags = 0 } = {}) => {
    const h = specV3.header(4096, flags, kind, otherId, otherKey, [
      { epoch: 1, wrap: wraps.get(1), nonce: seq(0x61, 12) },
    ]);
    return specV3.lower(h, spec.gcm(otherKey, seq(0x62, 12), aad, payload), 4096);
  };
  const payloadOf = (bytes) => {
    const p = Buffer.alloc(OBJECT_PAYLOAD);
    Buffer.from(bytes).copy(p);
    return p;
  };
  const zeros = Buffer.alloc(OBJECT_PAYLOAD);
  const accepted = [
    {
      note: "symlink target starting with U+FEFF: the BOM is part of the target",
      lower: objectOf(KINDS.symlink, payloadOf(Buffer.from("\uFEFFbom", "utf8"))),
    },
    {
      note: "the HOLES flag on an object's header (§6 refuses no flag but bit 1…7)",
      lower: objectOf(KINDS.fifo, zeros, { flags: HOLES_FLAG }),
    },
    {
      note: "a device record holding major 2^12-1, minor 2^20-1 (the largest)",
      lower: objectOf(KINDS.char, payloadOf([0, 0, 0x0f, 0xff, 0, 0x0f, 0xff, 0xff])),
    },
  ].map(({ note, lower, pendingFix }) => {
    const read = specV3.readObject(wraps, lower, 4096);
    if (read.code) throw new Error(`make-fixture: the spec refuses "${note}" (${read.code})`);
    const code = attempt(() => object.openObject(keyring, lower, 4096));
    compare(`reading of ${note}`, show(read), show(code.value ?? code), pendingFix);
    return { note, lower: b64(lower), value: read, ...(pendingFix ? { pendingFix } : {}) };
  });
  const padded = Buffer.from(
    specV3.lower(unhex(objects[0].byBlockSize[1].header), unb64(objects[0].record), 32768),
  );
  padded.fill(0xff, 152 + OBJECT_RECORD);
  same(
    "reading of an object whose padding is not zero",
    show(specV3.readObject(wraps, padded, 32768)),
    show(object.openObject(keyring, padded, 32768)),
  );

  const refused = [
    ["symlink with an empty target", objectOf(KINDS.symlink, zeros)],
    [
      "symlink with a stray byte after the target's NUL",
      objectOf(KINDS.symlink, payloadOf([0x61, 0x62, 0, 0x01])),
    ],
    [
      "symlink with a stray last payload byte",
      objectOf(KINDS.symlink, flip(payloadOf([0x61]), OBJECT_PAYLOAD - 1)),
    ],
    [
      "symlink of 4096 nonzero bytes: no NUL",
      objectOf(KINDS.symlink, Buffer.alloc(OBJECT_PAYLOAD, 0x61)),
    ],
    [
      "symlink target not UTF-8: a lone continuation byte",
      objectOf(KINDS.symlink, payloadOf([0x61, 0x80, 0x62])),
    ],
    [
      "symlink target not UTF-8: an encoded surrogate",
      objectOf(KINDS.symlink, payloadOf([0xed, 0xa0, 0x80])),
    ],
    [
      "symlink target not UTF-8: an overlong encoding of '/'",
      objectOf(KINDS.symlink, payloadOf([0xc0, 0xaf])),
    ],
    ["FIFO with a nonzero payload byte", objectOf(KINDS.fifo, flip(zeros, 100))],
    ["socket with a nonzero last payload byte", objectOf(KINDS.socket, flip(zeros, 4095))],
    [
      "character device with a stray byte after major and minor",
      objectOf(KINDS.char, payloadOf([0, 0, 0, 1, 0, 0, 0, 3, 1])),
    ],
    [
      "character device with major 2^12 (beyond the kernel's device numbers)",
      objectOf(KINDS.char, payloadOf([0, 0, 0x10, 0, 0, 0, 0, 1])),
    ],
    ["block device with minor 2^20", objectOf(KINDS.block, payloadOf([0, 0, 0, 8, 0, 0x10, 0, 0]))],
    [
      "block device with a stray last payload byte",
      objectOf(KINDS.block, flip(payloadOf([0, 0, 0, 8, 0, 0, 0, 1]), 4095)),
    ],
    ["kind 0 (a regular file's header) at the object length", objectOf(KINDS.regular, zeros)],
    ["kind 6", objectOf(6, zeros)],
    ["kind 255", objectOf(255, zeros)],
    ["header flag bit 1 set", objectOf(KINDS.fifo, zeros, { flags: 0x02 })],
    ["one record bit flipped", flip(objectOf(KINDS.fifo, zeros), 152 + 500)],
    [
      "one bit of the record's tag flipped",
      flip(objectOf(KINDS.fifo, zeros), 152 + OBJECT_RECORD - 1),
    ],
    [
      "record sealed with the AAD of a final content block (last byte 0x01, not 0x02)",
      objectOf(KINDS.fifo, zeros, { aad: Buffer.concat([otherId, u64(0), Buffer.from([1])]) }),
    ],
    [
      "the record of another object (the short symlink's) behind this header",
      Buffer.concat([objectOf(KINDS.symlink, zeros).subarray(0, 152), unb64(objects[0].record)]),
    ],
    [
      "kind changed from symlink to FIFO",
      (() => {
        const l = objectOf(KINDS.symlink, payloadOf([0x61]));
        l[7] = KINDS.fifo;
        return l;
      })(),
    ],
    ["HOLES flag set behind the slots' back", flip(objectOf(KINDS.fifo, zeros), 5)],
  ].map(([note, lower]) => {
    const read = specV3.readObject(wraps, lower, 4096);
    if (!read.code) throw new Error(`make-fixture: the spec accepts "${note}"`);
    const code = attempt(() => object.openObject(keyring, lower, 4096));
    same(`refusal of ${note}`, read.code, code.code ?? `accepted: ${show(code.value)}`);
    return { note, lower: b64(lower), code: read.code };
  });

  // Targets a writer refuses (§17: NAME_TOO_LONG, an empty target or one over 4095 bytes).
  const writerRefusals = [
    ["empty target", ""],
    ["4096 bytes", "x".repeat(4096)],
    ["2048 × 'é': 4096 bytes", "é".repeat(2048)],
  ].map(([note, target]) => {
    const s = specV3.payload({ kind: KINDS.symlink, target });
    const code = attempt(() => object.sealObject(keyring, 4096, { kind: KINDS.symlink, target }));
    same(`writer refusal of a target of ${note}`, s.code, code.code ?? "accepted");
    return { note, target, code: s.code };
  });

  // --- headers: the HOLES flag set by planHolesFlag, and flags a reader refuses ---
  const fileId = seq(0x40, 16);
  const fileKey = seq(0x50, 32);
  const holesFlag = [
    {
      note: "slot A under epoch 2, slot B empty",
      slots: [{ epoch: 2, wrap: wraps.get(2), nonce: seq(0x70, 12) }],
      nonces: [seq(0x71, 12)],
    },
    {
      note: "mid-rekey: slot A under epoch 1, slot B under epoch 2; both are resealed",
      slots: [
        { epoch: 1, wrap: wraps.get(1), nonce: seq(0x72, 12) },
        { epoch: 2, wrap: wraps.get(2), nonce: seq(0x73, 12) },
      ],
      nonces: [seq(0x74, 12), seq(0x75, 12)],
    },
  ].map(({ note, slots, nonces }) => {
    const before = specV3.header(4096, 0, KINDS.regular, fileId, fileKey, slots);
    const after = specV3.setHolesFlag(wraps, before, 4096, nonces);
    const opened = header.openHeader(keyring, before, 4096);
    same(`header before the HOLES flag (${note})`, show(opened.holes), "false");
    const patch = header.planHolesFlag(keyring, opened, before, nonces);
    same(`planHolesFlag offset (${note})`, String(patch.offset), "0");
    same(`planHolesFlag (${note})`, after, patch.bytes);
    const reopened = header.openHeader(keyring, after, 4096);
    const s = specV3.openHeader(wraps, after, 4096, 3);
    same(
      `header after the HOLES flag (${note})`,
      show([s.holes, s.fileKey]),
      show([reopened.holes, reopened.fileKey]),
    );
    return { note, before: hex(before), nonces: nonces.map(hex), after: hex(after) };
  });
  const prefixed = (flags, kind) =>
    specV3.header(4096, flags, kind, fileId, fileKey, [
      { epoch: 1, wrap: wraps.get(1), nonce: seq(0x76, 12) },
    ]);
  const headerCases = [
    ["regular file with HOLES", 3, prefixed(HOLES_FLAG, 0)],
    ["symlink header", 3, prefixed(0, KINDS.symlink)],
    ["block-device header with HOLES", 3, prefixed(HOLES_FLAG, KINDS.block)],
    ["flag bit 1", 3, prefixed(0x02, 0)],
    ["flags 0x81", 3, prefixed(0x81, 0)],
    ["kind 6", 3, prefixed(0, 6)],
    ["HOLES in a version-2 volume", 2, prefixed(HOLES_FLAG, 0)],
    ["symlink header in a version-2 volume", 2, prefixed(0, KINDS.symlink)],
    ["HOLES in a version-1 volume", 1, prefixed(HOLES_FLAG, 0)],
    ["HOLES set on a header sealed without it", 3, flip(prefixed(0, 0), 5)],
    ["HOLES cleared on a header sealed with it", 3, flip(prefixed(HOLES_FLAG, 0), 5)],
    ["kind 1 set on a regular file's header", 3, flip(prefixed(0, 0), 7)],
    [
      "kind 6 and a block shift of 13: UNKNOWN_FLAGS comes first",
      3,
      (() => {
        const h = prefixed(0, 6);
        h[6] = 13;
        return h;
      })(),
    ],
  ].map(([note, volumeVersion, bytes]) => {
    const s = specV3.openHeader(wraps, bytes, 4096, volumeVersion);
    const code = attempt(() => header.openHeader(keyring, bytes, 4096, volumeVersion));
    const result = s.code ? { code: s.code } : { holes: s.holes, kind: s.kind };
    const codeResult = code.code
      ? { code: code.code }
      : { holes: code.value.holes, kind: code.value.kind };
    same(`header: ${note}`, show(result), show(codeResult));
    return { note, volumeVersion, header: hex(bytes), ...result };
  });

  // --- a file of 3 full blocks and a final block, block 1 a hole (B = 4096) ---
  const B = 4096;
  const S = B + 28;
  const holeHeader = unhex(holesFlag[0].after);
  const plainHeader = unhex(holesFlag[0].before);
  const written = pattern(3 * B + 100, 17);
  const cleartext = Buffer.from(written);
  cleartext.fill(0, B, 2 * B);
  const nonces = [0, 1, 2, 3].map((i) => seq(0xb0 + i, 12));
  const sealed = spec.blocks(fileKey, fileId, B, cleartext, nonces); // block 1: sealed zeros
  const withHole = Buffer.from(sealed);
  withHole.fill(0, S, 2 * S);
  const cipher = (holes) => ({
    fileKey,
    fileId,
    geometry: new content.ContentGeometry(B),
    holes,
  });
  same(
    "the hole file's blocks 0, 2 and 3",
    Buffer.concat([withHole.subarray(0, S), withHole.subarray(2 * S)]),
    Buffer.concat([
      content.sealBlocks(cipher(true), 0, written.subarray(0, B), false, [nonces[0]]),
      content.sealBlocks(cipher(true), 2, written.subarray(2 * B), true, nonces.slice(2)),
    ]),
  );
  const zeroFinal = Buffer.from(withHole);
  zeroFinal.fill(0, 3 * S);
  const partlyZero = Buffer.from(withHole);
  partlyZero[S + 40] = 1;
  const holeCases = [
    ["block 1 a hole, read with HOLES", holeHeader, withHole],
    ["block 1 a hole, header without HOLES", plainHeader, withHole],
    ["block 1 sealed zeros (the hole written out), read with HOLES", holeHeader, sealed],
    ["block 1 sealed zeros, header without HOLES", plainHeader, sealed],
    ["block 1 a hole and the final block zeroed, read with HOLES", holeHeader, zeroFinal],
    ["block 1 all zero but one byte, read with HOLES", holeHeader, partlyZero],
    [
      "blocks 0, 1 and 2 holes, read with HOLES",
      holeHeader,
      Buffer.concat([Buffer.alloc(3 * S), sealed.subarray(3 * S)]),
    ],
  ].map(([note, h, body]) => {
    const opened = specV3.openHeader(wraps, h, B, 3);
    const s = specV3.readFile(opened.fileKey, opened.fileId, B, body, opened.holes);
    const codeHeader = header.openHeader(keyring, h, B);
    const size = new content.ContentGeometry(B).cleartextSize(152 + body.length);
    const c = content.openBlocks(
      {
        fileKey: codeHeader.fileKey,
        fileId: codeHeader.fileId,
        geometry: new content.ContentGeometry(B),
        holes: codeHeader.holes,
      },
      0,
      body,
      new content.ContentGeometry(B).finalIndex(size),
    );
    const result = s.code
      ? { code: s.code, block: s.block, before: b64(s.before) }
      : { cleartext: b64(s.cleartext) };
    const codeResult = c.failure
      ? { code: c.failure.error.code, block: c.failure.index, before: b64(c.cleartext) }
      : { cleartext: b64(c.cleartext) };
    same(`reading of ${note}`, show(result), show(codeResult));
    return { note, holes: opened.holes, lower: b64(Buffer.concat([h, body])), ...result };
  });

  // --- lower lengths: objects, files and refusals, in version 3 and before ---
  const objectLength = (blockSize) => 152 + blockSize + 28;
  const codeClass = (lower, blockSize, version) => {
    const g = new content.ContentGeometry(blockSize);
    if (version >= 3 && lower === g.objectLowerSize) return "object";
    const r = attempt(() => g.cleartextSize(lower));
    return r.code ?? r.value;
  };
  for (let lower = 0; lower <= 152 + 5 * (4096 + 28) + 1; lower++)
    for (const version of [2, 3])
      same(
        `class of lower length ${lower} (v${version})`,
        String(specV3.classify(lower, 4096, version)),
        String(codeClass(lower, 4096, version)),
      );
  const lengths = [4096, 32768].map((blockSize) => {
    const s = blockSize + 28;
    const cases = [
      152,
      180,
      152 + s - 1,
      152 + s,
      152 + s + 1,
      152 + s + 27,
      152 + s + 28,
      152 + 2 * s,
      152 + 3 * s,
    ].map((lower) => {
      const v3 = specV3.classify(lower, blockSize, 3);
      const v2 = specV3.classify(lower, blockSize, 2);
      same(
        `class of ${lower}, B=${blockSize}`,
        show([v3, v2]),
        show([codeClass(lower, blockSize, 3), codeClass(lower, blockSize, 2)]),
      );
      return { lower, v3, v2 };
    });
    return { blockSize, objectLength: objectLength(blockSize), cases };
  });

  // --- MAX_FILE_SIZE ---
  const maxFileSize = [4096, 32768, 1048576].map((blockSize) => {
    const n = specV3.maxFileSize(blockSize);
    const lower = (m) => 152n + m + 28n * (m / BigInt(blockSize) + 1n);
    if (lower(n) > 2n ** 53n - 1n || lower(n + 1n) <= 2n ** 53n - 1n)
      throw new Error("make-fixture: the spec's MAX_FILE_SIZE is wrong");
    same(
      `MAX_FILE_SIZE, B=${blockSize}`,
      String(n),
      String(new content.ContentGeometry(blockSize).maxSize),
    );
    return { blockSize, maxFileSize: Number(n), lowerSize: Number(lower(n)) };
  });

  // --- st_rdev from (major, minor) ---
  const rdev = [
    [0, 0],
    [1, 3],
    [8, 1],
    [253, 256],
    [259, 65536],
    [4095, 1048575],
  ].map(([major, minor]) => {
    const r = specV3.encodeRdev(major, minor);
    same(`rdev of ${major}:${minor}`, String(r), String(object.encodeRdev(major, minor)));
    same(`major and minor of ${r}`, show(specV3.decodeRdev(r)), show(object.decodeRdev(r)));
    same(`round trip of ${major}:${minor}`, show(specV3.decodeRdev(r)), show({ major, minor }));
    return { major, minor, rdev: r };
  });

  // --- a version-3 config, and the pairing of versions and features ---
  const unsigned = { ...v1.unsigned, version: 3, features: V3_FEATURES };
  same("version-3 features", show(V3_FEATURES), show(config.featuresFor(3)));
  const macKey = spec.hkdf(inputs.mountKey, inputs.volumeId, "cryptmount v1 config-mac", 32);
  const mac = b64u(spec.configMac(macKey, unsigned));
  const epoch1 = keys.deriveEpochKeys(inputs.mountKey, inputs.volumeId, 1);
  same("v3 config MAC", mac, config.signConfig(epoch1, unsigned).mac);
  const document = { ...unsigned, mac };
  const parsed = config.parseConfig(JSON.stringify(document));
  same(
    "v3 config volume secret",
    config.unlockConfig(parsed, config.openMountKeys(parsed, inputs.slotKey)).volumeSecret,
    inputs.volumeSecret,
  );
  const without = (...f) => V3_FEATURES.filter((x) => !f.includes(x));
  const v2Features = without("objects", "holes");
  const pairing = [
    ["version 3 with the eight features in another order", 3, [...V3_FEATURES].reverse()],
    ["version 3 without holes", 3, without("holes")],
    ["version 3 without objects", 3, without("objects")],
    ["version 3 without authenticated-dir-ids", 3, without("authenticated-dir-ids")],
    ["version 3 with the six features of version 2", 3, v2Features],
    ["version 2 with objects", 2, [...v2Features, "objects"]],
    ["version 2 with holes", 2, [...v2Features, "holes"]],
    ["version 2 with the eight features", 2, V3_FEATURES],
    ["version 1 with holes", 1, [...without("authenticated-dir-ids", "objects", "holes"), "holes"]],
    ["version 3 with an unknown feature", 3, [...V3_FEATURES, "sparse-files"]],
    ["version 4", 4, V3_FEATURES],
  ].map(([note, version, features]) => {
    const s = specV3.versionAndFeatures(version, features);
    const code = attempt(() =>
      config.parseConfig(JSON.stringify({ ...document, version, features })),
    );
    same(`config: ${note}`, s, code.code ?? "ok");
    return { note, version, features, result: s };
  });

  keyring.wipe();
  return {
    about:
      "Format version 3: objects (§13), the HOLES flag and holes (§9), the object length and MAX_FILE_SIZE (§8, §9), a version-3 config (§5.2). Keys: the inputs above, epoch 1 (mountKey) and epoch 2 (epoch2MountKey); each header says its slots' epochs. Byte strings are hex, except `record` and `lower`, which are base64 (standard, padded). `st_rdev` is Linux's 32-bit dev_t (new_encode_dev), which docs/format.md does not spell out.",
    objects: {
      note: "an object of each kind; `record` (the same at both block sizes) follows the header at offset 152, zero padding fills the object to `lowerLength` = 152 + B + 28",
      cases: objects,
    },
    objectReads: {
      note: "whole lower objects of B = 4096 (header under epoch 1) that a version-3 reader accepts, with what it reads",
      fileId: hex(otherId),
      fileKey: hex(otherKey),
      cases: accepted,
    },
    objectRefusals: {
      note: "whole lower objects of B = 4096 (header under epoch 1) that a version-3 reader refuses, with the code",
      fileId: hex(otherId),
      fileKey: hex(otherKey),
      cases: refused,
    },
    symlinkTargetRefusals: { note: "symlink targets a writer refuses", cases: writerRefusals },
    holesFlag: {
      note: "a regular file's header before and after setting HOLES, every non-empty slot resealed with the given nonces (slot A, slot B)",
      fileId: hex(fileId),
      fileKey: hex(fileKey),
      cases: holesFlag,
    },
    headers: {
      note: "headers of B = 4096 read in a volume of `volumeVersion`: what the reader takes from bytes 5 and 7, or the code",
      cases: headerCases,
    },
    holes: {
      note: "a file of B = 4096: 3 full blocks and a final block of 100 bytes; written = pattern(3·B + 100, 17); its header is the first holesFlag case (after = with HOLES, before = without). `before` is what a reader returns ahead of the failing block",
      blockSize: B,
      fileId: hex(fileId),
      fileKey: hex(fileKey),
      nonces: nonces.map(hex),
      written: b64(written),
      cases: holeCases,
    },
    lengths: {
      note: "what a lower length is in a version-3 and a version-2 volume: an object, a regular file's cleartext size, or the code refusing it",
      cases: lengths,
    },
    maxFileSize,
    rdev,
    config: {
      note: "the v1 config above as version 3: same keys and slots, the eight features, its MAC",
      canonical: spec.canonical(unsigned),
      document,
    },
    versionFeatures: {
      note: "parseConfig of the version-3 config above with `version` and `features` replaced: ok, or the code refusing it",
      cases: pairing,
    },
  };
}

// --- fixture volume -----------------------------------------------------------------

const PASSPHRASE = "fixture-passphrase";
const LONG_NAME =
  "This file name is deliberately longer than one hundred and eleven bytes, so it is stored hashed with a sidecar.txt";

async function makeVolume(version, force) {
  const lower = join(fixtures, `volume-v${version}`);
  const expectedPath = join(fixtures, `volume-v${version}.expected.json`);
  if (existsSync(lower) || existsSync(expectedPath)) {
    if (!force) {
      console.error(
        `make-fixture: test/fixtures/volume-v${version} exists; it must not change. Use --force to replace it anyway.`,
      );
      process.exit(1);
    }
    await rm(lower, { recursive: true, force: true });
    await rm(expectedPath, { force: true });
  }
  const blockSize = 4096;
  const { recoveryKey } = await volume.initVolume(lower, {
    slots: [
      {
        secret: { kind: "passphrase", bytes: Buffer.from(PASSPHRASE, "utf8") },
        label: "fixture",
        kdf: config.ARGON2_MINIMUM,
      },
    ],
    blockSize,
  });
  if (version < config.CONFIG_VERSION) {
    // This build writes the current version; an older fixture gets its own config (re-signed).
    const { config: current } = await volume.loadConfig(lower);
    const opened = await volume.unlockVolume(lower, {
      kind: "passphrase",
      bytes: Buffer.from(PASSPHRASE, "utf8"),
    });
    const older = volume.resign(
      { ...current, version, features: config.featuresFor(version) },
      opened.mountKeys,
    );
    opened.keyring.wipe();
    await volume.saveConfig(lower, older);
  }
  const unlocked = await volume.unlockVolume(lower, {
    kind: "passphrase",
    bytes: Buffer.from(PASSPHRASE, "utf8"),
  });
  same("fixture config version", String(unlocked.config.version), String(version));
  // Independently of the code: the ID entry name of §12.1 (v2) or of version 1.
  const { volumeSecret } = config.unlockConfig(unlocked.config, unlocked.mountKeys);
  const dirIdKey = spec.dirIdKey(volumeSecret, Buffer.from(unlocked.config.volumeId, "base64url"));
  volumeSecret.fill(0);
  same("fixture dir-ID key", dirIdKey, unlocked.keyring.volume.dirIds);
  const idEntry = (id) => (version === 1 ? "cm.d." + b64u(id) : spec.dirIdEntry(dirIdKey, id));
  const { keyring } = unlocked;
  const geometry = new content.ContentGeometry(blockSize);
  const expected = [];

  const place = async (lowerDir, dirId, name) => {
    const entry = names.lowerEntryFor(names.encryptName(keyring.volume.names, dirId, name));
    if (entry.longName !== undefined)
      await writeFile(join(lowerDir, entry.entry + names.SIDECAR_SUFFIX), entry.longName);
    return join(lowerDir, entry.entry);
  };
  const file = async (lowerDir, dirId, path, data) => {
    const target = await place(lowerDir, dirId, path.split("/").pop());
    const { bytes, header: h } = header.createHeader(keyring, { blockSize });
    const sealed = content.sealBlocks(
      { fileKey: h.fileKey, fileId: h.fileId, geometry },
      0,
      data,
      true,
    );
    await writeFile(target, Buffer.concat([bytes, sealed]));
    expected.push({
      path,
      type: "file",
      size: data.length,
      sha256: createHash("sha256").update(data).digest("hex"),
    });
    return target;
  };
  const dir = async (lowerDir, dirId, path, extraIds = 0) => {
    const target = await place(lowerDir, dirId, path.split("/").pop());
    await mkdir(target);
    const ids = [];
    for (let i = 0; i <= extraIds; i++) {
      const id = randomBytes(keys.DIR_ID_SIZE);
      await writeFile(join(target, idEntry(id)), "");
      ids.push(id);
    }
    expected.push({ path, type: "dir" });
    return { lower: target, ids: ids.sort(Buffer.compare) };
  };
  /** Version 3: an object (§13), header and record, padded to its one lower length. */
  const writeObject = async (lowerDir, dirId, path, value) => {
    const target = await place(lowerDir, dirId, path.split("/").pop());
    const { bytes } = object.sealObject(keyring, blockSize, value);
    const padded = Buffer.alloc(geometry.objectLowerSize);
    bytes.copy(padded);
    await writeFile(target, padded);
  };
  const link = async (lowerDir, dirId, path, targetText) => {
    if (version >= 3) {
      await writeObject(lowerDir, dirId, path, {
        kind: header.FileKind.Symlink,
        target: targetText,
      });
    } else {
      const target = await place(lowerDir, dirId, path.split("/").pop());
      await symlink(symlinks.encryptSymlink(keyring.volume.symlinks, targetText), target);
    }
    expected.push({ path, type: "symlink", target: targetText });
  };

  const rootId = keyring.volume.rootDirId;
  const hello = await file(
    lower,
    rootId,
    "hello.txt",
    Buffer.from("Hello from cryptmount volume format v1.\n", "utf8"),
  );
  await file(lower, rootId, "empty.txt", Buffer.alloc(0));
  await file(lower, rootId, "blocks.bin", pattern(2 * blockSize + 1000, 11));
  await file(lower, rootId, "aligned.bin", pattern(2 * blockSize, 13));
  const sparse = Buffer.alloc(3 * blockSize + 17);
  sparse.write("start of a file with a hole", 0, "utf8");
  sparse.write("end", sparse.length - 3, "utf8");
  await file(lower, rootId, "sparse.bin", sparse);
  await file(lower, rootId, "Ünïcödé – 日本語.txt", Buffer.from("unicode name\n", "utf8"));
  await file(
    lower,
    rootId,
    LONG_NAME,
    Buffer.from("stored under cm.L.<hash> with a .n sidecar\n", "utf8"),
  );
  await link(lower, rootId, "link-to-hello", "hello.txt");

  const docs = await dir(lower, rootId, "docs");
  await file(
    docs.lower,
    docs.ids[0],
    "docs/notes.md",
    Buffer.from("# Notes\n\nA file in a subdirectory.\n", "utf8"),
  );
  await link(docs.lower, docs.ids[0], "docs/up", "../hello.txt");
  const deeper = await dir(docs.lower, docs.ids[0], "docs/deeper");
  await file(deeper.lower, deeper.ids[0], "docs/deeper/leaf.txt", Buffer.from("leaf\n", "utf8"));
  await dir(lower, rootId, "empty-dir");

  // Two machines created "merged" independently; a sync client merged the two lower
  // directories, so it carries two ID entries and names under each.
  const merged = await dir(lower, rootId, "merged", 1);
  await file(
    merged.lower,
    merged.ids[0],
    "merged/from-first-machine.txt",
    Buffer.from("written under the smaller ID\n", "utf8"),
  );
  await file(
    merged.lower,
    merged.ids[1],
    "merged/from-second-machine.txt",
    Buffer.from("written under the larger ID\n", "utf8"),
  );

  // A sync client's conflict copy: contains a dot, so it is never an encrypted name.
  const foreign = [
    `${hello.split("/").pop()}.sync-conflict-20250101-120000-ABCDEFG`,
    "desktop.ini",
  ];
  await writeFile(join(lower, foreign[0]), "conflict copy");
  await writeFile(join(lower, foreign[1]), "[.ShellClassInfo]\n");

  if (version >= 3) {
    // Special files as objects, a target of PATH_MAX - 1 bytes, and a file with holes (§9).
    const { FileKind } = header;
    await writeObject(lower, rootId, "fifo", { kind: FileKind.Fifo });
    expected.push({ path: "fifo", type: "fifo" });
    await writeObject(lower, rootId, "socket", { kind: FileKind.Socket });
    expected.push({ path: "socket", type: "socket" });
    await writeObject(lower, rootId, "null", { kind: FileKind.CharDevice, major: 1, minor: 3 });
    expected.push({ path: "null", type: "chardev", major: 1, minor: 3 });
    await writeObject(docs.lower, docs.ids[0], "docs/sda1", {
      kind: FileKind.BlockDevice,
      major: 8,
      minor: 1,
    });
    expected.push({ path: "docs/sda1", type: "blockdev", major: 8, minor: 1 });
    await link(docs.lower, docs.ids[0], "docs/longest-link", "../".repeat(1365));
    const holesPath = await place(lower, rootId, "holes.bin");
    const cleartext = pattern(6 * blockSize + 100, 17);
    cleartext.fill(0, blockSize, 4 * blockSize);
    const created = header.createHeader(keyring, { blockSize });
    const flagged = header.planHolesFlag(keyring, created.header, created.bytes).bytes;
    same("HOLES flag set", String(flagged[5]), "1");
    const sealed = content.sealBlocks(
      { fileKey: created.header.fileKey, fileId: created.header.fileId, geometry },
      0,
      cleartext,
      true,
    );
    // Blocks 1..3 are holes: all-zero sealed blocks, as a sparse lower file reads.
    sealed.fill(0, geometry.sealedBlockSize, 4 * geometry.sealedBlockSize);
    await writeFile(holesPath, Buffer.concat([flagged, sealed]));
    expected.push({
      path: "holes.bin",
      type: "file",
      size: cleartext.length,
      sha256: createHash("sha256").update(cleartext).digest("hex"),
    });
  }

  // Version 2: IDs planted by someone without the keys, each smaller than every genuine ID
  // (all zeros), so a reader that took them would encode new names under them: one in the
  // v2 form with a made-up tag, one in the bare v1 form. Both must be ignored (§12.3).
  const forgedDirIds = [];
  if (version >= 2) {
    const planted = [
      [docs.lower, "cm.d." + b64u(Buffer.concat([Buffer.alloc(16), randomBytes(16)]))],
      [merged.lower, "cm.d." + b64u(Buffer.alloc(16))],
    ];
    for (const [dirLower, entry] of planted) {
      same(`planted ${entry}`, spec.readDirIdEntry(dirIdKey, entry).verdict, "forged");
      await writeFile(join(dirLower, entry), "");
      forgedDirIds.push(join(dirLower, entry).slice(lower.length + 1));
    }
  }

  unlocked.keyring.wipe();
  expected.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const doc = {
    about:
      version === 1
        ? "Cleartext tree of test/fixtures/volume-v1, written by scripts/make-fixture.mjs with the v1 code (regenerated once before release, when the final-block rule changed). test/unit/fixture-volume.test.ts must keep reading it."
        : version === 3
          ? "Cleartext tree of test/fixtures/volume-v3, written by scripts/make-fixture.mjs with the v3 code: everything of volume-v2, symlinks as objects, a FIFO, a socket, a character and a block device, a symlink target of 4095 bytes and a file with holes (§9, §13). test/unit/fixture-volume.test.ts must keep reading it."
          : "Cleartext tree of test/fixtures/volume-v2, written by scripts/make-fixture.mjs with the v2 code: authenticated directory IDs, a directory with two genuine IDs (a merge) and two planted IDs (forgedDirIds) that readers must ignore. test/unit/fixture-volume.test.ts must keep reading it.",
    passphrase: PASSPHRASE,
    recoveryKey,
    blockSize,
    entries: expected,
    foreign,
    ...(version >= 2 ? { forgedDirIds: forgedDirIds.sort() } : {}),
  };
  await writeFile(expectedPath, JSON.stringify(doc, null, 2) + "\n");
  console.log(`wrote ${lower} and ${expectedPath} (${expected.length} entries)`);
}

// --- main ---------------------------------------------------------------------------

const [command, ...flags] = process.argv.slice(2);
if (command === "vectors") {
  const text = JSON.stringify(await makeVectors(), null, 2) + "\n";
  const path = join(fixtures, "vectors.json");
  if (flags.includes("--check")) {
    const current = await readFile(path, "utf8").catch(() => "");
    if (current !== text) {
      console.error(
        "make-fixture: test/fixtures/vectors.json differs from what the spec implementation produces",
      );
      process.exit(1);
    }
    console.log("vectors.json is up to date");
  } else {
    await mkdir(fixtures, { recursive: true });
    await writeFile(path, text);
    console.log(`wrote ${path}`);
  }
} else if (command === "volume" && ["v1", "v2", "v3"].includes(flags[0])) {
  await makeVolume(Number(flags[0].slice(1)), flags.includes("--force"));
} else {
  console.error(
    "usage: node scripts/make-fixture.mjs vectors [--check] | volume v1|v2|v3 [--force]",
  );
  process.exit(2);
}
