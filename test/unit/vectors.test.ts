// Known-answer tests: fixed keys, IDs, nonces and plaintexts must give the
// exact bytes in test/fixtures/vectors.json, and those bytes must decode back.
// The vectors were computed by a second implementation written from
// docs/format.md (scripts/make-fixture.mjs), so they pin the code and the
// document together: any difference here is a format change.

import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { Keyring, deriveEpochKeys } from "../../src/crypto/keys.js";
import {
  canonicalJson,
  encodeMountKeys,
  openMountKeys,
  openSlot,
  parseConfig,
  signConfig,
  unlockConfig,
  type Argon2Params,
  type KeySlot,
  type UnsignedConfig,
  type VolumeConfig,
} from "../../src/format/config.js";
import { ContentGeometry, openBlocks, sealBlocks } from "../../src/format/content.js";
import { HEADER_SIZE, createHeader, openHeader } from "../../src/format/header.js";
import {
  MAX_SHORT_NAME,
  classifyLowerEntry,
  decryptName,
  encryptName,
  lowerEntryFor,
  v1DirIdEntryName,
  verifyLongName,
} from "../../src/format/names.js";
import { dirIdEntryName, dirIdTag, parseDirIdEntry, readDirIds } from "../../src/format/dir-ids.js";
import { formatRecoveryKey, parseRecoveryKey } from "../../src/format/recovery.js";
import { decryptSymlink, encryptSymlink, symlinkTargetLength } from "../../src/format/symlink.js";
import { deriveKek } from "../../src/keys/kek.js";
import {
  decryptXattrName,
  decryptXattrValue,
  encryptXattrName,
  encryptXattrValue,
} from "../../src/format/xattr.js";

interface Vectors {
  inputs: Record<string, string> & { epoch: number; blockSize: number };
  subkeys: Record<string, string>;
  epoch2Subkeys: Record<string, string>;
  header: { hex: string };
  content: {
    name: string;
    plaintext: string;
    nonces: string[];
    lowerSize: number;
    lower: string;
  }[];
  sizes: { cases: { lower: number; cleartext: number | string }[] };
  names: {
    dirId: string;
    name: string;
    nameBytes: number;
    encoded: string;
    entry: string;
    sidecar?: string;
  }[];
  dirIdEntry: { dirId: string; entry: string };
  symlink: { target: string; nonce: string; stored: string };
  xattr: { name: string; storedName: string; value: string; nonce: string; storedValue: string };
  recoveryKey: { key: string; formatted: string };
  kek: {
    salt: string;
    passphrase: { passphrase: string; kdf: Argon2Params; kek: string };
    keyfile: { keyfile: string; kek: string };
    recovery: { key: string; kek: string };
  };
  slots: { passphrase: KeySlot; recovery: KeySlot };
  mountKeyPayload: { oneEpoch: string; twoEpochs: string };
  bundle: { key: string; aad: string; oneEpoch: string; twoEpochs: string };
  slotAad: string;
  config: { canonical: string; document: VolumeConfig };
  v2: {
    dirIdKey: string;
    dirIds: { id: string; tag: string; entry: string }[];
    read: {
      cases: { note: string; name: string; verdict: "id" | "forged" | "other"; id?: string }[];
    };
    config: { canonical: string; document: VolumeConfig };
  };
}

const v = JSON.parse(
  readFileSync(new URL("../fixtures/vectors.json", import.meta.url), "utf8"),
) as Vectors;
const hex = (s: string) => Buffer.from(s, "hex");
const b64 = (s: string) => Buffer.from(s, "base64");

const input = {
  volumeId: hex(v.inputs.volumeId!),
  mountKey: hex(v.inputs.mountKey!),
  mountKey2: hex(v.inputs.epoch2MountKey!),
  volumeSecret: hex(v.inputs.volumeSecret!),
  fileId: hex(v.inputs.fileId!),
  fileKey: hex(v.inputs.fileKey!),
  headerNonce: hex(v.inputs.headerNonce!),
  dirId: hex(v.inputs.dirId!),
  slotKey: hex(v.inputs.slotKey!),
};
const blockSize = v.inputs.blockSize;
const keyring = () =>
  new Keyring(input.volumeId, 1, new Map([[1, input.mountKey]]), input.volumeSecret);
