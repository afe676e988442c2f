import { chmod, chown, mkdir, readdir, rename, rm, rmdir, stat } from "node:fs/promises";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { EXIT, UserError } from "../errors.js";
import { formatRecoveryKey } from "../format/recovery.js";
import type { Argon2Params } from "../format/config.js";
import type { Secret } from "../keys/kek.js";
import { readNewPassphrase, readSecret } from "../keys/secret-input.js";
import { initVolume, loadConfig } from "../volume/volume.js";
import type { RecoveryOutput } from "../cli/recovery-output.js";
import { checkSystemPassword, requireAccount, runProgram, type Account } from "./account.js";
import { cryptmountAsUser, lastLine } from "./as-user.js";
import { compareTrees, copyTree } from "./copy.js";
import { loginSlotOf } from "./login-slot.js";
import { isMounted, mountAsUser, unmount } from "./mount.js";
import {
  installModule,
  installPamLines,
  pamLinesInstalled,
  pamModuleDir,
  removePamLines,
  uninstallModule,
} from "./pam-install.js";
import {
  CLI_PATH,
  LOGIN_SLOT_LABEL,
  REGISTRY_DIR,
  backupFor,
  mountpointFor,
  volumeDirFor,
} from "./paths.js";
import {
  listRecordUsers,
  readRecord,
  removeRecord,
  writeRecord,
  type HomeRecord,
} from "./record.js";
import { nulJoined } from "./secrets.js";
import { peekSessions } from "./sessions.js";

/**
 * The administrator's side of `cryptmount home` (docs/home.md): setup,
 * status, recover, remove, confirm. Runs as root; everything that touches
 * the user's volume or files runs as the user (src/home/as-user.ts).
 */

const out = (line: string) => process.stdout.write(`${line}\n`);

function requireRoot(command: string): void {
  if (process.getuid?.() !== 0) throw new UserError(`home ${command} must run as root`, EXIT.usage);
}

async function requireRecord(user: string): Promise<HomeRecord> {
  const record = await readRecord(user);
  if (!record)
    throw new UserError(
      `${user} has no encrypted home (see \`cryptmount home setup\`)`,
      EXIT.notAVolume,
    );
  return record;
}

async function ownedDir(path: string, account: Account, mode = 0o700): Promise<void> {
  await mkdir(path, { recursive: false, mode }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "EEXIST") throw err;
  });
  await chown(path, account.uid, account.gid);
  await chmod(path, mode);
}

/** The user's live processes (zombies do not count), as "PID NAME". */
async function userProcesses(account: Account): Promise<string[]> {
  const r = await runProgram("ps", ["-o", "pid=,stat=,comm=", "-u", String(account.uid)]);
  return r.stdout
    .split("\n")
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 3 && !f[1]!.startsWith("Z"))
    .map((f) => `${f[0]} ${f[2]}`);
}

async function isEmptyDir(path: string): Promise<boolean> {
  return (await readdir(path).catch(() => [])).length === 0;
}

/** Mounts the volume at a private scratch point, runs `work`, always unmounts. */
async function withScratchMount<T>(
  account: Account,
  volumeDir: string,
  lower: string,
  secret: Buffer,
  extraArgs: readonly string[],
  work: (at: string) => Promise<T>,
): Promise<T> {
  const at = join(volumeDir, "scratch-mnt");
  await ownedDir(at, account);
  try {
    const { output } = await mountAsUser(account, lower, at, secret, extraArgs);
    if (output.code !== 0)
      throw new UserError(
        `cannot mount the volume: ${lastLine(output)}`,
        output.code === EXIT.wrongKey ? EXIT.wrongKey : EXIT.failure,
      );
    try {
      return await work(at);
    } finally {
      await unmount(at, account);
    }
  } finally {
    await rmdir(at).catch(() => undefined);
  }
}

export interface SetupOptions {
  private?: boolean;
  migrate?: boolean;
  pam?: boolean;
  passfile?: string;
  kdf: Argon2Params;
}

