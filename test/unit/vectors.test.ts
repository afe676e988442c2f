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
  featuresFor,
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
import {
  FileKind,
  HEADER_FLAG_HOLES,
  HEADER_SIZE,
  createHeader,
  openHeader,
  planHolesFlag,
  planRewrap,
} from "../../src/format/header.js";
import {
  OBJECT_RECORD_SIZE,
  decodeRdev,
  encodeRdev,
  openObject,
  sealObject,
  type ObjectValue,
} from "../../src/format/object.js";
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
  v3: V3Vectors;
}

type Code = { code: string };
type Cases<T, Extra = object> = { note: string; cases: T[] } & Extra;
interface V3Vectors {
  objects: Cases<{
    note: string;
    value: ObjectValue;
    headerEpoch: number;
    fileId: string;
    fileKey: string;
    headerNonce: string;
    recordNonce: string;
    record: string;
    byBlockSize: { blockSize: number; header: string; lowerLength: number }[];
  }>;
  objectReads: Cases<{ note: string; lower: string; value: ObjectValue }>;
  objectRefusals: Cases<{ note: string; lower: string; code: string }>;
  symlinkTargetRefusals: Cases<{ note: string; target: string; code: string }>;
  holesFlag: Cases<
    { note: string; before: string; nonces: string[]; after: string },
    { fileId: string; fileKey: string }
  >;
  headers: Cases<
    { note: string; volumeVersion: number; header: string } & (
      Code | { holes: boolean; kind: number }
    )
  >;
  holes: Cases<
    { note: string; holes: boolean; lower: string } & (
      { cleartext: string } | { code: string; block: number; before: string }
    ),
    { blockSize: number; fileId: string; fileKey: string; nonces: string[]; written: string }
  >;
  lengths: Cases<{
    blockSize: number;
    objectLength: number;
    cases: { lower: number; v3: number | string; v2: number | string }[];
  }>;
  maxFileSize: { blockSize: number; maxFileSize: number; lowerSize: number }[];
  rdev: { major: number; minor: number; rdev: number }[];
  config: { canonical: string; document: VolumeConfig };
  versionFeatures: Cases<{ note: string; version: number; features: string[]; result: string }>;
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

describe("format version 3", () => {
  const v3 = v.v3;
  /** Epochs 1 and 2, current 2: the objects' headers are under epoch 2, the others say theirs. */
  const keyring3 = () =>
    new Keyring(
      input.volumeId,
      2,
      new Map([
        [1, input.mountKey],
        [2, input.mountKey2],
      ]),
      input.volumeSecret,
    );
  /** The code of the FormatError `run` throws, or "ok" with its value. */
  const outcome = <T>(run: () => T): { code: string } | { ok: T } => {
    try {
      return { ok: run() };
    } catch (err) {
      return { code: (err as { code?: string }).code ?? String(err) };
    }
  };

  describe("objects (§13)", () => {
    const cases = v3.objects.cases.flatMap((o) =>
      o.byBlockSize.map((b) => ({ ...o, ...b, name: `${o.note}, B=${b.blockSize}` })),
    );

    it.each(cases)("$name: sealObject with pinned values gives the header and record", (c) => {
      const { bytes, header } = sealObject(keyring3(), c.blockSize, c.value, {
        fileId: hex(c.fileId),
        fileKey: hex(c.fileKey),
        headerNonce: hex(c.headerNonce),
        recordNonce: hex(c.recordNonce),
      });
      expect(bytes.subarray(0, HEADER_SIZE).toString("hex")).toBe(c.header);
      expect(bytes.subarray(HEADER_SIZE).toString("base64")).toBe(c.record);
      expect(header.kind).toBe(c.value.kind);
      expect(header.slotEpochs).toEqual([c.headerEpoch, undefined]);
      // Bytes 4..8: version 1, no flags, the block shift, the kind.
      expect([...hex(c.header).subarray(4, 8)]).toEqual([
        1,
        0,
        Math.log2(c.blockSize),
        c.value.kind,
      ]);
      expect(b64(c.record)).toHaveLength(OBJECT_RECORD_SIZE);
      expect(new ContentGeometry(c.blockSize).objectLowerSize).toBe(c.lowerLength);
      expect(c.lowerLength).toBe(HEADER_SIZE + c.blockSize + 28);
    });

    it.each(cases)("$name: the lower object reads back, whatever its padding holds", (c) => {
      const lower = Buffer.alloc(c.lowerLength, 0);
      hex(c.header).copy(lower, 0);
      b64(c.record).copy(lower, HEADER_SIZE);
      expect(openObject(keyring3(), lower, c.blockSize)).toEqual(c.value);
      lower.fill(0xff, HEADER_SIZE + OBJECT_RECORD_SIZE);
      expect(openObject(keyring3(), lower, c.blockSize)).toEqual(c.value);
      const header = openHeader(keyring3(), lower, c.blockSize);
      expect(header.kind).toBe(c.value.kind);
      expect(header.holes).toBe(false);
    });

    it.each(v3.objectReads.cases)("reads $note", ({ lower, value }) => {
      expect(openObject(keyring3(), b64(lower), 4096)).toEqual(value);
    });

    it.each(v3.objectRefusals.cases)("refuses $note: $code", ({ lower, code }) => {
      expect(outcome(() => openObject(keyring3(), b64(lower), 4096))).toEqual({ code });
    });

    it.each(v3.symlinkTargetRefusals.cases)(
      "a writer refuses a symlink target: $note ($code)",
      ({ target, code }) => {
        expect(
          outcome(() => sealObject(keyring3(), 4096, { kind: FileKind.Symlink, target })),
        ).toEqual({ code });
      },
    );

    it.each(v3.rdev)("st_rdev of $major:$minor is $rdev", ({ major, minor, rdev }) => {
      expect(encodeRdev(major, minor)).toBe(rdev);
      expect(decodeRdev(rdev)).toEqual({ major, minor });
    });
  });

  describe("headers: flags and kind (§6)", () => {
    it.each(v3.holesFlag.cases)(
      "planHolesFlag with pinned nonces: $note",
      ({ before, nonces, after }) => {
        const k = keyring3();
        const old = openHeader(k, hex(before), 4096);
        expect(old.holes).toBe(false);
        const patch = planHolesFlag(k, old, hex(before), nonces.map(hex));
        expect(patch.offset).toBe(0);
        expect(patch.bytes.toString("hex")).toBe(after);
        expect(hex(after)[5]).toBe(HEADER_FLAG_HOLES);
        const updated = openHeader(k, hex(after), 4096);
        expect(updated).toEqual({ ...old, holes: true });
        expect(updated.fileId.toString("hex")).toBe(v3.holesFlag.fileId);
        expect(updated.fileKey.toString("hex")).toBe(v3.holesFlag.fileKey);
      },
    );

    it.each(v3.holesFlag.cases)("a rekey keeps the HOLES flag: $note", ({ after }) => {
      const k = new Keyring(
        input.volumeId,
        3,
        new Map([
          [1, input.mountKey],
          [2, input.mountKey2],
          [3, Buffer.alloc(32, 3)],
        ]),
        input.volumeSecret,
      );
      const bytes = hex(after);
      for (const p of planRewrap(k, openHeader(k, bytes, 4096), bytes))
        p.bytes.copy(bytes, p.offset);
      const rewrapped = openHeader(k, bytes, 4096);
      expect(rewrapped.slotEpochs.filter((e) => e !== undefined)).toEqual([3]);
      expect(rewrapped.holes).toBe(true);
      expect(bytes.subarray(0, 24)).toEqual(hex(after).subarray(0, 24));
    });

    it.each(v3.headers.cases)(
      "$note, in a version-$volumeVersion volume",
      ({ volumeVersion, header, ...expected }) => {
        const got = outcome(() => openHeader(keyring3(), hex(header), 4096, volumeVersion));
        if ("code" in expected) expect(got).toEqual({ code: expected.code });
        else
          expect("ok" in got && { holes: got.ok.holes, kind: got.ok.kind }).toEqual({
            holes: expected.holes,
            kind: expected.kind,
          });
      },
    );
  });

  describe("holes (§9)", () => {
    const h = v3.holes;
    const geometry3 = new ContentGeometry(h.blockSize);
    const S = h.blockSize + 28;

    it("blocks 0, 2 and 3 are sealed with the pinned nonces; block 1 is a hole", () => {
      const first = b64(h.cases[0]!.lower).subarray(HEADER_SIZE);
      const written = b64(h.written);
      const cipher = { fileKey: hex(h.fileKey), fileId: hex(h.fileId), geometry: geometry3 };
      const nonces = h.nonces.map(hex);
      expect(first.subarray(0, S)).toEqual(
        sealBlocks(cipher, 0, written.subarray(0, h.blockSize), false, nonces.slice(0, 1)),
      );
      expect(first.subarray(S, 2 * S)).toEqual(Buffer.alloc(S));
      expect(first.subarray(2 * S)).toEqual(
        sealBlocks(cipher, 2, written.subarray(2 * h.blockSize), true, nonces.slice(2)),
      );
    });

    it.each(h.cases)("$note", (c) => {
      const lower = b64(c.lower);
      const header = openHeader(keyring3(), lower.subarray(0, HEADER_SIZE), h.blockSize);
      expect(header.holes).toBe(c.holes);
      const size = geometry3.cleartextSize(lower.length);
      const { cleartext, failure } = openBlocks(
        {
          fileKey: header.fileKey,
          fileId: header.fileId,
          geometry: geometry3,
          holes: header.holes,
        },
        0,
        lower.subarray(HEADER_SIZE),
        geometry3.finalIndex(size),
      );
      if ("cleartext" in c) {
        expect(failure).toBeUndefined();
        expect(cleartext.toString("base64")).toBe(c.cleartext);
      } else {
        expect({ code: failure?.error.code, block: failure?.index }).toEqual({
          code: c.code,
          block: c.block,
        });
        expect(cleartext.toString("base64")).toBe(c.before);
      }
    });
  });

  describe("lengths and MAX_FILE_SIZE (§8, §9)", () => {
    const classify = (lower: number, blockSize: number, version: number): number | string => {
      const g = new ContentGeometry(blockSize);
      if (version >= 3 && lower === g.objectLowerSize) return "object";
      const got = outcome(() => g.cleartextSize(lower));
      return "ok" in got ? got.ok : got.code;
    };
    const cases = v3.lengths.cases.flatMap((l) =>
      l.cases.map((c) => ({ ...c, blockSize: l.blockSize, objectLength: l.objectLength })),
    );

    it.each(cases)("B=$blockSize: lower length $lower is $v3 (v3), $v2 (v2)", (c) => {
      expect(new ContentGeometry(c.blockSize).objectLowerSize).toBe(c.objectLength);
      expect(classify(c.lower, c.blockSize, 3)).toBe(c.v3);
      expect(classify(c.lower, c.blockSize, 2)).toBe(c.v2);
    });

    it.each(v3.maxFileSize)(
      "B=$blockSize: MAX_FILE_SIZE is $maxFileSize",
      ({ blockSize, maxFileSize, lowerSize }) => {
        const g = new ContentGeometry(blockSize);
        expect(g.maxSize).toBe(maxFileSize);
        expect(g.lowerSize(maxFileSize)).toBe(lowerSize);
        expect(lowerSize).toBeLessThanOrEqual(Number.MAX_SAFE_INTEGER);
        // One byte more no longer fits below 2^53 (computed exactly).
        const next = BigInt(maxFileSize) + 1n;
        const B = BigInt(blockSize);
        expect(152n + next + 28n * (next / B + 1n)).toBeGreaterThan(
          BigInt(Number.MAX_SAFE_INTEGER),
        );
      },
    );
  });

  describe("config (§5.1, §5.2)", () => {
    it("signs and unlocks the version-3 vector config", () => {
      const { mac, ...unsigned } = v3.config.document;
      expect(canonicalJson(unsigned)).toBe(v3.config.canonical);
      expect(signConfig(keyring().current, unsigned as UnsignedConfig).mac).toBe(mac);
      expect(featuresFor(3)).toEqual(v3.config.document.features);
      const config = parseConfig(JSON.stringify(v3.config.document));
      expect(config.version).toBe(3);
      expect(unlockConfig(config, openMountKeys(config, input.slotKey)).volumeSecret).toEqual(
        input.volumeSecret,
      );
    });

    it.each(v3.versionFeatures.cases)("$note: $result", ({ version, features, result }) => {
      const got = outcome(() =>
        parseConfig(JSON.stringify({ ...v3.config.document, version, features })),
      );
      expect("ok" in got ? "ok" : got.code).toBe(result);
    });
  });
});
