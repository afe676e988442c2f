import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Where `cryptmount home` keeps things (docs/home.md, "Layout"):
 *
 *   /etc/cryptmount/home/USER.json   the record (root, 0644, no secret); the PAM
 *                                    module's test "does USER have an encrypted home"
 *   HOMEPARENT/.cryptmount/USER/     the user's volume directory (USER, 0700)
 *     lower/                         the volume (USER, 0700; config 0600)
 *   /run/cryptmount-home/USER.*      the session counter and its lock (root, 0600)
 *
 * The C module (native/pam/pam_cryptmount.c) knows REGISTRY_DIR too.
 */
export const REGISTRY_DIR = "/etc/cryptmount/home";
export const SESSION_DIR = "/run/cryptmount-home";

/** The label of the passphrase slot tied to the login password. */
export const LOGIN_SLOT_LABEL = "login password";

/** The compiled CLI, which the PAM lines and the helper's own children run. */
export const CLI_PATH = fileURLToPath(new URL("../cli/main.js", import.meta.url));

/** The PAM module as scripts/build-native.mjs builds it. */
export const BUILT_MODULE = fileURLToPath(
  new URL("../../build/pam_cryptmount.so", import.meta.url),
);

/** User names we accept in paths (useradd's default rule, plus a trailing $ for machine accounts). */
export function isValidUserName(name: string): boolean {
  return /^[a-z_][a-z0-9_.-]{0,31}\$?$/i.test(name);
}

export function recordFile(user: string): string {
  return join(REGISTRY_DIR, `${user}.json`);
}

export function volumeDirFor(user: string, home: string): string {
  return join(dirname(home), ".cryptmount", user);
}

export function mountpointFor(home: string, privateDir: boolean): string {
  return privateDir ? join(home, "Private") : home;
}

/** The migration backup of `mountpoint`: beside it, never inside the volume. */
export function backupFor(mountpoint: string): string {
  return join(dirname(mountpoint), `${basename(mountpoint)}.cryptmount-backup`);
}

export function sessionFiles(user: string): { lock: string; count: string } {
  return { lock: join(SESSION_DIR, `${user}.lock`), count: join(SESSION_DIR, `${user}.sessions`) };
}
