import { CONFIG_VERSION } from "../format/config.js";
import { readNewPassphrase, readSecret } from "../keys/secret-input.js";
import { Fsck, type FsckReport } from "../volume/fsck.js";
import { rekey } from "../volume/rekey.js";
import { upgrade } from "../volume/upgrade.js";
import {
  addSlot,
  changePassphrase,
  newRecoveryKey,
  removeSlot,
  setTrusteeMembers,
  trusteeSlotOf,
} from "../volume/slots.js";
import {
  loadConfig,
  saveConfig,
  unlockVolume,
  unlockWithSecret,
  type UnlockedVolume,
} from "../volume/volume.js";
import {
  depositTrusteeSecret,
  loadThisDevice,
  newTrusteeSecret,
  planTrusteeSlot,
  releaseTrusteeSecret,
  unlockForCommand,
  type DeviceSource,
  type TrusteeUnlockOptions,
} from "./trustee-volume.js";
import { mountOf, refuseIfMounted } from "../mount/in-use.js";
import { argon2FromOptions, loggerFor, type CommonOptions } from "./options.js";
import { terminalProgress } from "./progress.js";
import { recoveryOutput, type RecoveryOutput } from "./recovery-output.js";
import { EXIT, UserError } from "../errors.js";

async function unlock(
  lower: string,
  opts: CommonOptions & TrusteeUnlockOptions,
): Promise<UnlockedVolume> {
  const unlocked = await unlockForCommand(lower, opts, (message) =>
    process.stderr.write(`cryptmount: ${message}\n`),
  );
  if (unlocked.usedBackup)
    loggerFor(opts).warn({ lower }, "primary volume config unreadable; using the backup copy");
  return unlocked;
}

export interface PasswdOptions extends CommonOptions, TrusteeUnlockOptions, DeviceSource {
  /** --add-trustee URL: add a trustee slot, its secret deposited there. */
  addTrustee?: string;
  trusteeVolume?: string;
  /** --update-trustee: deposit the trustee slot's secret again, for the current members. */
  updateTrustee?: boolean;
  newPassfile?: string;
  newExtpass?: string;
  slot?: number;
  addPassphrase?: boolean;
  addKeyfile?: string;
  newRecoveryKey?: boolean;
  removeSlot?: number;
  kdfMemory?: number;
  kdfIterations?: number;
  kdfParallelism?: number;
  recoveryKeyFile?: string;
}

/** --recovery-key-file is only for the commands that make a new recovery key. */
function recoveryKeyFileOnlyWith(
  opts: { recoveryKeyFile?: string },
  wanted: boolean,
  flag: string,
) {
  if (opts.recoveryKeyFile && !wanted)
    throw new UserError(`--recovery-key-file goes with ${flag}`, EXIT.usage);
}

export async function passwdCommand(lower: string, opts: PasswdOptions): Promise<number> {
  const kdf = argon2FromOptions(opts);
  recoveryKeyFileOnlyWith(opts, Boolean(opts.newRecoveryKey), "--new-recovery-key");
  if (opts.trusteeVolume && !opts.addTrustee)
    throw new UserError("--trustee-volume goes with --add-trustee", EXIT.usage);
  if (opts.updateTrustee) return updateTrustee(lower, opts);
  const output = opts.newRecoveryKey
    ? await recoveryOutput("passwd --new-recovery-key", opts.recoveryKeyFile)
    : undefined;
  try {
    return await passwd(lower, opts, kdf, output);
  } finally {
    await output?.abandon();
  }
}

