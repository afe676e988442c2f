import { loadAddon } from "../addons.js";

/**
 * The native crypto addon (native/crypto/crypto.c, built to
 * build/cryptmount_crypto.node by scripts/build-native.mjs): OpenSSL's EVP
 * from the node binary. Content blocks of large requests as one threadpool
 * job each (seal + pwrite, pread + open), and AES-SIV with the key expanded
 * once.
 */
declare const sivKeyBrand: unique symbol;
/** An AES-256-SIV key expanded by OpenSSL; freed by sivDispose or when collected. */
export interface NativeSivKey {
  readonly [sivKeyBrand]: true;
}

/** The results of the block jobs: >= 0 success, otherwise minus an errno. */
export type BlockJobResult = number;

/** What a seal of consecutive blocks needs, in both forms (docs/format.md §7). */
type SealArgs = [
  key: Uint8Array,
  fileId: Uint8Array,
  firstIndex: number,
  plain: Uint8Array,
  endsFile: boolean,
  /** One 12-byte nonce per block. */
  nonces: Uint8Array,
  blockSize: number,
];
/** What an open of consecutive blocks needs, in both forms; `out` receives the cleartext. */
type OpenArgs = [
  key: Uint8Array,
  fileId: Uint8Array,
  firstIndex: number,
  finalIndex: number,
  holes: boolean,
  out: Uint8Array,
  blockSize: number,
];

export interface CryptoAddon {
  readonly version: number;
  /**
   * Seals `plain` as blocks firstIndex.. (the last one final when endsFile;
   * otherwise plain is whole blocks) and pwrites them all at `position`. 0
   * once every byte is written.
   */
  sealWrite(fd: number, ...args: [...SealArgs, position: number]): Promise<BlockJobResult>;
  /** sealWrite's sealing alone, inline: the sealed blocks. */
  sealBlocks(...args: SealArgs): Buffer;
  /**
   * Reads `sealedLength` bytes at `position` and opens them into `out` as
   * blocks firstIndex..; the number of cleartext bytes, or -EBADMSG when a
   * block fails or the lower is short (out is then zeroed).
   */
  openRead(
    fd: number,
    ...args: [...OpenArgs, position: number, sealedLength: number]
  ): Promise<BlockJobResult>;
  /** openRead's opening alone, inline, of `sealed`. */
  openBlocks(...args: [...OpenArgs, sealed: Uint8Array]): BlockJobResult;
  sivKey(key: Uint8Array): NativeSivKey;
  sivDispose(key: NativeSivKey): void;
  /** Non-empty plaintexts only (OpenSSL 3.0's SIV skips empty ones). */
  sivSeal(key: NativeSivKey, aad: readonly Uint8Array[], plaintext: Uint8Array): Buffer;
  /** Longer than the tag only; undefined when the synthetic IV does not verify. */
  sivOpen(key: NativeSivKey, aad: readonly Uint8Array[], sealed: Uint8Array): Buffer | undefined;
}

export const CRYPTO_ADDON_VERSION = 2;

let loaded: CryptoAddon | undefined;

/** Loads the addon once; a clear error if it was not built. */
export function cryptoAddon(): CryptoAddon {
  loaded ??= loadAddon<CryptoAddon>(
    "crypto",
    "native crypto addon",
    (b) => b.version === CRYPTO_ADDON_VERSION,
  );
  return loaded;
}
