import type { Logger } from "pino";
import { FsError, errnoNumber, toErrno } from "../errors.js";
import type {
  Attr,
  Caller,
  DirEntry,
  Directory,
  Entry,
  FileSystem,
  Place,
  Target,
  TimeSpec,
} from "../types.js";
import {
  ATTR_FIELDS,
  OP,
  joinTime,
  splitTime,
  type NativeBinding,
  type Request,
} from "./binding.js";
import { NodeTable, type Node } from "./node-table.js";

/**
 * Translates libfuse 3 low-level requests (node IDs) into calls of our
 * path-based FileSystem, and the results back into replies. The only module
 * that knows the request protocol; the operations know nothing of it.
 */

const SET_MODE = 1 << 0;
const SET_UID = 1 << 1;
const SET_GID = 1 << 2;
const SET_SIZE = 1 << 3;
const SET_ATIME = 1 << 4;
const SET_MTIME = 1 << 5;
const SET_ATIME_NOW = 1 << 7;
const SET_MTIME_NOW = 1 << 8;
/** d_ino for entries listed without attributes (as libfuse's high-level API reports). */
const UNKNOWN_INO = 0xffffffff;
const S_IFDIR = 0o040000;
/** Smallest size of a directory entry in a READDIR / READDIRPLUS reply (name of 1 byte). */
const MIN_DIRENT = 32;
const MIN_DIRENTPLUS = 160;

function putAttr(out: Float64Array, at: number, attr: Attr): void {
  out[at] = attr.ino;
  out[at + 1] = attr.mode;
  out[at + 2] = attr.nlink;
  out[at + 3] = attr.uid;
  out[at + 4] = attr.gid;
  out[at + 5] = attr.rdev;
  out[at + 6] = attr.size;
  out[at + 7] = attr.blksize;
  out[at + 8] = attr.blocks;
  [out[at + 9], out[at + 10]] = splitTime(attr.atimeNs);
  [out[at + 11], out[at + 12]] = splitTime(attr.mtimeNs);
  [out[at + 13], out[at + 14]] = splitTime(attr.ctimeNs);
}

function attrRecord(attr: Attr): Float64Array {
  const out = new Float64Array(ATTR_FIELDS);
  putAttr(out, 0, attr);
  return out;
}

function timeSpec(
  valid: number,
  setBit: number,
  nowBit: number,
  sec: number,
  nsec: number,
): TimeSpec {
  if (valid & nowBit) return "now";
  if (valid & setBit) return joinTime(sec, nsec);
  return "omit";
}

interface OpenDir {
  readonly node: Node;
  readonly entries: DirEntry[];
}

export interface SessionHooks {
  /** The kernel finished the handshake: the mount is live. */
  onInit(): void;
  /** The connection ended without unmount() being called (fusermount -u, umount, abort). */
  onExit(): void;
}

export class LowLevelAdapter {
  private readonly nodes: NodeTable;
  private readonly dirs = new Map<number, OpenDir>();
  private nextDir = 1;

  constructor(
    private readonly fs: FileSystem,
    private readonly native: NativeBinding,
    private readonly log: Logger,
    private readonly hooks: SessionHooks,
  ) {
    // A node the kernel forgot takes its directory handle with it.
    this.nodes = new NodeTable(fs.root, (node) => {
      if (node.dir) fs.releaseDir(node.dir);
    });
  }

  /** The function the native side calls for every request; it never throws. */
  readonly dispatch = (op: number, req: Request | null, ...args: unknown[]): void => {
    try {
      this.route(op, req, args);
    } catch (err) {
      if (req !== null && op !== OP.FORGET) this.fail(op, req, err);
    }
  };

  private fail(op: number, req: Request, err: unknown): void {
    const errno = toErrno(err);
    if (errno === "EIO") this.log.debug({ op, err: (err as Error)?.message }, "operation failed");
    this.native.replyErr(req, errnoNumber(errno));
  }

  /** Runs an async operation; any failure becomes an error reply. */
  private run(op: number, req: Request, work: () => Promise<void>): void {
    work().catch((err: unknown) => this.fail(op, req, err));
  }

  private ok(req: Request): void {
    this.native.replyErr(req, 0);
  }

  /** Runs an operation that answers nothing but success. */
  private thenOk(op: number, req: Request, work: () => Promise<void>): void {
    this.run(op, req, async () => {
      await work();
      this.ok(req);
    });
  }

