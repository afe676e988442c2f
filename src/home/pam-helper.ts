import { EXIT, UserError } from "../errors.js";
import { requireAccount, type Account } from "./account.js";
import { cryptmountAsUser, lastLine } from "./as-user.js";
import { rewrapLoginSlot, recoverySecret } from "./login-slot.js";
import { isMounted, mountAsUser, unmount } from "./mount.js";
import { readRecord, type HomeRecord } from "./record.js";
import { nulJoined, readNulSecrets, wipeAll } from "./secrets.js";
import { withSessionLock } from "./sessions.js";
import { isValidUserName } from "./paths.js";
import { join } from "node:path";

/** Exit codes the PAM module acts on (native/pam/pam_cryptmount.c). */
export const HELPER_EXIT = {
  ok: 0,
  failure: 1,
  /** The user has no encrypted home: the module passes (PAM_IGNORE). */
  noHome: 20,
  /** This session did not mount and is not counted: its close_session does nothing. */
  notCounted: 21,
} as const;

/**
 * What the module relays: `info:` and `error:` lines are shown to the user
 * (pam_info, pam_error) and logged; `log:` lines are only logged (syslog).
 */
const say = {
  info: (text: string) => process.stdout.write(`info: ${text}\n`),
  error: (text: string) => process.stdout.write(`error: ${text}\n`),
  log: (text: string) => process.stdout.write(`log: ${text}\n`),
};

export interface HelperOptions {
  mount?: string;
  debug?: boolean;
}

type Context = { account: Account; record: HomeRecord; mountpoint: string; debug: boolean };

async function context(user: string, opts: HelperOptions): Promise<Context | undefined> {
  if (!isValidUserName(user)) throw new UserError(`invalid user name`, EXIT.usage);
  const record = await readRecord(user);
  if (!record) return undefined;
  const account = await requireAccount(user);
  if (account.uid !== record.uid || account.gid !== record.gid)
    throw new UserError(
      `${user}: the account's uid/gid (${account.uid}/${account.gid}) differ from the encrypted home's (${record.uid}/${record.gid}); refusing to mount`,
      EXIT.failure,
    );
  const mountpoint =
    opts.mount === "~"
      ? record.home
      : opts.mount === "~/Private"
        ? join(record.home, "Private")
        : record.mountpoint;
  return { account, record, mountpoint, debug: Boolean(opts.debug) };
}

function recoverHint(user: string): string {
  return `ask the administrator to run \`cryptmount home recover ${user}\` (with the recovery key)`;
}

async function open(ctx: Context, password: Buffer | undefined): Promise<number> {
  const { account, record, mountpoint } = ctx;
  return withSessionLock(account.name, async (count) => {
    if (await isMounted(mountpoint)) {
      count.value += 1;
      say.log(`${account.name}: session ${count.value} shares the mounted home ${mountpoint}`);
      return HELPER_EXIT.ok;
    }
    count.value = 0; // nothing mounted: counts left from a crash or a lazy unmount no longer hold
    if (!password) {
      say.info(
        `your encrypted home (${mountpoint}) stays locked: this login did not use a password (an SSH key?). ` +
          `Log in with your password to unlock it.`,
      );
      return HELPER_EXIT.notCounted;
    }
    const { output, nonEmpty } = await mountAsUser(account, record.lower, mountpoint, password);
    if (output.code === EXIT.wrongKey) {
      say.error(
        `your encrypted home (${mountpoint}) was not unlocked: the login password does not open its login slot ` +
          `(was the password changed without the old one?); ${recoverHint(account.name)}`,
      );
      return HELPER_EXIT.notCounted;
    }
    if (output.code !== 0) {
      say.error(`your encrypted home (${mountpoint}) was not mounted: ${lastLine(output)}`);
      return HELPER_EXIT.notCounted;
    }
    if (nonEmpty)
      say.info(
        `${mountpoint} held unencrypted files; they are hidden under the encrypted home until logout`,
      );
    count.value = 1;
    say.log(`${account.name}: encrypted home ${record.lower} mounted at ${mountpoint} (session 1)`);
    return HELPER_EXIT.ok;
  });
}