async function passwd(
  lower: string,
  opts: PasswdOptions,
  kdf: ReturnType<typeof argon2FromOptions>,
  output: RecoveryOutput | undefined,
): Promise<number> {
  const unlocked = await unlock(lower, opts);
  try {
    if (opts.removeSlot !== undefined) {
      await removeSlot(unlocked, opts.removeSlot);
      process.stdout.write(`Removed key slot ${opts.removeSlot}\n`);
      return EXIT.ok;
    }
    if (opts.addTrustee) return await addTrustee(unlocked, opts.addTrustee, opts);
    if (opts.addKeyfile) {
      const secret = await readSecret({ keyfile: opts.addKeyfile });
      try {
        const slot = await addSlot(unlocked, { secret, label: "key file" });
        process.stdout.write(`Added key-file slot ${slot.id}\n`);
        return EXIT.ok;
      } finally {
        secret.bytes.fill(0);
      }
    }
    if (output) {
      const key = await newRecoveryKey(unlocked);
      await output.deliver(key, "New recovery key (the old one no longer works; shown only now):");
      return EXIT.ok;
    }
    const secret = await readNewPassphrase({
      ...(opts.newPassfile ? { passfile: opts.newPassfile } : {}),
      ...(opts.newExtpass ? { extpass: opts.newExtpass } : {}),
    });
    let slot;
    try {
      slot = opts.addPassphrase
        ? await addSlot(unlocked, { secret, label: "passphrase", kdf })
        : await changePassphrase(unlocked, { secret, kdf }, opts.slot);
    } finally {
      secret.bytes.fill(0);
    }
    process.stdout.write(
      `${opts.addPassphrase ? "Added" : "Set"} passphrase in key slot ${slot.id}\n`,
    );
    return EXIT.ok;
  } finally {
    unlocked.close();
  }
}

/** passwd --add-trustee: checks with the trustee, adds the slot, deposits its secret (or takes the slot back). */
async function addTrustee(
  unlocked: UnlockedVolume,
  url: string,
  opts: PasswdOptions,
): Promise<number> {
  const existing = trusteeSlotOf(unlocked.config);
  if (existing)
    throw new UserError(
      `the volume already has a trustee slot (${existing.id}); remove it first (passwd --remove-slot ${existing.id})`,
      EXIT.usage,
    );
  const device = await loadThisDevice(opts);
  const info = await planTrusteeSlot(device, url, opts.trusteeVolume ?? unlocked.config.volumeId, {
    register: opts.trusteeVolume === undefined,
  });
  const secret = newTrusteeSecret();
  try {
    const slot = await addSlot(unlocked, { secret, label: "trustee", trustee: info });
    try {
      await depositTrusteeSecret(
        device,
        info,
        secret,
        (info.members ?? []).map((m) => m.id),
      );
    } catch (err) {
      await saveConfig(unlocked.lower, unlocked.config); // the config as it was: no undeposited slot
      throw err;
    }
    process.stdout.write(
      `Added trustee slot ${slot.id}: ${info.url}, volume ${info.volume}, deposited for ${info.members?.length ?? 0} device(s)\n`,
    );
    const bypass = unlocked.config.slots.filter((s) => s.kind !== "trustee").map((s) => s.id);
    if (bypass.length > 0)
      process.stdout.write(
        `Warning: slot(s) ${bypass.join(", ")} still open the volume without the trustee, bypassing its policy; passwd --remove-slot ID removes one\n`,
      );
    return EXIT.ok;
  } finally {
    secret.bytes.fill(0);
  }
}

/**
 * passwd --update-trustee: after the admin changed the volume's members, an
 * existing member gets T released, checks that it opens the slot, seals it to
 * every current member and records them in the slot.
 */
async function updateTrustee(lower: string, opts: PasswdOptions): Promise<number> {
  const { config, usedBackup } = await loadConfig(lower);
  const slot = trusteeSlotOf(config);
  if (!slot) throw new UserError(`${lower}: the volume has no trustee slot`, EXIT.usage);
  const device = await loadThisDevice(opts);
  const secret = await releaseTrusteeSecret(device, slot.trustee);
  try {
    const unlocked = await unlockWithSecret(lower, config, secret, usedBackup);
    try {
      const members = await depositTrusteeSecret(device, slot.trustee, secret);
      await setTrusteeMembers(unlocked, slot.id, members);
      process.stdout.write(
        `Deposited the trustee slot's key for ${members.length} device(s): ${members.map((m) => m.name).join(", ")}\n`,
      );
      return EXIT.ok;
    } finally {
      unlocked.close();
    }
  } finally {
    secret.bytes.fill(0);
  }
}

