#!/usr/bin/env node
// npm run bench: the same workloads on a plain directory, on gocryptfs and on
// cryptmount, in one run, interleaved, median of N runs, with ratios.
//
//   node scripts/bench.mjs [--runs 3] [--size-mib 1024] [--files 10000] [--lower tmpfs|disk]
//                          [--only write,read,create,ls,tar,rm] [--markdown FILE]
//
// Needs root (tmpfs, drop_caches), gocryptfs (Debian package) and a built dist/.
import { spawnSync, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync, existsSync, rmSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const RUNS = Number(opt("runs", "3"));
const SIZE_MIB = Number(opt("size-mib", "1024"));
const FILES = Number(opt("files", "10000"));
const LOWER_KIND = opt("lower", "tmpfs");
const ONLY = opt("only", "write,read,create,ls,tar,rm").split(",");
const MARKDOWN = opt("markdown", undefined);
const ROOT = resolve(new URL("..", import.meta.url).pathname);
const CLI = join(ROOT, "dist", "cli", "main.js");

const sh = (cmd, env = {}) => {
  const r = spawnSync("sh", ["-c", cmd], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  if (r.status !== 0) throw new Error(`${cmd}: ${r.stderr}`);
  return r.stdout.toString();
};
const time = (cmd) => {
  const t0 = process.hrtime.bigint();
  sh(cmd);
  return Number(process.hrtime.bigint() - t0) / 1e9;
};
const dropCaches = () => {
  try {
    sh("sync; echo 3 > /proc/sys/vm/drop_caches");
  } catch {
    /* not root: caches stay warm */
  }
};

const scratch = mkdtempSync(join(tmpdir(), "cryptmount-bench-"));
if (LOWER_KIND === "tmpfs") sh(`mount -t tmpfs -o size=12g tmpfs ${scratch}`);
const pass = join(scratch, "pass");
writeFileSync(pass, "benchmark-passphrase\n", { mode: 0o600 });

// A source tree to extract: this repository's node_modules, packed once (-h: a worktree's
// node_modules may be a symlink; packing the link alone would time extracting one entry).
const tarball = join(tmpdir(), "cryptmount-bench-tree.tar");
if (ONLY.includes("tar") && !existsSync(tarball)) sh(`tar -C ${ROOT} -chf ${tarball} node_modules`);
if (ONLY.includes("tar") && Number(sh(`tar -tf ${tarball} | wc -l`).trim()) < 1000) {
  console.error(`bench: ${tarball} holds almost nothing (an old cache?); delete it and rerun`);
  process.exit(1);
}
const tarFiles = ONLY.includes("tar") ? Number(sh(`tar -tf ${tarball} | wc -l`).trim()) : 0;

const smallFiles = join(scratch, "smallfiles.py");
writeFileSync(
  smallFiles,
  `import os, sys
root, n, dirs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = b"x" * 4096
for d in range(dirs):
    os.mkdir(os.path.join(root, "d%03d" % d))
for i in range(n):
    with open(os.path.join(root, "d%03d" % (i % dirs), "f%05d" % i), "wb") as f:
        f.write(data)
`,
);

const systems = {
  plain: {
    setup(dir) {
      mkdirSync(dir);
      return { target: dir, teardown() {} };
    },
  },
  gocryptfs: {
    setup(dir) {
      const lower = `${dir}.lower`;
      mkdirSync(lower);
      mkdirSync(dir);
      sh(`gocryptfs -init -q -scryptn 10 -passfile ${pass} ${lower}`);
      sh(`gocryptfs -q -passfile ${pass} ${lower} ${dir}`);
      return { target: dir, teardown: () => sh(`fusermount -u ${dir}`) };
    },
  },
  cryptmount: {
    setup(dir) {
      const lower = `${dir}.lower`;
      mkdirSync(dir);
      sh(
        `node ${CLI} init --no-recovery --passfile ${pass} --kdf-memory 65536 --kdf-iterations 3 ${lower} > /dev/null`,
      );
      sh(`node ${CLI} mount --passfile ${pass} ${lower} ${dir}`);
      return { target: dir, teardown: () => sh(`node ${CLI} umount ${dir}`) };
    },
  },
};

const workloads = [
  [
    "write",
    "MB/s",
    (t) =>
      (SIZE_MIB * 1048576) /
      1e6 /
      time(`dd if=/dev/zero of=${t}/big bs=1M count=${SIZE_MIB} conv=fsync status=none`),
  ],
  [
    "read",
    "MB/s",
    (t) => (
      dropCaches(),
      (SIZE_MIB * 1048576) / 1e6 / time(`dd if=${t}/big of=/dev/null bs=1M status=none`)
    ),
  ],
  [
    "create",
    "s",
    (t) => (sh(`mkdir ${t}/small`), time(`python3 ${smallFiles} ${t}/small ${FILES} 100`)),
  ],
  ["ls", "s", (t) => (dropCaches(), time(`ls -lR ${t}/small > /dev/null`))],
  ["tar", "s", (t) => (sh(`mkdir ${t}/tree`), time(`tar -C ${t}/tree -xf ${tarball}`))],
  ["rm", "s", (t) => (dropCaches(), time(`rm -rf ${t}/small ${t}/tree`))],
].filter(([name]) => ONLY.includes(name));

const results = {};
try {
  for (let run = 0; run < RUNS; run++) {
    for (const [name, system] of Object.entries(systems)) {
      const dir = join(scratch, `${name}-${run}`);
      const mounted = system.setup(dir);
      try {
        for (const [workload, , fn] of workloads) {
          const value = fn(mounted.target);
          ((results[name] ??= {})[workload] ??= []).push(value);
          process.stderr.write(`run ${run + 1}/${RUNS} ${name} ${workload}: ${value.toFixed(2)}\n`);
        }
      } finally {
        mounted.teardown();
        rmSync(dir, { recursive: true, force: true });
        rmSync(`${dir}.lower`, { recursive: true, force: true });
      }
    }
  }
} finally {
  if (LOWER_KIND === "tmpfs") spawnSync("umount", [scratch]);
  rmSync(scratch, { recursive: true, force: true });
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (xs, unit) =>
  `${median(xs).toFixed(unit === "s" ? 2 : 0)} [${Math.min(...xs).toFixed(unit === "s" ? 2 : 0)}–${Math.max(...xs).toFixed(unit === "s" ? 2 : 0)}]`;
const lines = [
  `| workload | plain | gocryptfs | cryptmount | cryptmount / gocryptfs speed |`,
  `|---|---|---|---|---|`,
];
for (const [workload, unit] of workloads) {
  const m = (s) => median(results[s][workload]);
  const ratio = unit === "s" ? m("gocryptfs") / m("cryptmount") : m("cryptmount") / m("gocryptfs");
  const label = {
    write: `sequential write ${SIZE_MIB} MiB (MB/s)`,
    read: `sequential read ${SIZE_MIB} MiB, cold cache (MB/s)`,
    create: `create ${FILES} × 4 KiB files in 100 dirs (s)`,
    ls: "ls -lR of them, cold cache (s)",
    tar: `tar -x of node_modules, ${tarFiles} entries (s)`,
    rm: "rm -rf of both trees, cold cache (s)",
  }[workload];
  lines.push(
    `| ${label} | ${fmt(results.plain[workload], unit)} | ${fmt(results.gocryptfs[workload], unit)} | ${fmt(results.cryptmount[workload], unit)} | **${ratio.toFixed(2)}×** |`,
  );
}
const node = process.version;
const gocryptfsVersion = sh("gocryptfs -version").split("\n")[0];
const header = `Lower: ${LOWER_KIND}; ${RUNS} runs, median [min–max]; ${new Date().toISOString().slice(0, 10)}; node ${node}; ${gocryptfsVersion}; ${execFileSync("nproc").toString().trim()} cores.\n\n`;
const table = header + lines.join("\n") + "\n";
process.stdout.write(table);
if (MARKDOWN) {
  const previous = existsSync(MARKDOWN) ? readFileSync(MARKDOWN, "utf8") : "";
  writeFileSync(MARKDOWN, previous + `\n### Run on ${LOWER_KIND}\n\n` + table);
}