export async function homeSetup(
  user: string,
  opts: SetupOptions,
  recoveryOutput: () => Promise<RecoveryOutput>,
): Promise<number> {
  requireRoot("setup");
  const account = await requireAccount(user);
  const existing = await readRecord(user);
  if (existing) {
    out(
      `${user} already has an encrypted home (${existing.lower} at ${existing.mountpoint}); checking the PAM set-up`,
    );
    if (opts.pam !== false) await installPam();
    return EXIT.ok;
  }
  const mountpoint = mountpointFor(account.home, Boolean(opts.private));
  const homeStat = await stat(account.home).catch(() => undefined);
  if (!homeStat?.isDirectory())
    throw new UserError(`${account.home}: ${user}'s home directory does not exist`, EXIT.usage);
  const mpStat = await stat(mountpoint).catch(() => undefined);
  if (mpStat && !mpStat.isDirectory())
    throw new UserError(`${mountpoint}: not a directory`, EXIT.usage);
  const hasFiles = mpStat !== undefined && !(await isEmptyDir(mountpoint));
  if (hasFiles && !opts.migrate)
    throw new UserError(
      `${mountpoint} is not empty: use --migrate to move its files into the encrypted home${opts.private ? "" : " (or --private for ~/Private)"}`,
      EXIT.usage,
    );
  // Moving a home away under running programs would leave them in the backup.
  if (hasFiles) {
    const running = await userProcesses(account);
    if (running.length > 0)
      throw new UserError(
        `${user} has running processes (${running.slice(0, 3).join(", ")}): log ${user} out before --migrate`,
        EXIT.alreadyMounted,
      );
  }
  // The helper runs this node and this build as the user: they must be reachable for them.
  const probe = await cryptmountAsUser(account, ["--version"]);
  if (probe.code !== 0)
    throw new UserError(
      `${user} cannot run ${process.execPath} ${CLI_PATH} (${lastLine(probe) || `exit ${probe.code}`}); ` +
        "install node and cryptmount where every user can read and run them (e.g. /usr/local, /opt)",
      EXIT.failure,
    );
  const volumeDir = volumeDirFor(user, account.home);
  if (existsSync(volumeDir))
    throw new UserError(`${volumeDir} exists already; remove it first`, EXIT.failure);

  const output = await recoveryOutput();
  const secret = await readSecret(
    opts.passfile ? { passfile: opts.passfile } : {},
    `${user}'s login password: `,
  );
  try {
    if (!(await checkSystemPassword(user, secret.bytes)))
      throw new UserError(`that is not ${user}'s login password`, EXIT.wrongKey);
    await mkdir(dirname(volumeDir), { recursive: true, mode: 0o711 });
    await ownedDir(volumeDir, account);
    const lower = join(volumeDir, "lower");
    let movedTo: string | undefined;
    try {
      const { config, recoveryKey } = await initVolume(lower, {
        slots: [{ secret, label: LOGIN_SLOT_LABEL, kdf: opts.kdf }],
      });
      const chowned = await runProgram("chown", ["-R", `${account.uid}:${account.gid}`, lower]);
      if (chowned.code !== 0) throw new Error(`chown ${lower}: ${chowned.stderr.trim()}`);
      await chmod(lower, 0o700);
      const loginSlot = loginSlotOf(config).id;
      const mountpointMode = mpStat ? mpStat.mode & 0o7777 : 0o700;
      if (hasFiles) {
        out(`copying ${mountpoint} into the encrypted home...`);
        await withScratchMount(account, volumeDir, lower, secret.bytes, [], async (at) => {
          await copyTree(account, mountpoint, at);
          const problem = await compareTrees(account, mountpoint, at);
          if (problem)
            throw new UserError(
              `the copy differs from ${mountpoint}: ${problem}; nothing was changed`,
              EXIT.failure,
            );
        });
        await chmod(lower, 0o700); // cp gave the volume root the old home's mode
        movedTo = backupFor(mountpoint);
        if (existsSync(movedTo)) throw new UserError(`${movedTo} exists already`, EXIT.failure);
        await rename(mountpoint, movedTo);
        out(
          `verified copy; the original is kept at ${movedTo} until \`cryptmount home confirm ${user}\``,
        );
      }
      if (!existsSync(mountpoint)) {
        await mkdir(mountpoint, { mode: 0o700 });
        await chown(mountpoint, account.uid, account.gid);
      }
      await writeRecord({
        version: 1,
        user,
        uid: account.uid,
        gid: account.gid,
        home: account.home,
        volumeDir,
        lower,
        mountpoint,
        private: Boolean(opts.private),
        loginSlot,
        mountpointMode,
        created: new Date().toISOString(),
        ...(movedTo ? { backup: movedTo } : {}),
      });
      if (opts.pam !== false) await installPam();
      else out("PAM files left alone (--no-pam); see docs/home.md for the lines");
      out(`${user}: encrypted home ${lower}, mounted at ${mountpoint} at login`);
      if (recoveryKey)
        await output.deliver(
          recoveryKey,
          `Recovery key for ${user}'s encrypted home (keep it off this machine):`,
        );
      return EXIT.ok;
    } catch (err) {
      // Back as it was: the original in place (only our empty mount point goes), no volume, no record.
      if (movedTo && existsSync(movedTo)) {
        await rmdir(mountpoint).catch(() => undefined);
        await rename(movedTo, mountpoint).catch(() => undefined);
      }
      await removeRecord(user);
      await rm(volumeDir, { recursive: true, force: true }).catch(() => undefined);
      throw err;
    }
  } finally {
    secret.bytes.fill(0);
  }
}

