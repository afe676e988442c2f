import { createInterface } from "node:readline";
import { rm, rmdir } from "node:fs/promises";
import { join } from "node:path";
import { AgentError, mountKeyFromAgent } from "../agent/client.js";
import {
  defaultDeviceDir,
  deviceExists,
  deviceKeysProtected,
  loadDevice,
  type DeviceKeys,
} from "../agent/device.js";
import {
  deposit,
  registerVolume,
  release,
  TrusteeRefusal,
  verifiedMembers,
  type Member,
} from "../agent/trustee-client.js";
import { randomPool } from "../crypto/random.js";
import { hardenProcess } from "../mount/hardening.js";
import type { KeySlot, TrusteeSlotInfo, VolumeConfig } from "../format/config.js";
import { TRUSTEE_SECRET_BYTES, type Secret } from "../keys/kek.js";
import { promptHidden, readSecret, type SecretSource } from "../keys/secret-input.js";
import { trusteeSlotOf } from "../volume/slots.js";
import {
  CONFIG_BACKUP,
  CONFIG_FILE,
  loadConfig,
  unlockWithSecret,
  type UnlockedVolume,
} from "../volume/volume.js";
import { EXIT, UserError } from "../errors.js";

/**
 * The volume side of the trustee (docs/trustee.md §12): a trustee key slot
 * whose 32-byte secret T is deposited at the trustee, sealed to each member
 * device; mounts get T back through the key agent. T lives in Buffers that
 * are wiped after use and never reaches argv, the environment or a log.
 */

/** How a command finds this device (for init --trustee and passwd --add-/--update-trustee). */
export interface DeviceSource {
  deviceDir?: string;
  devicePassfile?: string;
}

/** How a keyed command may reach the trustee slot. */
export interface TrusteeUnlockOptions extends SecretSource {
  /** -o trustee / --trustee: use the trustee slot even though a key source is given (then it is the fallback). */
  trustee?: boolean;
  /** The key agent's socket (default: its default path). */
  trusteeSocket?: string;
}

export function hasKeySource(opts: SecretSource): boolean {
  return Boolean(opts.passfile || opts.keyfile || opts.extpass || opts.recovery);
}

/**
 * Loads this device's keys, asking for their passphrase only when they are
 * sealed. The process holds device keys and T from here on: no core dumps,
 * not dumpable (as mount and the agent).
 */
export async function loadThisDevice(opts: DeviceSource): Promise<DeviceKeys> {
  hardenProcess();
  const dir = opts.deviceDir ?? defaultDeviceDir();
  if (!(await deviceExists(dir)))
    throw new UserError(
      `${dir}: no enrolled device here (cryptmount device enroll creates one; --device-dir names another)`,
      EXIT.usage,
    );
  let passphrase: Buffer | undefined;
  if (await deviceKeysProtected(dir)) {
    if (opts.devicePassfile)
      passphrase = (await readSecret({ passfile: opts.devicePassfile })).bytes;
    else if (process.stdin.isTTY) passphrase = await promptHidden("Device key passphrase: ");
    else
      throw new UserError(
        `${dir}: the device keys are passphrase-protected: give --device-passfile FILE`,
        EXIT.usage,
      );
  }
  try {
    const device = await loadDevice(dir, passphrase);
    if (!device.profile.trustee)
      throw new UserError(
        `${dir}: the device is not enrolled with a trustee (cryptmount device enroll)`,
        EXIT.usage,
      );
    return device;
  } finally {
    passphrase?.fill(0);
  }
}

function sameOrigin(a: string, b: string): boolean {
  try {
    return new URL(a).origin === new URL(b).origin;
  } catch {
    return false;
  }
}

/** What `info` and the docs call "the members": verified devices, by ID and name. */
function memberList(members: readonly Member[]): { id: string; name: string }[] {
  return members.map((m) => ({ id: m.deviceId, name: m.name }));
}

/**
 * Everything checked before a trustee slot is created, so that a refusal
 * leaves no half-made volume or slot: the URL is this device's trustee, the
 * trustee's policy for `trusteeVolume` lists this device among verified
 * members, and nothing is deposited under that name yet (a second volume
 * under one name would replace the first one's secret and lock it out).
 */