const geometry = new ContentGeometry(blockSize);

describe("key hierarchy", () => {
  it("derives the epoch subkeys and the volume subkeys", () => {
    const k = keyring();
    expect(k.current.headerWrap.toString("hex")).toBe(v.subkeys.headerWrap);
    expect(k.current.configWrap.toString("hex")).toBe(v.subkeys.configWrap);
    expect(k.current.configMac.toString("hex")).toBe(v.subkeys.configMac);
    expect(k.volume.names.toString("hex")).toBe(v.subkeys.names);
    expect(k.volume.symlinks.toString("hex")).toBe(v.subkeys.symlinks);
    expect(k.volume.xattrNames.toString("hex")).toBe(v.subkeys.xattrNames);
    expect(k.volume.xattrValues.toString("hex")).toBe(v.subkeys.xattrValues);
    expect(k.volume.rootDirId.toString("hex")).toBe(v.subkeys.rootDirId);
  });

  it("derives different epoch subkeys from another mount key, the same volume subkeys", () => {
    const e2 = deriveEpochKeys(input.mountKey2, input.volumeId, 2);
    expect(e2.headerWrap.toString("hex")).toBe(v.epoch2Subkeys.headerWrap);
    expect(e2.configWrap.toString("hex")).toBe(v.epoch2Subkeys.configWrap);
    expect(e2.configMac.toString("hex")).toBe(v.epoch2Subkeys.configMac);
    const both = new Keyring(
      input.volumeId,
      2,
      new Map([
        [1, input.mountKey],
        [2, input.mountKey2],
      ]),
      input.volumeSecret,
    );
    expect(both.knownEpochs()).toEqual([1, 2]);
    expect(both.volume.names.toString("hex")).toBe(v.subkeys.names);
  });
});

describe("file header", () => {
  it("createHeader with pinned file ID, file key and nonce gives the vector", () => {
    const { bytes, header } = createHeader(keyring(), {
      blockSize,
      fileId: input.fileId,
      fileKey: input.fileKey,
      nonce: input.headerNonce,
    });
    expect(bytes.length).toBe(HEADER_SIZE);
    expect(bytes.toString("hex")).toBe(v.header.hex);
    expect(header.slotEpochs).toEqual([1, undefined]);
  });

  it("openHeader recovers the file ID and key from the vector", () => {
    const header = openHeader(keyring(), hex(v.header.hex), blockSize);
    expect(header.fileId).toEqual(input.fileId);
    expect(header.fileKey).toEqual(input.fileKey);
    expect(header.blockSize).toBe(blockSize);
    expect(header.slotEpochs).toEqual([1, undefined]);
  });

  it("lays out magic, version, flags, block shift, file ID and slot A as documented", () => {
    const bytes = hex(v.header.hex);
    expect(bytes.subarray(0, 4).toString("ascii")).toBe("CRMF");
    expect([...bytes.subarray(4, 8)]).toEqual([1, 0, 12, 0]);
    expect(bytes.subarray(8, 24)).toEqual(input.fileId);
    expect(bytes.readUInt32BE(24)).toBe(1);
    expect(bytes.subarray(28, 40)).toEqual(input.headerNonce);
    expect(bytes.subarray(88, 152)).toEqual(Buffer.alloc(64));
  });
});

