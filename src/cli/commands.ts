import { execFile } from "node:child_process";
import { readFile, realpath, stat } from "node:fs/promises";
import { promisify } from "node:util";
import { readNewPassphrase, readSecret } from "../keys/secret-input.js";
import { listRecords } from "../mount/runtime.js";
import { currentMounts } from "../mount/mountinfo.js";
import { CONFIG_VERSION } from "../format/config.js";
import { initVolume, loadConfig, newVolumeId, type SlotRequest } from "../volume/volume.js";
import { trusteeSlotOf } from "../volume/slots.js";
import type { TrusteeSlotInfo, VolumeConfig } from "../format/config.js";
import type { DeviceKeys } from "../agent/device.js";
import {
  abandonNewVolume,
  depositTrusteeSecret,
  keepPassphraseChoice,
  loadThisDevice,
  newTrusteeSecret,
  planTrusteeSlot,
  type DeviceSource,
} from "./trustee-volume.js";
import { EXIT, UserError } from "../errors.js";
import { requireFitLower } from "../volume/lower-probe.js";
import type { Argon2Params } from "../format/config.js";
import { argon2FromOptions, type CommonOptions } from "./options.js";
import { recoveryOutput, type RecoveryOutput } from "./recovery-output.js";

const run = promisify(execFile);

export interface InitCommandOptions extends CommonOptions, DeviceSource {
  /** --trustee URL: add a trustee slot whose secret is deposited there. */
  trustee?: string;
  trusteeVolume?: string;
  keepPassphrase?: boolean;
  trusteeOnly?: boolean;
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
  if (!opts.trustee && (opts.trusteeVolume || opts.keepPassphrase || opts.trusteeOnly))
    throw new UserError(
      "--trustee-volume, --keep-passphrase and --trustee-only go with --trustee",
      EXIT.usage,
    );
  await requireFitLower("init", lower, opts); // before a passphrase is asked for or anything written
  // Where the key will go is settled before a passphrase is asked for or anything is created.
  const output = recovery
    ? await recoveryOutput("init", opts.recoveryKeyFile, "--no-recovery")
    : undefined;
  try {
    const trustee = opts.trustee ? await trusteeInitPlan(opts) : undefined;
    return await createVolume(lower, opts, kdf, recovery, output, trustee);
  } finally {
    await output?.abandon();
  }
}

interface TrusteeInitPlan {
  readonly keepPassphrase: boolean;
  readonly device: DeviceKeys;
  readonly info: TrusteeSlotInfo;
  /** The new volume's ID when it is also its trustee name (registered before the volume exists). */
  readonly volumeId?: string;
}

/** init --trustee: every question asked and every trustee check made before anything is created. */
async function trusteeInitPlan(opts: InitCommandOptions): Promise<TrusteeInitPlan> {
  const device = await loadThisDevice(opts);
  const keepPassphrase = await keepPassphraseChoice(opts);
  if (!keepPassphrase && (opts.passfile || opts.extpass || opts.keyfile))
    throw new UserError(
      "--trustee-only makes no passphrase or key-file slot: drop --passfile, --extpass and --keyfile",
      EXIT.usage,
    );
  // Without --trustee-volume the trustee knows the volume by its own ID,
  // registered under this device's grant; so the ID is chosen now.
  const volumeId = opts.trusteeVolume ? undefined : newVolumeId();
  const info = await planTrusteeSlot(device, opts.trustee!, opts.trusteeVolume ?? volumeId!, {
    register: volumeId !== undefined,
  });
  return { keepPassphrase, device, info, ...(volumeId ? { volumeId } : {}) };
}

