import { copyFile, readFile, readdir, rename, stat, unlink } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../atomic.js";
import { EXIT, UserError } from "../errors.js";
import {
  COMMON_FILES,
  addLine,
  hasOurLine,
  pamLine,
  passwordsBypassCommon,
  removeLines,
} from "./pam-lines.js";
import { BUILT_MODULE, CLI_PATH } from "./paths.js";

/**
 * Installing the module and its lines. The module is copied (not linked)
 * into the system's PAM module directory, beside pam_unix.so, so the PAM
 * lines name it as every other module is named and a login never depends on
 * a build tree staying where it is; the lines name the helper (node and this
 * build's CLI) by absolute path.
 */
export const PAM_DIR = process.env.CRYPTMOUNT_PAM_DIR ?? "/etc/pam.d";

export async function pamModuleDir(): Promise<string> {
  const candidates: string[] = [];
  for (const base of ["/lib", "/usr/lib", "/lib64", "/usr/lib64"]) {
    const names = await readdir(base).catch(() => [] as string[]);
    for (const n of names.filter((n) => n.endsWith("-linux-gnu")))
      candidates.push(join(base, n, "security"));
    candidates.push(join(base, "security"));
  }
  const found = candidates.find((dir) => existsSync(join(dir, "pam_unix.so")));
  if (!found)
    throw new UserError("cannot find the PAM module directory (no pam_unix.so)", EXIT.failure);
  return found;
}

export function helperOptions(): string[] {
  return [`node=${process.execPath}`, `cli=${CLI_PATH}`];
}

export async function installModule(): Promise<string> {
  if (!existsSync(BUILT_MODULE))
    throw new UserError(
      `${BUILT_MODULE} is not built; install libpam0g-dev and run: node scripts/build-native.mjs`,
      EXIT.failure,
    );
  const target = join(await pamModuleDir(), "pam_cryptmount.so");
  const temp = `${target}.tmp-${process.pid}`;
  await copyFile(BUILT_MODULE, temp);
  await rename(temp, target);
  return target;
}

export async function uninstallModule(): Promise<string | undefined> {
  const target = join(await pamModuleDir(), "pam_cryptmount.so");
  if (!existsSync(target)) return undefined;
  await unlink(target);
  return target;
}

async function rewrite(path: string, edit: (text: string) => string): Promise<boolean> {
  const text = await readFile(path, "utf8");
  const next = edit(text);
  if (next === text) return false;
  const mode = (await stat(path)).mode & 0o777;
  await writeFileAtomic(path, next, mode);
  return true;
}

/** Adds our lines to the common stacks; returns what it did, one line each. */
export async function installPamLines(dir = PAM_DIR): Promise<string[]> {
  const report: string[] = [];
  for (const { file, type } of COMMON_FILES) {
    const path = join(dir, file);
    if (!existsSync(path)) {
      report.push(
        `${path}: missing; add by hand: ${pamLine(type, "pam_cryptmount.so", helperOptions())}`,
      );
      continue;
    }
    const changed = await rewrite(path, (t) =>
      addLine(t, pamLine(type, "pam_cryptmount.so", helperOptions())),
    );
    report.push(`${path}: ${changed ? "added" : "already has"} the ${type} line`);
  }
  report.push(...(await checkPasswordServices(dir)));
  return report;
}

export async function removePamLines(dir = PAM_DIR): Promise<string[]> {
  const report: string[] = [];
  for (const { file } of COMMON_FILES) {
    const path = join(dir, file);
    if (!existsSync(path)) continue;
    if (await rewrite(path, removeLines)) report.push(`${path}: removed the cryptmount line`);
  }
  return report;
}

export async function pamLinesInstalled(dir = PAM_DIR): Promise<Record<string, boolean>> {
  const out: Record<string, boolean> = {};
  for (const { file, type } of COMMON_FILES) {
    const text = await readFile(join(dir, file), "utf8").catch(() => "");
    out[file] = hasOurLine(text, type);
  }
  return out;
}

/** Every service that changes passwords without common-password: our rewrap would not run there. */
export async function checkPasswordServices(dir = PAM_DIR): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const report: string[] = [];
  for (const name of names.sort()) {
    if (name.startsWith("common-") || name.includes(".")) continue;
    const text = await readFile(join(dir, name), "utf8").catch(() => "");
    if (passwordsBypassCommon(text))
      report.push(
        `warning: ${join(dir, name)} changes passwords without common-password: a password changed through it ` +
          `will not rewrap the login slot; add "@include common-password" or the line ` +
          `"${pamLine("password", "pam_cryptmount.so", helperOptions())}" to it`,
      );
  }
  if (report.length === 0)
    report.push(`every PAM service in ${dir} that changes passwords uses common-password`);
  return report;
}