export interface RekeyCommandOptions extends CommonOptions, TrusteeUnlockOptions {
  revokeOthers?: boolean;
  recoveryKeyFile?: string;
}

export async function rekeyCommand(lower: string, opts: RekeyCommandOptions): Promise<number> {
  await refuseIfMounted(lower, "rekey"); // before asking for a key; rekey() checks again
  recoveryKeyFileOnlyWith(opts, Boolean(opts.revokeOthers), "--revoke-others");
  const output = opts.revokeOthers
    ? await recoveryOutput("rekey --revoke-others", opts.recoveryKeyFile)
    : undefined;
  try {
    return await rekeyVolume(lower, opts, output);
  } finally {
    await output?.abandon();
  }
}

async function rekeyVolume(
  lower: string,
  opts: RekeyCommandOptions,
  output: RecoveryOutput | undefined,
): Promise<number> {
  // A plain rekey may unlock through the trustee slot; --revoke-others rewraps the secret that
  // unlocked into the one surviving slot, so it takes a key source (not the trustee's T).
  const secret = output ? await readSecret(opts) : undefined;
  let result;
  let unlocked: UnlockedVolume | undefined;
  try {
    unlocked = secret ? await unlockVolume(lower, secret) : await unlock(lower, opts);
    result = await rekey(
      unlocked,
      terminalProgress("rekey"),
      output
        ? {
            revokeWith: secret!,
            onRecoveryKey: (key) =>
              output.deliver(
                key,
                "Every other key slot was revoked. New recovery key (the old one no longer works; shown only now):",
              ),
          }
        : {},
    );
  } finally {
    unlocked?.close();
    secret?.bytes.fill(0);
  }
  if (result.problems.length > 0) {
    for (const p of result.problems) process.stderr.write(`cryptmount: ${p.lower}: ${p.message}\n`);
    process.stderr.write(
      `cryptmount: rekey to epoch ${result.to} unfinished: ${result.problems.length} files could not be rewrapped; ` +
        "the old key is kept; run cryptmount fsck, then rekey again\n",
    );
    return EXIT.problemsFound;
  }
  process.stdout.write(
    `Rekeyed ${lower}: epoch ${result.from} -> ${result.to}, ${result.rewrapped} of ${result.files} file headers rewrapped\n`,
  );
  return EXIT.ok;
}

export interface FsckCommandOptions extends CommonOptions {
  repair?: boolean;
  json?: boolean;
  /** --full: check every file's content, whatever the check record says. */
  full?: boolean;
  /** --full-after DAYS: check everything when the last full check is older. */
  fullAfter?: string;
  /** --no-record: neither read nor write the check record. */
  record?: boolean;
}

const DAY_MS = 86_400_000;

function parseDays(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const days = Number(text);
  if (text.trim() === "" || !Number.isFinite(days) || days < 0)
    throw new UserError(
      `--full-after: ${JSON.stringify(text)} is not a number of days`,
      EXIT.usage,
    );
  return days * DAY_MS;
}

/** One line: what was checked, what was skipped by the record, and the verdict. */
export function fsckSummary(report: FsckReport, errors: number): string {
  const mbps = report.seconds > 0 ? report.bytes / 1e6 / report.seconds : 0;
  return (
    `${report.files} files (${report.checked} checked, ${report.skipped} unchanged since the last check), ` +
    `${report.directories} directories, ${report.symlinks} symlinks, ${report.specials} special files, ` +
    `${report.bytes} bytes checked in ${report.seconds.toFixed(1)} s (${mbps.toFixed(0)} MB/s): ` +
    (errors === 0 ? "clean" : `${errors} problems`)
  );
}

