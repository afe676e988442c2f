#!/usr/bin/env node
// npm run bench:fsck: how fast `cryptmount fsck` verifies file content, next to
// the AES-256-GCM speed of one core (node:crypto with the format's 32 KiB blocks,
// and `openssl speed`), and what a repeat check of an unchanged volume costs.
//
//   node scripts/bench-fsck.mjs [--size-mib 1024] [--runs 3] [--dir /dev/shm]
//
// Needs /dev/fuse and a built dist/ (one file is written through a mount). Run it
// under `flock /tmp/cryptmount-fuse.lock` on a shared machine.
import { spawnSync } from "node:child_process";
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const SIZE_MIB = Number(opt("size-mib", "1024"));
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
const range = (xs) => `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)}`;

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
  const r = spawnSync("openssl", ["speed", "-evp", "aes-256-gcm", "-bytes", String(BLOCK), "-seconds", "3"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  if (r.status !== 0) return undefined;
  const line = r.stdout.toString().split("\n").find((l) => /^aes-256-gcm/i.test(l.trim()));
  const kb = line?.trim().split(/\s+/).pop()?.replace(/k$/, "");
  return kb ? (Number(kb) * 1000) / 1e6 : undefined;
}

const dir = mkdtempSync(join(BASE, "cryptmount-bench-fsck-"));
const lower = join(dir, "lower");
const mnt = join(dir, "mnt");
const pass = join(dir, "pass");
try {
  writeFileSync(pass, "bench passphrase\n", { mode: 0o600 });
  mkdirSync(mnt);
  cryptmount("init", "--passfile", pass, "--no-recovery", "--kdf-memory", "65536", "--kdf-iterations", "3", lower);
  cryptmount("mount", "--passfile", pass, lower, mnt);
  try {
    run("dd", ["if=/dev/urandom", `of=${join(mnt, "big.bin")}`, "bs=1M", `count=${SIZE_MIB}`, "conv=fsync", "status=none"]);
  } finally {
    cryptmount("umount", mnt);
  }
  // fsck's own timing (report.seconds): the walk and the content check, not the unlock.
  const fsck = (...extra) => JSON.parse(cryptmount("fsck", "--passfile", pass, "--json", ...extra, lower));
  const full = [];
  for (let i = 0; i < RUNS; i++) {
    const report = fsck("--full", "--no-record");
    if (!report.clean || report.bytes !== SIZE_MIB * 1024 * 1024) throw new Error("fsck: unexpected report");
    full.push(report.bytes / 1e6 / report.seconds);
  }
  await new Promise((r) => setTimeout(r, 2100)); // past fsck's racy margin: the file is recorded
  fsck("--full");
  const repeat = [];
  for (let i = 0; i < RUNS; i++) {
    const report = fsck();
    if (report.skipped !== 1) throw new Error("fsck: the unchanged file was read again");
    repeat.push(report.seconds * 1000);
  }
  const node = [];
  for (let i = 0; i < RUNS; i++) node.push(nodeGcmOpen(SIZE_MIB));
  const openssl = opensslGcm();

  console.log(`| measurement (${SIZE_MIB} MiB file on ${BASE}, median of ${RUNS} [min–max]) | result |`);
  console.log("|---|---|");
  console.log(`| \`cryptmount fsck --full\`: content verified (MB/s) | ${median(full).toFixed(0)} [${range(full)}] |`);
  console.log(`| node:crypto AES-256-GCM open, 32 KiB blocks, one core (MB/s) | ${median(node).toFixed(0)} [${range(node)}] |`);
  if (openssl !== undefined)
    console.log(`| \`openssl speed -evp aes-256-gcm -bytes 32768\` (MB/s) | ${openssl.toFixed(0)} |`);
  console.log(`| repeat \`cryptmount fsck\` of the unchanged volume (ms, check only) | ${median(repeat).toFixed(0)} [${range(repeat)}] |`);
} finally {
  spawnSync("fusermount3", ["-u", "-q", mnt]);
  rmSync(dir, { recursive: true, force: true });
}