describe("content blocks", () => {
  const cipher = { fileKey: input.fileKey, fileId: input.fileId, geometry };

  it.each(v.content)("$name: sealBlocks with pinned nonces gives the vector", (c) => {
    const plaintext = b64(c.plaintext);
    const lower = b64(c.lower);
    const sealed = sealBlocks(cipher, 0, plaintext, true, c.nonces.map(hex));
    expect(sealed.toString("base64")).toBe(lower.subarray(HEADER_SIZE).toString("base64"));
    expect(lower.subarray(0, HEADER_SIZE).toString("hex")).toBe(v.header.hex);
    expect(lower.length).toBe(c.lowerSize);
    expect(geometry.lowerSize(plaintext.length)).toBe(c.lowerSize);
  });

  it.each(v.content)("$name: the lower file decrypts back", (c) => {
    const lower = b64(c.lower);
    const header = openHeader(keyring(), lower.subarray(0, HEADER_SIZE), blockSize);
    const size = geometry.cleartextSize(lower.length);
    const { cleartext, failure } = openBlocks(
      { fileKey: header.fileKey, fileId: header.fileId, geometry },
      0,
      lower.subarray(HEADER_SIZE),
      geometry.blockCount(size) - 1,
    );
    expect(failure).toBeUndefined();
    expect(cleartext.toString("base64")).toBe(c.plaintext);
  });

  it("the empty file is a header and one sealed empty final block", () => {
    const empty = v.content.find((c) => b64(c.plaintext).length === 0)!;
    expect(empty.lowerSize).toBe(HEADER_SIZE + 28);
  });

  it("a file of exactly one block is a full non-final block and an empty final block", () => {
    const aligned = v.content.find((c) => b64(c.plaintext).length === blockSize)!;
    expect(aligned.nonces).toHaveLength(2);
    expect(aligned.lowerSize).toBe(HEADER_SIZE + blockSize + 28 + 28);
    const lower = b64(aligned.lower);
    const header = openHeader(keyring(), lower.subarray(0, HEADER_SIZE), blockSize);
    const file = { fileKey: header.fileKey, fileId: header.fileId, geometry };
    const full = lower.subarray(geometry.blockOffset(0), geometry.blockOffset(1));
    const final = lower.subarray(geometry.blockOffset(1));
    expect(final).toHaveLength(28);
    // Each block opens only with its own final flag.
    expect(openBlocks(file, 0, full, 1).failure).toBeUndefined();
    expect(openBlocks(file, 1, final, 1).cleartext).toHaveLength(0);
    expect(openBlocks(file, 0, full, 0).failure?.error.code).toBe("TRUNCATED");
    expect(openBlocks(file, 1, final, 2).failure?.error.code).toBe("EXTENDED");
  });
});

describe("size arithmetic", () => {
  it.each(v.sizes.cases)("lower length $lower → $cleartext", ({ lower, cleartext }) => {
    if (typeof cleartext === "number") {
      expect(geometry.cleartextSize(lower)).toBe(cleartext);
      expect(geometry.lowerSize(cleartext)).toBe(lower);
    } else {
      expect(() => geometry.cleartextSize(lower)).toThrowError(
        expect.objectContaining({ code: cleartext }),
      );
    }
  });
});

describe("names", () => {
  const dirIdOf = (d: string) => (d === "rootDirId" ? keyring().volume.rootDirId : hex(d));

  it.each(v.names)("encrypts $nameBytes-byte name $name to the vector", (n) => {
    const k = keyring();
    expect(Buffer.byteLength(n.name, "utf8")).toBe(n.nameBytes);
    const encoded = encryptName(k.volume.names, dirIdOf(n.dirId), n.name);
    expect(encoded).toBe(n.encoded);
    const entry = lowerEntryFor(encoded);
    expect(entry.entry).toBe(n.entry);
    if (n.sidecar) {
      expect(encoded.length).toBeGreaterThan(MAX_SHORT_NAME);
      expect(entry.longName).toBe(encoded);
      expect(n.sidecar).toBe(`${n.entry}.n`);
      expect(classifyLowerEntry(n.entry)).toEqual({ kind: "long-name", entry: n.entry });
      expect(classifyLowerEntry(n.sidecar)).toEqual({ kind: "sidecar", entry: n.entry });
    } else {
      expect(encoded.length).toBeLessThanOrEqual(MAX_SHORT_NAME);
      expect(entry.longName).toBeUndefined();
      expect(classifyLowerEntry(n.entry)).toEqual({ kind: "name", encoded });
    }
  });

  it.each(v.names)("decrypts the vector of $name back", (n) => {
    const k = keyring();
    if (n.sidecar) verifyLongName(n.entry, n.encoded);
    expect(decryptName(k.volume.names, dirIdOf(n.dirId), n.encoded)).toBe(n.name);
  });

  it("names the directory ID entry (version-1 form)", () => {
    expect(v1DirIdEntryName(hex(v.dirIdEntry.dirId))).toBe(v.dirIdEntry.entry);
    const kind = classifyLowerEntry(v.dirIdEntry.entry);
    expect(kind).toMatchObject({ kind: "dir-id", form: "v1" });
    expect(kind.kind === "dir-id" && kind.id.toString("hex")).toBe(v.dirIdEntry.dirId);
  });
});