  /** The directory handle of a node; ENOTDIR for anything else. */
  private dirOf(node: Node): Directory {
    if (!node.dir) throw new FsError("ENOTDIR");
    return node.dir;
  }

  private place(parent: Node, name: string): Place {
    return { parent: this.dirOf(parent), name };
  }

  /** Where a node's entry is: its first name (a hard link has several). ENOENT once all are gone. */
  private placeOf(node: Node): Place {
    const first = node.names[0];
    if (!first) throw new FsError("ENOENT");
    return this.place(first.parent, first.name);
  }

  /** A directory acts through its own handle; anything else through its name. */
  private target(node: Node): Target {
    return node.dir ? { dir: node.dir } : this.placeOf(node);
  }

  /** Records a found entry under `name` in `parent` (counting a lookup when asked) and keeps one handle per node. */
  private remember(parent: Node, name: string, entry: Entry, lookup: boolean): Node {
    const node = lookup
      ? this.nodes.lookup(parent, name, entry.attr.inode)
      : this.nodes.child(parent, name, entry.attr.inode);
    if (entry.dir) {
      if (node.dir) this.fs.releaseDir(entry.dir);
      else node.dir = entry.dir;
    }
    return node;
  }

  private replyEntry(req: Request, parent: Node, name: string, entry: Entry): void {
    const node = this.remember(parent, name, entry, true);
    this.native.replyEntry(req, node.id, attrRecord(entry.attr));
  }

  /** Makes `name` in directory `parentId` with `make`, then answers with its entry. */
  private newEntry(
    op: number,
    req: Request,
    parentId: number,
    name: string,
    make: (place: Place) => Promise<Entry>,
  ): void {
    const parent = this.nodes.get(parentId);
    const place = this.place(parent, name);
    this.run(op, req, async () => this.replyEntry(req, parent, name, await make(place)));
  }

  private async attrOf(node: Node, fh: number): Promise<Attr> {
    if (fh >= 0) return this.fs.fgetattr(fh);
    // Unlinked but still open: the attributes come from the open file.
    const [open] = node.handles ?? [];
    if (!node.dir && node.names.length === 0 && open !== undefined) return this.fs.fgetattr(open);
    return this.fs.getattr(this.target(node));
  }

  private caller(uid: number, gid: number): Caller {
    return { uid, gid };
  }

