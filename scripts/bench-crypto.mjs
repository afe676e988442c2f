#!/usr/bin/env node
// npm run bench:crypto: the crypto of cryptmount's hot paths, JS against the
// native addon (native/crypto/crypto.c), on this machine:
//
//   names      AES-256-SIV of a 32-byte padded name: @noble/ciphers (key expanded
//              every call) vs OpenSSL with the key expanded once
//   blocks     1 MiB of 32 KiB blocks (the default): sealBlocks + pwrite on the JS thread vs one
//              native job (seal + pwrite); likewise pread + openBlocks vs openRead;
//              one block inline (sealBlocks / openBlocks) vs node:crypto
//   parallel   N concurrent 1 MiB native jobs: the aggregate speed, to see
//              several cores at work (compare with --jobs 1)
//
//   node scripts/bench-crypto.mjs [--jobs 4] [--seconds 2]
// Needs a built dist/ and build/ (npm run build, npm run build:native).
import { randomBytes } from "node:crypto";
import { closeSync, mkdtempSync, openSync, rmSync, writeSync, readSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { aessiv } from "@noble/ciphers/aes.js";
import { sivSeal } from "../dist/crypto/siv.js";
import { cryptoAddon } from "../dist/crypto/native.js";
import { ContentGeometry, openBlocks, sealBlocks } from "../dist/format/content.js";
import { randomPool } from "../dist/crypto/random.js";
import { gcmSeal } from "../dist/crypto/aead.js";
import { DEFAULT_BLOCK_SIZE } from "../dist/format/config.js";

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const JOBS = Number(opt("jobs", "4"));
const SECONDS = Number(opt("seconds", "2"));

const now = () => Number(process.hrtime.bigint()) / 1e9;
/** Calls `fn` for about SECONDS; the mean time of a call in microseconds. */
async function per(fn) {
  let n = 0;
  const t0 = now();
  while (now() - t0 < SECONDS) {
    for (let i = 0; i < 16; i++) await fn();
    n += 16;
  }
  return ((now() - t0) / n) * 1e6;
}

const addon = cryptoAddon();
const nameKey = randomBytes(64);
const dirId = randomBytes(16);
const name = randomBytes(32);
const noble = await per(() => aessiv(nameKey, dirId).encrypt(name));
const native = await per(() => sivSeal(nameKey, [dirId], name));
console.log(
  `names: @noble/ciphers ${noble.toFixed(1)} us, OpenSSL cached key ${native.toFixed(1)} us (${(noble / native).toFixed(1)}x)`,
);

const B = DEFAULT_BLOCK_SIZE;
const geometry = new ContentGeometry(B);
const file = { fileKey: randomBytes(32), fileId: randomBytes(16), geometry };
const MiB = 1 << 20;
const plain = randomBytes(MiB);
const blocks = MiB / B;
const sealedLength = MiB + blocks * 28;
// Full blocks only, never the final one: the file goes on.
const dir = mkdtempSync(join(tmpdir(), "cryptmount-bench-crypto-"));
const fds = Array.from({ length: JOBS }, (_, i) => openSync(join(dir, `f${i}`), "w+"));
const mbps = (us) => (MiB / us).toFixed(0);
const nonces = () => randomPool.bytes(blocks * 12);
const { fileKey, fileId } = file;
const sealJob = (fd) => addon.sealWrite(fd, fileKey, fileId, 0, plain, false, nonces(), B, 0);
const openJob = (fd, out) =>
  addon.openRead(fd, fileKey, fileId, 0, blocks + 5, false, out, B, 0, sealedLength);
try {
  const jsWrite = await per(() => {
    const sealed = sealBlocks(file, 0, plain, false);
    writeSync(fds[0], sealed, 0, sealed.length, 0);
  });
  const nativeWrite = await per(() => sealJob(fds[0]));
  console.log(
    `write 1 MiB: sealBlocks + writeSync ${jsWrite.toFixed(0)} us (${mbps(jsWrite)} MB/s), native job ${nativeWrite.toFixed(0)} us (${mbps(nativeWrite)} MB/s)`,
  );
  const sealedBuf = Buffer.allocUnsafe(sealedLength);
  const jsRead = await per(() => {
    readSync(fds[0], sealedBuf, 0, sealedLength, 0);
    return openBlocks(file, 0, sealedBuf, blocks + 5).cleartext;
  });
  const out = Buffer.allocUnsafe(MiB);
  const nativeRead = await per(() => openJob(fds[0], out));
  console.log(
    `read 1 MiB: readSync + openBlocks ${jsRead.toFixed(0)} us (${mbps(jsRead)} MB/s), native job ${nativeRead.toFixed(0)} us (${mbps(nativeRead)} MB/s)`,
  );
  const block = plain.subarray(0, B);
  const one = { ...file, geometry };
  const sealOne = await per(() => sealBlocks(one, 0, block, false));
  const sealedOne = sealBlocks(one, 0, block, false);
  const openOne = await per(() => openBlocks(one, 0, sealedOne, 5));
  const gcm = await per(() => gcmSeal(fileKey, randomBytes(12), fileId, block));
  console.log(
    `one ${B / 1024} KiB block inline: sealBlocks ${sealOne.toFixed(1)} us, openBlocks ${openOne.toFixed(1)} us; node:crypto createCipheriv ${gcm.toFixed(1)} us`,
  );

  for (const [what, job] of [
    ["write", sealJob],
    ["read", (fd) => openJob(fd, Buffer.allocUnsafe(MiB))],
  ]) {
    for (const fd of fds) await sealJob(fd);
    const cpu0 = process.cpuUsage();
    const t0 = now();
    let done = 0;
    await Promise.all(
      fds.map(async (fd) => {
        while (now() - t0 < SECONDS) {
          await job(fd);
          done++;
        }
      }),
    );
    const wall = now() - t0;
    const cpu = process.cpuUsage(cpu0);
    console.log(
      `parallel ${what}, ${JOBS} jobs: ${((done * MiB) / wall / 1e6).toFixed(0)} MB/s, ${((cpu.user + cpu.system) / 1e6 / wall).toFixed(2)} cores busy`,
    );
  }
} finally {
  for (const fd of fds) closeSync(fd);
  rmSync(dir, { recursive: true, force: true });
}