describe("authenticated directory IDs (format version 2)", () => {
  it("derives K_dirIds from the volume secret", () => {
    expect(keyring().volume.dirIds.toString("hex")).toBe(v.v2.dirIdKey);
  });

  it.each(v.v2.dirIds)("tags $id and names its entry", ({ id, tag, entry }) => {
    const key = keyring().volume.dirIds;
    expect(dirIdTag(key, hex(id)).toString("hex")).toBe(tag);
    expect(dirIdEntryName(key, hex(id))).toBe(entry);
    expect(entry.length).toBe("cm.d.".length + 43);
    const kind = classifyLowerEntry(entry);
    expect(kind).toMatchObject({ kind: "dir-id", form: "v2" });
    expect(parseDirIdEntry(key, entry)).toEqual({ id: hex(id) });
  });

  it.each(v.v2.read.cases)("reads $note as $verdict", ({ name, verdict, id }) => {
    const key = keyring().volume.dirIds;
    const parsed = parseDirIdEntry(key, name);
    if (verdict === "other") expect(parsed).toBeUndefined();
    else if (verdict === "forged") expect(parsed).toEqual({ forged: true });
    else expect(parsed).toEqual({ id: hex(id!) });
    // A key-less reader sees every id and forged case as a directory ID entry (§3.1).
    expect(classifyLowerEntry(name).kind === "dir-id").toBe(verdict !== "other");
  });

  it("a v2 listing keeps the genuine IDs only; a v1 listing also takes the bare form", () => {
    const key = keyring().volume.dirIds;
    const names = v.v2.read.cases.map((c) => c.name);
    const v2 = readDirIds(key, 2, names);
    expect(v2.ids.map((b) => b.toString("hex"))).toEqual([v.inputs.dirId]);
    expect(v2.forged).toEqual(
      v.v2.read.cases.filter((c) => c.verdict === "forged").map((c) => c.name),
    );
    const v1 = readDirIds(key, 1, names);
    expect(v1.ids.map((b) => b.toString("hex"))).toEqual([v.inputs.dirId]); // one ID, two forms
    expect(v1.forged).toHaveLength(v2.forged.length - 1);
  });

  it("signs and unlocks the version-2 vector config", () => {
    const { mac, ...unsigned } = v.v2.config.document;
    expect(canonicalJson(unsigned)).toBe(v.v2.config.canonical);
    expect(signConfig(keyring().current, unsigned as UnsignedConfig).mac).toBe(mac);
    const config = parseConfig(JSON.stringify(v.v2.config.document));
    expect(config.version).toBe(2);
    expect(unlockConfig(config, openMountKeys(config, input.slotKey)).volumeSecret).toEqual(
      input.volumeSecret,
    );
  });

  it("version and the authenticated-dir-ids feature go together", () => {
    const d = v.v2.config.document;
    const v1features = v.config.document.features;
    expect(() => parseConfig(JSON.stringify({ ...d, features: v1features }))).toThrowError(
      expect.objectContaining({ code: "CONFIG_INVALID" }),
    );
    expect(() =>
      parseConfig(JSON.stringify({ ...v.config.document, features: d.features })),
    ).toThrowError(expect.objectContaining({ code: "CONFIG_INVALID" }));
    expect(() => parseConfig(JSON.stringify({ ...d, version: 4 }))).toThrowError(
      expect.objectContaining({ code: "UNKNOWN_VERSION" }),
    );
  });
});