  private route(op: number, req: Request | null, a: unknown[]): void {
    const fs = this.fs;
    const native = this.native;
    const nodes = this.nodes;
    if (req === null) {
      if (op === OP.FORGET) nodes.forget(a[0] as number, a[1] as number);
      else if (op === OP.INIT) this.hooks.onInit();
      else if (op === OP.EXIT) this.hooks.onExit();
      return;
    }
    const n = (i: number) => a[i] as number;
    const s = (i: number) => a[i] as string;
    const target = (i: number) => this.target(nodes.get(n(i)));
    switch (op) {
      case OP.LOOKUP: {
        const parent = nodes.get(n(0));
        const place = this.place(parent, s(1));
        return this.run(op, req, async () =>
          this.replyEntry(req, parent, s(1), await fs.lookup(place)),
        );
      }
      case OP.GETATTR: {
        const node = nodes.get(n(0));
        return this.run(op, req, async () =>
          native.replyAttr(req, attrRecord(await this.attrOf(node, n(1)))),
        );
      }
      case OP.SETATTR:
        return this.run(op, req, () => this.setattr(req, nodes.get(n(0)), a as number[]));
      case OP.READLINK: {
        const place = this.placeOf(nodes.get(n(0)));
        return this.run(op, req, async () => native.replyReadlink(req, await fs.readlink(place)));
      }
      case OP.MKNOD:
        return this.newEntry(op, req, n(0), s(1), (place) =>
          fs.mknod(place, n(2), n(3), this.caller(n(4), n(5))),
        );
      case OP.MKDIR:
        return this.newEntry(op, req, n(0), s(1), (place) =>
          fs.mkdir(place, n(2), this.caller(n(3), n(4))),
        );
      case OP.SYMLINK:
        return this.newEntry(op, req, n(1), s(2), (place) =>
          fs.symlink(s(0), place, this.caller(n(3), n(4))),
        );
      case OP.LINK: {
        const existing = this.placeOf(nodes.get(n(0)));
        return this.newEntry(op, req, n(1), s(2), (place) => fs.link(existing, place));
      }
      case OP.UNLINK:
      case OP.RMDIR: {
        const parent = nodes.get(n(0));
        const place = this.place(parent, s(1));
        return this.run(op, req, async () => {
          await (op === OP.UNLINK ? fs.unlink(place) : fs.rmdir(place));
          nodes.detach(parent, s(1));
          this.ok(req);
        });
      }
      case OP.RENAME: {
        const parent = nodes.get(n(0));
        const newParent = nodes.get(n(2));
        const [name, newName] = [s(1), s(3)];
        const from = this.place(parent, name);
        const to = this.place(newParent, newName);
        return this.run(op, req, async () => {
          const source = nodes.named(parent, name);
          const replaced = nodes.named(newParent, newName);
          await fs.rename(from, to, n(4));
          // Two names of one inode: rename(2) leaves both in place.
          if (!(source && source === replaced)) nodes.move(parent, name, newParent, newName);
          this.ok(req);
        });
      }
      case OP.OPEN: {
        const node = nodes.get(n(0));
        const place = this.placeOf(node);
        return this.run(op, req, async () => {
          const fh = await fs.open(place, n(1));
          nodes.opened(node, fh);
          native.replyOpen(req, fh, 0);
        });
      }
      case OP.CREATE: {
        const parent = nodes.get(n(0));
        const name = s(1);
        const place = this.place(parent, name);
        const who = this.caller(n(4), n(5));
        return this.run(op, req, async () => {
          const fh = await fs.create(place, n(2), n(3), who);
          let attr: Attr;
          try {
            attr = await fs.fgetattr(fh);
          } catch (err) {
            await fs.release(fh);
            throw err;
          }
          const node = this.remember(parent, name, { attr }, true);
          nodes.opened(node, fh);
          native.replyCreate(req, node.id, attrRecord(attr), fh, 0);
        });
      }
      case OP.READ:
        return this.run(op, req, async () => {
          const data = await fs.read(n(3), n(1), n(2));
          native.replyBuf(req, data, data.length);
        });
      case OP.WRITE: {
        const data = a[1] as Buffer;
        return this.run(op, req, async () =>
          native.replyWrite(req, await fs.write(n(3), data, n(2))),
        );
      }
      case OP.RELEASE: {
        const node = nodes.get(n(0));
        const fh = n(1);
        // The node forgets the handle first: a GETATTR of an unlinked node must not pick one being released.
        nodes.closed(node, fh);
        return this.thenOk(op, req, () => fs.release(fh));
      }
      case OP.FSYNC:
        return this.thenOk(op, req, () => fs.fsync(n(2), n(1) !== 0));
      case OP.FSYNCDIR: {
        const dir = this.dirOf(nodes.get(n(0)));
        return this.thenOk(op, req, () => fs.fsyncdir(dir, n(1) !== 0));
      }
      case OP.OPENDIR: {
        const node = nodes.get(n(0));
        const dir = this.dirOf(node);
        return this.run(op, req, async () => {
          const entries = await fs.list(dir);
          const fh = this.nextDir++;
          this.dirs.set(fh, { node, entries });
          native.replyOpen(req, fh, 0);
        });
      }
      case OP.READDIR:
      case OP.READDIRPLUS:
        return this.run(op, req, () => this.readdir(req, n(1), n(2), n(3), op === OP.READDIRPLUS));
      case OP.RELEASEDIR:
        this.dirs.delete(n(1));
        return this.ok(req);
      case OP.STATFS:
        return this.run(op, req, async () => {
          const st = await fs.statfs();
          native.replyStatfs(
            req,
            Float64Array.of(
              st.bsize,
              st.frsize,
              st.blocks,
              st.bfree,
              st.bavail,
              st.files,
              st.ffree,
              st.favail,
              st.namemax,
            ),
          );
        });
      case OP.SETXATTR: {
        const at = target(0);
        return this.thenOk(op, req, () => fs.setxattr(at, s(1), a[2] as Buffer, n(3)));
      }
      case OP.GETXATTR: {
        const at = target(0);
        return this.run(op, req, async () => {
          const value = await fs.getxattr(at, s(1));
          if (value === undefined) throw new FsError("ENODATA");
          this.replySized(req, value, n(2));
        });
      }
      case OP.LISTXATTR: {
        const at = target(0);
        return this.run(op, req, async () => {
          const names = await fs.listxattr(at);
          this.replySized(req, Buffer.from(names.map((name) => name + "\0").join("")), n(1));
        });
      }
      case OP.REMOVEXATTR: {
        const at = target(0);
        return this.thenOk(op, req, () => fs.removexattr(at, s(1)));
      }
      case OP.ACCESS: {
        const at = target(0);
        return this.thenOk(op, req, () => fs.access(at, n(1)));
      }
      case OP.FALLOCATE:
        return this.thenOk(op, req, () => fs.fallocate(n(4), n(1), n(2), n(3)));
      case OP.LSEEK:
        return this.run(op, req, async () =>
          native.replyLseek(req, await fs.lseek(n(3), n(1), n(2))),
        );
      default:
        native.replyErr(req, errnoNumber("ENOSYS"));
    }
  }