async function installPam(): Promise<void> {
  out(`PAM module installed: ${await installModule()}`);
  for (const line of await installPamLines()) out(line);
}

export async function homeStatus(user: string, opts: { json?: boolean }): Promise<number> {
  const record = await requireRecord(user);
  const { config } = await loadConfig(record.lower);
  const slot = loginSlotOf(config, record.loginSlot);
  const status = {
    user,
    lower: record.lower,
    mountpoint: record.mountpoint,
    mounted: await isMounted(record.mountpoint),
    sessions: await peekSessions(user),
    loginSlot: { id: slot.id, label: slot.label, kdf: slot.kdf },
    recoverySlot: config.slots.some((s) => s.kind === "recovery"),
    backup: record.backup ?? null,
    pam: await pamLinesInstalled(),
    module: existsSync(join(await pamModuleDir().catch(() => "/nonexistent"), "pam_cryptmount.so")),
  };
  if (opts.json) {
    out(JSON.stringify(status, null, 2));
    return EXIT.ok;
  }
  out(`user:        ${user}`);
  out(`volume:      ${record.lower}`);
  out(
    `mount point: ${record.mountpoint}${status.mounted ? ` (mounted, ${status.sessions} session(s))` : " (locked)"}`,
  );
  out(
    `login slot:  ${slot.id} "${slot.label}" argon2id ${slot.kdf?.memoryKiB} KiB, ${slot.kdf?.iterations} passes`,
  );
  out(`recovery:    ${status.recoverySlot ? "recovery key slot present" : "no recovery key"}`);
  if (record.backup)
    out(`backup:      ${record.backup} (kept until \`cryptmount home confirm ${user}\`)`);
  out(
    `PAM:         ${Object.entries(status.pam)
      .map(([f, ok]) => `${f} ${ok ? "yes" : "NO"}`)
      .join(", ")}; module ${status.module ? "installed" : "NOT installed"}`,
  );
  return EXIT.ok;
}

export interface RecoverOptions {
  recoveryFile?: string;
  passfile?: string;
}

export async function homeRecover(user: string, opts: RecoverOptions): Promise<number> {
  requireRoot("recover");
  const account = await requireAccount(user);
  await requireRecord(user);
  const key = await readSecret(
    opts.recoveryFile ? { passfile: opts.recoveryFile, recovery: true } : { recovery: true },
  );
  const text = Buffer.from(formatRecoveryKey(key.bytes), "utf8");
  key.bytes.fill(0);
  let password: Secret | undefined;
  try {
    password = await readNewPassphrase(opts.passfile ? { passfile: opts.passfile } : {});
    if (!(await checkSystemPassword(user, password.bytes)))
      throw new UserError(
        `that is not ${user}'s current login password: set it first (passwd ${user}), then run this again with it`,
        EXIT.wrongKey,
      );
    const input = nulJoined([text, password.bytes]);
    try {
      const r = await cryptmountAsUser(account, ["home", "pam-helper", "recover", user], { input });
      if (r.code !== 0)
        throw new UserError(
          `${user}: ${lastLine(r)}`,
          r.code === EXIT.wrongKey ? EXIT.wrongKey : EXIT.failure,
        );
    } finally {
      input.fill(0);
    }
    out(`${user}: the login slot now opens with ${user}'s current login password`);
    return EXIT.ok;
  } finally {
    text.fill(0);
    password?.bytes.fill(0);
  }
}