describe("symlink targets", () => {
  it("encrypts with a pinned nonce to the vector and decrypts back", () => {
    const k = keyring();
    const stored = encryptSymlink(k.volume.symlinks, v.symlink.target, hex(v.symlink.nonce));
    expect(stored).toBe(v.symlink.stored);
    expect(decryptSymlink(k.volume.symlinks, v.symlink.stored)).toBe(v.symlink.target);
    expect(symlinkTargetLength(stored.length)).toBe(Buffer.byteLength(v.symlink.target, "utf8"));
  });
});

describe("extended attributes", () => {
  it("encrypts the attribute name to the vector and back", () => {
    const k = keyring();
    expect(encryptXattrName(k.volume, v.xattr.name)).toBe(v.xattr.storedName);
    expect(decryptXattrName(k.volume, v.xattr.storedName)).toBe(v.xattr.name);
    expect(decryptXattrName(k.volume, "user.other")).toBeUndefined();
    expect(decryptXattrName(k.volume, "security.selinux")).toBeUndefined();
  });

  it("opens the vector value, which is bound to its stored name", () => {
    const k = keyring();
    const stored = hex(v.xattr.storedValue);
    expect(stored.subarray(0, 12)).toEqual(hex(v.xattr.nonce));
    expect(decryptXattrValue(k.volume, v.xattr.storedName, stored)).toEqual(hex(v.xattr.value));
    const other = encryptXattrName(k.volume, "user.other");
    expect(() => decryptXattrValue(k.volume, other, stored)).toThrow();
    const fresh = encryptXattrValue(k.volume, other, hex(v.xattr.value));
    expect(decryptXattrValue(k.volume, other, fresh)).toEqual(hex(v.xattr.value));
  });

  it("offers only user.* names of 1 to 160 bytes", () => {
    const k = keyring();
    const code = (name: string) =>
      expect(() => encryptXattrName(k.volume, name)).toThrowError(
        expect.objectContaining({
          code: name.startsWith("user.") && name.length > 5 ? "NAME_TOO_LONG" : "NAME_INVALID",
        }),
      );
    code("trusted.x");
    code("security.selinux");
    code("user.");
    expect(encryptXattrName(k.volume, "user." + "x".repeat(160)).length).toBeLessThanOrEqual(243);
    code("user." + "x".repeat(161));
  });
});

describe("recovery key", () => {
  it("formats the vector key and parses it back, forgiving case, spacing and look-alikes", () => {
    const key = hex(v.recoveryKey.key);
    expect(formatRecoveryKey(key)).toBe(v.recoveryKey.formatted);
    expect(parseRecoveryKey(v.recoveryKey.formatted)).toEqual(key);
    const sloppy = v.recoveryKey.formatted
      .toLowerCase()
      .replace(/-/g, " ")
      .replace(/0/g, "o")
      .replace(/1/g, "l");
    expect(parseRecoveryKey(sloppy)).toEqual(key);
  });
});

describe("key-encryption keys", () => {
  const salt = () => hex(v.kek.salt).toString("base64url");

  it("Argon2id for a passphrase slot", async () => {
    const kek = await deriveKek(
      { kind: "passphrase", salt: salt(), kdf: v.kek.passphrase.kdf },
      { kind: "passphrase", bytes: Buffer.from(v.kek.passphrase.passphrase, "utf8") },
    );
    expect(kek?.toString("hex")).toBe(v.kek.passphrase.kek);
  });

  it("HKDF for key-file and recovery slots", async () => {
    const keyfile = await deriveKek(
      { kind: "keyfile", salt: salt() },
      { kind: "keyfile", bytes: hex(v.kek.keyfile.keyfile) },
    );
    expect(keyfile?.toString("hex")).toBe(v.kek.keyfile.kek);
    const recovery = await deriveKek(
      { kind: "recovery", salt: salt() },
      { kind: "recovery", bytes: hex(v.kek.recovery.key) },
    );
    expect(recovery?.toString("hex")).toBe(v.kek.recovery.kek);
  });

  it("derives nothing when the secret is of another kind", async () => {
    expect(
      await deriveKek(
        { kind: "keyfile", salt: salt() },
        { kind: "recovery", bytes: hex(v.kek.recovery.key) },
      ),
    ).toBeUndefined();
  });
});

