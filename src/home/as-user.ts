import { runProgram, type Account, type Output } from "./account.js";
import { CLI_PATH } from "./paths.js";

/**
 * Runs a program as `account` (its uid and gid; libuv drops supplementary
 * groups), with a minimal environment of its own: never the caller's, so no
 * secret or variable of the login program travels on.
 */
export function runAsUser(
  account: Account,
  command: string,
  args: readonly string[],
  options: { input?: Buffer; cwd?: string } = {},
): Promise<Output> {
  return runProgram(command, args, {
    ...options,
    uid: account.uid,
    gid: account.gid,
    env: {
      HOME: account.home,
      USER: account.name,
      LOGNAME: account.name,
      PATH: "/usr/local/bin:/usr/bin:/bin",
      LANG: "C.UTF-8",
    },
  });
}

/** This cryptmount (same node, same build) as `account`. */
export function cryptmountAsUser(
  account: Account,
  args: readonly string[],
  options: { input?: Buffer; cwd?: string } = {},
): Promise<Output> {
  return runAsUser(account, process.execPath, [CLI_PATH, ...args], options);
}

/** A message from a child's output, one line, for our own messages. */
export function lastLine(output: Output): string {
  const text = (output.stderr.trim() || output.stdout.trim()).split("\n").pop() ?? "";
  return text.replace(/^cryptmount: /, "");
}
