import type { Logger } from "pino";
import { FsError, errnoNumber, toErrno } from "../errors.js";
import type { Attr, Caller, DirEntry, FileSystem, TimeSpec } from "../types.js";
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
const RENAME_NOREPLACE = 1;
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

/** Which lower inode: names that share it (hard links) share a node. */
function inodeOf(attr: Attr): string {
  return `${attr.dev}:${attr.ino}`;
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
  private readonly nodes = new NodeTable();
  private readonly dirs = new Map<number, OpenDir>();
  private nextDir = 1;

  constructor(
    private readonly fs: FileSystem,
    private readonly native: NativeBinding,
    private readonly log: Logger,
    private readonly hooks: SessionHooks,
  ) {}

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

  private async entry(req: Request, parent: Node, name: string, path: string): Promise<void> {
    const attr = await this.fs.getattr(path);
    const node = this.nodes.lookup(parent, name, inodeOf(attr));
    this.native.replyEntry(req, node.id, attrRecord(attr));
  }

  /** Makes `name` in directory `parentId` with `make`, then answers with its entry. */
  private newEntry(
    op: number,
    req: Request,
    parentId: number,
    name: string,
    make: (path: string) => Promise<void>,
  ): void {
    const parent = this.nodes.get(parentId);
    const path = this.nodes.childPath(parent, name);
    this.run(op, req, async () => {
      await make(path);
      await this.entry(req, parent, name, path);
    });
  }

  private async attrOf(node: Node, fh: number): Promise<Attr> {
    if (fh >= 0) return this.fs.fgetattr(this.pathOrEmpty(node), fh);
    let path: string;
    try {
      path = this.nodes.path(node);
    } catch (err) {
      // Unlinked but still open: the attributes come from the open file.
      const [open] = node.handles;
      if (open === undefined) throw err;
      return this.fs.fgetattr("", open);
    }
    return this.fs.getattr(path);
  }

  /** Handle-based operations only log the path; an unlinked file has none. */
  private pathOrEmpty(node: Node): string {
    try {
      return this.nodes.path(node);
    } catch {
      return "";
    }
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
    switch (op) {
      case OP.LOOKUP: {
        const parent = nodes.get(n(0));
        const path = nodes.childPath(parent, s(1));
        return this.run(op, req, () => this.entry(req, parent, s(1), path));
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
        const path = nodes.path(nodes.get(n(0)));
        return this.run(op, req, async () => native.replyReadlink(req, await fs.readlink(path)));
      }
      case OP.MKNOD:
        return this.newEntry(op, req, n(0), s(1), (path) =>
          fs.mknod(path, n(2), n(3), this.caller(n(4), n(5))),
        );
      case OP.MKDIR:
        return this.newEntry(op, req, n(0), s(1), (path) =>
          fs.mkdir(path, n(2), this.caller(n(3), n(4))),
        );
      case OP.SYMLINK:
        return this.newEntry(op, req, n(1), s(2), (path) =>
          fs.symlink(s(0), path, this.caller(n(3), n(4))),
        );
      case OP.LINK: {
        const existing = nodes.path(nodes.get(n(0)));
        return this.newEntry(op, req, n(1), s(2), (path) => fs.link(existing, path));
      }
      case OP.UNLINK:
      case OP.RMDIR: {
        const parent = nodes.get(n(0));
        const path = nodes.childPath(parent, s(1));
        return this.run(op, req, async () => {
          await (op === OP.UNLINK ? fs.unlink(path) : fs.rmdir(path));
          nodes.detach(parent, s(1));
          this.ok(req);
        });
      }
      case OP.RENAME:
        return this.run(op, req, () =>
          this.rename(req, nodes.get(n(0)), s(1), nodes.get(n(2)), s(3), n(4)),
        );
      case OP.OPEN: {
        const node = nodes.get(n(0));
        const path = nodes.path(node);
        return this.run(op, req, async () => {
          const fh = await fs.open(path, n(1));
          nodes.opened(node, fh);
          native.replyOpen(req, fh, 0);
        });
      }
      case OP.CREATE: {
        const parent = nodes.get(n(0));
        const name = s(1);
        const path = nodes.childPath(parent, name);
        const who = this.caller(n(4), n(5));
        return this.run(op, req, async () => {
          const fh = await fs.create(path, n(2), n(3), who);
          let attr: Attr;
          try {
            attr = await fs.fgetattr(path, fh);
          } catch (err) {
            await fs.release(path, fh);
            throw err;
          }
          const node = nodes.lookup(parent, name, inodeOf(attr));
          nodes.opened(node, fh);
          native.replyCreate(req, node.id, attrRecord(attr), fh, 0);
        });
      }
      case OP.READ: {
        const path = this.pathOrEmpty(nodes.get(n(0)));
        const size = n(1);
        return this.run(op, req, async () => {
          const data = await fs.read(path, n(3), size, n(2));
          native.replyBuf(req, data, data.length);
        });
      }
      case OP.WRITE: {
        const path = this.pathOrEmpty(nodes.get(n(0)));
        const data = a[1] as Buffer;
        return this.run(op, req, async () =>
          native.replyWrite(req, await fs.write(path, n(3), data, data.length, n(2))),
        );
      }
      case OP.FLUSH: {
        const path = this.pathOrEmpty(nodes.get(n(0)));
        return this.thenOk(op, req, () => fs.flush(path, n(1)));
      }
      case OP.RELEASE: {
        const node = nodes.get(n(0));
        const fh = n(1);
        return this.run(op, req, async () => {
          try {
            await fs.release(this.pathOrEmpty(node), fh);
          } finally {
            nodes.closed(node, fh);
          }
          this.ok(req);
        });
      }
      case OP.FSYNC: {
        const path = this.pathOrEmpty(nodes.get(n(0)));
        return this.thenOk(op, req, () => fs.fsync(path, n(2), n(1) !== 0));
      }
      case OP.FSYNCDIR: {
        const path = this.pathOrEmpty(nodes.get(n(0)));
        return this.thenOk(op, req, async () => {
          if (path && fs.fsyncdir) await fs.fsyncdir(path, n(1) !== 0);
        });
      }
      case OP.OPENDIR: {
        const node = nodes.get(n(0));
        const path = nodes.path(node);
        return this.run(op, req, async () => {
          const entries = await fs.list(path);
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
          const st = await fs.statfs("/");
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
        const path = nodes.path(nodes.get(n(0)));
        return this.thenOk(op, req, () => fs.setxattr(path, s(1), a[2] as Buffer, n(3)));
      }
      case OP.GETXATTR: {
        const path = nodes.path(nodes.get(n(0)));
        return this.run(op, req, async () => {
          const value = await fs.getxattr(path, s(1));
          if (value === undefined) throw new FsError("ENODATA");
          this.replySized(req, value, n(2));
        });
      }
      case OP.LISTXATTR: {
        const path = nodes.path(nodes.get(n(0)));
        return this.run(op, req, async () => {
          const names = await fs.listxattr(path);
          this.replySized(req, Buffer.from(names.map((name) => name + "\0").join("")), n(1));
        });
      }
      case OP.REMOVEXATTR: {
        const path = nodes.path(nodes.get(n(0)));
        return this.thenOk(op, req, () => fs.removexattr(path, s(1)));
      }
      case OP.ACCESS: {
        const path = nodes.path(nodes.get(n(0)));
        return this.thenOk(op, req, () => fs.access(path, n(1)));
      }
      case OP.FALLOCATE: {
        const path = this.pathOrEmpty(nodes.get(n(0)));
        return this.run(op, req, () => this.fallocate(req, path, n(1), n(2), n(3), n(4)));
      }
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
    // ftruncate of an unlinked open file needs no path; everything else does.
    const path = valid === SET_SIZE && fh >= 0 ? this.pathOrEmpty(node) : this.nodes.path(node);
    if (valid & SET_MODE) await this.fs.chmod(path, mode);
    if (valid & (SET_UID | SET_GID))
      await this.fs.chown(path, valid & SET_UID ? uid : -1, valid & SET_GID ? gid : -1);
    if (valid & SET_SIZE) {
      if (fh >= 0) await this.fs.ftruncate(path, fh, size);
      else await this.fs.truncate(path, size);
    }
    const atime = timeSpec(valid, SET_ATIME, SET_ATIME_NOW, atimeSec, atimeNsec);
    const mtime = timeSpec(valid, SET_MTIME, SET_MTIME_NOW, mtimeSec, mtimeNsec);
    if (atime !== "omit" || mtime !== "omit") await this.fs.utimens(path, atime, mtime);
    this.native.replyAttr(req, attrRecord(await this.attrOf(node, fh)));
  }

  private async rename(
    req: Request,
    parent: Node,
    name: string,
    newParent: Node,
    newName: string,
    flags: number,
  ): Promise<void> {
    // RENAME_EXCHANGE and whiteouts have no encrypted equivalent yet.
    if (flags & ~RENAME_NOREPLACE) throw new FsError("EINVAL");
    const from = this.nodes.childPath(parent, name);
    const to = this.nodes.childPath(newParent, newName);
    const [source, target] = await Promise.all([
      this.fs.getattr(from),
      this.fs.getattr(to).catch(() => undefined),
    ]);
    if (target && flags & RENAME_NOREPLACE) throw new FsError("EEXIST");
    await this.fs.rename(from, to);
    // Two names of one inode: rename(2) leaves both in place.
    if (!(target && target.ino === source.ino && target.dev === source.dev))
      this.nodes.move(parent, name, newParent, newName);
    this.ok(req);
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
        entry.attr().then(
          (attr) => {
            putAttr(attrs, at, attr);
            const node = this.nodes.child(dir.node, entry.name, inodeOf(attr));
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

  private async fallocate(
    req: Request,
    path: string,
    mode: number,
    offset: number,
    length: number,
    fh: number,
  ): Promise<void> {
    // Only plain allocation: the file grows by sealed zero blocks. Punching
    // holes or keeping the size have no meaning for encrypted blocks yet.
    if (mode !== 0) throw new FsError("EOPNOTSUPP");
    const { size } = await this.fs.fgetattr(path, fh);
    if (offset + length > size) await this.fs.ftruncate(path, fh, offset + length);
    this.ok(req);
  }
}