export async function planTrusteeSlot(
  device: DeviceKeys,
  url: string,
  trusteeVolume: string,
  options: { register?: boolean } = {},
): Promise<TrusteeSlotInfo> {
  const trustee = device.profile.trustee!;
  if (!sameOrigin(url, trustee.url))
    throw new UserError(
      `this device is enrolled with the trustee at ${trustee.url}, not ${url} (--device-dir names another device)`,
      EXIT.usage,
    );
  const id = device.profile.deviceId;
  // No name given: the volume registers itself under this device's grant
  // (docs/trustee.md §8.4); without a grant the admin's policy must exist.
  let grantRefusal: TrusteeRefusal | undefined;
  if (options.register) {
    try {
      await registerVolume(device, trusteeVolume);
    } catch (err) {
      if (!(err instanceof TrusteeRefusal) || err.rule === "grant_exhausted") throw err;
      if (err.rule !== "volume_exists") grantRefusal = err;
    }
  }
  let members: Member[];
  try {
    members = await verifiedMembers(device, trusteeVolume);
  } catch (err) {
    if (err instanceof TrusteeRefusal && (err.rule === "no_policy" || err.rule === "not_member"))
      throw new UserError(
        `${err.message}; the trustee admin runs: cryptmount trustee policy ${trusteeVolume} --member ${id}` +
          (grantRefusal
            ? ` (or lets this device create volumes: cryptmount trustee grant ${id} --create-volumes)`
            : ""),
        err.exitCode,
      );
    throw err;
  }
  if (!members.some((m) => m.deviceId === id))
    throw new UserError(
      `this device (${id}) is not a verified member of ${trusteeVolume}`,
      EXIT.usage,
    );
  try {
    const existing = await release(device, trusteeVolume);
    existing.mountKey.fill(0);
    throw new UserError(
      `the trustee already holds a key for ${trusteeVolume} (another volume's?): choose another --trustee-volume name`,
      EXIT.usage,
    );
  } catch (err) {
    if (!(err instanceof TrusteeRefusal && err.rule === "no_deposit")) throw err;
  }
  return {
    url: trustee.url,
    tid: trustee.tid,
    pin: trustee.pin,
    aid: trustee.aid,
    volume: trusteeVolume,
    key_version: 1,
    members: memberList(members),
  };
}

/** A fresh trustee slot secret T (the caller wipes it). */
export function newTrusteeSecret(): Secret {
  return { kind: "trustee", bytes: randomPool.bytes(TRUSTEE_SECRET_BYTES) };
}

/**
 * Seals T to every verified member of the slot's trustee volume and uploads
 * the deposits (replacing that key version's earlier ones). Returns the
 * members it was sealed to.
 */
export async function depositTrusteeSecret(
  device: DeviceKeys,
  info: TrusteeSlotInfo,
  secret: Secret,
  only?: readonly string[],
): Promise<{ id: string; name: string }[]> {
  const wanted = only && new Set(only);
  const members = (await verifiedMembers(device, info.volume)).filter(
    (m) => !wanted || wanted.has(m.deviceId),
  );
  await deposit(device, info.volume, secret.bytes, {
    keyVersion: info.key_version,
    members: members.map((m) => m.deviceId),
  });
  return memberList(members);
}

/** T released to this process directly (passwd --update-trustee, which deposits it again). */
export async function releaseTrusteeSecret(
  device: DeviceKeys,
  info: TrusteeSlotInfo,
): Promise<Secret> {
  if (device.profile.trustee?.tid !== info.tid)
    throw new UserError(
      `the trustee slot belongs to trustee ${info.tid}; this device is enrolled with ${device.profile.trustee?.tid ?? "none"}`,
      EXIT.usage,
    );
  const r = await release(device, info.volume, { keyVersion: info.key_version });
  return { kind: "trustee", bytes: r.mountKey };
}

/** Removes a volume init just wrote (its deposit failed): the directory is as empty as before. */
export async function abandonNewVolume(lower: string, createdDir: boolean): Promise<void> {
  await rm(join(lower, CONFIG_FILE), { force: true });
  await rm(join(lower, CONFIG_BACKUP), { force: true });
  if (createdDir) await rmdir(lower).catch(() => undefined);
}

/**
 * init --trustee: whether a passphrase slot stays beside the trustee slot is
 * the user's explicit choice; on a terminal the question is asked, otherwise
 * the command refuses to guess.
 */
