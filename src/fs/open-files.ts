import type { Logger } from "pino";
import type { Keyring } from "../crypto/keys.js";
import type { ContentGeometry } from "../format/content.js";
import { FsError } from "./errors.js";
import { inodeKey, type Fd, type LowerOps, type LowerStat } from "./lower/ops.js";
import { RwLock } from "./mutex.js";
import { OpenFile, openLower, type OpenedLower } from "./open-file.js";
import { HEADER_SIZE } from "../format/header.js";

/**
 * The shared state of one lower inode while anything has it open. The
 * reference count is taken and dropped synchronously, and the file is
 * opened, upgraded and closed only under the slot's lock: a close can never
 * run between an open and its first use, and a closed slot is never handed
 * out again (it leaves the registry in the same step as it closes).
 */
class Slot {
  /** Reads overlap; writes, truncates, syncs, upgrades and close run alone. */
  readonly lock = new RwLock();
  references = 0;
  file: OpenFile | undefined;
  constructor(readonly inode: string) {}

  /** The open file; EBADF for a slot whose opening failed. */
  get open(): OpenFile {
    if (!this.file) throw new FsError("EBADF");
    return this.file;
  }
}

/** A lower directory as OpenFiles needs it: its descriptor, and its inode to name entries by. */
export interface DirRef {
  readonly fd: Fd;
  readonly inode: string;
}

export interface Handle {
  readonly slot: Slot;
  readonly writable: boolean;
  /** The lower stat taken at create, used once by the fgetattr that follows. */
  fresh?: LowerStat;
}

/**
 * Open files by lower inode, and the kernel's file handles on them. The one
 * owner of file descriptors and file keys below the filesystem.
 */
export class OpenFiles {
  private readonly slots = new Map<string, Slot>();
  private readonly handles = new Map<number, Handle>();
  private nextHandle = 1;
  /**
   * Creations in flight, by directory inode and entry: from before the
   * O_EXCL create until the header is written, the new lower file is empty,
   * and an open of the same name in that window must wait, not fail.
   */
  private readonly creating = new Map<string, Set<Promise<void>>>();

  constructor(
    private readonly keyring: Keyring,
    private readonly geometry: ContentGeometry,
    private readonly log: Logger,
    private readonly io: LowerOps,
  ) {}

  /** The cleartext size of an open inode, which is ahead of its lower size while writes are in flight. */
  sizeOf(inode: string): number | undefined {
    return this.slots.get(inode)?.file?.size;
  }

  handle(fh: number): Handle {
    const handle = this.handles.get(fh);
    if (!handle) throw new FsError("EBADF");
    return handle;
  }

  private take(inode: string): Slot {
    let slot = this.slots.get(inode);
    if (!slot) {
      slot = new Slot(inode);
      this.slots.set(inode, slot);
    }
    slot.references++;
    return slot;
  }

  /** Drops one reference; the last one closes the file (under its lock, so nothing is in flight). */
  private async drop(slot: Slot): Promise<void> {
    if (--slot.references > 0) return;
    await slot.lock.write(async () => {
      if (slot.references > 0 || this.slots.get(slot.inode) !== slot) return;
      this.slots.delete(slot.inode);
      await slot.file?.close();
    });
  }

  /** Opens the lower file `entry` in directory `dir` and takes a reference on its slot. */
  private async acquire(
    dir: DirRef,
    entry: string,
    writable: boolean,
    displayPath: string,
  ): Promise<Slot> {
    // The descriptor comes first and its own stat names the inode: nothing can swap the entry in between.
    let lower = await openLower(this.io, dir.fd, entry, writable);
    if (lower.stat.size < HEADER_SIZE) lower = await this.afterCreation(dir, entry, lower);
    const slot = this.take(inodeKey(lower.stat));
    try {
      await slot.lock.write(() => this.attach(slot, lower, displayPath));
    } catch (err) {
      await this.drop(slot);
      throw err;
    }
    return slot;
  }

  /**
   * Marks `entry` of `dir` as being created until the returned function is
   * called: call it before the lower create and after the header is written.
   */
  beginCreate(dir: DirRef, entry: string): () => void {
    const key = creationKey(dir, entry);
    let finish!: () => void;
    const done = new Promise<void>((resolve) => (finish = resolve));
    const pending = this.creating.get(key) ?? new Set();
    pending.add(done);
    this.creating.set(key, pending);
    return () => {
      pending.delete(done);
      if (pending.size === 0 && this.creating.get(key) === pending) this.creating.delete(key);
      finish();
    };
  }

