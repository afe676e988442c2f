#!/usr/bin/env node
// Times the passphrase KDF (Argon2id, as used for passphrase key slots) on
// this machine: ARGON2_DEFAULT, ARGON2_MINIMUM and a few alternatives, each
// the median of 3 runs, so ARGON2_DEFAULT can be checked against its target
// of about one second.
//
// Usage: npm run bench:kdf        (builds dist/ first)
//        node scripts/bench-kdf.mjs [--runs N] [--json]

import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import { availableParallelism, cpus, totalmem } from "node:os";

const dist = new URL("../dist/", import.meta.url);
let config;
let kek;
try {
  config = await import(new URL("format/config.js", dist).href);
  kek = await import(new URL("keys/kek.js", dist).href);
} catch (err) {
  console.error(`bench-kdf: cannot load dist/ (${err.message}); run \`npx tsc -p .\` first`);
  process.exit(1);
}

const args = process.argv.slice(2);
const runsAt = args.indexOf("--runs");
const runs = runsAt >= 0 ? Number(args[runsAt + 1]) : 3;
const asJson = args.includes("--json");
if (!Number.isInteger(runs) || runs < 1) {
  console.error("bench-kdf: --runs takes a positive integer");
  process.exit(2);
}

const TARGET_MS = 1000;
const { ARGON2_DEFAULT, ARGON2_MINIMUM } = config;

const candidates = [
  { name: "ARGON2_MINIMUM", params: ARGON2_MINIMUM },
  { name: "ARGON2_DEFAULT", params: ARGON2_DEFAULT },
  {
    name: "m=128MiB t=4 p=1",
    params: { algorithm: "argon2id", memoryKiB: 131072, iterations: 4, parallelism: 1 },
  },
  {
    name: "m=256MiB t=3 p=1",
    params: { algorithm: "argon2id", memoryKiB: 262144, iterations: 3, parallelism: 1 },
  },
  {
    name: "m=256MiB t=4 p=2",
    params: { algorithm: "argon2id", memoryKiB: 262144, iterations: 4, parallelism: 2 },
  },
  {
    name: "m=512MiB t=2 p=1",
    params: { algorithm: "argon2id", memoryKiB: 524288, iterations: 2, parallelism: 1 },
  },
];

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

async function time(params) {
  const passphrase = Buffer.from("correct horse battery staple", "utf8");
  const salt = randomBytes(16);
  const start = performance.now();
  const key = await kek.argon2Kek(passphrase, salt, params);
  const elapsed = performance.now() - start;
  key.fill(0);
  return elapsed;
}

if (!asJson) {
  const cpu = cpus()[0]?.model ?? "unknown CPU";
  console.log(
    `Argon2id on ${cpu}, ${availableParallelism()} threads, ${Math.round(totalmem() / 2 ** 30)} GiB RAM, node ${process.version}`,
  );
  console.log(`median of ${runs} run(s) each; target for ARGON2_DEFAULT is ~${TARGET_MS} ms\n`);
}

// One throw-away run so the first measurement does not pay for loading the addon.
await time(ARGON2_MINIMUM);

const results = [];
for (const { name, params } of candidates) {
  const samples = [];
  for (let i = 0; i < runs; i++) samples.push(await time(params));
  const result = {
    name,
    params,
    medianMs: Math.round(median(samples)),
    samplesMs: samples.map(Math.round),
  };
  results.push(result);
  if (!asJson) {
    const p = `m=${params.memoryKiB / 1024} MiB, t=${params.iterations}, p=${params.parallelism}`;
    console.log(
      `${name.padEnd(18)} ${p.padEnd(26)} ${String(result.medianMs).padStart(6)} ms   (${result.samplesMs.join(", ")})`,
    );
  }
}

const def = results.find((r) => r.name === "ARGON2_DEFAULT");
const ratio = def.medianMs / TARGET_MS;
const verdict =
  ratio > 2
    ? `ARGON2_DEFAULT takes ${def.medianMs} ms: more than twice the ~1 s target on this machine.`
    : ratio < 0.5
      ? `ARGON2_DEFAULT takes ${def.medianMs} ms: less than half the ~1 s target on this machine.`
      : `ARGON2_DEFAULT takes ${def.medianMs} ms: within a factor of two of the ~1 s target.`;

if (asJson) console.log(JSON.stringify({ runs, targetMs: TARGET_MS, results, verdict }, null, 2));
else console.log(`\n${verdict}`);
