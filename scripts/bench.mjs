#!/usr/bin/env node
// npm run bench: the same workloads on a plain directory, on gocryptfs and on
// cryptmount, in one run, interleaved, median of N runs, with ratios.
//
//   node scripts/bench.mjs [--runs 3] [--size-mib 1024] [--files 10000] [--lower tmpfs|disk]
//                          [--only write,read,pwrite,pread,randread,create,ls,tar,rm,memory]
//                          [--jobs 4] [--job-mib 256] [--baseline CHECKOUT] [--markdown FILE]
//                          [--settle 30]
//
// --baseline: also run the cryptmount of another built checkout (its dist/ and
// build/), interleaved with this one, for before/after ratios from one run.
// pwrite / pread / randread: fio with --jobs processes on files of their own
// (--job-mib each): 1 MiB sequential writes (fsync at the end), then 1 MiB
// sequential reads and 4 KiB random reads, cold cache; aggregate MB/s.
// Besides speed, each workload reports the CPU seconds the filesystem's server
// used (user + system, all threads, from /proc/PID/stat; so a figure above the
// wall time means more than one core) and the server's peak RSS at the end.
//
// Needs root (tmpfs, drop_caches), gocryptfs (Debian package), fio and a built dist/.
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
const ONLY = opt("only", "write,read,pwrite,pread,randread,create,ls,tar,rm,memory").split(",");
const JOBS = Number(opt("jobs", "4"));
const JOB_MIB = Number(opt("job-mib", "256"));
const MARKDOWN = opt("markdown", undefined);
/** Seconds of idleness after the memory workload's ls -lR before RSS is read again: both runtimes give memory back late. */
const SETTLE = Number(opt("settle", "30"));
const BASELINE = opt("baseline", undefined);
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

const TICK = Number(sh("getconf CLK_TCK").trim());
/**
 * The process serving a FUSE mount at `dir`: gocryptfs names it on its command
 * line; cryptmount's is the `__serve` child of its CLI (runs are serialized,
 * so there is one).
 */
const serverOf = (dir, cli) => {
  for (const pid of sh("ls /proc")
    .split(/\s+/)
    .filter((p) => /^\d+$/.test(p))) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      if (argv[0].endsWith("gocryptfs") && argv.includes(dir)) return Number(pid);
      if (cli && argv.includes(cli) && argv.includes("__serve")) return Number(pid);
    } catch {
      /* gone */
    }
  }
  return undefined;
};
/** User + system CPU seconds of a process, all its threads. */
const cpuOf = (pid) => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICK;
};
const statusMiB = (pid, field) =>
  Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]) /
  1024;
