import { hkdf } from "./hkdf.js";
import { KEY_SIZE } from "./aead.js";
import { SIV_KEY_SIZE, forgetSivKey } from "./siv.js";
import { wipe } from "./bytes.js";

/**
 * The key hierarchy (docs/format.md, "Keys"):
 *
 *   passphrase / key file / recovery key ──> KEK ──wraps──> slot key (stable)
 *   slot key ── HKDF ──> bundle key ──wraps──> mount keys by epoch
 *   mount key (per epoch) ── HKDF ──> header-wrap key, config key, config MAC key
 *   volume secret (fixed) ── HKDF ──> name key (SIV), symlink key, xattr keys, root dir ID,
 *                                     directory-ID MAC key (format version 2),
 *                                     fsck check-record MAC key (version 3, §3.4)
 *
 * The volume secret is wrapped by the mount key in the config, so rotating the
 * mount key (rekey) rewraps headers and the volume secret but renames nothing.
 */
export const LABELS = {
  headerWrap: "cryptmount v1 header-wrap",
  configWrap: "cryptmount v1 config-wrap",
  configMac: "cryptmount v1 config-mac",
  mountKeyBundle: "cryptmount v1 mount-key bundle",
  names: "cryptmount v1 names",
  symlinks: "cryptmount v1 symlinks",
  xattrNames: "cryptmount v1 xattr-names",
  xattrValues: "cryptmount v1 xattr-values",
  rootDirId: "cryptmount v1 root-dir-id",
  /** New in format version 2 (docs/format.md §4.2, §12.1); the labels above are unchanged. */
  dirIds: "cryptmount v2 dir-ids",
  /** fsck's check record (docs/format.md §3.4), an addition to version 3 that changes nothing else. */
  fsckRecord: "cryptmount v3 fsck-record",
} as const;

export const MOUNT_KEY_SIZE = 32;
export const VOLUME_SECRET_SIZE = 32;
export const DIR_ID_SIZE = 16;

/** Subkeys of one mount-key epoch. */
export interface EpochKeys {
  readonly epoch: number;
  readonly headerWrap: Buffer;
  readonly configWrap: Buffer;
  readonly configMac: Buffer;
}

export function deriveEpochKeys(
  mountKey: Uint8Array,
  volumeId: Uint8Array,
  epoch: number,
): EpochKeys {
  return {
    epoch,
    headerWrap: hkdf(mountKey, volumeId, LABELS.headerWrap, KEY_SIZE),
    configWrap: hkdf(mountKey, volumeId, LABELS.configWrap, KEY_SIZE),
    configMac: hkdf(mountKey, volumeId, LABELS.configMac, KEY_SIZE),
  };
}

/** Subkeys of the volume secret: everything that must survive a rekey unchanged. */
export interface VolumeKeys {
  readonly names: Buffer;
  readonly symlinks: Buffer;
  readonly xattrNames: Buffer;
  readonly xattrValues: Buffer;
  readonly rootDirId: Buffer;
  /** HMAC-SHA256 key of directory ID tags (format version 2, src/format/dir-ids.ts). */
  readonly dirIds: Buffer;
  /** HMAC-SHA256 key of fsck's check record (src/format/check-record.ts). */
  readonly fsckRecord: Buffer;
}

export function deriveVolumeKeys(volumeSecret: Uint8Array, volumeId: Uint8Array): VolumeKeys {
  return {
    names: hkdf(volumeSecret, volumeId, LABELS.names, SIV_KEY_SIZE),
    symlinks: hkdf(volumeSecret, volumeId, LABELS.symlinks, KEY_SIZE),
    xattrNames: hkdf(volumeSecret, volumeId, LABELS.xattrNames, SIV_KEY_SIZE),
    xattrValues: hkdf(volumeSecret, volumeId, LABELS.xattrValues, KEY_SIZE),
    rootDirId: hkdf(volumeSecret, volumeId, LABELS.rootDirId, DIR_ID_SIZE),
    dirIds: hkdf(volumeSecret, volumeId, LABELS.dirIds, KEY_SIZE),
    fsckRecord: hkdf(volumeSecret, volumeId, LABELS.fsckRecord, KEY_SIZE),
  };
}

/**
 * All keys of an unlocked volume. One owner (the mounted volume or the tool
 * that unlocked it) holds it and wipes it on close.
 */
export class Keyring {
  private readonly epochs = new Map<number, EpochKeys>();
  private readonly volumeKeys: VolumeKeys;
  private wiped = false;

  constructor(
    readonly volumeId: Buffer,
    readonly currentEpoch: number,
    mountKeys: ReadonlyMap<number, Uint8Array>,
    volumeSecret: Uint8Array,
  ) {
    for (const [epoch, key] of mountKeys) {
      this.epochs.set(epoch, deriveEpochKeys(key, volumeId, epoch));
    }
    if (!this.epochs.has(currentEpoch)) throw new Error("keyring lacks the current epoch");
    this.volumeKeys = deriveVolumeKeys(volumeSecret, volumeId);
  }

  /** Keys are refused once wiped: nothing can be sealed under zeroed keys by mistake. */
  private live(): void {
    if (this.wiped) throw new Error("the volume's keys were wiped (volume closed)");
  }

  get volume(): VolumeKeys {
    this.live();
    return this.volumeKeys;
  }

  epoch(epoch: number): EpochKeys | undefined {
    this.live();
    return this.epochs.get(epoch);
  }

  get current(): EpochKeys {
    this.live();
    return this.epochs.get(this.currentEpoch)!;
  }

  knownEpochs(): number[] {
    return [...this.epochs.keys()].sort((a, b) => a - b);
  }

  /** The key buffers it holds (what wipe() zeroes), e.g. to mlock them. */
  secretBuffers(): Buffer[] {
    const v = this.volumeKeys;
    return [
      ...[...this.epochs.values()].flatMap((k) => [k.headerWrap, k.configWrap, k.configMac]),
      v.names,
      v.symlinks,
      v.xattrNames,
      v.xattrValues,
      v.dirIds,
      v.fsckRecord,
    ];
  }

  wipe(): void {
    this.wiped = true;
    forgetSivKey(this.volumeKeys.names);
    forgetSivKey(this.volumeKeys.xattrNames);
    wipe(...this.secretBuffers());
  }
}