async function close(ctx: Context): Promise<number> {
  const { account, mountpoint } = ctx;
  return withSessionLock(account.name, async (count) => {
    count.value = Math.max(0, count.value - 1);
    if (count.value > 0) {
      say.log(`${account.name}: session closed, ${count.value} left; the home stays mounted`);
      return HELPER_EXIT.ok;
    }
    const result = await unmount(mountpoint, account);
    if (result === "lazy")
      say.info(
        `${mountpoint}: files are still in use; the encrypted home was detached lazily and locks once they are closed`,
      );
    else say.log(`${account.name}: last session closed; ${mountpoint} ${result}`);
    return HELPER_EXIT.ok;
  });
}

async function passwd(ctx: Context, oldPassword: Buffer, newPassword: Buffer): Promise<number> {
  const input = nulJoined([oldPassword, newPassword]);
  try {
    const r = await cryptmountAsUser(
      ctx.account,
      ["home", "pam-helper", "rewrap", ctx.account.name],
      {
        input,
      },
    );
    if (r.code === 0) {
      say.info("the encrypted home's login slot now opens with the new password");
      return HELPER_EXIT.ok;
    }
    say.error(
      `the encrypted home's login slot was NOT changed (${lastLine(r)}); it still opens with the old password. ` +
        recoverHint(ctx.account.name),
    );
    return HELPER_EXIT.failure;
  } finally {
    input.fill(0);
  }
}

function passwdWithoutOld(ctx: Context): number {
  const user = ctx.account.name;
  say.error(
    `${user}'s password was changed without the old one (as root), so ${user}'s encrypted home still opens ` +
      `only with the OLD password and the next login will not unlock it. To fix it, run ` +
      `\`cryptmount home recover ${user}\`: it asks for the recovery key and the new password.`,
  );
  return HELPER_EXIT.failure;
}

/** As the user: rewrap the login slot (old, new) or recover it (recovery key, new). */
async function rewrapAsUser(ctx: Context, secrets: Buffer[], recovery: boolean): Promise<number> {
  if (process.getuid?.() !== ctx.record.uid)
    throw new UserError("rewrap runs as the home's owner", EXIT.usage);
  const [first, newPassword] = secrets;
  if (!first || !newPassword || newPassword.length === 0)
    throw new UserError("missing password on standard input", EXIT.usage);
  const opener = recovery
    ? recoverySecret(Buffer.from(first))
    : ({ kind: "passphrase", bytes: first } as const);
  await rewrapLoginSlot(ctx.record.lower, ctx.record.loginSlot, opener, newPassword);
  return HELPER_EXIT.ok;
}

const ROOT_ACTIONS = new Set([
  "open",
  "open-without-password",
  "close",
  "passwd",
  "passwd-without-old",
]);

/** `cryptmount home pam-helper ACTION USER`: what the PAM module runs. */
export async function pamHelper(
  action: string,
  user: string,
  opts: HelperOptions,
): Promise<number> {
  const needs = { open: 1, passwd: 2, "passwd-without-old": 1, rewrap: 2, recover: 2 }[action] ?? 0;
  const secrets = needs > 0 ? await readNulSecrets(needs) : [];
  try {
    if (ROOT_ACTIONS.has(action) && process.getuid?.() !== 0) {
      say.error(`the PAM helper must run as root (${action})`);
      return HELPER_EXIT.failure;
    }
    const ctx = await context(user, opts);
    if (!ctx) return HELPER_EXIT.noHome;
    if (ctx.debug)
      say.log(`${action} ${user}: volume ${ctx.record.lower}, mount point ${ctx.mountpoint}`);
    switch (action) {
      case "open":
        return await open(ctx, secrets[0]);
      case "open-without-password":
        return await open(ctx, undefined);
      case "close":
        return await close(ctx);
      case "passwd":
        if (secrets.length < 2)
          throw new UserError("missing passwords on standard input", EXIT.usage);
        return await passwd(ctx, secrets[0]!, secrets[1]!);
      case "passwd-without-old":
        return passwdWithoutOld(ctx);
      case "rewrap":
        return await rewrapAsUser(ctx, secrets, false);
      case "recover":
        return await rewrapAsUser(ctx, secrets, true);
      default:
        throw new UserError(`unknown action ${action}`, EXIT.usage);
    }
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (action === "rewrap" || action === "recover") {
      process.stderr.write(`cryptmount: ${message}\n`);
      return err instanceof UserError ? err.exitCode : HELPER_EXIT.failure;
    }
    say.error(`${action} failed for ${user}: ${message}`);
    return action === "open" || action === "open-without-password"
      ? HELPER_EXIT.notCounted
      : HELPER_EXIT.failure;
  } finally {
    wipeAll(secrets);
  }
}