  /**
   * A lower file too short for a header: one of our own creations still
   * writing it, or a remnant (a crash during create, a hostile lower). Waits
   * for creations of that entry and takes the descriptor's stat again; a
   * remnant stays short, and opening it fails as a header invalid.
   */
  private async afterCreation(
    dir: DirRef,
    entry: string,
    lower: OpenedLower,
  ): Promise<OpenedLower> {
    const pending = this.creating.get(creationKey(dir, entry));
    if (pending) await Promise.all([...pending]);
    try {
      const stat = await this.io.fstat(lower.fd);
      // The creation failed and took its entry away again.
      if (pending && stat.nlink === 0) throw new FsError("ENOENT");
      return { ...lower, stat };
    } catch (err) {
      await this.io.close(lower.fd).catch(() => undefined);
      throw err;
    }
  }

  /** Gives the slot its file, or a writable descriptor, or closes the spare descriptor. */
  private async attach(slot: Slot, lower: OpenedLower, displayPath: string): Promise<void> {
    if (!slot.file) {
      slot.file = await OpenFile.open(
        lower,
        this.keyring,
        this.geometry,
        displayPath,
        this.log,
        this.io,
      );
    } else if (lower.writable && !slot.file.writable) {
      await slot.file.upgrade(lower.fd);
    } else {
      await this.io.close(lower.fd);
    }
  }

  private allocate(handle: Handle): number {
    while (this.handles.has(this.nextHandle)) this.nextHandle = (this.nextHandle % 0x7fffffff) + 1;
    const fh = this.nextHandle;
    this.nextHandle = (this.nextHandle % 0x7fffffff) + 1;
    this.handles.set(fh, handle);
    return fh;
  }

  async open(
    dir: DirRef,
    entry: string,
    writable: boolean,
    truncate: boolean,
    displayPath: string,
  ): Promise<number> {
    const slot = await this.acquire(dir, entry, writable, displayPath);
    try {
      if (truncate) await slot.lock.write(() => slot.open.truncate(0));
    } catch (err) {
      await this.drop(slot);
      throw err;
    }
    return this.allocate({ slot, writable });
  }

  /**
   * Registers a freshly created lower file: writes its header and hands out
   * a handle. On failure the descriptor is closed; removing the lower entry
   * is the caller's business.
   */
  async created(fd: Fd, stat: LowerStat, displayPath: string): Promise<number> {
    let file: OpenFile;
    try {
      file = await OpenFile.initialize(
        fd,
        this.keyring,
        this.geometry,
        displayPath,
        this.log,
        this.io,
      );
    } catch (err) {
      await this.io.close(fd).catch(() => undefined);
      throw err;
    }
    const slot = this.take(inodeKey(stat));
    if (slot.file) {
      // Only a reused inode number of a file we still hold could collide; refuse rather than mix keys.
      await file.close();
      await this.drop(slot);
      throw new FsError("EIO", "inode already open");
    }
    slot.file = file;
    return this.allocate({ slot, writable: true, fresh: stat });
  }

  async release(fh: number): Promise<void> {
    const handle = this.handles.get(fh);
    if (!handle) return;
    this.handles.delete(fh);
    await this.drop(handle.slot);
  }

  /** Runs `work` on the open file of `entry` (opened for writing for as long as it runs). */
  async withWritable(
    dir: DirRef,
    entry: string,
    displayPath: string,
    work: (file: OpenFile) => Promise<void>,
  ): Promise<void> {
    const slot = await this.acquire(dir, entry, true, displayPath);
    try {
      await slot.lock.write(() => work(slot.open));
    } finally {
      await this.drop(slot);
    }
  }

  /** Closes everything (unmount: no request is in flight any more). */
  async closeAll(): Promise<void> {
    const slots = [...this.slots.values()];
    this.slots.clear();
    this.handles.clear();
    for (const slot of slots)
      await slot.lock.write(async () => slot.file?.close()).catch(() => undefined);
  }
}

function creationKey(dir: DirRef, entry: string): string {
  return dir.inode + "/" + entry;
}