describe("key slots, mount-key bundle and config", () => {
  const volumeId = v.inputs.volumeIdBase64url!;

  it("the slots of the vector open to the slot key", () => {
    expect(openSlot(volumeId, v.slots.passphrase, hex(v.kek.passphrase.kek))).toEqual(
      input.slotKey,
    );
    expect(openSlot(volumeId, v.slots.recovery, hex(v.kek.recovery.kek))).toEqual(input.slotKey);
    expect(openSlot(volumeId, v.slots.passphrase, hex(v.kek.recovery.kek))).toBeUndefined();
  });

  it("a slot is bound to its volume and its parameters (AAD)", () => {
    expect(
      openSlot("AAAAAAAAAAAAAAAAAAAAAA", v.slots.passphrase, hex(v.kek.passphrase.kek)),
    ).toBeUndefined();
    const renumbered = { ...v.slots.passphrase, id: 7 };
    expect(openSlot(volumeId, renumbered, hex(v.kek.passphrase.kek))).toBeUndefined();
    const stronger = { ...v.slots.passphrase, kdf: { ...v.kek.passphrase.kdf, iterations: 4 } };
    expect(openSlot(volumeId, stronger, hex(v.kek.passphrase.kek))).toBeUndefined();
    // The label is not part of the AAD (it is covered by the config MAC instead).
    expect(
      openSlot(volumeId, { ...v.slots.passphrase, label: "renamed" }, hex(v.kek.passphrase.kek)),
    ).toEqual(input.slotKey);
    expect(v.slotAad).toBe(
      canonicalJson({
        purpose: "cryptmount v1 key slot",
        volumeId,
        id: 1,
        kind: "passphrase",
        salt: hex(v.kek.salt).toString("base64url"),
        kdf: v.kek.passphrase.kdf,
      }),
    );
  });

  it("encodes mount keys as epoch | key records, newest first", () => {
    expect(encodeMountKeys(new Map([[1, input.mountKey]])).toString("hex")).toBe(
      v.mountKeyPayload.oneEpoch,
    );
    const two = new Map([
      [1, input.mountKey],
      [2, input.mountKey2],
    ]);
    expect(encodeMountKeys(two).toString("hex")).toBe(v.mountKeyPayload.twoEpochs);
  });

  it("opens the one- and two-epoch bundles of the vector", () => {
    const one = openMountKeys({ volumeId, keys: v.bundle.oneEpoch }, input.slotKey);
    expect([...one.keys()]).toEqual([1]);
    expect(one.get(1)).toEqual(input.mountKey);
    const two = openMountKeys({ volumeId, keys: v.bundle.twoEpochs }, input.slotKey);
    expect([...two.keys()].sort()).toEqual([1, 2]);
    expect(two.get(2)).toEqual(input.mountKey2);
    expect(v.bundle.aad).toBe(`cryptmount v1 mount keys ${volumeId}`);
  });

  it("signs the vector config to its MAC over the canonical JSON", () => {
    const { mac, ...unsigned } = v.config.document;
    expect(canonicalJson(unsigned)).toBe(v.config.canonical);
    expect(signConfig(keyring().current, unsigned as UnsignedConfig).mac).toBe(mac);
  });

  it("parses and unlocks the vector config", () => {
    const config = parseConfig(JSON.stringify(v.config.document, null, 2));
    const mountKeys = openMountKeys(config, input.slotKey);
    const { volumeSecret, current } = unlockConfig(config, mountKeys);
    expect(volumeSecret).toEqual(input.volumeSecret);
    expect(current.epoch).toBe(1);
  });

  it("the MAC does not depend on member order or formatting", () => {
    const shuffled = Object.fromEntries(Object.entries(v.config.document).reverse());
    const config = parseConfig(JSON.stringify(shuffled));
    expect(() => unlockConfig(config, openMountKeys(config, input.slotKey))).not.toThrow();
  });
});
