#!/usr/bin/env node
// npm run bench:fsck: how fast `cryptmount fsck` verifies file content, next to
// the AES-256-GCM speed of one core (node:crypto with the format's 32 KiB blocks,
// and `openssl speed`), and what a repeat check of an unchanged volume costs.
//
//   node scripts/bench-fsck.mjs [--size-mib 1024] [--files 10000] [--runs 3] [--dir /dev/shm]
//
// Needs /dev/fuse and a built dist/ (one file is written through a mount). Run it
// under `flock /tmp/cryptmount-fuse.lock` on a shared machine.
import { spawnSync } from "node:child_process";
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { mkdtempSync, mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const SIZE_MIB = Number(opt("size-mib", "1024"));
const FILES = Number(opt("files", "10000"));
const RUNS = Number(opt("runs", "3"));
const BASE = opt("dir", "/dev/shm");
const ROOT = resolve(new URL("..", import.meta.url).pathname);
const CLI = join(ROOT, "dist", "cli", "main.js");
const BLOCK = 32 * 1024;

function run(cmd, argv, { allow = [0] } = {}) {
  const r = spawnSync(cmd, argv, { stdio: ["ignore", "pipe", "pipe"], maxBuffer: 1 << 26 });
  if (!allow.includes(r.status))
    throw new Error(`${cmd} ${argv.join(" ")}: exit ${r.status}\n${r.stderr}`);
  return r.stdout.toString();
}
const cryptmount = (...argv) => run(process.execPath, [CLI, ...argv]);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const range = (xs, digits = 0) =>
  `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`;

/** AES-256-GCM opens of 32 KiB blocks, one decipher per block (what fsck does), MB/s. */
function nodeGcmOpen(totalMiB) {
  const key = randomBytes(32);
  const count = 256; // 8 MiB of sealed blocks, opened over and over
  const blocks = Array.from({ length: count }, (_, i) => {
    const nonce = randomBytes(12);
    const aad = Buffer.alloc(25, i);
    const c = createCipheriv("aes-256-gcm", key, nonce).setAAD(aad);
    const body = Buffer.concat([c.update(randomBytes(BLOCK)), c.final()]);
    return { nonce, aad, body, tag: c.getAuthTag() };
  });
  const rounds = Math.ceil((totalMiB * 1024 * 1024) / (count * BLOCK));
  const t0 = process.hrtime.bigint();
  for (let r = 0; r < rounds; r++) {
    for (const b of blocks) {
      const d = createDecipheriv("aes-256-gcm", key, b.nonce).setAAD(b.aad).setAuthTag(b.tag);
      d.update(b.body);
      d.final();
    }
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return (rounds * count * BLOCK) / 1e6 / seconds;
}

/** `openssl speed -evp aes-256-gcm` at 32 KiB, MB/s (encryption; decryption runs the same code). */
function opensslGcm() {
  const r = spawnSync(
    "openssl",
    ["speed", "-evp", "aes-256-gcm", "-bytes", String(BLOCK), "-seconds", "3"],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  if (r.status !== 0) return undefined;
  const line = r.stdout
    .toString()
    .split("\n")
    .find((l) => /^aes-256-gcm/i.test(l.trim()));
  const kb = line?.trim().split(/\s+/).pop()?.replace(/k$/, "");
  return kb ? (Number(kb) * 1000) / 1e6 : undefined;
}

const dir = mkdtempSync(join(BASE, "cryptmount-bench-fsck-"));
const mnt = join(dir, "mnt");
const pass = join(dir, "pass");

/** A new volume, filled through a mount by `fill(mountpoint)`. */
function volume(name, fill) {
  const lower = join(dir, name);
  const kdf = ["--kdf-memory", "65536", "--kdf-iterations", "3"];
  cryptmount("init", "--passfile", pass, "--no-recovery", ...kdf, lower);
  cryptmount("mount", "--passfile", pass, lower, mnt);
  try {
    fill(mnt);
  } finally {
    cryptmount("umount", mnt);
  }
  return lower;
}

/** fsck's own report; its `seconds` are the walk and the check, not the unlock. */
const fsck = (lower, ...extra) =>
  JSON.parse(cryptmount("fsck", "--passfile", pass, "--json", ...extra, lower));

try {
  writeFileSync(pass, "bench passphrase\n", { mode: 0o600 });
  mkdirSync(mnt);
  const big = volume("big", (m) =>
    run("dd", [
      "if=/dev/urandom",
      `of=${join(m, "big.bin")}`,
      "bs=1M",
      `count=${SIZE_MIB}`,
      "conv=fsync",
      "status=none",
    ]),
  );
  // Small files in 100 directories: what a check costs per file.
  const small = volume("small", (m) =>
    run("python3", [
      "-c",
      "import os,sys\nroot,n=sys.argv[1],int(sys.argv[2])\nfor i in range(n):\n d=os.path.join(root,str(i%100))\n os.makedirs(d,exist_ok=True)\n open(os.path.join(d,str(i)),'wb').write(os.urandom(4096))",
      m,
      String(FILES),
    ]),
  );
  const full = [];
  const smallFull = [];
  for (let i = 0; i < RUNS; i++) {
    const report = fsck(big, "--full", "--no-record");
    if (!report.clean || report.bytes !== SIZE_MIB * 1024 * 1024)
      throw new Error("fsck: unexpected report");
    full.push(report.bytes / 1e6 / report.seconds);
    smallFull.push(fsck(small, "--full", "--no-record").seconds);
  }
  await new Promise((r) => setTimeout(r, 2100)); // past fsck's racy margin: files are recorded
  fsck(big, "--full");
  fsck(small, "--full");
  const bigRepeat = [];
  const smallRepeat = [];
  for (let i = 0; i < RUNS; i++) {
    const a = fsck(big);
    const b = fsck(small);
    if (a.skipped !== 1 || b.skipped !== FILES)
      throw new Error("fsck: unchanged files were read again");
    bigRepeat.push(a.seconds * 1000);
    smallRepeat.push(b.seconds);
  }
  const recordSize = statSync(join(small, "cryptmount.fsck")).size;
  const node = [];
  for (let i = 0; i < RUNS; i++) node.push(nodeGcmOpen(SIZE_MIB));
  const openssl = opensslGcm();

  const row = (what, xs, digits = 0) =>
    console.log(`| ${what} | ${median(xs).toFixed(digits)} [${range(xs, digits)}] |`);
  console.log(`| measurement (lower on ${BASE}, median of ${RUNS} [min–max]) | result |`);
  console.log("|---|---|");
  row(`\`fsck --full\`, one ${SIZE_MIB} MiB file: content verified (MB/s)`, full);
  row("node:crypto AES-256-GCM open, 32 KiB blocks, one core (MB/s)", node);
  if (openssl !== undefined)
    console.log(
      `| \`openssl speed -evp aes-256-gcm -bytes 32768\` (MB/s) | ${openssl.toFixed(0)} |`,
    );
  row(`repeat \`fsck\` of the unchanged ${SIZE_MIB} MiB file (ms)`, bigRepeat);
  row(`\`fsck --full\`, ${FILES} files of 4 KiB in 100 directories (s)`, smallFull, 2);
  row(`repeat \`fsck\` of the ${FILES} unchanged files (s)`, smallRepeat, 2);
  console.log(`| check record of ${FILES} files (bytes) | ${recordSize} |`);
} finally {
  spawnSync("fusermount3", ["-u", "-q", mnt]);
  rmSync(dir, { recursive: true, force: true });
}