async function createVolume(
  lower: string,
  opts: InitCommandOptions,
  kdf: Argon2Params,
  recovery: boolean,
  output: RecoveryOutput | undefined,
  trustee: TrusteeInitPlan | undefined,
): Promise<number> {
  const slots: SlotRequest[] = [];
  const trusteeSecret = trustee ? newTrusteeSecret() : undefined;
  const createdDir = !(await stat(lower).catch(() => undefined));
  let created;
  try {
    if (opts.keyfile && trustee?.keepPassphrase !== false)
      slots.push({ secret: await readSecret({ keyfile: opts.keyfile }), label: "key file" });
    const passphrase = trustee ? trustee.keepPassphrase : true;
    if (passphrase && (!opts.keyfile || opts.passfile || opts.extpass)) {
      const newPassphrase = await readNewPassphrase({
        ...(opts.passfile ? { passfile: opts.passfile } : {}),
        ...(opts.extpass ? { extpass: opts.extpass } : {}),
      });
      slots.unshift({ secret: newPassphrase, label: "passphrase", kdf });
    }
    if (trustee && trusteeSecret)
      slots.push({ secret: trusteeSecret, label: "trustee", trustee: trustee.info });
    created = await initVolume(lower, {
      slots,
      ...(opts.blockSize ? { blockSize: opts.blockSize } : {}),
      ...(trustee?.volumeId ? { volumeId: trustee.volumeId } : {}),
      recovery,
    });
    if (trustee && trusteeSecret) {
      try {
        await depositTrusteeSecret(
          trustee.device,
          trustee.info,
          trusteeSecret,
          (trustee.info.members ?? []).map((m) => m.id),
        );
      } catch (err) {
        // A trustee slot without a deposit opens nothing: take the new volume back.
        await abandonNewVolume(lower, createdDir);
        throw err;
      }
    }
  } finally {
    for (const s of slots) s.secret.bytes.fill(0);
    trusteeSecret?.bytes.fill(0);
  }
  const { config, recoveryKey } = created;
  process.stdout.write(`Created cryptmount volume ${config.volumeId} in ${lower}\n`);
  if (trustee) {
    const members = trustee.info.members ?? [];
    process.stdout.write(
      `Trustee slot: ${trustee.info.url} (trustee ${trustee.info.tid}), volume ${trustee.info.volume}, deposited for ${members.length} device(s)\n`,
    );
    if (trustee.keepPassphrase)
      process.stdout.write(
        "Warning: the passphrase slot opens the volume without the trustee and bypasses its policy\n",
      );
  }
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
    slots: config.slots.map((s) => ({
      id: s.id,
      kind: s.kind,
      label: s.label,
      kdf: s.kdf,
      ...(s.kind === "trustee" && s.trustee ? { trustee: s.trustee } : {}),
    })),
    configSource: usedBackup ? "backup (primary unreadable)" : "primary",
    trustee: trusteeSummary(config),
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
      const line = `  ${String(s.id).padStart(2)}  ${s.kind.padEnd(10)} ${s.label ?? ""}${kdf}`;
      if (!s.trustee) return line;
      const t = s.trustee;
      const members = (t.members ?? []).map((m) => `${m.name} ${m.id}`);
      return [
        line,
        `        url ${t.url}`,
        `        trustee ${t.tid}`,
        `        volume ${t.volume}, key version ${t.key_version}`,
        `        members (last deposit): ${members.length === 0 ? "unknown" : members.join(", ")}`,
      ].join("\n");
    }),
  ];
  if (summary.trustee) {
    lines.push(
      summary.trustee.bypassSlots.length === 0
        ? "trustee only:  no passphrase, key-file or recovery slot opens the volume without the trustee"
        : `warning:       slot(s) ${summary.trustee.bypassSlots.join(", ")} open the volume without the trustee, bypassing its policy` +
            (summary.trustee.passphraseSlot
              ? " (a passphrase slot sits beside the trustee slot)"
              : ""),
    );
  }
  process.stdout.write(lines.join("\n") + "\n");
  return EXIT.ok;
}

/** Whether slots other than the trustee slot open the volume without it (they bypass its policy). */
function trusteeSummary(
  config: VolumeConfig,
): { slot: number; passphraseSlot: boolean; bypassSlots: number[] } | undefined {
  const slot = trusteeSlotOf(config);
  if (!slot) return undefined;
  const others = config.slots.filter((s) => s.kind !== "trustee");
  return {
    slot: slot.id,
    passphraseSlot: others.some((s) => s.kind === "passphrase"),
    bypassSlots: others.map((s) => s.id),
  };
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
