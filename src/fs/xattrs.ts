import type { Logger } from "pino";
import type { Keyring } from "../crypto/keys.js";
import { isFormatError } from "../format/errors.js";
import {
  XATTR_PREFIX,
  decryptXattrName,
  decryptXattrValue,
  encryptXattrName,
  encryptXattrValue,
} from "../format/xattr.js";
import { FsError } from "./errors.js";
import type { Fd, LowerOps } from "./lower/ops.js";

const XATTR_CREATE = 1;
const XATTR_REPLACE = 2;

/** Where an attribute lives: a lower entry in a directory ("" for the directory itself). */
export interface XattrPlace {
  readonly dir: Fd;
  readonly entry: string;
  readonly displayPath: string;
}

/**
 * Extended attributes, user.* only, encrypted (docs/format.md §14). The
 * lower calls refuse symlinks, FIFOs and devices themselves (EPERM, as
 * Linux does for user.* on them).
 */
export class Xattrs {
  constructor(
    private readonly keyring: Keyring,
    private readonly log: Logger,
    private readonly io: LowerOps,
  ) {}

  private lowerName(name: string): string {
    try {
      return encryptXattrName(this.keyring.volume, name);
    } catch (err) {
      if (isFormatError(err))
        throw new FsError(err.code === "NAME_TOO_LONG" ? "ERANGE" : "EOPNOTSUPP");
      throw err;
    }
  }

  async set(at: XattrPlace, name: string, value: Buffer, flags: number): Promise<void> {
    const lowerName = this.lowerName(name);
    const sealed = encryptXattrValue(this.keyring.volume, lowerName, value);
    // The lower call checks XATTR_CREATE / XATTR_REPLACE itself, atomically.
    await this.io.setxattr(
      at.dir,
      at.entry,
      lowerName,
      sealed,
      flags & (XATTR_CREATE | XATTR_REPLACE),
    );
  }

  async get(at: XattrPlace, name: string): Promise<Buffer | undefined> {
    // The kernel asks for security.capability on every write: answer without work.
    if (!name.startsWith(XATTR_PREFIX) || name.length === XATTR_PREFIX.length) return undefined;
    const lowerName = this.lowerName(name);
    let stored: Buffer | undefined;
    try {
      stored = await this.io.getxattr(at.dir, at.entry, lowerName);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EPERM" || code === "ENOTSUP" || code === "EOPNOTSUPP") return undefined;
      throw err;
    }
    if (stored === undefined) return undefined;
    try {
      return decryptXattrValue(this.keyring.volume, lowerName, stored);
    } catch (err) {
      if (isFormatError(err))
        this.log.error(
          { path: at.displayPath, attribute: name },
          "corrupt extended attribute: read refused",
        );
      throw err;
    }
  }

  async list(at: XattrPlace): Promise<string[]> {
    const names = await this.io.listxattr(at.dir, at.entry).catch(() => [] as string[]);
    return names.flatMap((n) => decryptXattrName(this.keyring.volume, n) ?? []);
  }

  async remove(at: XattrPlace, name: string): Promise<void> {
    try {
      await this.io.removexattr(at.dir, at.entry, this.lowerName(name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOATTR") throw new FsError("ENODATA");
      throw err;
    }
  }
}