  /** xattr replies: size 0 asks for the length only; a short buffer is ERANGE. */
  private replySized(req: Request, value: Buffer, size: number): void {
    if (size === 0) this.native.replyXattrSize(req, value.length);
    else if (value.length > size) throw new FsError("ERANGE");
    else this.native.replyBuf(req, value, value.length);
  }

  private async setattr(req: Request, node: Node, a: number[]): Promise<void> {
    const [, valid = 0, fh = -1, mode = 0, uid = 0, gid = 0, size = 0] = a;
    const [atimeSec = 0, atimeNsec = 0, mtimeSec = 0, mtimeNsec = 0] = a.slice(7);
    // ftruncate of an unlinked open file needs no name; everything else does.
    const at = () => this.target(node);
    if (valid & SET_MODE) await this.fs.chmod(at(), mode);
    if (valid & (SET_UID | SET_GID))
      await this.fs.chown(at(), valid & SET_UID ? uid : -1, valid & SET_GID ? gid : -1);
    if (valid & SET_SIZE) {
      if (fh >= 0) await this.fs.ftruncate(fh, size);
      else await this.fs.truncate(this.placeOf(node), size);
    }
    const atime = timeSpec(valid, SET_ATIME, SET_ATIME_NOW, atimeSec, atimeNsec);
    const mtime = timeSpec(valid, SET_MTIME, SET_MTIME_NOW, mtimeSec, mtimeNsec);
    if (atime !== "omit" || mtime !== "omit") await this.fs.utimens(at(), atime, mtime);
    this.native.replyAttr(req, attrRecord(await this.attrOf(node, fh)));
  }

  private async readdir(
    req: Request,
    size: number,
    offset: number,
    fh: number,
    plus: boolean,
  ): Promise<void> {
    const dir = this.dirs.get(fh);
    if (!dir) throw new FsError("EBADF");
    const dots = 2;
    const total = dir.entries.length + dots;
    const end = Math.min(total, offset + Math.ceil(size / (plus ? MIN_DIRENTPLUS : MIN_DIRENT)));
    const count = Math.max(0, end - offset);
    const names: string[] = new Array<string>(count);
    const attrs = new Float64Array(count * ATTR_FIELDS);
    const nodeids = plus ? new Float64Array(count) : null;
    const pending: (Node | undefined)[] = new Array<Node | undefined>(count);
    const work: Promise<void>[] = [];
    for (let i = 0; i < count; i++) {
      const index = offset + i;
      const at = i * ATTR_FIELDS;
      if (index < dots) {
        names[i] = index === 0 ? "." : "..";
        attrs[at] = UNKNOWN_INO;
        attrs[at + 1] = S_IFDIR;
        continue;
      }
      const entry = dir.entries[index - dots]!;
      names[i] = entry.name;
      attrs[at] = UNKNOWN_INO;
      if (!plus) continue;
      work.push(
        entry.lookup().then(
          (found) => {
            putAttr(attrs, at, found.attr);
            const node = this.remember(dir.node, entry.name, found, false);
            pending[i] = node;
            nodeids![i] = node.id;
          },
          () => undefined, // gone since the listing: sent without attributes
        ),
      );
    }
    await Promise.all(work);
    const sent = this.native.replyDir(req, size, offset, names, attrs, nodeids);
    for (let i = 0; i < count; i++) {
      const node = pending[i];
      if (!node) continue;
      if (i < sent) node.lookups++;
      else this.nodes.dropIfUnused(node);
    }
  }
}
