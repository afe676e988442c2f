// A hostile-lower fuzz test: a mounted volume with a few dozen files (empty to
// ~200 KiB, long names with sidecars, subdirectories, a symlink), then
// thousands of seeded rounds of random mutations of the lower directory, made
// by this process directly on the lower (bit flips, truncations, appends,
// swapped and deleted entries, entries replaced by symlinks to outside
// canaries or by FIFOs, copied and forged directory IDs, copied sidecars,
// whole-file rollbacks), each round followed by reads through the mount from
// one long-lived python3 client and then undone.
//
// What must hold: every read returns exactly bytes that were written (the
// content of some version of some file: swaps within a directory and
// rollbacks are undetectable by design, docs/format.md §18.3) or fails with an
// errno; no request hangs (each has a deadline; a hang aborts the connection
// and fails the test); the server is alive at the end; nothing outside the
// lower changed (canary trees, hashed with modes, owners, xattrs and times).
//
// CRYPTMOUNT_FUZZ_SEED=n replays a seed; CRYPTMOUNT_FUZZ_ROUNDS=n and
// CRYPTMOUNT_FUZZ_SECONDS=s change the budget; CRYPTMOUNT_FUZZ_MUTATIONS=a,b
// limits the mutation kinds (names in MUTATIONS below).