const peakRssMiB = (pid) => statusMiB(pid, "VmHWM");
/** Resident memory now (not the peak): what the server keeps after a workload. */
const rssMiB = (pid) => statusMiB(pid, "VmRSS");
/** Aggregate MB/s of a fio run (every job together). */
const fio = (dir, rw, bs, extra = "") => {
  const out = sh(
    `fio --name=par --directory=${dir} --numjobs=${JOBS} --size=${JOB_MIB}m --bs=${bs} --rw=${rw} --ioengine=psync --group_reporting --output-format=json ${extra}`,
  );
  const job = JSON.parse(out.slice(out.indexOf("{"))).jobs[0];
  const side = rw.includes("write") ? job.write : job.read;
  return (side.bw_bytes ?? side.bw * 1024) / 1e6;
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

/** A cryptmount system served by the CLI at `cli`. */
function cryptmountAt(cli) {
  return {
    cli,
    setup(dir) {
      const lower = `${dir}.lower`;
      mkdirSync(dir);
      sh(
        `node ${cli} init --no-recovery --passfile ${pass} --kdf-memory 65536 --kdf-iterations 3 ${lower} > /dev/null`,
      );
      sh(`node ${cli} mount --passfile ${pass} ${lower} ${dir}`);
      return { target: dir, teardown: () => sh(`node ${cli} umount ${dir}`) };
    },
  };
}

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
  cryptmount: cryptmountAt(CLI),
  ...(BASELINE && { baseline: cryptmountAt(join(resolve(BASELINE), "dist", "cli", "main.js")) }),
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
  ["pwrite", "MB/s", (t) => fio(t, "write", "1m", "--end_fsync=1")],
  ["pread", "MB/s", (t) => (dropCaches(), fio(t, "read", "1m"))],
  [
    "randread",
    "MB/s",
    (t) => (dropCaches(), fio(t, "randread", "4k", `--io_size=${Math.ceil(JOB_MIB / 4)}m`)),
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
const cpu = {};
const rss = {};
/**
 * The memory workload, per system and run, on a mount of its own (the other
 * workloads leave garbage, and Go and V8 give memory back at different
 * times): RSS at rest after mounting, right after create + ls -lR of FILES
 * small files, and again after SETTLE idle seconds.
 */
const growth = {};
/** Unmounts a system set up at `dir` and removes its mount point and lower. */
const unmountAndRemove = (mounted, dir) => {
  mounted.teardown();
  rmSync(dir, { recursive: true, force: true });
  rmSync(`${dir}.lower`, { recursive: true, force: true });
};
const measureMemory = (name, system, dir) => {
  const mounted = system.setup(dir);
  try {
    const server = serverOf(dir, system.cli);
    const sample = (growth[name] ??= { idle: [], touched: [], settled: [] });
    const pause = (s) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, s * 1000);
    pause(2);
    sample.idle.push(rssMiB(server));
    sh(`mkdir ${dir}/small && python3 ${smallFiles} ${dir}/small ${FILES} 100`);
    sh(`ls -lR ${dir}/small > /dev/null`);
    sample.touched.push(rssMiB(server));
    pause(SETTLE);
    sample.settled.push(rssMiB(server));
  } finally {
    unmountAndRemove(mounted, dir);
  }
};
try {
  for (let run = 0; run < RUNS; run++) {
    for (const [name, system] of Object.entries(systems)) {
      const dir = join(scratch, `${name}-${run}`);
      const mounted = system.setup(dir);
      const server = name === "plain" ? undefined : serverOf(dir, system.cli);
      try {
        for (const [workload, , fn] of workloads) {
          const before = server && cpuOf(server);
          const value = fn(mounted.target);
          ((results[name] ??= {})[workload] ??= []).push(value);
          let note = "";
          if (server) {
            const used = cpuOf(server) - before;
            ((cpu[name] ??= {})[workload] ??= []).push(used);
            ((rss[name] ??= {})[workload] ??= []).push(peakRssMiB(server));
            note = ` (server CPU ${used.toFixed(2)} s)`;
          }
          process.stderr.write(
            `run ${run + 1}/${RUNS} ${name} ${workload}: ${value.toFixed(2)}${note}\n`,
          );
        }
      } finally {
        unmountAndRemove(mounted, dir);
      }
      if (ONLY.includes("memory") && name !== "plain") {
        measureMemory(name, system, `${dir}-memory`);
        process.stderr.write(`run ${run + 1}/${RUNS} ${name} memory: done\n`);
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
const shown = ["gocryptfs", ...(BASELINE ? ["baseline"] : []), "cryptmount"];
const lines = [
  `| workload | plain | gocryptfs |${BASELINE ? " baseline | baseline / gocryptfs |" : ""} cryptmount | cryptmount / gocryptfs speed | server CPU s, ${shown.join(" / ")} | peak RSS MiB, ${shown.join(" / ")} |`,
  `|---|---|---|---|---|---|---|${BASELINE ? "---|---|" : ""}`,
];
const cell = (table, workload, digits) =>
  shown
    .map((s) => (table[s]?.[workload] ? median(table[s][workload]).toFixed(digits) : "–"))
    .join(" / ");
for (const [workload, unit] of workloads) {
  const m = (s) => median(results[s][workload]);
  const speedup = (s) => (unit === "s" ? m("gocryptfs") / m(s) : m(s) / m("gocryptfs"));
  const ratio = speedup("cryptmount");
  const base = BASELINE
    ? ` ${fmt(results.baseline[workload], unit)} | ${speedup("baseline").toFixed(2)}× |`
    : "";
  const label = {
    pwrite: `${JOBS} fio jobs, sequential write ${JOBS} × ${JOB_MIB} MiB, 1 MiB requests (MB/s)`,
    pread: `${JOBS} fio jobs, sequential read of them, 1 MiB requests, cold cache (MB/s)`,
    randread: `${JOBS} fio jobs, 4 KiB random reads, ${JOBS} × ${Math.ceil(JOB_MIB / 4)} MiB, cold cache (MB/s)`,
    write: `sequential write ${SIZE_MIB} MiB (MB/s)`,
    read: `sequential read ${SIZE_MIB} MiB, cold cache (MB/s)`,
    create: `create ${FILES} × 4 KiB files in 100 dirs (s)`,
    ls: "ls -lR of them, cold cache (s)",
    tar: `tar -x of node_modules, ${tarFiles} entries (s)`,
    rm: "rm -rf of both trees, cold cache (s)",
  }[workload];
  lines.push(
    `| ${label} | ${fmt(results.plain[workload], unit)} | ${fmt(results.gocryptfs[workload], unit)} |${base} ${fmt(results.cryptmount[workload], unit)} | **${ratio.toFixed(2)}×** | ${cell(cpu, workload, 2)} | ${cell(rss, workload, 0)} |`,
  );
}
const node = process.version;
const gocryptfsVersion = sh("gocryptfs -version").split("\n")[0];
const header = `Lower: ${LOWER_KIND}; ${RUNS} runs, median [min–max]; ${new Date().toISOString().slice(0, 10)}; node ${node}; ${gocryptfsVersion}; ${execFileSync("nproc").toString().trim()} cores.\n\n`;
// The memory measure: what the server keeps per file it was shown (created, then listed).
const perFile = shown
  .filter((sys) => growth[sys]?.idle.length)
  .map((sys) => {
    const idle = median(growth[sys].idle);
    const touched = median(growth[sys].touched);
    const settled = median(growth[sys].settled);
    const kib = (mib) => (((mib - idle) * 1024) / FILES).toFixed(2);
    return `${sys} ${idle.toFixed(0)} → ${touched.toFixed(0)} MiB (${kib(touched)} KiB per file), ${settled.toFixed(0)} MiB ${SETTLE} s later (${kib(settled)} KiB per file)`;
  });
const memoryLine = perFile.length
  ? `\nServer RSS on a fresh mount, at rest → right after create + ls -lR of ${FILES} files, and once idle: ${perFile.join("; ")}.\n`
  : "";
const table = header + lines.join("\n") + "\n" + memoryLine;
process.stdout.write(table);
if (MARKDOWN) {
  const previous = existsSync(MARKDOWN) ? readFileSync(MARKDOWN, "utf8") : "";
  writeFileSync(MARKDOWN, previous + `\n### Run on ${LOWER_KIND}\n\n` + table);
}
