// Many processes on the same few files at once: a dozen python3 workers
// (test/helpers/concurrency_worker.py) open, truncate (O_TRUNC, ftruncate,
// truncate by path), write self-verifying records (each names its writer,
// offset and generation, and straddles page and 32 KiB block boundaries),
// read, close and rename the same small set of files for a fixed time, with
// default options and with --async-metadata. Afterwards every file reads
// without error, every record in it is whole (never a mix of two writes),
// every size is a multiple of the record size, the server is alive, and fsck
// of the unmounted lower is clean (exit 0).

import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { rescue } from "../helpers/hostile.js";
import {
  HELPERS,
  Sandbox,
  alive,
  haveFuse,
  readLog,
  runOk,
  sandboxSuite,
  sleep,
  start,
  type RunResult,
} from "../helpers/volume.js";
import { fsck } from "../helpers/volume-tools.js";

const script = join(HELPERS, "concurrency_worker.py");
const WORKERS = Number(process.env.CRYPTMOUNT_CONCURRENCY_WORKERS ?? 12);
const SECONDS = Number(process.env.CRYPTMOUNT_CONCURRENCY_SECONDS ?? 15);
const FILES = 5;
const SEED = Number(process.env.CRYPTMOUNT_CONCURRENCY_SEED ?? Date.now() % 1_000_000);
/** Errors a worker may meet: a file another worker just renamed away. */
const EXPECTED_ERRORS = /:ENOENT$/;

let sb: Sandbox;

interface WorkerReport {
  worker: number;
  counts: Record<string, number>;
  errors: Record<string, number>;
  generations: number;
}

interface VerifyReport {
  files: Record<string, { size: number; records: number }>;
  problems: string[];
}

async function hammer(label: string, mountArgs: string[]): Promise<void> {
  const lower = await sb.createVolume();
  const m = await sb.mount(lower, { args: mountArgs });
  const dir = join(m.mountpoint, "shared");
  await runOk("mkdir", [dir]);

  const workers = Array.from({ length: WORKERS }, (_, i) =>
    start(
      "python3",
      [script, "work", dir, String(i), String(SEED), String(SECONDS), String(FILES)],
      {
        timeoutMs: (SECONDS + 30) * 1000,
      },
    ),
  );
  // A worker stuck in a request a hung server never answers ignores SIGKILL:
  // do not wait on it past the deadline, abort the connection instead.
  const all = Promise.all(workers.map((w) => w.done));
  let results = await Promise.race([all, sleep((SECONDS + 25) * 1000).then(() => undefined)]);
  let hung = false;
  if (!results) {
    hung = true;
    await rescue(m.mountpoint);
    results = await Promise.race([all, sleep(10_000).then(() => undefined)]);
  }
  expect(
    hung,
    `${label}: workers still running ${SECONDS + 25} s after the start (seed ${SEED})`,
  ).toBe(false);

  const reports: WorkerReport[] = [];
  const problems: string[] = [];
  for (const [i, r] of (results as RunResult[]).entries()) {
    if (r.code !== 0) {
      problems.push(`worker ${i}: exit ${r.code} ${r.signal ?? ""} ${r.stderr.trim()}`);
      continue;
    }
    const report = JSON.parse(r.stdout) as WorkerReport;
    reports.push(report);
    for (const [key, n] of Object.entries(report.errors))
      if (!EXPECTED_ERRORS.test(key)) problems.push(`worker ${i}: ${n} x ${key}`);
  }
  const totals: Record<string, number> = {};
  for (const rep of reports)
    for (const [k, n] of Object.entries(rep.counts)) totals[k] = (totals[k] ?? 0) + n;
  console.log(`${label} (seed ${SEED}): ${WORKERS} workers for ${SECONDS} s:`, totals);
  // What the server logged (warnings and errors), by message: the first clue when this fails.
  const logged: Record<string, number> = {};
  for (const rec of await readLog(m.logFile))
    if (rec.level >= 40) logged[rec.msg] = (logged[rec.msg] ?? 0) + 1;
  console.log(`${label}: server warnings and errors`, logged);
  // Soft: the checks after the run say more about the same failure.
  expect.soft(problems, `${label}: errors during the run (seed ${SEED})`).toEqual([]);
  expect(totals.record ?? 0, "records written").toBeGreaterThan(WORKERS * 10);

  // Every file reads, and holds only whole records (or holes).
  const verified = await runOk("python3", [script, "verify", dir], { timeoutMs: 60_000 });
  const report = JSON.parse(verified) as VerifyReport;
  console.log(`${label}: files afterwards`, report.files);
  expect.soft(report.problems, `${label}: files after the run (seed ${SEED})`).toEqual([]);
  expect(Object.keys(report.files).length).toBeGreaterThan(0);
  expect(alive(m.pid), `${label}: server alive`).toBe(true);

  await sb.unmount(m);
  const checked = await fsck(sb, lower);
  expect.soft(checked.report.problems, `${label}: fsck problems`).toEqual([]);
  expect(checked.code, `${label}: fsck exit code`).toBe(0);
}

describe.skipIf(!haveFuse)("concurrent processes on the same files", () => {
  sandboxSuite("concurrency", (s) => {
    sb = s;
  });

  it("default options: records stay whole, nothing fails, fsck is clean", async () => {
    await hammer("default", []);
  }, 120_000);

  it("--async-metadata: records stay whole, nothing fails, fsck is clean", async () => {
    await hammer("--async-metadata", ["--async-metadata"]);
  }, 120_000);
});