import { createHash } from "node:crypto";
import {
  copyFileSync,
  lstatSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  symlinkSync,
  truncateSync,
  unlinkSync,
  appendFileSync,
  writeFileSync,
  openSync,
  readSync,
  writeSync,
  closeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import * as xattr from "fs-xattr";
import { afterEach, describe, expect, it } from "vitest";
import {
  MountClient,
  b64,
  mkfifo,
  outcome,
  rescue,
  treeSnapshot,
  type ClientReply,
  type ClientRequest,
} from "../helpers/hostile.js";
import {
  Sandbox,
  alive,
  haveFuse,
  newLowerEntries,
  sandboxSuite,
  seededBytes,
  type Mounted,
} from "../helpers/volume.js";
import { prng, randInt } from "../helpers/volume-tools.js";

let sb: Sandbox;
const clients: MountClient[] = [];

const SEED = Number(process.env.CRYPTMOUNT_FUZZ_SEED ?? Date.now() % 1_000_000_007);
const MAX_ROUNDS = Number(process.env.CRYPTMOUNT_FUZZ_ROUNDS ?? 20_000);
const BUDGET_MS = Number(process.env.CRYPTMOUNT_FUZZ_SECONDS ?? 40) * 1000;
const MIN_ROUNDS = Math.min(1000, MAX_ROUNDS);
const DEADLINE_MS = 5_000;
/** Count a read that returns a prefix of written content (stale kernel size) as a failure too. */
const STRICT_SIZE = process.env.CRYPTMOUNT_FUZZ_STRICT_SIZE === "1";

const sha = (data: Buffer | string) => createHash("sha256").update(data).digest("hex");

/** What the test knows about one cleartext object and its lower entry. */
interface Entry {
  clear: string;
  /** Lower path, relative to the lower root. */
  lower: string;
  kind: "file" | "dir" | "symlink";
  sidecar?: string;
  /** Content versions of a file (hashes), or targets of a symlink. */
  versions: Set<string>;
  /** Lower bytes of an older version, for rollbacks. */
  older?: Buffer;
}

interface World {
  m: Mounted;
  c: MountClient;
  lower: string;
  entries: Entry[];
  /** Every content hash ever written (a swapped entry shows another file's content). */
  allContent: Set<string>;
  /** The contents themselves, to recognise a prefix of one. */
  contents: Buffer[];
  allTargets: Set<string>;
  /** Base names of every cleartext entry. */
  allNames: Set<string>;
  canaryRoot: string;
  canaryFile: string;
  canaryDir: string;
  fifos: Set<string>;
}

function longName(r: () => number, i: number): string {
  const parts = ["é", "ü", "—", "x", "y", "z", "✓", "data"];
  let name = `long-${i}-`;
  while (Buffer.byteLength(name) < randInt(r, 115, 200))
    name += parts[randInt(r, 0, parts.length - 1)];
  return name + ".bin";
}

async function must(c: MountClient, req: ClientRequest): Promise<ClientReply> {
  const r = await c.request(req, 30_000);
  if (!r.ok) throw new Error(`${req.op} ${req.path ?? ""}: ${outcome(r)} ${r.error ?? ""}`);
  return r;
}

async function buildWorld(seed: number): Promise<World> {
  const r = prng(seed ^ 0x5eed);
  const lower = await sb.createVolume();
  const m = await sb.mount(lower);
  const c = new MountClient();
  clients.push(c);
  const at = (rel: string) => join(m.mountpoint, rel);
  const entries: Entry[] = [];
  const allContent = new Set<string>();
  const contents: Buffer[] = [];
  const allTargets = new Set<string>();
  const allNames = new Set<string>();
  const record = async (clear: string, kind: Entry["kind"], action: () => Promise<unknown>) => {
    const added = await newLowerEntries(lower, action);
    const main = added.find((p) => !p.endsWith(".n") && !basename(p).startsWith("cm.d."));
    if (!main) throw new Error(`no lower entry for ${clear}: ${added.join(", ")}`);
    const sidecar = added.find((p) => p.endsWith(".n"));
    const e: Entry = { clear, lower: main, kind, versions: new Set(), sidecar };
    entries.push(e);
    allNames.add(basename(clear));
    return e;
  };

  for (const d of ["d0", "d1", "d2", "d2/sub", "d1/" + longName(r, 99)])
    await record(d, "dir", () => must(c, { op: "mkdir", path: at(d) }));
  const dirs = ["", "d0", "d1", "d2", "d2/sub", entries[4]!.clear];
  const fixedSizes = [
    0, 1, 15, 16, 4096, 32_767, 32_768, 32_769, 65_536, 100_000, 150_000, 204_800,
  ];
  for (let i = 0; i < 36; i++) {
    const dir = dirs[i % dirs.length]!;
    const name = i % 7 === 3 ? longName(r, i) : `file-${i}.bin`;
    const clear = dir ? `${dir}/${name}` : name;
    const size = i < fixedSizes.length ? fixedSizes[i]! : randInt(r, 0, 204_800);
    const data = seededBytes(`fuzz-${seed}-${i}`, size);
    const e = await record(clear, "file", () =>
      must(c, { op: "create", path: at(clear), data: b64(data) }),
    );
    e.versions.add(sha(data));
    allContent.add(sha(data));
    contents.push(data);
  }
  const link = await record("d0/link", "symlink", () =>
    must(c, { op: "symlink", path: at("d0/link"), target: "../file-0.bin" }),
  );
  link.versions.add("../file-0.bin");
  allTargets.add("../file-0.bin");

  // Older versions for rollbacks: keep the lower bytes, then rewrite through the mount.
  const files = entries.filter((e) => e.kind === "file");
  for (const e of files.filter((_, i) => i % 5 === 1)) {
    const older = readFileSync(join(lower, e.lower));
    const data = seededBytes(`fuzz-${seed}-${e.clear}-v2`, randInt(r, 0, 150_000));
    await must(c, { op: "create", path: at(e.clear), data: b64(data) });
    e.older = older;
    e.versions.add(sha(data));
    allContent.add(sha(data));
    contents.push(data);
  }

  // Canaries outside the lower: a file and a directory that looks like a lower directory.
  const canaryRoot = await sb.mkdir("canary");
  const canaryFile = join(canaryRoot, "precious.bin");
  writeFileSync(canaryFile, readFileSync(join(lower, files[10]!.lower)), { mode: 0o640 });
  await xattr.setAttribute(canaryFile, "user.keep", "precious");
  const canaryDir = join(canaryRoot, "lookalike");
  const d1 = entries.find((e) => e.clear === "d1")!;
  const cp = await import("node:child_process").then((cpm) =>
    cpm.spawnSync("cp", ["-a", join(lower, d1.lower), canaryDir]),
  );
  if (cp.status !== 0) throw new Error(`cp: ${String(cp.stderr)}`);
  const { utimes } = await import("node:fs/promises");
  for (const p of [canaryFile, canaryDir, canaryRoot])
    await utimes(p, 1_500_000_000, 1_500_000_000);

  return {
    m,
    c,
    lower,
    entries,
    allContent,
    contents,
    allTargets,
    allNames,
    canaryRoot,
    canaryFile,
    canaryDir,
    fifos: new Set(),
  };
}

// ---------------------------------------------------------------------------
// Mutations: each applies itself to the lower and returns how to undo it.

type Undo = () => void;
type Mutation = (
  w: World,
  r: () => number,
  hold: string,
) => Promise<{ undo: Undo[]; touched: Entry[]; what: string } | undefined>;

let holdCounter = 0;
function moveAway(path: string, hold: string): Undo {
  const h = join(hold, `h${++holdCounter}`);
  renameSync(path, h);
  return () => {
    rmSync(path, { recursive: true, force: true });
    renameSync(h, path);
  };
}
function keepBytes(path: string): Undo {
  const data = readFileSync(path);
  return () => writeFileSync(path, data);
}
const pick = <T>(r: () => number, xs: readonly T[]): T => xs[randInt(r, 0, xs.length - 1)]!;
const L = (w: World, rel: string) => join(w.lower, rel);
const files = (w: World) => w.entries.filter((e) => e.kind === "file");
const dirs = (w: World) => w.entries.filter((e) => e.kind === "dir");
const withSidecar = (w: World) => w.entries.filter((e) => e.sidecar !== undefined);
function dirIdOf(w: World, dir: Entry): string | undefined {
  return readdirSync(L(w, dir.lower)).find((n) => n.startsWith("cm.d."));
}
/** The directory entry holding `e` (undefined for the root). */
function parentOf(w: World, e: Entry): Entry | undefined {
  const parent = dirname(e.clear);
  return w.entries.find((d) => d.kind === "dir" && d.clear === parent);
}

const MUTATIONS: Record<string, { weight: number; apply: Mutation }> = {
  flip: {
    weight: 6,
    apply: async (w, r) => {
      const e = pick(r, [...files(w), ...withSidecar(w)]);
      const useSidecar = e.sidecar !== undefined && (e.kind !== "file" || r() < 0.3);
      const path = L(w, useSidecar ? e.sidecar! : e.lower);
      const size = lstatSync(path).size;
      if (size === 0) return undefined;
      const undo = keepBytes(path);
      const at = randInt(r, 0, size - 1);
      const fd = openSync(path, "r+");
      const b = Buffer.alloc(1);
      readSync(fd, b, 0, 1, at);
      b[0]! ^= 1 << randInt(r, 0, 7);
      writeSync(fd, b, 0, 1, at);
      closeSync(fd);
      return { undo: [undo], touched: [e], what: `flip ${basename(path)}@${at}` };
    },
  },
  truncate: {
    weight: 4,
    apply: async (w, r) => {
      const e = pick(r, files(w));
      const path = L(w, e.lower);
      const size = lstatSync(path).size;
      const undo = keepBytes(path);
      const to = r() < 0.5 ? randInt(r, 0, size) : Math.max(0, size - randInt(r, 1, 40_000));
      truncateSync(path, to);
      return { undo: [undo], touched: [e], what: `truncate ${e.clear} ${size}->${to}` };
    },
  },
  append: {
    weight: 3,
    apply: async (w, r) => {
      const e = pick(r, files(w));
      const path = L(w, e.lower);
      const undo = keepBytes(path);
      const n = pick(r, [1, 28, 32_796, randInt(r, 1, 70_000)]);
      appendFileSync(path, seededBytes(`append-${r()}`, n));
      return { undo: [undo], touched: [e], what: `append ${n} to ${e.clear}` };
    },
  },
  swap: {
    weight: 4,
    apply: async (w, r, hold) => {
      const a = pick(r, files(w));
      // Mostly within a directory (undetectable by design), sometimes across.
      const same = files(w).filter((e) => e !== a && dirname(e.lower) === dirname(a.lower));
      const b =
        same.length && r() < 0.7
          ? pick(r, same)
          : pick(
              r,
              files(w).filter((e) => e !== a),
            );
      const tmp = join(hold, `swap${++holdCounter}`);
      renameSync(L(w, a.lower), tmp);
      renameSync(L(w, b.lower), L(w, a.lower));
      renameSync(tmp, L(w, b.lower));
      const undo = () => {
        renameSync(L(w, a.lower), tmp);
        renameSync(L(w, b.lower), L(w, a.lower));
        renameSync(tmp, L(w, b.lower));
      };
      return { undo: [undo], touched: [a, b], what: `swap ${a.clear} <-> ${b.clear}` };
    },
  },
  delete: {
    weight: 3,
    apply: async (w, r, hold) => {
      const choice = r();
      if (choice < 0.6) {
        const e = pick(r, files(w));
        return { undo: [moveAway(L(w, e.lower), hold)], touched: [e], what: `delete ${e.clear}` };
      }
      if (choice < 0.8) {
        const e = pick(r, withSidecar(w));
        return {
          undo: [moveAway(L(w, e.sidecar!), hold)],
          touched: [e],
          what: `delete sidecar of ${e.clear}`,
        };
      }
      const d = pick(r, dirs(w));
      const id = dirIdOf(w, d);
      if (!id) return undefined;
      return {
        undo: [moveAway(join(L(w, d.lower), id), hold)],
        touched: [d],
        what: `delete dir ID of ${d.clear}`,
      };
    },
  },
  symlink: {
    weight: 4,
    apply: async (w, r, hold) => {
      const choice = r();
      let e: Entry;
      let path: string;
      let target: string;
      if (choice < 0.5) {
        e = pick(r, files(w));
        path = L(w, e.lower);
        target = w.canaryFile;
      } else if (choice < 0.7) {
        e = pick(r, withSidecar(w));
        path = L(w, e.sidecar!);
        target = w.canaryFile;
      } else {
        e = pick(r, dirs(w));
        path = L(w, e.lower);
        target = w.canaryDir;
      }
      const undo = moveAway(path, hold);
      symlinkSync(target, path);
      return {
        undo: [undo],
        touched: [e],
        what: `symlink ${e.clear}${path.endsWith(".n") ? " (sidecar)" : ""} -> ${target}`,
      };
    },
  },
  fifo: {
    weight: 2,
    apply: async (w, r, hold) => {
      const e = r() < 0.6 ? pick(r, files(w)) : pick(r, withSidecar(w));
      const path = L(
        w,
        e.kind === "file" && (e.sidecar === undefined || r() < 0.5) ? e.lower : e.sidecar!,
      );
      const undo = moveAway(path, hold);
      await mkfifo(path);
      w.fifos.add(path);
      return {
        undo: [undo],
        touched: [e],
        what: `fifo at ${path.endsWith(".n") ? "sidecar of " : ""}${e.clear}`,
      };
    },
  },
  copyDirId: {
    weight: 3,
    apply: async (w, r) => {
      const from = pick(r, dirs(w));
      const to = pick(
        r,
        dirs(w).filter((d) => d !== from),
      );
      const id = dirIdOf(w, from);
      if (!id || readdirSync(L(w, to.lower)).includes(id)) return undefined;
      const path = join(L(w, to.lower), id);
      writeFileSync(path, "", { mode: 0o444 });
      const touched = w.entries.filter((e) => e === to || parentOf(w, e) === to);
      return {
        undo: [() => unlinkSync(path)],
        touched,
        what: `copy dir ID of ${from.clear} into ${to.clear}`,
      };
    },
  },
  forgeDirId: {
    weight: 2,
    apply: async (w, r) => {
      const to = pick(r, dirs(w));
      const id = seededBytes(`forge-${r()}`, r() < 0.5 ? 16 : 32);
      id[0] = 0;
      const path = join(L(w, to.lower), "cm.d." + id.toString("base64url"));
      writeFileSync(path, "", { mode: 0o444 });
      const touched = w.entries.filter((e) => e === to || parentOf(w, e) === to);
      return { undo: [() => unlinkSync(path)], touched, what: `forged dir ID in ${to.clear}` };
    },
  },
  copySidecar: {
    weight: 2,
    apply: async (w, r) => {
      const all = withSidecar(w);
      if (all.length < 2) return undefined;
      const a = pick(r, all);
      const b = pick(
        r,
        all.filter((e) => e !== a),
      );
      const undo = keepBytes(L(w, b.sidecar!));
      copyFileSync(L(w, a.sidecar!), L(w, b.sidecar!));
      return { undo: [undo], touched: [a, b], what: `sidecar of ${a.clear} over ${b.clear}'s` };
    },
  },
  rollback: {
    weight: 3,
    apply: async (w, r) => {
      const old = files(w).filter((e) => e.older);
      if (!old.length) return undefined;
      const e = pick(r, old);
      const undo = keepBytes(L(w, e.lower));
      writeFileSync(L(w, e.lower), e.older!);
      return { undo: [undo], touched: [e], what: `rollback ${e.clear}` };
    },
  },
};

const ROOT_ENTRY: Entry = { clear: "/", lower: "", kind: "dir", versions: new Set() };

// ---------------------------------------------------------------------------

describe.skipIf(!haveFuse)("hostile lower fuzz", () => {
  sandboxSuite("fuzz", (s) => {
    sb = s;
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.close();
  });

  it(`thousands of random lower mutations: reads return written bytes or an errno, never hang; the outside is untouched (seed ${SEED})`, async () => {
    const w = await buildWorld(SEED);
    const at = (rel: string) => join(w.m.mountpoint, rel);
    const hold = await sb.mkdir("hold");
    const canaryBefore = treeSnapshot(w.canaryRoot);
    const only = process.env.CRYPTMOUNT_FUZZ_MUTATIONS
      ? process.env.CRYPTMOUNT_FUZZ_MUTATIONS.split(",")
      : undefined;
    const kinds = Object.entries(MUTATIONS).filter(([k]) => !only || only.includes(k));
    const totalWeight = kinds.reduce((s, [, k]) => s + k.weight, 0);
    const r = prng(SEED);
    const failures: string[] = [];
    const errnos: Record<string, number> = {};
    const mutationCounts: Record<string, number> = {};
    let reads = 0;
    let stalePrefixes = 0;
    let hung: string | undefined;
    const started = Date.now();
    let round = 0;

    const check = (
      round: number,
      what: string,
      e: Entry,
      req: ClientRequest,
      reply: ClientReply,
    ) => {
      reads++;
      const where = `round ${round} (${what}): ${req.op} ${e.clear}`;
      if (reply.timeout) {
        hung = where;
        return;
      }
      if (!reply.ok) {
        const code = reply.errno ?? "?";
        errnos[code] = (errnos[code] ?? 0) + 1;
        if (code === "CLIENT" || code === "CLIENT_EXITED" || code === "ENOTCONN")
          failures.push(`${where}: ${code} ${reply.error ?? ""}`);
        return;
      }
      errnos.ok = (errnos.ok ?? 0) + 1;
      if (req.op === "read" && !w.allContent.has(reply.sha256!)) {
        const size = reply.size!;
        const prefixOf = w.contents.findIndex(
          (c) => c.length > size && sha(c.subarray(0, size)) === reply.sha256,
        );
        // The kernel trusts a size it cached for 1 s (attr_timeout) and reads no further:
        // a file whose lower entry changed underneath reads as a prefix of its new content.
        if (prefixOf >= 0 && !STRICT_SIZE) stalePrefixes++;
        else
          failures.push(
            `${where}: read ${size} bytes that were never written` +
              (prefixOf >= 0
                ? ` (a prefix of a ${w.contents[prefixOf]!.length}-byte content)`
                : ""),
          );
      }
      if (req.op === "readlink" && !w.allTargets.has(reply.target!))
        failures.push(`${where}: readlink gave ${JSON.stringify(reply.target)}`);
      if (req.op === "listdir") {
        for (const n of reply.names ?? []) {
          const name = Buffer.from(n, "base64").toString("utf8");
          if (!w.allNames.has(name))
            failures.push(`${where}: listed unknown name ${JSON.stringify(name)}`);
        }
      }
    };

    const requestFor = (e: Entry): ClientRequest => {
      if (e.kind === "dir") return { op: "listdir", path: at(e.clear) };
      if (e.kind === "symlink") return { op: "readlink", path: at(e.clear) };
      return { op: r() < 0.85 ? "read" : "stat", path: at(e.clear) };
    };

    try {
      for (round = 1; round <= MAX_ROUNDS && Date.now() - started < BUDGET_MS; round++) {
        const undos: Undo[] = [];
        const touched: Entry[] = [];
        const whats: string[] = [];
        let symlinked = false;
        // One mutation a round: a second one could reach through the first (a directory
        // replaced by a symlink to a canary) and have this test write outside the lower.
        for (let k = 1; k > 0; k--) {
          let x = r() * totalWeight;
          const [name, kind] = kinds.find(([, m]) => (x -= m.weight) < 0) ?? kinds[0]!;
          const done = await kind.apply(w, r, hold);
          if (!done) continue;
          mutationCounts[name] = (mutationCounts[name] ?? 0) + 1;
          undos.push(...done.undo);
          touched.push(...done.touched);
          whats.push(done.what);
          if (name === "symlink") symlinked = true;
        }
        const what = whats.join("; ");
        // What was touched, the directories holding it (a listing reads sidecars and
        // IDs), and two random entries.
        const parents = touched.flatMap((e) => parentOf(w, e) ?? []);
        const requests = [...touched, ...parents, pick(r, w.entries), pick(r, w.entries)].map(
          (e) => [e, requestFor(e)] as const,
        );
        if (touched.some((e) => !parentOf(w, e)))
          requests.push([ROOT_ENTRY, { op: "listdir", path: w.m.mountpoint }]);
        for (const [e, req] of requests) {
          check(round, what, e, req, await w.c.request(req, DEADLINE_MS));
          if (hung) break;
        }
        if (hung) break;
        for (const undo of undos.reverse()) undo();
        for (const f of w.fifos) w.fifos.delete(f);
        if (symlinked) {
          const now = treeSnapshot(w.canaryRoot);
          if (JSON.stringify(now) !== JSON.stringify(canaryBefore)) {
            failures.push(
              `round ${round} (${what}): the canary tree outside the lower changed:\n  ${now.join("\n  ")}`,
            );
            break;
          }
        }
        if (failures.length >= 20) break;
      }
    } finally {
      if (hung) await rescue(w.m.mountpoint, [...w.fifos]);
    }
    const elapsed = Date.now() - started;
    console.log(
      `hostile fuzz seed ${SEED}: ${round} rounds, ${reads} requests in ${elapsed} ms; mutations`,
      mutationCounts,
      "outcomes",
      errnos,
      `reads cut short by a stale cached size: ${stalePrefixes}`,
    );
    const replay = `(replay: CRYPTMOUNT_FUZZ_SEED=${SEED})`;
    expect(hung, `a request through the mount hung ${replay}`).toBeUndefined();
    expect(failures, `wrong answers ${replay}`).toEqual([]);
    expect(alive(w.m.pid), `server alive ${replay}`).toBe(true);
    expect(treeSnapshot(w.canaryRoot), `canary tree outside the lower ${replay}`).toEqual(
      canaryBefore,
    );
    expect(round, "rounds run").toBeGreaterThanOrEqual(MIN_ROUNDS);

    // Everything was undone: after a remount (fresh caches) every file reads its last version.
    await w.c.close();
    w.m = await sb.remount(w.m);
    w.c = new MountClient();
    clients.push(w.c);
    for (const e of files(w)) {
      const reply = await w.c.request({ op: "read", path: at(e.clear) }, DEADLINE_MS);
      expect(
        reply.ok && e.versions.has(reply.sha256!),
        `${e.clear} after the fuzz: ${outcome(reply)}`,
      ).toBe(true);
    }
    await w.c.close();
    await sb.unmount(w.m);
  }, 150_000);
});
