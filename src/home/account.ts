import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { EXIT, UserError } from "../errors.js";
import { isValidUserName } from "./paths.js";

/** A local account as the system's name service reports it (getent passwd). */
export interface Account {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  readonly home: string;
}

export interface Output {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a program to completion; `input` is written to its stdin (the caller wipes it). */
export function runProgram(
  command: string,
  args: readonly string[],
  options: {
    input?: Buffer;
    uid?: number;
    gid?: number;
    env?: NodeJS.ProcessEnv;
    cwd?: string;
  } = {},
): Promise<Output> {
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      stdio: ["pipe", "pipe", "pipe"],
      cwd: options.cwd ?? "/",
      env: options.env ?? { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin" },
      ...(options.uid !== undefined ? { uid: options.uid } : {}),
      ...(options.gid !== undefined ? { gid: options.gid } : {}),
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => err.push(c));
    child.stdin.on("error", () => undefined);
    child.stdin.end(options.input ?? Buffer.alloc(0));
    child.on("error", (e) => resolve({ code: 127, stdout: "", stderr: e.message }));
    child.on("close", (code, signal) =>
      resolve({
        code: code ?? (signal ? 128 : 1),
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
      }),
    );
  });
}

export async function lookupAccount(name: string): Promise<Account | undefined> {
  if (!isValidUserName(name)) return undefined;
  const r = await runProgram("getent", ["passwd", name]);
  if (r.code !== 0) return undefined;
  const fields = r.stdout.trim().split("\n")[0]?.split(":") ?? [];
  const [user, , uid, gid, , home] = fields;
  if (user !== name || uid === undefined || gid === undefined || !home?.startsWith("/"))
    return undefined;
  return { name, uid: Number(uid), gid: Number(gid), home };
}

export async function requireAccount(name: string): Promise<Account> {
  const account = await lookupAccount(name);
  if (!account) throw new UserError(`${name}: no such user`, EXIT.usage);
  if (account.uid === 0)
    throw new UserError(`${name}: root's home is not encrypted by cryptmount home`, EXIT.usage);
  return account;
}

const CHKPWD = ["/usr/sbin/unix_chkpwd", "/sbin/unix_chkpwd"];

/**
 * Whether `password` is `user`'s system password, through pam_unix's own
 * checker (unix_chkpwd: password on stdin, NUL-terminated; root may check
 * any user). Nothing of the password reaches argv or the environment.
 */
export async function checkSystemPassword(user: string, password: Buffer): Promise<boolean> {
  const chkpwd = CHKPWD.find((p) => existsSync(p));
  if (!chkpwd)
    throw new UserError("unix_chkpwd not found (Debian: libpam-modules-bin)", EXIT.failure);
  const input = Buffer.alloc(password.length + 1);
  password.copy(input);
  try {
    const r = await runProgram(chkpwd, [user, "nonull"], { input });
    return r.code === 0;
  } finally {
    input.fill(0);
  }
}