export async function fsckCommand(lower: string, opts: FsckCommandOptions): Promise<number> {
  const fullAfterMs = parseDays(opts.fullAfter);
  // --repair rewrites the lower tree: never under a live mount. A plain check
  // may run, but what the mount changes meanwhile can show up as problems.
  if (opts.repair) await refuseIfMounted(lower, "fsck --repair");
  else {
    const live = await mountOf(lower);
    if (live)
      loggerFor(opts).warn(
        { lower, mountpoint: live.mountpoint },
        "volume is mounted; changes made through the mount during the check may be reported as problems",
      );
  }
  const unlocked = await unlock(lower, opts);
  try {
    const fsck = new Fsck(unlocked.lower, unlocked.keyring, unlocked.config.blockSize, {
      repair: Boolean(opts.repair),
      progress: opts.json ? undefined : terminalProgress("fsck"),
      formatVersion: unlocked.config.version,
      full: Boolean(opts.full),
      record: opts.record !== false,
      ...(fullAfterMs !== undefined ? { fullAfterMs } : {}),
    });
    const report = await fsck.run();
    const errors = report.problems.filter((p) => p.severity === "error" && !p.repaired);
    if (opts.json) {
      process.stdout.write(
        JSON.stringify({ clean: errors.length === 0, ...report }, null, 2) + "\n",
      );
      // For the journal of a timer's service: the verdict in one line beside the JSON.
      process.stderr.write(`cryptmount: fsck ${lower}: ${fsckSummary(report, errors.length)}\n`);
    } else {
      for (const p of report.problems) {
        const where = p.path ?? `(lower) ${p.lower}`;
        const block = p.block !== undefined ? ` block ${p.block}` : "";
        const fixed = p.repaired ? " [repaired]" : "";
        process.stdout.write(`${p.severity}: ${where}${block}: ${p.message} [${p.code}]${fixed}\n`);
      }
      process.stdout.write(fsckSummary(report, errors.length) + "\n");
    }
    if (unlocked.config.version < CONFIG_VERSION && !opts.json)
      process.stderr.write(
        `cryptmount: note: ${lower} is format version ${unlocked.config.version} (read-only when mounted); cryptmount upgrade converts it\n`,
      );
    return errors.length === 0 ? EXIT.ok : EXIT.problemsFound;
  } finally {
    unlocked.close();
  }
}

export async function upgradeCommand(lower: string, opts: CommonOptions): Promise<number> {
  const unlocked = await unlock(lower, opts);
  let result;
  try {
    result = await upgrade(unlocked, { progress: terminalProgress("upgrade") });
  } finally {
    unlocked.keyring.wipe();
  }
  for (const d of result.duplicates) {
    process.stderr.write(
      `cryptmount: warning: ${d}: carries a directory ID another directory also has (copied?); run cryptmount fsck\n`,
    );
  }
  if (result.leftovers.length > 0) {
    for (const l of result.leftovers)
      process.stderr.write(
        `cryptmount: ${l}: version-1 directory ID not upgraded (arrived after the upgrade?)\n`,
      );
    process.stderr.write(
      `cryptmount: ${lower}: upgraded to format version ${CONFIG_VERSION}, but ${result.leftovers.length} version-1 ID entries were left in place; run cryptmount fsck\n`,
    );
  }
  for (const l of result.unconverted)
    process.stderr.write(
      `cryptmount: ${l}: symlink target does not decrypt; left as it was (run cryptmount fsck)\n`,
    );
  if (result.leftovers.length > 0 || result.unconverted.length > 0) return EXIT.problemsFound;
  process.stdout.write(
    result.from >= CONFIG_VERSION && result.removed === 0 && result.symlinks === 0
      ? `${lower} is already at format version ${CONFIG_VERSION}; nothing to do\n`
      : `Upgraded ${lower} to format version ${CONFIG_VERSION} (from version ${result.from}): ${result.directories} directories, ` +
          `${result.created} directory IDs authenticated, ${result.removed} old ID entries removed, ` +
          `${result.symlinks} symlinks stored as objects\n`,
  );
  return EXIT.ok;
}
