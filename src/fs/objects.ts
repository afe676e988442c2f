import { constants } from "node:fs";
import type { Logger } from "pino";
import type { Keyring } from "../crypto/keys.js";
import type { ContentGeometry } from "../format/content.js";
import { isFormatError } from "../format/errors.js";
import { OBJECT_STORED_SIZE, openObject, sealObject, type ObjectValue } from "../format/object.js";
import { FsError } from "./errors.js";
import {
  inodeKey,
  isFile,
  writeFully,
  type Fd,
  type LowerOps,
  type LowerStat,
} from "./lower/ops.js";

/** A symlink's lower file is the owner's alone; it shows as 0777 like every symlink (§13). */
export const SYMLINK_LOWER_MODE = 0o600;
/** Objects whose decoded record is kept, most recently used last. */
const CACHE_ENTRIES = 4096;
const CREATE_FLAGS = constants.O_CREAT | constants.O_EXCL | constants.O_RDWR;

/** An object as read: its record and the lower file's own stat, taken through its descriptor. */
export interface ReadObject {
  readonly value: ObjectValue;
  readonly stat: LowerStat;
}

/**
 * Symlinks, FIFOs, sockets and devices of a version-3 volume (docs/format.md
 * §13): lower regular files of exactly `geometry.objectLowerSize` bytes.
 * Reading one costs an open and a read, so decoded records are cached by
 * the lower inode together with its size and change time: a lower file
 * replaced or rewritten behind our back has another key and is read again.
 */
export class Objects {
  private readonly cache = new Map<string, ObjectValue>();

  constructor(
    private readonly keyring: Keyring,
    private readonly geometry: ContentGeometry,
    private readonly log: Logger,
    private readonly io: LowerOps,
    /** False for volumes before version 3, which have no objects. */
    private readonly enabled: boolean,
  ) {}

  /** Whether a lower entry has the one length objects have (any other length is a regular file). */
  isObject(st: LowerStat): boolean {
    return this.enabled && isFile(st) && st.size === this.geometry.objectLowerSize;
  }

  /** Reads and verifies the object `entry` of `dir`; EIO (logged) if it does not verify. */
  async read(dir: Fd, entry: string, displayPath: string): Promise<ReadObject> {
    const { fd, stat } = await this.openForReading(dir, entry);
    try {
      if (!this.isObject(stat)) throw new FsError("ESTALE", "entry changed while being read");
      const key = cacheKey(stat);
      const cached = this.cache.get(key);
      if (cached) {
        this.cache.delete(key);
        this.cache.set(key, cached);
        return { value: cached, stat };
      }
      const bytes = Buffer.alloc(OBJECT_STORED_SIZE);
      const got = await this.io.pread(fd, bytes, 0, bytes.length, 0);
      const value = this.decode(bytes.subarray(0, got), displayPath);
      this.remember(key, value);
      return { value, stat };
    } finally {
      await this.io.close(fd).catch(() => undefined);
    }
  }

  private decode(bytes: Buffer, displayPath: string): ObjectValue {
    try {
      return openObject(this.keyring, bytes, this.geometry.blockSize);
    } catch (err) {
      if (!isFormatError(err)) throw err;
      this.log.error({ path: displayPath, problem: err.message }, "corrupt object: refused");
      throw new FsError("EIO", err.message);
    }
  }

  private remember(key: string, value: ObjectValue): void {
    this.cache.set(key, value);
    if (this.cache.size > CACHE_ENTRIES) {
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
  }

  /** Reads need no write access, and are none of the user's access-time business. */
  private async openForReading(dir: Fd, entry: string): Promise<{ fd: Fd; stat: LowerStat }> {
    try {
      return await this.io.openFile(dir, entry, constants.O_RDONLY | constants.O_NOATIME);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EPERM") throw err;
      return this.io.openFile(dir, entry, constants.O_RDONLY);
    }
  }

  /**
   * Creates `entry` in `dir` as a new object (exclusive: EEXIST if anything
   * is there). Header and record in one write, the rest of the object's
   * length as a hole; nothing is left behind if that fails.
   */
  async create(
    dir: Fd,
    entry: string,
    value: ObjectValue,
    mode: number,
    options: { sync?: boolean } = {},
  ): Promise<void> {
    const { bytes, header } = sealObject(this.keyring, this.geometry.blockSize, value);
    header.fileKey.fill(0);
    const { fd } = await this.io.openFile(dir, entry, CREATE_FLAGS, mode);
    try {
      await writeFully(this.io, fd, bytes, 0);
      await this.io.ftruncate(fd, this.geometry.objectLowerSize);
      if (options.sync) await this.io.fsync(fd, false);
    } catch (err) {
      await this.io.unlink(dir, entry).catch(() => undefined);
      throw err;
    } finally {
      await this.io.close(fd).catch(() => undefined);
    }
  }
}

function cacheKey(st: LowerStat): string {
  return `${inodeKey(st)}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}