export interface RemoveOptions {
  passfile?: string;
  recovery?: boolean;
}

export async function homeRemove(user: string, opts: RemoveOptions): Promise<number> {
  requireRoot("remove");
  const account = await requireAccount(user);
  const record = await requireRecord(user);
  if (await isMounted(record.mountpoint))
    throw new UserError(
      `${user} is logged in (${record.mountpoint} is mounted): log ${user} out first`,
      EXIT.alreadyMounted,
    );
  const secret = await readSecret(
    {
      ...(opts.passfile ? { passfile: opts.passfile } : {}),
      ...(opts.recovery ? { recovery: true } : {}),
    },
    `${user}'s login password: `,
  );
  const bytes =
    secret.kind === "recovery" ? Buffer.from(formatRecoveryKey(secret.bytes)) : secret.bytes;
  if (bytes !== secret.bytes) secret.bytes.fill(0);
  const restore = `${record.mountpoint}.cryptmount-restore`;
  try {
    if (existsSync(restore)) {
      if (!(await isEmptyDir(restore)))
        throw new UserError(
          `${restore} exists from an earlier attempt; move it away first`,
          EXIT.failure,
        );
    } else await mkdir(restore, { mode: 0o700 });
    await chown(restore, account.uid, account.gid);
    await withScratchMount(
      account,
      record.volumeDir,
      record.lower,
      bytes,
      secret.kind === "recovery" ? ["--recovery"] : [],
      async (at) => {
        out(`copying the encrypted home out to ${restore}...`);
        await copyTree(account, at, restore);
        const problem = await compareTrees(account, at, restore);
        if (problem)
          throw new UserError(
            `the copy differs: ${problem}; the encrypted home is unchanged`,
            EXIT.failure,
          );
      },
    );
  } catch (err) {
    await rm(restore, { recursive: true, force: true }).catch(() => undefined);
    throw err;
  } finally {
    bytes.fill(0);
  }
  // The verified cleartext copy exists: put it in place, then drop the volume.
  if (!(await isEmptyDir(record.mountpoint))) {
    const leftovers = `${record.mountpoint}.cryptmount-leftovers`;
    await rename(record.mountpoint, leftovers);
    out(`${record.mountpoint} held files written while the home was locked: moved to ${leftovers}`);
  } else {
    await rmdir(record.mountpoint).catch(() => undefined);
  }
  await rename(restore, record.mountpoint);
  await chmod(record.mountpoint, record.mountpointMode);
  await rm(record.volumeDir, { recursive: true, force: true });
  await rm(dirname(record.volumeDir)).catch(() => undefined); // HOMEPARENT/.cryptmount, if empty now
  await removeRecord(user);
  await rmdir(REGISTRY_DIR).catch(() => undefined); // if it was the last one
  out(`${user}: ${record.mountpoint} is a plain directory again; the encrypted volume is deleted`);
  if (record.backup && existsSync(record.backup))
    out(`the migration backup ${record.backup} is kept; delete it when it is no longer needed`);
  if ((await listRecordUsers()).length === 0) {
    for (const line of await removePamLines()) out(line);
    const removed = await uninstallModule();
    if (removed) out(`PAM module removed: ${removed} (no encrypted homes left)`);
  }
  return EXIT.ok;
}

export async function homeConfirm(user: string): Promise<number> {
  requireRoot("confirm");
  const record = await requireRecord(user);
  if (!record.backup) {
    out(`${user}: no migration backup to remove`);
    return EXIT.ok;
  }
  await rm(record.backup, { recursive: true, force: true });
  const { backup, ...rest } = record;
  await writeRecord(rest);
  out(`${user}: migration backup ${backup} removed`);
  return EXIT.ok;
}
