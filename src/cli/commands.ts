import { execFile } from "node:child_process";
import { readFile, realpath } from "node:fs/promises";
import { promisify } from "node:util";
import { readNewPassphrase, readSecret } from "../keys/secret-input.js";
import { listRecords } from "../mount/runtime.js";
import { currentMounts } from "../mount/mountinfo.js";
import { CONFIG_VERSION } from "../format/config.js";
import { initVolume, loadConfig, type SlotRequest } from "../volume/volume.js";
import { EXIT, UserError } from "../errors.js";
import { requireFitLower } from "../volume/lower-probe.js";
import type { Argon2Params } from "../format/config.js";
import { argon2FromOptions, type CommonOptions } from "./options.js";
import { recoveryOutput, type RecoveryOutput } from "./recovery-output.js";

const run = promisify(execFile);

export interface InitCommandOptions extends CommonOptions {
  blockSize?: number;
  kdfMemory?: number;
  kdfIterations?: number;
  kdfParallelism?: number;
  recovery?: boolean;
  recoveryKeyFile?: string;
  probe?: boolean;
}

export async function initCommand(lower: string, opts: InitCommandOptions): Promise<number> {
  const kdf = argon2FromOptions(opts); // bad parameters first: a usage error before anything else
  const recovery = opts.recovery !== false;
  if (!recovery && opts.recoveryKeyFile)
    throw new UserError("--recovery-key-file and --no-recovery contradict each other", EXIT.usage);
  await requireFitLower("init", lower, opts); // before a passphrase is asked for or anything written
  // Where the key will go is settled before a passphrase is asked for or anything is created.
  const output = recovery
    ? await recoveryOutput("init", opts.recoveryKeyFile, "--no-recovery")
    : undefined;
  try {
    return await createVolume(lower, opts, kdf, recovery, output);
  } finally {
    await output?.abandon();
  }
}

async function createVolume(
  lower: string,
  opts: InitCommandOptions,
  kdf: Argon2Params,
  recovery: boolean,
  output: RecoveryOutput | undefined,
): Promise<number> {
  const slots: SlotRequest[] = [];
  let created;
  try {
    if (opts.keyfile)
      slots.push({ secret: await readSecret({ keyfile: opts.keyfile }), label: "key file" });
    if (!opts.keyfile || opts.passfile || opts.extpass) {
      const passphrase = await readNewPassphrase({
        ...(opts.passfile ? { passfile: opts.passfile } : {}),
        ...(opts.extpass ? { extpass: opts.extpass } : {}),
      });
      slots.unshift({ secret: passphrase, label: "passphrase", kdf });
    }
    created = await initVolume(lower, {
      slots,
      ...(opts.blockSize ? { blockSize: opts.blockSize } : {}),
      recovery,
    });
  } finally {
    for (const s of slots) s.secret.bytes.fill(0);
  }
  const { config, recoveryKey } = created;
  process.stdout.write(`Created cryptmount volume ${config.volumeId} in ${lower}\n`);
  if (recoveryKey && output) {
    await output.deliver(
      recoveryKey,
      "Recovery key (shown only now; write it down and keep it apart from this machine):",
    );
    process.stdout.write(
      `It opens the volume if the passphrase is lost: cryptmount passwd --recovery ${lower}\n`,
    );
  }
  return EXIT.ok;
}

/** True while `pid` lives; an exited server awaiting its reaper (state Z) counts as gone. */
async function running(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  return (
    stat !== undefined && stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z"
  );
}

/** Unmounts with fusermount (works for the owner) and waits for the server to exit. */
export async function umountCommand(
  mountpointArg: string,
  opts: { lazy?: boolean },
): Promise<number> {
  const mountpoint = await realpath(mountpointArg).catch(() => mountpointArg);
  const mounted = (await currentMounts()).some(
    (m) => m.mountpoint === mountpoint && m.fstype.startsWith("fuse"),
  );
  if (!mounted)
    throw new UserError(`${mountpoint}: not a mounted cryptmount volume`, EXIT.mountPoint);
  const record = (await listRecords()).find((r) => r.mountpoint === mountpoint);
  try {
    await run("fusermount", [opts.lazy ? "-uz" : "-u", mountpoint]);
  } catch (err) {
    const stderr = String((err as { stderr?: string }).stderr ?? "").trim();
    if (/busy/i.test(stderr))
      throw new UserError(
        `${mountpoint}: target is busy (use --lazy to detach anyway)`,
        EXIT.failure,
      );
    throw new UserError(
      `${mountpoint}: unmount failed: ${stderr || (err as Error).message}`,
      EXIT.failure,
    );
  }
  if (record) {
    for (let i = 0; i < 100; i++) {
      if (!(await running(record.pid))) break;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return EXIT.ok;
}

export async function infoCommand(lower: string, opts: { json?: boolean }): Promise<number> {
  const { config, usedBackup } = await loadConfig(lower);
  const summary = {
    volumeId: config.volumeId,
    formatVersion: config.version,
    created: config.created,
    features: config.features,
    blockSize: config.blockSize,
    keyEpoch: config.epoch,
    rekeyInProgress: config.rekey ? { from: config.rekey.from, to: config.rekey.to } : undefined,
    slots: config.slots.map((s) => ({ id: s.id, kind: s.kind, label: s.label, kdf: s.kdf })),
    configSource: usedBackup ? "backup (primary unreadable)" : "primary",
  };
  if (opts.json) {
    process.stdout.write(JSON.stringify(summary, null, 2) + "\n");
    return EXIT.ok;
  }
  const lines = [
    `volume:        ${summary.volumeId}`,
    `format:        v${summary.formatVersion} (${summary.features.join(", ")})` +
      (config.version < CONFIG_VERSION ? "; mounts read-only until cryptmount upgrade" : ""),
    `created:       ${summary.created}`,
    `block size:    ${summary.blockSize} bytes`,
    `key epoch:     ${summary.keyEpoch}${config.rekey ? ` (rekey from ${config.rekey.from} unfinished)` : ""}`,
    `config:        ${summary.configSource}`,
    "key slots:",
    ...summary.slots.map((s) => {
      const kdf = s.kdf
        ? ` argon2id m=${s.kdf.memoryKiB}KiB t=${s.kdf.iterations} p=${s.kdf.parallelism}`
        : "";
      return `  ${String(s.id).padStart(2)}  ${s.kind.padEnd(10)} ${s.label ?? ""}${kdf}`;
    }),
  ];
  process.stdout.write(lines.join("\n") + "\n");
  return EXIT.ok;
}

export async function statusCommand(opts: { json?: boolean }): Promise<number> {
  const mounts = await currentMounts();
  const records = (await listRecords()).filter((r) =>
    mounts.some((m) => m.mountpoint === r.mountpoint),
  );
  if (opts.json) {
    process.stdout.write(JSON.stringify(records, null, 2) + "\n");
    return EXIT.ok;
  }
  if (records.length === 0) {
    process.stdout.write("no cryptmount volumes mounted\n");
    return EXIT.ok;
  }
  for (const r of records) {
    const flags = [r.readOnly ? "ro" : "rw", r.allowOther ? "allow_other" : ""]
      .filter(Boolean)
      .join(",");
    process.stdout.write(
      `${r.mountpoint}  from ${r.lower}  key=${r.keySource}  ${flags}  since ${r.since}  pid ${r.pid}\n`,
    );
  }
  return EXIT.ok;
}
