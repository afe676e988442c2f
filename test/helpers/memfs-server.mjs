#!/usr/bin/env node
// A tiny in-memory file system served with the patched fuse-native, for
// test/integration/fuse-binding.test.ts. It runs in its own process: a
// process must never touch a FUSE mount it serves synchronously (deadlock).
//
// Usage: node memfs-server.mjs MOUNTPOINT [JSON_OPTIONS]
//   JSON_OPTIONS: {
//     extraOptions?: string[]   appended to the default extra options
//     timeout?: number | false  per-op timeout (fuse-native option)
//     slowMs?: number           getattr of "/slow" answers after slowMs
//   }
//
// Events are written to stdout as JSON lines: ready, create, open, write,
// utimens, mkdir, external-unmount, unmounted, error. Signals: SIGTERM/SIGINT
// unmount through fuse.unmount() and let the process end on its own.
//
// create and mkdir report the caller (Fuse.context() and fuse.context() at
// the start of the handler, `ctx` / `own`) and what Fuse.context() says after
// an await (`later`, expected null).

import { Buffer } from "node:buffer";
import console from "node:console";
import { performance } from "node:perf_hooks";
import process from "node:process";
import { setTimeout } from "node:timers";
import Fuse from "fuse-native";

const mnt = process.argv[2];
const options = process.argv[3] ? JSON.parse(process.argv[3]) : {};
if (!mnt) {
  console.error("usage: memfs-server.mjs MOUNTPOINT [JSON_OPTIONS]");
  process.exit(2);
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const CHUNK = 65536;
const INO_BASE = 2n ** 33n; // inode numbers above 2^32

function emit(ev, data = {}) {
  process.stdout.write(JSON.stringify({ ev, ...data }) + "\n");
}

function nowNs() {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
}

let nextIno = 1n;
function makeNode(mode) {
  const t = nowNs();
  return {
    mode,
    ino: INO_BASE + nextIno++,
    size: 0,
    chunks: new Map(), // sparse contents: chunk index -> Buffer(CHUNK)
    atimeNs: t,
    mtimeNs: t,
    ctimeNs: t,
  };
}

const nodes = new Map([["/", makeNode(S_IFDIR | 0o755)]]);

// Handles: the first ones handed out are the edge values of the uint32 range.
const handles = new Map();
const edgeHandles = [0, 0xffffffff, 0x80000000, 0x7fffffff];
let counter = 1000;
function allocHandle(path) {
  let fh = edgeHandles.length ? edgeHandles.shift() : counter++;
  while (handles.has(fh)) fh = counter++;
  handles.set(fh, path);
  return fh;
}

function parentOf(p) {
  const i = p.lastIndexOf("/");
  return i <= 0 ? "/" : p.slice(0, i);
}

function childrenOf(dir) {
  const prefix = dir === "/" ? "/" : dir + "/";
  const names = [];
  for (const p of nodes.keys()) {
    if (p !== dir && p.startsWith(prefix) && !p.slice(prefix.length).includes("/")) {
      names.push(p.slice(prefix.length));
    }
  }
  return names;
}

function statOf(node) {
  return {
    mode: node.mode,
    uid: process.getuid(),
    gid: process.getgid(),
    size: node.size,
    nlink: node.mode & S_IFDIR ? 2 : 1,
    ino: node.ino,
    blksize: 4096,
    blocks: Math.ceil(node.size / 512),
    atimeNs: node.atimeNs,
    mtimeNs: node.mtimeNs,
    ctimeNs: node.ctimeNs,
  };
}

function readInto(node, buf, len, pos) {
  if (pos >= node.size) return 0;
  const n = Math.min(len, node.size - pos);
  let done = 0;
  while (done < n) {
    const at = pos + done;
    const idx = Math.floor(at / CHUNK);
    const off = at % CHUNK;
    const take = Math.min(CHUNK - off, n - done);
    const chunk = node.chunks.get(idx);
    if (chunk) chunk.copy(buf, done, off, off + take);
    else buf.fill(0, done, done + take);
    done += take;
  }
  return n;
}

function writeFrom(node, buf, len, pos) {
  let done = 0;
  while (done < len) {
    const at = pos + done;
    const idx = Math.floor(at / CHUNK);
    const off = at % CHUNK;
    const take = Math.min(CHUNK - off, len - done);
    let chunk = node.chunks.get(idx);
    if (!chunk) {
      chunk = Buffer.alloc(CHUNK);
      node.chunks.set(idx, chunk);
    }
    buf.copy(chunk, off, done, done + take);
    done += take;
  }
  node.size = Math.max(node.size, pos + len);
  node.mtimeNs = node.ctimeNs = nowNs();
  return len;
}

function setSize(node, size) {
  if (size < node.size) {
    const last = Math.floor(size / CHUNK);
    for (const idx of [...node.chunks.keys()]) {
      if (idx > last) node.chunks.delete(idx);
    }
    const chunk = node.chunks.get(last);
    if (chunk) chunk.fill(0, size % CHUNK);
  }
  node.size = size;
  node.mtimeNs = node.ctimeNs = nowNs();
}

function resolveTime(t, current, now) {
  if (t === "omit") return current;
  if (t === "now") return now;
  if (typeof t !== "bigint") throw new TypeError(`utimens time is ${typeof t}`);
  return t;
}

const ops = {
  statfs(path, cb) {
    cb(0, {
      bsize: 4096,
      frsize: 4096,
      blocks: 2 ** 40, // 4 PiB: more than 32 bits of blocks
      bfree: 2 ** 40 - 1,
      bavail: 2 ** 40 - 2,
      files: 2 ** 33,
      ffree: 2 ** 33 - 1,
      favail: 2 ** 33 - 1,
      fsid: 42,
      flag: 0,
      namemax: 255,
    });
  },
  getattr(path, cb) {
    if (path === "/slow") {
      setTimeout(() => cb(0, statOf(makeNode(S_IFREG | 0o644))), options.slowMs || 0);
      return;
    }
    const node = nodes.get(path);
    if (!node) return cb(Fuse.ENOENT);
    cb(0, statOf(node));
  },
  fgetattr(path, fh, cb) {
    const p = handles.get(fh);
    const node = p !== undefined && nodes.get(p);
    if (!node) return cb(Fuse.EBADF);
    cb(0, statOf(node));
  },
  readdir(path, cb) {
    const node = nodes.get(path);
    if (!node) return cb(Fuse.ENOENT);
    if (!(node.mode & S_IFDIR)) return cb(Fuse.ENOTDIR);
    cb(0, [".", "..", ...childrenOf(path)]);
  },
  open(path, flags, cb) {
    const node = nodes.get(path);
    if (!node) return cb(Fuse.ENOENT);
    const fh = allocHandle(path);
    emit("open", { path, flags, fh });
    cb(0, fh);
  },
  create(path, mode, flags, cb) {
    const ctx = Fuse.context();
    const own = fuse.context();
    if (typeof flags !== "number" || typeof cb !== "function") {
      emit("error", { message: "create called without flags" });
      return (typeof cb === "function" ? cb : flags)(Fuse.EIO);
    }
    if (nodes.has(path) && flags & 0o200) return cb(Fuse.EEXIST);
    if (!nodes.has(parentOf(path))) return cb(Fuse.ENOENT);
    if (!nodes.has(path)) nodes.set(path, makeNode(S_IFREG | (mode & 0o7777)));
    const fh = allocHandle(path);
    emit("create", { path, mode, flags, fh, ctx, own });
    cb(0, fh);
  },
  release(path, fh, cb) {
    handles.delete(fh);
    cb(0);
  },
  read(path, fh, buf, len, pos, cb) {
    const p = handles.get(fh);
    const node = p !== undefined && nodes.get(p);
    if (!node) {
      emit("error", { message: `read with unknown fh ${fh}` });
      return cb(Fuse.EBADF);
    }
    cb(readInto(node, buf, len, pos));
  },
  write(path, fh, buf, len, pos, cb) {
    const p = handles.get(fh);
    const node = p !== undefined && nodes.get(p);
    if (!node) {
      emit("error", { message: `write with unknown fh ${fh}` });
      return cb(Fuse.EBADF);
    }
    emit("write", { path, fh, len, pos });
    cb(writeFrom(node, buf, len, pos));
  },
  truncate(path, size, cb) {
    const node = nodes.get(path);
    if (!node) return cb(Fuse.ENOENT);
    setSize(node, size);
    cb(0);
  },
  ftruncate(path, fh, size, cb) {
    const p = handles.get(fh);
    const node = p !== undefined && nodes.get(p);
    if (!node) return cb(Fuse.EBADF);
    setSize(node, size);
    cb(0);
  },
  utimens(path, atime, mtime, cb) {
    const node = nodes.get(path);
    if (!node) return cb(Fuse.ENOENT);
    emit("utimens", { path, atime: String(atime), mtime: String(mtime) });
    try {
      const now = nowNs();
      node.atimeNs = resolveTime(atime, node.atimeNs, now);
      node.mtimeNs = resolveTime(mtime, node.mtimeNs, now);
      node.ctimeNs = now;
    } catch (err) {
      emit("error", { message: err.message });
      return cb(Fuse.EINVAL);
    }
    cb(0);
  },
  chmod(path, mode, cb) {
    const node = nodes.get(path);
    if (!node) return cb(Fuse.ENOENT);
    node.mode = (node.mode & ~0o7777) | (mode & 0o7777);
    node.ctimeNs = nowNs();
    cb(0);
  },
  unlink(path, cb) {
    if (!nodes.delete(path)) return cb(Fuse.ENOENT);
    cb(0);
  },
  async mkdir(path, mode, cb) {
    const ctx = Fuse.context();
    const own = fuse.context();
    await Promise.resolve();
    const later = Fuse.context();
    emit("mkdir", { path, mode, ctx, own, later });
    if (nodes.has(path)) return cb(Fuse.EEXIST);
    nodes.set(path, makeNode(S_IFDIR | (mode & 0o7777)));
    cb(0);
  },
  rmdir(path, cb) {
    if (childrenOf(path).length) return cb(Fuse.ENOTEMPTY);
    if (!nodes.delete(path)) return cb(Fuse.ENOENT);
    cb(0);
  },
};

const fuse = new Fuse(mnt, ops, {
  timeout: options.timeout === undefined ? false : options.timeout,
  // Attribute caching off, so stat always shows what the server holds.
  extraOptions: [
    "attr_timeout=0",
    "entry_timeout=0",
    "negative_timeout=0",
    ...(options.extraOptions || []),
  ],
  onExternalUnmount() {
    emit("external-unmount");
  },
});

let unmounting = false;
function unmountAndLeave() {
  if (unmounting) return;
  unmounting = true;
  fuse.unmount((err) => {
    if (err) {
      emit("error", { message: `unmount: ${err.message}` });
      process.exitCode = 1;
    }
    emit("unmounted");
    // No process.exit(): nothing may keep the event loop alive any more.
  });
}
process.on("SIGTERM", unmountAndLeave);
process.on("SIGINT", unmountAndLeave);
process.on("exit", (code) => emit("exit", { code }));

fuse.mount((err) => {
  if (err) {
    emit("error", { message: `mount: ${err.message}` });
    process.exitCode = 1;
    return;
  }
  emit("ready", {
    pid: process.pid,
    patchLevel: Fuse.CRYPTMOUNT_PATCH_LEVEL,
    context: Fuse.context(), // outside any handler: null
  });
});