export async function keepPassphraseChoice(opts: {
  keepPassphrase?: boolean;
  trusteeOnly?: boolean;
}): Promise<boolean> {
  if (opts.keepPassphrase && opts.trusteeOnly)
    throw new UserError("--keep-passphrase and --trustee-only contradict each other", EXIT.usage);
  if (opts.keepPassphrase) return true;
  if (opts.trusteeOnly) return false;
  if (!process.stdin.isTTY || !process.stderr.isTTY)
    throw new UserError(
      "--trustee: say whether a passphrase slot stays beside the trustee slot: --keep-passphrase (it opens the volume without the trustee, bypassing its policy) or --trustee-only",
      EXIT.usage,
    );
  // Lines typed ahead are kept (an async iterator buffers them); the terminal echoes them itself.
  const rl = createInterface({ input: process.stdin, terminal: false });
  try {
    process.stderr.write(
      "A passphrase slot beside the trustee slot opens the volume without the trustee,\n" +
        "bypassing every trustee policy (revocation, time windows, address ranges).\n" +
        "Keep a passphrase slot? [yes/no] ",
    );
    for await (const line of rl) {
      const answer = line.trim().toLowerCase();
      if (answer === "yes" || answer === "y") return true;
      if (answer === "no" || answer === "n") return false;
      process.stderr.write("Please answer yes or no: ");
    }
    throw new UserError("no answer: give --keep-passphrase or --trustee-only", EXIT.usage);
  } finally {
    rl.close();
  }
}

/** One line about a failed trustee release, naming the rule and the trustee. */
function trusteeFailure(lower: string, info: TrusteeSlotInfo, err: AgentError): string {
  return `${lower}: no key from the trustee for ${info.volume} at ${info.url}: ${err.message}`;
}

async function unlockWithSource(
  lower: string,
  config: VolumeConfig,
  opts: SecretSource,
  usedBackup: boolean,
): Promise<UnlockedVolume> {
  const secret = await readSecret(opts);
  try {
    return await unlockWithSecret(lower, config, secret, usedBackup);
  } finally {
    secret.bytes.fill(0);
  }
}

/**
 * Unlocks `lower` for a keyed command. A volume with a trustee slot asks the
 * key agent (docs/trustee.md §11) unless a key source is given without
 * --trustee; when the agent or the trustee fails, the key source given, or
 * on a terminal the passphrase slot, is the fallback; otherwise the
 * command exits 9 (refused, with the rule) or 10 (unreachable, no agent).
 */
export async function unlockForCommand(
  lower: string,
  opts: TrusteeUnlockOptions,
  warn: (message: string) => void,
  onLease?: (lease: MountLease) => void,
): Promise<UnlockedVolume> {
  const { config, usedBackup } = await loadConfig(lower);
  const slot = trusteeSlotOf(config);
  const keyGiven = hasKeySource(opts);
  if (opts.trustee && !slot)
    throw new UserError(`${lower}: the volume has no trustee slot`, EXIT.usage);
  if (!slot || (keyGiven && !opts.trustee))
    return unlockWithSource(lower, config, opts, usedBackup);
  let secret: Secret;
  try {
    const fetched = await secretFromAgent(slot, opts.trusteeSocket);
    secret = fetched.secret;
    if (fetched.lease) onLease?.(fetched.lease);
  } catch (err) {
    if (!(err instanceof AgentError)) throw err;
    const passphraseSlot = config.slots.some((s) => s.kind === "passphrase");
    const message = trusteeFailure(lower, slot.trustee, err);
    if (keyGiven || (passphraseSlot && process.stdin.isTTY)) {
      warn(`${message}; using ${keyGiven ? "the key given" : "the passphrase slot"} instead`);
      return unlockWithSource(lower, config, opts, usedBackup);
    }
    const hint = passphraseSlot
      ? " (the volume also has a passphrase slot: give --passfile, or run on a terminal, to use it)"
      : "";
    throw new AgentError(message + hint, err.exitCode, err.rule);
  }
  try {
    return await unlockWithSecret(lower, config, secret, usedBackup);
  } finally {
    secret.bytes.fill(0);
  }
}

/** T for the trustee slot, from the agent ("the key of volume V from trustee T"). */
async function secretFromAgent(
  slot: KeySlot & { trustee: TrusteeSlotInfo },
  socketPath?: string,
): Promise<{ secret: Secret; lease?: MountLease }> {
  const { mountKey, leaseExpiresAt } = await mountKeyFromAgent({
    volumeId: slot.trustee.volume,
    trusteeId: slot.trustee.tid,
    keyVersion: slot.trustee.key_version,
    ...(socketPath ? { socketPath } : {}),
  });
  const secret: Secret = { kind: "trustee", bytes: mountKey };
  if (!leaseExpiresAt) return { secret };
  const lease: MountLease = {
    volume: slot.trustee.volume,
    trustee: slot.trustee.tid,
    ...(socketPath ? { socket: socketPath } : {}),
    expiresAt: leaseExpiresAt,
  };
  return { secret, lease };
}

/** A mount's lease (docs/trustee.md §8.6): what the server needs to renew it through the agent. */
export interface MountLease {
  /** The volume's name at the trustee. */
  readonly volume: string;
  readonly trustee: string;
  /** The agent's socket; absent: its default path. */
  readonly socket?: string;
  readonly expiresAt: string;
}
